"""The review flow's suggest call: DNS images and suggested negatives for txt2img settings, nothing generated."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modules import processing, shared
from modules.shared import state

from ..guidance import cfg1_warnings, dns_to_webui_cfg_scale
from ..pipeline import DnpPlan, run_auto_dnp
from ..suggest import SuggestRequest, SuggestResult
from .cache import RunMemo
from .run import RunAdapter

if TYPE_CHECKING:
    from .webui import WebUIHost


def suggest(host: WebUIHost, req: SuggestRequest) -> SuggestResult:
    """DNS images and suggested negatives for txt2img settings, as the review flow shows them.

    The caller holds the WebUI's queue lock. The job state is begun and ended here so that Interrupt
    and the progress API work, as for any generation.
    """
    args = req.dnp_args()
    host.check_captioner(args.captioner)
    host.captioner(args.captioner).check()
    host.check_sampler(req.sampler_name, req.scheduler)
    p = processing.StableDiffusionProcessingTxt2Img(
        sd_model=shared.sd_model,
        prompt=req.prompt,
        negative_prompt=req.negative_prompt,
        seed=req.seed,
        subseed=req.subseed,
        subseed_strength=req.subseed_strength,
        sampler_name=req.sampler_name,
        scheduler=req.scheduler,
        batch_size=req.batch_size,
        n_iter=1,
        steps=req.steps,
        cfg_scale=req.cfg_scale,
        width=req.width,
        height=req.height,
        do_not_save_samples=True,
        do_not_save_grid=True,
    )
    # the seeds as process_images would draw them for the same settings
    p.setup_prompts()
    seed, subseed = processing.get_fixed_seed(p.seed), processing.get_fixed_seed(p.subseed)
    n = len(p.all_prompts)
    p.all_seeds = [int(seed) + (x if p.subseed_strength == 0 else 0) for x in range(n)]
    p.all_subseeds = [int(subseed) + x for x in range(n)]
    state.begin(job="dnp_suggest")
    state.job_count = DnpPlan.make(n, p.batch_size, True).jobs
    try:
        memo = RunMemo(host, p, args)
        result = run_auto_dnp(RunAdapter(host, p, args), args, p.all_negative_prompts, p.batch_size, memo)
    finally:
        state.end()
        p.close()
    stopped = result.interrupted or bool(result.skipped_batches)
    info = {
        "dns_scale": args.dns_scale,
        "dns_cfg_scale": dns_to_webui_cfg_scale(args.dns_scale),
        "dns_steps": args.dns_steps or req.steps,
        "captioner": args.captioner,
        "merge": args.merge,
        "interrupted": stopped,
    }
    warnings = cfg1_warnings(req.cfg_scale)
    if warnings:  # the suggestion is for a run at this CFG scale, where a negative does nothing
        info["warnings"] = warnings
    if stopped:
        return SuggestResult([], [], [], [], [], [], info)
    return SuggestResult(
        captions=result.captions,
        negative_prompts=result.negatives,
        images=result.dns_images,
        infotexts=result.dns_infotexts,
        seeds=list(p.all_seeds),
        subseeds=list(p.all_subseeds),
        info=info,
    )
