"""Score the images of a run, with a cache (<out>/scores.json) so a rerun only scores what is new."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .progress import Progress
from .run import Record

SCORES_FILE = "scores.json"


@dataclass
class ScorerSpec:
    name: str
    model_id: str  # part of the cache key: another model means fresh scores
    factory: Callable[[], Any]  # builds the scorer only when something needs scoring


def _sig(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"  # files are replaced atomically, so this changes on regeneration


def _save(path: Path, cache: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache), encoding="utf-8")
    os.replace(tmp, path)


def score_records(
    out: Path,
    records: Sequence[Record],
    specs: Sequence[ScorerSpec],
    object_split: dict[str, bool],
    progress: bool = True,
    compute: bool = True,
) -> dict[str, dict[str, Any]]:
    """file -> merged score values of every scorer, for the given records (compute=False: cached only)."""
    path = out / SCORES_FILE
    cache: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    cache.setdefault("scorers", {})
    sigs = {r.file: _sig(out / r.file) for r in records if (out / r.file).exists()}
    for spec in specs:
        sc = cache["scorers"].get(spec.name)
        if not sc or sc.get("model") != spec.model_id:
            if not compute:
                continue
            sc = cache["scorers"][spec.name] = {"model": spec.model_id, "entries": {}}
        entries: dict[str, Any] = sc["entries"]
        groups: dict[tuple[str, bool], list[Record]] = {}
        for r in records:
            e = entries.get(r.file)
            if r.file in sigs and (e is None or e.get("sig") != sigs[r.file]):
                groups.setdefault((r.prompt, object_split.get(r.set, True)), []).append(r)
        todo = sum(len(g) for g in groups.values())
        if not todo or not compute:
            continue
        scorer = spec.factory()
        bar = Progress(todo, f"score {spec.name}") if progress else None
        last_save = time.monotonic()
        try:
            for (prompt, split), recs in groups.items():
                values = scorer.score(prompt, [out / r.file for r in recs], object_split=split)
                for r, v in zip(recs, values, strict=True):
                    entries[r.file] = {"sig": sigs[r.file], "values": v}
                if bar:
                    bar.step(len(recs))
                if time.monotonic() - last_save > 30:
                    _save(path, cache)
                    last_save = time.monotonic()
        finally:
            _save(path, cache)
            if bar:
                bar.close()
    merged: dict[str, dict[str, Any]] = {}
    for spec in specs:
        sc = cache["scorers"].get(spec.name, {})
        if sc.get("model") != spec.model_id:
            continue
        entries = sc.get("entries", {})
        for r in records:
            e = entries.get(r.file)
            if e is not None and e.get("sig") == sigs.get(r.file):
                merged.setdefault(r.file, {}).update(e["values"])
    return merged
