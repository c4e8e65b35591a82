"""From a caption of a DNS image to the negative prompt n* the main run uses.

Pure string work: cleaning, escaping the WebUI's prompt syntax, merging with the user's negative,
splitting a prompt for the DNS pass, and equalising 75-token chunk counts across a batch.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Literal

MergeMode = Literal["append", "prepend", "replace"]
MERGE_MODES: tuple[str, ...] = ("append", "prepend", "replace")

# The paper asked its human captioners for under 60 words.
MAX_CAPTION_WORDS = 60

# Same patterns as the WebUI's prompt parser (modules/extra_networks.py, modules/prompt_parser.py).
RE_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")
RE_AND = re.compile(r"\bAND\b")
RE_SUBPROMPT_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")
RE_BREAK = re.compile(r"\bBREAK\b")

# Padding word for chunk equalising: the WebUI closes a 75-token chunk at each BREAK.
BREAK = "BREAK"


def clean_caption(text: str, max_words: int = MAX_CAPTION_WORDS) -> str:
    """Drop control characters, collapse whitespace and cap the length in words."""
    text = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in text)
    words = text.split()
    if max_words > 0:
        words = words[:max_words]
    return " ".join(words).strip(" ,;")


def escape_prompt_syntax(text: str) -> str:
    """Make a caption plain text for the WebUI's parser.

    Brackets would be read as emphasis or [from:to:when] editing, <...> as an extra network (LoRA) tag,
    and the upper-case words BREAK and AND as chunk breaks and composable prompts.
    """
    text = text.replace("\\", "\\\\")
    for ch in "()[]":
        text = text.replace(ch, "\\" + ch)
    text = text.replace("<", " ").replace(">", " ")
    text = RE_BREAK.sub("break", text)
    text = RE_AND.sub("and", text)
    return " ".join(text.split())


def caption_to_negative(caption: str, max_words: int = MAX_CAPTION_WORDS) -> str:
    """The negative n* a caption stands for: cleaned, then escaped."""
    return escape_prompt_syntax(clean_caption(caption, max_words))


def merge_negative(user_negative: str, dnp_negative: str, mode: str) -> str:
    """Combine the user's own negative prompt with n*."""
    if mode not in MERGE_MODES:
        raise ValueError(f"merge must be one of {', '.join(MERGE_MODES)}, not {mode!r}")
    user = user_negative.strip().rstrip(",").strip()
    if mode == "replace" or not user:
        return dnp_negative
    if not dnp_negative:
        return user_negative
    return f"{user}, {dnp_negative}" if mode == "append" else f"{dnp_negative}, {user}"


def split_extra_networks(prompt: str) -> tuple[str, list[str]]:
    """Prompt text without its <name:args> tags, and the tags in order."""
    tags = [m.group(0) for m in RE_EXTRA_NETWORK.finditer(prompt)]
    text = RE_EXTRA_NETWORK.sub("", prompt)
    return text, tags


def dns_prompt_pair(prompt: str) -> tuple[str, str]:
    """(positive, negative) for the DNS pass of prompt p: eq. 19 as the WebUI's CFG runs it.

    Positive is the empty prompt plus p's extra-network tags (so a LoRA is active in both CFG branches,
    exactly as in the main pass, and its text part is still ""). Negative is p without those tags.
    AND (composable) sub-prompts are joined with ", " and their ":weight" suffixes dropped: the negative
    slot takes one prompt, and the WebUI doesn't parse AND there.
    """
    text, tags = split_extra_networks(prompt)
    parts = RE_AND.split(text)
    if len(parts) > 1:
        subprompts = []
        for part in parts:
            m = RE_SUBPROMPT_WEIGHT.search(part)
            body = (m.group(1) if m else part).strip()
            if body:
                subprompts.append(body)
        text = ", ".join(subprompts)
    return " ".join(tags), text.strip()


def equalize_chunks(negatives: Sequence[str], count_chunks: Callable[[str], int], max_pad: int = 16) -> list[str]:
    """Pad negatives with BREAK so that all encode to the same number of 75-token chunks.

    The WebUI stacks a batch's negative conditionings into one tensor and fails when their lengths
    differ. Padding (never truncation) keeps every word of every n*; a BREAK ends a chunk, so each
    extra one adds a chunk of padding tokens, as the WebUI itself does when it pads cond and uncond.
    """
    counts = [count_chunks(n) for n in negatives]
    if not counts:
        return []
    target = max(counts)
    out: list[str] = []
    for neg, count in zip(negatives, counts):
        padded = neg
        for _ in range(max_pad):
            if count >= target:
                break
            padded = f"{padded} {BREAK}".strip()
            count = count_chunks(padded)
        if count != target:
            raise ValueError(f"cannot pad negative prompt to {target} chunks (got {count}): {neg!r}")
        out.append(padded)
    return out
