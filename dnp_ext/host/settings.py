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
        # Frozen like the WebUI's own path settings with --hide-ui-dir-config: hidden in Settings, and refused
        # by the settings API (a hidden component, and in opts.restricted_opts).
        for key, label in labels.items():
            opts.add_option(key, info(DEFAULT_OPTIONS[key], label, component_args=shared.hide_dirs, section=SECTION))
        restricted = getattr(opts, "restricted_opts", None)
        if isinstance(restricted, set):
            restricted.update(labels)
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

        add_download_button()

    script_callbacks.on_ui_settings(add)
    script_callbacks.on_after_component(wire_download_button)


DOWNLOAD_BUTTON = "dnp_download_now"
DOWNLOAD_STATUS = "dnp_download_status"
_download_ui: dict[str, Any] = {}


def add_download_button() -> None:
    """A button in DNP's Settings section and a status line under it (neither is a saved setting)."""
    import gradio as gr

    label = "Download captioners now"
    button = shared.OptionInfo(
        label, "", component=lambda **kw: gr.Button(value=label, elem_id=kw.get("elem_id")), section=SECTION
    )
    status = shared.OptionInfo(
        "<p>Downloads the BLIP-2 and BLIP captioners set above (Hub ids) now, instead of on first use; "
        "Interrupt stops it, pressing again resumes it.</p>",
        "",
        component=lambda **kw: gr.HTML(value=kw.get("value"), elem_id=kw.get("elem_id")),
        section=SECTION,
    )
    for key, info in ((DOWNLOAD_BUTTON, button), (DOWNLOAD_STATUS, status)):
        info.do_not_save = True
        opts.add_option(key, info)


def wire_download_button(component: Any, **kwargs: Any) -> None:
    elem_id = kwargs.get("elem_id") or getattr(component, "elem_id", None)
    for key in (DOWNLOAD_BUTTON, DOWNLOAD_STATUS):
        if elem_id == f"setting_{key}":
            _download_ui[key] = component
    if len(_download_ui) == 2:
        import html

        from gradio.context import Context

        if Context.root_block is None:  # Forge also builds the settings components outside the page's Blocks
            _download_ui.clear()
            return

        from . import download

        def run() -> Any:
            for text in download.download_now():
                yield "<pre style='white-space:pre-wrap'>" + html.escape(text) + "</pre>"

        _download_ui[DOWNLOAD_BUTTON].click(fn=run, inputs=None, outputs=[_download_ui[DOWNLOAD_STATUS]])
        _download_ui.clear()
