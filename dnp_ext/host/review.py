"""The review flow in the txt2img and img2img UI: Suggest negative, pick a seed's suggestion, the Auto-DNP rule."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
from modules.call_queue import queue_lock
from modules.shared import state as webui_state

from ..args import check_preview
from ..suggest import SuggestRequest
from ..ui import DnpControls
from . import current

# The tab's controls the suggestion reads at click time, by the WebUI's elem_id "<tab>_<suffix>". In img2img
# too the DNS pass is a txt2img run (eq. 19 from noise) at the img2img width and height, with the same seeds.
INPUT_SUFFIXES: dict[str, str] = {
    "prompt": "prompt",
    "negative_prompt": "neg_prompt",
    "seed": "seed",
    "seed_extra": "subseed_show",
    "subseed": "subseed",
    "subseed_strength": "subseed_strength",
    "width": "width",
    "height": "height",
    "steps": "steps",
    "sampler_name": "sampling",
    "scheduler": "scheduler",
    "cfg_scale": "cfg_scale",
    "batch_size": "batch_size",
}


def webui_inputs(tab: str) -> dict[str, str]:
    return {key: f"{tab}_{suffix}" for key, suffix in INPUT_SUFFIXES.items()}


WEBUI_INPUTS: dict[str, str] = webui_inputs("txt2img")
JS_GENERATE = "dnpGenerateAfterSuggest"


def _note(text: str, error: bool = False) -> str:
    cls = "dnp-error" if error else "dnp-ok"
    color = "var(--error-text-color, #c00)" if error else "inherit"
    return f"<p class='{cls}' style='color:{color}'>{html.escape(text)}</p>"


def suggest(*values: Any) -> tuple[Any, ...]:
    """Gradio handler: txt2img inputs + DNP settings -> box, gallery, state, note, Auto-DNP."""
    keys = [*WEBUI_INPUTS, "captioner", "dns_scale", "dns_steps", "merge", "dns_preview"]
    v = dict(zip(keys, values))
    extra = bool(v.pop("seed_extra"))
    try:
        req = SuggestRequest(
            prompt=v["prompt"] or "",
            negative_prompt=v["negative_prompt"] or "",
            seed=int(v["seed"] if v["seed"] not in (None, "") else -1),
            subseed=int(v["subseed"]) if extra else -1,
            subseed_strength=float(v["subseed_strength"]) if extra else 0.0,
            width=int(v["width"]),
            height=int(v["height"]),
            steps=int(v["steps"]),
            sampler_name=v["sampler_name"],
            scheduler=v["scheduler"],
            cfg_scale=float(v["cfg_scale"]),
            batch_size=int(v["batch_size"]),
            dns_scale=float(v["dns_scale"]),
            dns_steps=int(v["dns_steps"]),
            captioner=v["captioner"],
            merge=v["merge"],
            dns_preview=check_preview(v.get("dns_preview", 1.0)),
        )
        with queue_lock:  # never while another generation holds the GPU
            result = current().suggest(req)
    except Exception as e:  # shown in the accordion; the box is left as it was
        return gr.update(), gr.update(), gr.update(), _note(f"Suggest failed: {e}", error=True), gr.update()
    if result.info.get("interrupted") or not result.negative_prompts:
        return (
            gr.update(),
            gr.update(),
            gr.update(),
            _note("Suggest stopped; the negative prompt is unchanged."),
            gr.update(),
        )
    seeds = result.seeds
    gallery = [(im, f"seed {seed}: {cap}") for im, seed, cap in zip(result.images, seeds, result.captions)]
    box = result.negative_prompts[0]
    memo = {"before": req.negative_prompt, "suggested": result.negative_prompts, "seeds": seeds, "box": box}
    note = (
        f"The suggestion for seed {seeds[0]} is in the negative prompt box: edit it, then Generate "
        "(Auto-DNP is off so it is not added twice)."
    )
    if len(seeds) > 1:
        note += " Click another DNS image to use its seed's suggestion."
    return box, gallery, memo, _note(note), gr.update(value=False)


def pick(memo: dict | None, evt: gr.SelectData) -> tuple[Any, Any, Any]:
    """A click on a DNS image puts that seed's suggestion in the box."""
    if not memo or not 0 <= evt.index < len(memo["suggested"]):
        return gr.update(), gr.update(), gr.update()
    box = memo["suggested"][evt.index]
    memo = {**memo, "box": box}
    return box, memo, _note(f"The suggestion for seed {memo['seeds'][evt.index]} is in the negative prompt box.")


def toggle_auto(enabled: bool, negative: str, memo: dict | None) -> tuple[Any, Any, Any]:
    """The rule that keeps a suggestion and Auto-DNP from stacking (user clicks only, not paste)."""
    if not memo:
        return gr.update(), gr.update(), gr.update()
    if enabled and negative != memo["before"]:
        memo = {**memo, "box": negative}  # keep the user's edits for when Auto-DNP goes off again
        return (
            memo["before"],
            memo,
            _note(
                "Auto-DNP computes its own negative, so the suggestion was taken out of the box "
                "(your negative from before Suggest is back). Untick Auto-DNP to bring the suggestion back."
            ),
        )
    if not enabled and negative == memo["before"]:
        return memo["box"], memo, _note("The suggestion is back in the negative prompt box.")
    return gr.update(), gr.update(), gr.update()


def js_call(name: str) -> dict[str, str]:
    """A JavaScript function for an event: ``_js`` in gradio 3 (A1111), ``js`` in gradio 4 (Forge)."""
    return {"_js" if gr.__version__.startswith("3.") else "js": name}


def wire(controls: DnpControls, webui: dict[str, Any], tab: str = "txt2img") -> None:
    """Connect the review widgets to the tab's controls (inside the WebUI's Blocks context)."""
    review = controls.review
    assert review is not None
    inputs = [webui[k] for k in WEBUI_INPUTS] + [
        controls.captioner,
        controls.dns_scale,
        controls.dns_steps,
        controls.merge,
        controls.dns_preview,
    ]
    outputs = [webui["negative_prompt"], review.gallery, review.state, review.note, controls.enabled]
    # After each handler that fills the negative prompt box, the WebUI's own token counter is refreshed the way
    # its style and paste buttons do it (a value set by a handler fires no input event, so it would stay stale).
    tokens = js_call(f"update_{tab}_tokens")
    review.suggest.click(fn=suggest, inputs=inputs, outputs=outputs).then(fn=None, inputs=None, outputs=None, **tokens)
    # one JavaScript call: gradio 3 runs no .then() after an event that has only JavaScript
    generate = js_call(f"function(){{ update_{tab}_tokens(); return {JS_GENERATE}('{tab}'); }}")
    review.suggest_generate.click(fn=suggest, inputs=inputs, outputs=outputs).then(
        fn=None, inputs=None, outputs=None, **generate
    )
    review.stop.click(fn=lambda: webui_state.interrupt(), inputs=None, outputs=None, queue=False)
    review.gallery.select(
        fn=pick, inputs=[review.state], outputs=[webui["negative_prompt"], review.state, review.note]
    ).then(fn=None, inputs=None, outputs=None, **tokens)
    controls.enabled.input(
        fn=toggle_auto,
        inputs=[controls.enabled, webui["negative_prompt"], review.state],
        outputs=[webui["negative_prompt"], review.state, review.note],
    ).then(fn=None, inputs=None, outputs=None, **tokens)
