"""Text encoding: how many 75-token chunks a negative prompt encodes to (merge must not add chunks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modules import prompt_parser, sd_hijack, shared


def text_encoders() -> list[Any]:
    """A1111's text encoders that tokenize: the hijacked CLIP (SD1/SD2) or the SDXL conditioner's embedders."""
    clip = sd_hijack.model_hijack.clip
    if hasattr(clip, "tokenize_line"):
        return [clip]
    embedders = getattr(getattr(shared.sd_model, "conditioner", None), "embedders", [])
    return [e for e in embedders if hasattr(e, "tokenize_line")]


def count_chunks(text: str, steps: int, encoders: Sequence[Any]) -> int:
    """75-token chunks the negative encodes to, over every [from:to:when] schedule and text encoder."""
    schedules = prompt_parser.get_learned_conditioning_prompt_schedules([text], steps)[0]
    texts = [t for _, t in schedules] or [text]
    if not encoders:
        return 1
    return max(len(enc.tokenize_line(t)[0]) for enc in encoders for t in texts)
