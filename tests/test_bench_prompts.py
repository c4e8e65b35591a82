"""Prompt sets of the benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dnp_ext.bench.clip_score import split_prompt
from dnp_ext.bench.prompts import load_set, universal_negative


def test_ae_set_is_complete() -> None:
    s = load_set("ae")
    assert s.name == "ae" and s.object_split
    assert [sum(p.category == c for p in s.prompts) for c in s.categories] == [66, 144, 66]
    assert s.categories == ["animals", "animals_objects", "objects"]
    assert [p.index for p in s.prompts] == list(range(276))
    assert all(split_prompt(p.text) for p in s.prompts)  # every A&E prompt has two objects
    assert s.prompts[0].text == "a elephant and a rabbit"  # spelling as published


def test_per_category_and_category_selection_keep_indices() -> None:
    s = load_set("ae", per_category=3)
    assert len(s.prompts) == 9
    full = load_set("ae")
    assert all(full.prompts[p.index] == p for p in s.prompts)  # same index -> same files when N grows
    o = load_set("ae:objects", per_category=2)
    assert [p.category for p in o.prompts] == ["objects", "objects"] and o.prompts[0].index == 66 + 144


def test_hh_set() -> None:
    s = load_set("hh")
    assert len(s.prompts) >= 40 and not s.object_split
    assert set(s.categories) == {"hands", "people", "poses"}
    assert len({p.text for p in s.prompts}) == len(s.prompts)


def test_user_files(tmp_path: Path) -> None:
    txt = tmp_path / "my prompts.txt"
    txt.write_text("# comment\na red cube and a blue ball\n\n  a dog  \n", encoding="utf-8")
    s = load_set(str(txt))
    assert s.name == "my_prompts" and [p.text for p in s.prompts] == ["a red cube and a blue ball", "a dog"]
    js = tmp_path / "set.json"
    js.write_text(json.dumps({"x": ["a", "b"], "y": ["c"]}), encoding="utf-8")
    assert [(p.category, p.index) for p in load_set(str(js)).prompts] == [("x", 0), ("x", 1), ("y", 2)]
    js.write_text(json.dumps(["a", "b"]), encoding="utf-8")
    assert [p.text for p in load_set(str(js), per_category=1).prompts] == ["a"]
    with pytest.raises(FileNotFoundError):
        load_set(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="unknown categories"):
        load_set("ae:fish")


def test_universal_negative() -> None:
    neg = universal_negative()
    assert "blurry" in neg and "\n" not in neg and "(" not in neg  # plain words, no attention syntax
