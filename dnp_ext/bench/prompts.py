"""Prompt sets for the benchmark: built-in A&E and H&H sets, or a user file."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

# name -> (file, whether the A&E min-object score applies)
BUILTIN_SETS: dict[str, tuple[str, bool]] = {
    "ae": ("ae_prompts.json", True),
    "hh": ("hh_prompts.json", False),
}


@dataclass(frozen=True)
class Prompt:
    set: str
    category: str
    index: int  # position in the whole set (stable when --per-category changes)
    text: str


@dataclass(frozen=True)
class PromptSet:
    name: str
    prompts: tuple[Prompt, ...]
    object_split: bool  # compute the min-object score where the prompt splits

    @property
    def categories(self) -> list[str]:
        return list(dict.fromkeys(p.category for p in self.prompts))


def universal_negative() -> str:
    return (DATA_DIR / "universal_negative.txt").read_text(encoding="utf-8").strip()


def _from_mapping(name: str, data: dict[str, list[str]]) -> list[Prompt]:
    out: list[Prompt] = []
    for category, texts in data.items():
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"{name}: category {category!r} must be a list of strings")
        base = len(out)
        out.extend(Prompt(name, str(category), base + i, t.strip()) for i, t in enumerate(texts))
    return out


def _parse_file(path: Path, name: str) -> list[Prompt]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        if isinstance(data, list):
            data = {"all": data}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: JSON must be a list of prompts or an object of category -> list")
        return _from_mapping(name, data)
    lines = [ln.strip() for ln in text.splitlines()]
    return _from_mapping(name, {"all": [ln for ln in lines if ln and not ln.startswith("#")]})


def set_name_for(spec: str) -> str:
    if spec in BUILTIN_SETS:
        return spec
    stem = Path(spec).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "prompts"


def load_set(spec: str, per_category: int | None = None, categories: list[str] | None = None) -> PromptSet:
    """Load a built-in set ("ae", "hh", "ae:animals,objects") or a file (one prompt a line, or JSON).

    per_category keeps the first N prompts of each category, so a bigger N later reuses earlier images.
    """
    head, sep, tail = spec.partition(":")
    if sep and head in BUILTIN_SETS:  # "ae:animals,objects" selects categories
        spec, categories = head, [c for c in tail.split(",") if c] + list(categories or [])
    name = set_name_for(spec)
    if spec in BUILTIN_SETS:
        fname, split = BUILTIN_SETS[spec]
        prompts = _from_mapping(name, json.loads((DATA_DIR / fname).read_text(encoding="utf-8")))
    else:
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(
                f"prompt set {spec!r}: not a built-in set ({', '.join(BUILTIN_SETS)}) and no such file"
            )
        prompts, split = _parse_file(path, name), True
    if not prompts:
        raise ValueError(f"prompt set {spec!r} is empty")
    if categories:
        known = set(p.category for p in prompts)
        unknown = [c for c in categories if c not in known]
        if unknown:
            raise ValueError(f"{name}: unknown categories {unknown}; known: {sorted(known)}")
        prompts = [p for p in prompts if p.category in categories]
    if per_category is not None:
        seen: dict[str, int] = {}
        kept = []
        for p in prompts:
            seen[p.category] = seen.get(p.category, 0) + 1
            if seen[p.category] <= per_category:
                kept.append(p)
        prompts = kept
    return PromptSet(name, tuple(prompts), split)
