"""Forge glue: only what differs from AUTOMATIC1111 (``WebUIHost`` holds the rest).

Forge keeps A1111's processing, scripts, options and API, but has its own text engines, memory manager
and interrogator loading.
"""

from __future__ import annotations

from typing import Any

from modules import shared

from ..args import CAPTIONERS
from ..captioners.base import CaptionerError
from .webui import WebUIHost
from .webui_blip import WebUIBlipCaptioner


class ForgeBlipCaptioner(WebUIBlipCaptioner):
    """Forge's BLIP interrogator model, caption only, loaded and evicted by Forge's memory manager."""

    def _load(self) -> Any:
        from backend.patcher.base import ModelPatcher

        it = shared.interrogator
        try:
            if it.blip_model is None:
                it.blip_model = it.load_blip_model().to(device=it.offload_device, dtype=it.dtype)
            if getattr(it, "blip_patcher", None) is None:
                it.blip_patcher = ModelPatcher(
                    it.blip_model, load_device=it.load_device, offload_device=it.offload_device
                )
        except Exception as e:
            raise CaptionerError(
                "webui-blip: Forge's BLIP interrogator model could not load "
                f"({type(e).__name__}: {e}). Fix: put model_base_caption_capfilt_large.pth in models/BLIP "
                "(it also needs bert-base-uncased from Hugging Face), or choose the blip2 or blip captioner.",
                captioner=self.name,
            ) from e
        self._move(it, self.device, compute=True)
        return it

    def _move(self, loaded: Any, device: Any, *, compute: bool = True) -> None:
        from backend import memory_management

        if compute:  # Forge frees other models (the UNet first in line) until BLIP fits
            memory_management.load_models_gpu([loaded.blip_patcher])
        else:
            memory_management.free_memory(1e30, loaded.load_device, free_all=True)

    def _compute_device(self, loaded: Any) -> Any:
        return loaded.load_device


class ForgeHost(WebUIHost):
    name = "forge"

    def captioners(self) -> tuple[str, ...]:
        it = getattr(shared, "interrogator", None)
        if it is None or not hasattr(it, "load_blip_model"):
            return tuple(c for c in CAPTIONERS if c != "webui-blip")
        return CAPTIONERS

    def captioner_note(self) -> str:
        if "webui-blip" in self.captioners():
            return ""
        return "This Forge has no BLIP interrogator, so the webui-blip captioner is not offered."

    def captioner_device(self) -> Any:
        from backend import memory_management

        return memory_management.get_torch_device()

    def captioner(self, name: str) -> Any:
        if name == "webui-blip":
            if self._webui_blip is None:
                self._webui_blip = ForgeBlipCaptioner(self.captioner_device())
            return self._webui_blip
        return super().captioner(name)

    def free_sd_model(self) -> None:
        # Forge's own way (as its "unload checkpoint"): UNet, text encoders and VAE go to their offload
        # device; sampling loads them back on demand.
        from backend import memory_management

        memory_management.unload_all_models()

    def restore_sd_model(self) -> None:
        pass  # Forge's sampling_prepare brings the UNet back when it is needed

    def _text_encoders(self) -> list[Any]:
        model = shared.sd_model
        engines = [getattr(model, name) for name in dir(model) if name.startswith("text_processing_engine")]
        return [e for e in engines if hasattr(e, "tokenize_line")]
