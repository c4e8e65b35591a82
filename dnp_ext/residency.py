"""Where the SD model and the captioner live on a CUDA GPU while DNP captions: host-independent decisions.

``dnp_offload_sd_model``: ``auto`` (default) moves the SD model off the GPU only when the free VRAM is below what
the captioner needs plus a margin, and keeps the captioner on the GPU between runs when it still fits; ``always``
and ``never`` do what they say (older configs hold True / False for them). Off CUDA nothing moves.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

OFFLOAD_MODES = ("auto", "always", "never")
GIB = 1024**3
MARGIN_BYTES = GIB  # a batched generate's activations and the allocator's slack, over the weights
# Parameters of the captioners this extension ships (README), for a model not loaded yet nor on disk here
PARAMETERS = {"blip2": 3_900_000_000, "blip": 470_000_000, "webui-blip": 470_000_000}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")


def offload_mode(value: Any) -> str:
    """The setting as one of OFFLOAD_MODES (True/False from older configs: always/never)."""
    if value is True:
        return "always"
    if value is False:
        return "never"
    return value if value in OFFLOAD_MODES else "auto"


def folder_weight_bytes(path: str) -> int | None:
    """Bytes of the weight files under a local model folder (None: not a folder, or none there)."""
    if not path or not os.path.isdir(path):
        return None
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files if f.endswith(WEIGHT_SUFFIXES))
    return total or None


def tensor_bytes(tensors: Iterable[Any]) -> int:
    return sum(int(t.numel()) * int(t.element_size()) for t in tensors)


def captioner_need(
    name: str, loaded_bytes: int | None, folder_bytes: int | None, on_gpu: bool, half: bool = True
) -> int | None:
    """VRAM the captioner's weights will take: 0 when they are on the GPU already; None when unknown.

    A loaded model counts its tensors; else its weight files (stored as they load); else its parameter count
    at 2 bytes (fp16) or 4 (fp32) each.
    """
    if on_gpu:
        return 0
    if loaded_bytes is not None:
        return loaded_bytes
    if folder_bytes is not None:
        return folder_bytes
    params = PARAMETERS.get(name)
    return None if params is None else params * (2 if half else 4)


def should_offload_sd_model(mode: str, cuda: bool, free_bytes: int | None, need_bytes: int | None) -> bool:
    """Move the SD model off the GPU before captioning? Unknown free memory or need: yes (safe)."""
    if not cuda or mode == "never":
        return False
    if mode == "always" or free_bytes is None or need_bytes is None:
        return True
    return free_bytes < need_bytes + MARGIN_BYTES


def keep_captioner_resident(mode: str, cuda: bool, sd_model_offloaded: bool, free_bytes: int | None) -> bool:
    """Leave the captioner on the GPU after captioning? Only in auto, when the SD model stayed and room is left."""
    if not cuda or mode != "auto" or sd_model_offloaded or free_bytes is None:
        return False
    return free_bytes >= MARGIN_BYTES
