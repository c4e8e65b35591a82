"""The txt2img accordion (plain gradio, works on gradio 3.41 and 4.x)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from . import TITLE
from .args import CAPTIONERS, DEFAULT_DNS_SCALE, MAX_DNS_STEPS, DnpArgs
from .infotext import KEY_CAPTIONER, KEY_DNP, KEY_DNS_PREVIEW, KEY_DNS_SCALE, KEY_DNS_STEPS, parse_pasted
from .negatives import MERGE_MODES

CAPTIONER_LABELS = {
    "blip2": "blip2 (BLIP-2 OPT-2.7b, the paper's)",
    "blip": "blip (BLIP large, lighter)",
    "webui-blip": "webui-blip (the WebUI's interrogator)",
}


@dataclass
class ReviewControls:
    """Suggest-negative widgets (not Script inputs)."""

    suggest: Any
    suggest_generate: Any
    stop: Any
    gallery: Any
    note: Any
    state: Any


@dataclass
class DnpControls:
    """The accordion's inputs, in ``args.FIELD_NAMES`` order (the Script's positional args)."""

    enabled: Any
    captioner: Any
    dns_scale: Any
    dns_steps: Any
    merge: Any
    per_image: Any
    show_dns: Any
    dns_preview: Any
    review: ReviewControls | None = None

    def inputs(self) -> list[Any]:
        return [
            self.enabled,
            self.captioner,
            self.dns_scale,
            self.dns_steps,
            self.merge,
            self.per_image,
            self.show_dns,
            self.dns_preview,
        ]

    def infotext_fields(self) -> list[tuple[Any, Any]]:
        """Paste mapping: settings come back, Auto-DNP stays off (the negative already holds n*)."""

        def field(name: str):
            return lambda params: parse_pasted(params).get(name)

        return [
            (self.enabled, field("enabled")),
            (self.captioner, field("captioner")),
            (self.dns_scale, field("dns_scale")),
            (self.dns_steps, field("dns_steps")),
            (self.merge, field("merge")),
            (self.per_image, field("per_image")),
            (self.dns_preview, field("dns_preview")),
        ]


PASTE_KEYS = (KEY_DNP, KEY_CAPTIONER, KEY_DNS_SCALE, KEY_DNS_STEPS, KEY_DNS_PREVIEW)


def build(elem_prefix: str, captioners: tuple[str, ...] = CAPTIONERS, note: str = "") -> DnpControls:
    d = DnpArgs()
    with gr.Accordion(TITLE, open=False, elem_id=f"{elem_prefix}_accordion"):
        with gr.Row():
            enabled = gr.Checkbox(
                label="Auto-DNP",
                value=d.enabled,
                elem_id=f"{elem_prefix}_enabled",
            )
            show_dns = gr.Checkbox(label="Show DNS images", value=d.show_dns, elem_id=f"{elem_prefix}_show_dns")
            per_image = gr.Checkbox(
                label="One DNS image per seed", value=d.per_image, elem_id=f"{elem_prefix}_per_image"
            )
        gr.HTML(
            "<p style='margin:0 0 .5em 0'>Auto-DNP samples the image the model finds <i>least</i> like your "
            "prompt (DNS), captions it, and adds that caption to the negative prompt. Costs one extra "
            "generation per image plus a caption." + (f" {note}" if note else "") + "</p>"
        )
        with gr.Row():
            captioner = gr.Dropdown(
                label="Captioner",
                choices=list(captioners),
                value=d.captioner if d.captioner in captioners else captioners[0],
                elem_id=f"{elem_prefix}_captioner",
            )
            merge = gr.Radio(
                label="Merge with your negative",
                choices=list(MERGE_MODES),
                value=d.merge,
                elem_id=f"{elem_prefix}_merge",
            )
        with gr.Row():
            dns_scale = gr.Slider(
                label="DNS scale (the paper's s; the DNS pass uses CFG s + 1)",
                minimum=0.0,
                maximum=30.0,
                step=0.5,
                value=DEFAULT_DNS_SCALE,
                elem_id=f"{elem_prefix}_dns_scale",
            )
            dns_steps = gr.Slider(
                label="DNS steps (0: same as the run)",
                minimum=0,
                maximum=MAX_DNS_STEPS,
                step=1,
                value=d.dns_steps,
                elem_id=f"{elem_prefix}_dns_steps",
            )
            dns_preview = gr.Slider(
                label="DNS preview (fraction of the DNS steps; 1: the full DNS image)",
                minimum=0.05,
                maximum=1.0,
                step=0.05,
                value=d.dns_preview,
                elem_id=f"{elem_prefix}_dns_preview",
            )
        review = build_review(elem_prefix)
    return DnpControls(enabled, captioner, dns_scale, dns_steps, merge, per_image, show_dns, dns_preview, review)


REVIEW_HELP = (
    "<b>Review first</b>: <i>Suggest negative</i> samples the DNS image(s) for the prompt, seed and settings above, "
    "captions them and puts the suggestion in the negative prompt box for you to edit; then Generate with "
    "Auto-DNP off. Click a DNS image to use its seed's suggestion. Auto-DNP and a suggestion never stack: "
    "ticking Auto-DNP puts back the negative you had before Suggest, unticking brings the suggestion back."
)


def build_review(elem_prefix: str) -> ReviewControls:
    gr.HTML(f"<p style='margin:.5em 0'>{REVIEW_HELP}</p>")
    with gr.Row():
        suggest = gr.Button("Suggest negative", variant="secondary", elem_id=f"{elem_prefix}_suggest")
        suggest_generate = gr.Button("Suggest and generate", elem_id=f"{elem_prefix}_suggest_generate")
        stop = gr.Button("Stop", elem_id=f"{elem_prefix}_stop")
    gallery = gr.Gallery(label="DNS images", columns=4, height=220, elem_id=f"{elem_prefix}_dns_gallery")
    note = gr.HTML(elem_id=f"{elem_prefix}_note")
    state = gr.State(None)
    return ReviewControls(suggest, suggest_generate, stop, gallery, note, state)
