"""The DNS pass (eq. 19) as a plain nested txt2img run the user could type by hand.

Prompt "" + p's extra-network tags, negative p, CFG s + 1, the run's seeds and settings, no scripts, and none of
the options that would drop or reshape the eps_p branch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from modules import processing, sd_models
from modules.shared import opts, state

from ..args import DnpArgs, DnpArgsError, preview_steps
from ..guidance import dns_to_webui_cfg_scale
from ..infotext import dns_image_params
from ..negatives import dns_prompt_pair
from .cache import COUNTERS
from .preview import preview

# Options that would make a DNS pass deviate from eq. 19 (they drop or reshape the eps_p branch).
DNS_OVERRIDES: dict[str, Any] = {
    "skip_early_cond": 0.0,
    "s_min_uncond_all": False,
    "pad_cond_uncond": False,
    "pad_cond_uncond_v0": False,
}

DECODING = "DNP: decoding the diffusion-negative images"


class NoScripts:
    """``p.scripts`` of the DNS pass: a script runner that runs no script.

    Not None: after each batch the WebUI puts the extra-network tags (``<lora:...>``) back into the prompts it
    writes the infotexts from only when p has a script runner, and a DNS image's infotext must keep them to
    reproduce the image.
    """

    scripts: tuple[Any, ...] = ()
    alwayson_scripts: tuple[Any, ...] = ()
    selectable_scripts: tuple[Any, ...] = ()

    def post_sample(self, p: Any, ps: Any) -> None:
        # Sampling is over: the WebUI now decodes, counts the job done and converts the images, all before the
        # pipeline names its next phase; progress must not go on calling that time diffusion-negative sampling.
        state.textinfo = DECODING

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def hook(*args: Any, **kwargs: Any) -> None:  # every runner hook (process, postprocess_batch, ...)
            return None

        return hook


@contextmanager
def temporary_options(values: dict[str, Any]) -> Iterator[None]:
    """Set WebUI options for a block and put back exactly what was there.

    Not p.override_settings: the WebUI restores only options already present in config, so an option
    never set before would keep the override after the run.
    """
    keys = [k for k in values if k in opts.data_labels]
    saved = {k: (k in opts.data, opts.data.get(k)) for k in keys}
    try:
        for k in keys:
            opts.data[k] = values[k]
        yield
    finally:
        for k, (present, old) in saved.items():
            if present:
                opts.data[k] = old
            else:
                opts.data.pop(k, None)


def dns_processing(p: Any, indices: Sequence[int], args: DnpArgs) -> Any:
    """A plain txt2img run realising eq. 19 for these images of p: same seeds and settings, no extras."""
    pairs = [dns_prompt_pair(p.all_prompts[i]) for i in indices]
    dns_p = processing.StableDiffusionProcessingTxt2Img(
        sd_model=p.sd_model,
        outpath_samples=p.outpath_samples,
        outpath_grids=p.outpath_grids,
        prompt=[pos for pos, _ in pairs],
        negative_prompt=[neg for _, neg in pairs],
        styles=[],  # p.all_prompts already carry the styles
        seed=[p.all_seeds[i] for i in indices],
        subseed=[p.all_subseeds[i] for i in indices],
        subseed_strength=p.subseed_strength,
        seed_resize_from_h=p.seed_resize_from_h,
        seed_resize_from_w=p.seed_resize_from_w,
        sampler_name=p.sampler_name,
        scheduler=getattr(p, "scheduler", None),
        batch_size=len(indices),
        n_iter=1,
        steps=args.dns_steps or p.steps,
        cfg_scale=dns_to_webui_cfg_scale(args.dns_scale),
        width=p.width,
        height=p.height,
        restore_faces=False,
        tiling=p.tiling,
        do_not_save_samples=True,
        do_not_save_grid=True,
        eta=p.eta,
        s_churn=p.s_churn,
        s_tmax=p.s_tmax,
        s_tmin=p.s_tmin,
        s_noise=p.s_noise,
        s_min_uncond=0.0,  # negative guidance minimum sigma would drop eps_p, the DNS branch
        enable_hr=False,
    )
    if hasattr(p, "distilled_cfg_scale"):
        # Forge: Flux-class models take the distilled guidance as a model input in both CFG branches; eq. 19 runs
        # on the model the user runs, so the DNS pass keeps the run's value (its real CFG is still s + 1).
        dns_p.distilled_cfg_scale = p.distilled_cfg_scale
    dns_p.extra_generation_params = dns_image_params(args)
    dns_p.scripts = NoScripts()
    return dns_p


def run_dns(p: Any, dns_p: Any, args: DnpArgs) -> tuple[list[Any], list[str]]:
    """Run the DNS pass dns_p inside p's run: images and infotexts, p's token merging put back.

    With a DNS preview below 1 the run stops after that fraction of its steps (see preview.py).
    """
    k = preview_steps(args.dns_preview, dns_p.steps)
    try:
        with temporary_options(DNS_OVERRIDES), preview(dns_p, k if k < dns_p.steps else None) as armed:
            processed = processing.process_images(dns_p)
        COUNTERS["dns_evaluations"] += armed.evaluations
    finally:
        dns_p.close()
        # the nested run switches token merging off on its way out; the main run wants its own back
        sd_models.apply_token_merging(p.sd_model, p.get_token_merging_ratio())
    return list(processed.images), list(processed.infotexts)


def check_sampler(sampler_name: str, scheduler: str) -> None:
    from modules import sd_samplers, sd_schedulers

    if sd_samplers.find_sampler_config(sampler_name) is None:
        names = ", ".join(sd_samplers.visible_sampler_names())
        raise DnpArgsError(f"'sampler_name' {sampler_name!r} is not a sampler of this WebUI; use one of {names}")
    labels = [x.label for x in sd_schedulers.schedulers] + [x.name for x in sd_schedulers.schedulers]
    if scheduler not in labels:
        raise DnpArgsError(f"'scheduler' {scheduler!r} is unknown; use one of {', '.join(labels)}")
