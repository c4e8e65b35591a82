"""DNP's options in the WebUI's Settings tab, and reading them with their defaults."""

from __future__ import annotations

from typing import Any

from modules import script_callbacks, shared
from modules.shared import opts

from .. import TITLE
from ..cache import DEFAULT_CACHE_MB
from ..residency import OFFLOAD_MODES

SECTION = ("dnp", TITLE)
DEFAULT_OPTIONS: dict[str, Any] = {
    "dnp_blip2_model": "Salesforce/blip2-opt-2.7b",
    "dnp_blip_model": "Salesforce/blip-image-captioning-large",
    "dnp_captioner_after": "offload",
    "dnp_offload_sd_model": "auto",
    "dnp_cache_mb": DEFAULT_CACHE_MB,
}
CAPTIONER_SETTING = {"blip2": "dnp_blip2_model", "blip": "dnp_blip_model"}


def option(key: str) -> Any:
    return getattr(opts, key, DEFAULT_OPTIONS.get(key))


def register_settings() -> None:
    import gradio as gr

    def add() -> None:
        info = shared.OptionInfo
        labels = {
            "dnp_blip2_model": "BLIP-2 captioner: Hugging Face id or local folder",
            "dnp_blip_model": "BLIP captioner: Hugging Face id or local folder",
        }
        for key, label in labels.items():
            opts.add_option(key, info(DEFAULT_OPTIONS[key], label, section=SECTION))
        opts.add_option(
            "dnp_captioner_after",
            info(
                "offload",
                "After captioning, the captioner",
                gr.Radio,
                {"choices": ["offload", "unload"]},
                section=SECTION,
            ).info("offload: moved to RAM, quick next time; unload: freed, reloaded from disk next time"),
        )
        opts.add_option(
            "dnp_offload_sd_model",
            info(
                "auto",
                "Move the SD model off the GPU while the captioner runs",
                gr.Radio,
                {"choices": list(OFFLOAD_MODES)},
                section=SECTION,
            ).info(
                "auto: only when free VRAM is short of the captioner's need, and the captioner stays on the GPU "
                "between runs while it fits; always; never"
            ),
        )
        opts.add_option(
            "dnp_cache_mb",
            info(
                DEFAULT_CACHE_MB,
                "DNS cache size (MB; 0: off)",
                gr.Number,
                {"precision": 0, "minimum": 0},
                section=SECTION,
            ).info("keeps DNS images and captions: the same settings and seed again skip the DNS pass, same result"),
        )

    script_callbacks.on_ui_settings(add)
