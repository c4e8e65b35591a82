"""The A&E CLIP protocol: arithmetic against hand computation, and the scorer on a tiny random CLIP."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from dnp_ext.bench import clip_score as cs
from tests.fake_webui_server import make_png

R = math.sqrt(0.5)  # |(0.3, 0.4, 0.5)| = |(0, .5, .5)| = sqrt(0.5)


def test_templates_are_the_80_imagenet_templates() -> None:
    assert len(cs.TEMPLATES) == 80 and len(set(cs.TEMPLATES)) == 80
    assert all(t.count("{}") == 1 for t in cs.TEMPLATES)
    assert "a bad photo of a {}." in cs.TEMPLATES and "itap of my {}." in cs.TEMPLATES


def test_template_cleanup_reproduces_ae_quirks() -> None:
    texts = cs.template_texts("a cat and a dog", ["a photo of a {}.", "the {} in a video game.", "itap of my {}."])
    assert texts == ["a photo of a cat and a dog.", "a cat and a dog in a video game.", "itap of my a cat and a dog."]
    # A&E replaces "a a" anywhere, also across words ("banana and" -> "bananand"): kept on purpose
    assert cs.template_texts("a banana and a apple", ["{}"]) == ["a bananand apple"]


def test_split_prompt() -> None:
    assert cs.split_prompt("a cat and a dog") == ("a cat", "a dog")
    assert cs.split_prompt("a bear with a glasses") == ("a bear", "a glasses")
    assert cs.split_prompt("a cat with a hat and a dog") == ("a cat with a hat", "a dog")  # " and " first
    assert cs.split_prompt("a and b and c") == ("a", "b")  # A&E uses the first two parts
    assert cs.split_prompt("a portrait of a man") is None
    assert cs.split_prompt("a sandwich") is None  # needs the spaces around "and"


def test_text_embedding_by_hand() -> None:
    # rows normalised: (.6, .8, 0), (0, 0, 1) -> mean (.3, .4, .5) -> / sqrt(.5)
    got = cs.text_embedding(np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]]))
    np.testing.assert_allclose(got, [0.3 / R, 0.4 / R, 0.5 / R])
    assert np.linalg.norm(got) == pytest.approx(1.0)


def test_prompt_scores_and_aggregates_by_hand() -> None:
    full = cs.text_embedding(np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]]))  # (.3, .4, .5)/R
    first = cs.text_embedding(np.array([[7.0, 0.0, 0.0]]))  # (1, 0, 0)
    second = cs.text_embedding(np.array([[0.0, 5.0, 0.0], [0.0, 0.0, 0.5]]))  # (0, .5, .5)/R
    images = np.array([[2.0, 2.0, 1.0], [0.0, 3.0, 4.0]])  # norms 3 and 5
    rows = cs.prompt_scores(images, full, first, second)
    hand = [
        {"clip_full": (0.3 * 2 + 0.4 * 2 + 0.5) / (3 * R), "clip_first": 2 / 3, "clip_second": 1.5 / (3 * R)},
        {"clip_full": (0.4 * 3 + 0.5 * 4) / (5 * R), "clip_first": 0.0, "clip_second": 3.5 / (5 * R)},
    ]
    for row, h in zip(rows, hand, strict=True):
        for k, v in h.items():
            assert row[k] == pytest.approx(v)
        assert row["clip_min"] == pytest.approx(min(h["clip_first"], h["clip_second"]))
    assert rows[0]["clip_min"] == pytest.approx(2 / 3)  # first half is the weaker one here
    assert rows[1]["clip_min"] == pytest.approx(0.0)

    # A&E aggregation: mean over all images of all prompts (lists flattened)
    per_prompt = {
        "p1": {
            "full_text": [r["clip_full"] for r in rows],
            "first_half": [r["clip_first"] for r in rows],
            "second_half": [r["clip_second"] for r in rows],
        },
        "p2": {"full_text": [0.5], "first_half": [0.2], "second_half": [0.1]},
    }
    assert cs.aggregate_full(per_prompt) == pytest.approx((1.9 / (3 * R) + 3.2 / (5 * R) + 0.5) / 3)
    assert cs.aggregate_min(per_prompt) == pytest.approx((2 / 3 + 0.0 + 0.1) / 3)


def test_prompt_scores_without_split() -> None:
    rows = cs.prompt_scores(np.array([[1.0, 0.0]]), np.array([0.6, 0.8]), None, None)
    assert rows == [{"clip_full": pytest.approx(0.6), "clip_first": None, "clip_second": None, "clip_min": None}]


# ---- the scorer on tiny random CLIP weights ---------------------------------------------------------------


def test_tokenizer_matches_openai_clip_ids(tiny_clip: Path) -> None:
    from dnp_ext.bench.clip_score import ClipScorer

    tok = ClipScorer(str(tiny_clip), "cpu").tokenizer
    # ids of OpenAI CLIP's BPE: <start> a photo of a cat <end>
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_scorer_follows_protocol_on_tiny_clip(tiny_clip: Path, tmp_path: Path) -> None:
    import torch
    from transformers import CLIPModel

    from dnp_ext.bench.clip_score import ClipScorer

    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        p.write_bytes(make_png(f"img{i}", size=48))
        paths.append(p)
    scorer = ClipScorer(str(tiny_clip), "cpu", batch_size=2)  # 2 batches for 3 images
    rows = scorer.score("a cat and a dog", paths)

    # independent path: CLIPModel.get_*_features, dynamic padding, one image at a time
    model = CLIPModel.from_pretrained(str(tiny_clip)).eval()

    def text(phrase: str) -> np.ndarray:
        tok = scorer.tokenizer(cs.template_texts(phrase), padding=True, return_tensors="pt")
        with torch.no_grad():
            f = model.get_text_features(**tok)
        f = getattr(f, "pooler_output", f).numpy().astype(np.float64)
        f /= np.linalg.norm(f, axis=1, keepdims=True)
        m = f.mean(0)
        return m / np.linalg.norm(m)

    from PIL import Image

    for p, row in zip(paths, rows, strict=True):
        pix = scorer.image_processor(images=Image.open(p).convert("RGB"), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            v = model.get_image_features(pixel_values=pix)
        v = getattr(v, "pooler_output", v)[0].numpy().astype(np.float64)
        v /= np.linalg.norm(v)
        assert row["clip_full"] == pytest.approx(float(v @ text("a cat and a dog")), abs=1e-5)
        assert row["clip_first"] == pytest.approx(float(v @ text("a cat")), abs=1e-5)
        assert row["clip_second"] == pytest.approx(float(v @ text("a dog")), abs=1e-5)
        assert row["clip_min"] == min(row["clip_first"], row["clip_second"])
        assert -1.0 <= row["clip_full"] <= 1.0

    # different images get different scores; the same image the same score
    assert len({round(r["clip_full"], 6) for r in rows}) == 3
    assert scorer.score("a cat and a dog", paths[:1])[0]["clip_full"] == pytest.approx(rows[0]["clip_full"])
    # no split asked, or none possible: full-prompt score only
    assert scorer.score("a cat and a dog", paths[:1], object_split=False)[0]["clip_min"] is None
    assert scorer.score("a portrait of a man", paths[:1])[0]["clip_min"] is None
