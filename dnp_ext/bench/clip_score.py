"""The Attend-and-Excite CLIP protocol (yuval-alaluf/Attend-and-Excite, metrics/compute_clip_similarity.py).

- OpenAI CLIP ViT-B/16 (HF "openai/clip-vit-base-patch16" holds the same weights).
- Text embedding of a phrase: each of the 80 ImageNet templates filled with it (with A&E's "a a" -> "a"
  and "the a" -> "a" clean-up, quirks included), embedded, normalised, averaged, normalised again.
- Image embeddings normalised; a score is the cosine similarity (dot product).
- Full-prompt score: similarity to the whole prompt. Min-object score: min(sim(first half),
  sim(second half)), the prompt split on " and ", else on " with " (first two parts).
- Aggregation: the mean over all images (A&E flattens the per-prompt lists).
A&E skips prompts that do not split; here they keep their full-prompt score and get no min-object score.
The arithmetic is in numpy (float64) so it can be checked by hand; only the encoders need torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .prompts import DATA_DIR

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch16"
TEMPLATES: list[str] = json.loads((DATA_DIR / "imagenet_templates.json").read_text(encoding="utf-8"))


def template_texts(phrase: str, templates: Sequence[str] = TEMPLATES) -> list[str]:
    texts = [t.format(phrase) for t in templates]
    texts = [t.replace("a a", "a") for t in texts]  # A&E's clean-up, applied verbatim
    return [t.replace("the a", "a") for t in texts]


def split_prompt(prompt: str) -> tuple[str, str] | None:
    for sep in (" and ", " with "):
        if sep in prompt:
            parts = prompt.split(sep)
            return parts[0], parts[1]
    return None


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def text_embedding(template_embeddings: np.ndarray) -> np.ndarray:
    """(n_templates, d) raw text features -> one unit vector."""
    mean = _normalise(np.asarray(template_embeddings, dtype=np.float64)).mean(axis=0)
    return mean / np.linalg.norm(mean)


def similarities(image_embeddings: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """(n_images, d) raw image features, (d,) unit text embedding -> cosine similarities."""
    return _normalise(np.asarray(image_embeddings, dtype=np.float64)) @ np.asarray(text_emb, np.float64)


def prompt_scores(
    image_embeddings: np.ndarray, full: np.ndarray, first: np.ndarray | None, second: np.ndarray | None
) -> list[dict[str, float | None]]:
    """Per image: clip_full, clip_first, clip_second, clip_min (None without a split)."""
    f = similarities(image_embeddings, full)
    a = similarities(image_embeddings, first) if first is not None else None
    b = similarities(image_embeddings, second) if second is not None else None
    out: list[dict[str, float | None]] = []
    for i in range(len(f)):
        row: dict[str, float | None] = {
            "clip_full": float(f[i]),
            "clip_first": None,
            "clip_second": None,
            "clip_min": None,
        }
        if a is not None and b is not None:
            row.update(clip_first=float(a[i]), clip_second=float(b[i]), clip_min=float(min(a[i], b[i])))
        out.append(row)
    return out


def aggregate_full(per_prompt: dict[str, dict[str, list[float]]]) -> float:
    return float(np.mean([s for d in per_prompt.values() for s in d["full_text"]]))


def aggregate_min(per_prompt: dict[str, dict[str, list[float]]]) -> float:
    return float(
        np.mean(
            [min(a, b) for d in per_prompt.values() for a, b in zip(d["first_half"], d["second_half"], strict=True)]
        )
    )


class ClipScorer:
    """CLIP encoders from transformers (HF id or local folder); scores with the functions above."""

    name = "clip"

    def __init__(self, model: str = DEFAULT_CLIP_MODEL, device: str | None = None, batch_size: int = 16) -> None:
        import torch
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        self.model_id = model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        self.model = CLIPModel.from_pretrained(model).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        # the PIL-based processor: closest to OpenAI's preprocessing, and needs no torchvision
        self.image_processor = CLIPImageProcessor.from_pretrained(model)
        self._text_cache: dict[str, np.ndarray] = {}

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        max_len = self.tokenizer.model_max_length
        max_len = 77 if max_len is None or max_len > 10_000 else max_len
        tok = self.tokenizer(texts, padding="max_length", max_length=max_len, truncation=True, return_tensors="pt").to(
            self.device
        )
        with torch.no_grad():
            pooled = self.model.text_model(
                input_ids=tok["input_ids"], attention_mask=tok.get("attention_mask")
            ).pooler_output
            feats = self.model.text_projection(pooled)
        return feats.float().cpu().numpy()

    def text_embedding(self, phrase: str) -> np.ndarray:
        if phrase not in self._text_cache:
            self._text_cache[phrase] = text_embedding(self._encode_texts(template_texts(phrase)))
        return self._text_cache[phrase]

    def image_features(self, paths: Sequence[Path]) -> np.ndarray:
        import torch
        from PIL import Image

        chunks = []
        for i in range(0, len(paths), self.batch_size):
            images = []
            for p in paths[i : i + self.batch_size]:
                with Image.open(p) as im:
                    images.append(im.convert("RGB"))
            pix = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                pooled = self.model.vision_model(pixel_values=pix.to(self.device)).pooler_output
                chunks.append(self.model.visual_projection(pooled).float().cpu().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, 1))

    def score(self, prompt: str, paths: Sequence[Path], object_split: bool = True) -> list[dict[str, Any]]:
        if not paths:
            return []
        parts = split_prompt(prompt) if object_split else None
        first = self.text_embedding(parts[0]) if parts else None
        second = self.text_embedding(parts[1]) if parts else None
        return prompt_scores(self.image_features(paths), self.text_embedding(prompt), first, second)
