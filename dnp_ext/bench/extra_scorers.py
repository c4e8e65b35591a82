"""Optional preference scorers (off by default). Imported lazily: the packages are heavy and not required."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


class MissingScorer(RuntimeError):
    pass


def _require(module: str, pip_name: str, scorer: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingScorer(
            f"scorer {scorer!r} needs the package {pip_name!r} (pip install {pip_name}); import failed: {e}"
        ) from e


class ImageRewardScorer:
    name = "imagereward"

    def __init__(self, model: str | None = None, device: str | None = None) -> None:
        rm = _require("ImageReward", "image-reward", self.name)
        self.model_id = model or "ImageReward-v1.0"  # a name ImageReward knows, or a local .pt file
        kwargs = {"device": device} if device else {}
        self.model = rm.load(self.model_id, **kwargs)

    def score(self, prompt: str, paths: Sequence[Path], object_split: bool = True) -> list[dict[str, Any]]:
        if not paths:
            return []
        out = self.model.score(prompt, [str(p) for p in paths])
        values = out if isinstance(out, list) else [out]
        return [{"imagereward": float(v)} for v in values]


class HPSv2Scorer:
    name = "hpsv2"

    def __init__(self, model: str | None = None, device: str | None = None) -> None:
        self.hpsv2 = _require("hpsv2", "hpsv2", self.name)
        self.model_id = model or "v2.1"  # hps_version, or a local checkpoint file

    def score(self, prompt: str, paths: Sequence[Path], object_split: bool = True) -> list[dict[str, Any]]:
        if not paths:
            return []
        if Path(self.model_id).is_file():
            values = self.hpsv2.score([str(p) for p in paths], prompt, cp=self.model_id)
        else:
            values = self.hpsv2.score([str(p) for p in paths], prompt, hps_version=self.model_id)
        return [{"hpsv2": float(v)} for v in values]


EXTRA_SCORERS: dict[str, type] = {"imagereward": ImageRewardScorer, "hpsv2": HPSv2Scorer}
