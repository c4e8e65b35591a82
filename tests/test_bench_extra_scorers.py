"""Optional scorers: imported lazily, a clear message when missing, values passed through."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from dnp_ext.bench.extra_scorers import HPSv2Scorer, ImageRewardScorer, MissingScorer


def test_missing_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ImageReward", None)  # import fails
    monkeypatch.setitem(sys.modules, "hpsv2", None)
    with pytest.raises(MissingScorer, match="pip install image-reward"):
        ImageRewardScorer()
    with pytest.raises(MissingScorer, match="pip install hpsv2"):
        HPSv2Scorer()


def test_wrappers_call_the_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple] = []

    class RM:
        def score(self, prompt: str, paths: list[str]) -> float | list[float]:
            calls.append(("ir", prompt, paths))
            return [float(len(p)) for p in paths] if len(paths) > 1 else float(len(paths[0]))

    ir = types.ModuleType("ImageReward")
    ir.load = lambda name, **kw: calls.append(("load", name, kw)) or RM()  # type: ignore[attr-defined]
    hp = types.ModuleType("hpsv2")
    hp.score = lambda paths, prompt, **kw: calls.append(("hps", prompt, kw)) or [0.25] * len(paths)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ImageReward", ir)
    monkeypatch.setitem(sys.modules, "hpsv2", hp)

    paths = [tmp_path / "a.png", tmp_path / "bb.png"]
    s = ImageRewardScorer(device="cpu")
    assert s.score("a cat", paths) == [{"imagereward": float(len(str(p)))} for p in paths]
    assert s.score("a cat", paths[:1]) == [{"imagereward": float(len(str(paths[0])))}]  # a float for one image
    assert calls[0] == ("load", "ImageReward-v1.0", {"device": "cpu"})
    assert HPSv2Scorer().score("a cat", paths) == [{"hpsv2": 0.25}, {"hpsv2": 0.25}]
    assert calls[-1] == ("hps", "a cat", {"hps_version": "v2.1"})
    ckpt = tmp_path / "hps.pt"
    ckpt.write_bytes(b"x")
    HPSv2Scorer(str(ckpt)).score("a dog", paths[:1])
    assert calls[-1] == ("hps", "a dog", {"cp": str(ckpt)})
