"""AUTOMATIC1111 glue: the one module that touches the WebUI's ``modules.*`` (Forge subclasses it).

The DNS pass is a plain nested txt2img run (prompt "" + p's extra-network tags, negative p, CFG s + 1, the
run's seeds), so each DNS image is exactly what the user would get by typing those settings in.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from modules import devices, processing, prompt_parser, script_callbacks, sd_hijack, sd_models, shared
from modules.shared import opts, state

from .. import TITLE
from ..args import CAPTIONERS, DnpArgs, DnpArgsError
from ..captioners import make_captioner
from ..captioners.base import Captioner, CaptionerError, ModelCaptioner
from ..guidance import dns_to_webui_cfg_scale
from ..infotext import dns_image_params, generation_params
from ..negatives import dns_prompt_pair
from ..pipeline import DnpPlan, DnpResult, Stop, negatives_for, run_auto_dnp
from ..suggest import SuggestRequest, SuggestResult
from . import unpickle
from .errors import DnpError

SECTION = ("dnp", TITLE)
DEFAULT_OPTIONS: dict[str, Any] = {
    "dnp_blip2_model": "Salesforce/blip2-opt-2.7b",
    "dnp_blip_model": "Salesforce/blip-image-captioning-large",
    "dnp_captioner_after": "offload",
    "dnp_offload_sd_model": True,
}
# Options that would make a DNS pass deviate from eq. 19 (they drop or reshape the eps_p branch).
DNS_OVERRIDES: dict[str, Any] = {
    "skip_early_cond": 0.0,
    "s_min_uncond_all": False,
    "pad_cond_uncond": False,
    "pad_cond_uncond_v0": False,
}
CAPTIONER_SETTING = {"blip2": "dnp_blip2_model", "blip": "dnp_blip_model"}


def option(key: str) -> Any:
    return getattr(opts, key, DEFAULT_OPTIONS.get(key))


class NoScripts:
    """``p.scripts`` of the DNS pass: a script runner that runs no script.

    Not None: after each batch the WebUI puts the extra-network tags (``<lora:...>``) back into the prompts it
    writes the infotexts from only when p has a script runner, and a DNS image's infotext must keep them to
    reproduce the image.
    """

    scripts: tuple[Any, ...] = ()
    alwayson_scripts: tuple[Any, ...] = ()
    selectable_scripts: tuple[Any, ...] = ()

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


@dataclass
class RunState:
    """What one run of the script left on p, for postprocess."""

    args: DnpArgs
    result: DnpResult | None = None
    error: Exception | None = None
    dns_infotexts: list[str] = field(default_factory=list)


class WebUIBlipCaptioner(ModelCaptioner):
    """The WebUI's own BLIP interrogator, caption only (its interrogate() also resets the job state)."""

    name = "webui-blip"

    def _load(self) -> Any:
        interrogator = shared.interrogator
        try:
            if interrogator.blip_model is None:
                interrogator.blip_model = interrogator.load_blip_model()
                if not shared.cmd_opts.no_half and not interrogator.running_on_cpu:
                    interrogator.blip_model = interrogator.blip_model.half()
        except Exception as e:
            raise CaptionerError(
                "webui-blip: the WebUI's BLIP interrogator model could not load "
                f"({type(e).__name__}: {e}). Fix: put model_base_caption_capfilt_large.pth in models/BLIP, "
                "or choose the blip2 or blip captioner in the Diffusion-Negative Prompting accordion.",
                captioner=self.name,
            ) from e
        interrogator.blip_model = interrogator.blip_model.to(self.device)
        return interrogator

    def _move(self, loaded: Any, device: Any, *, compute: bool = True) -> None:
        loaded.blip_model = loaded.blip_model.to(device)

    def _compute_device(self, loaded: Any) -> Any:
        return self.device

    def _caption(self, loaded: Any, images: list[Any]) -> list[str]:
        import torch
        from modules import interrogate
        from torchvision import transforms
        from torchvision.transforms.functional import InterpolationMode

        size = interrogate.blip_image_eval_size
        tf = transforms.Compose(
            [
                transforms.Resize((size, size), interpolation=InterpolationMode.BICUBIC),
                transforms.ToTensor(),
                transforms.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
            ]
        )
        dtype = next(loaded.blip_model.parameters()).dtype
        batch = torch.stack([tf(im.convert("RGB")) for im in images]).to(self._compute_device(loaded), dtype)
        with torch.no_grad():
            return list(
                loaded.blip_model.generate(
                    batch,
                    sample=False,
                    num_beams=opts.interrogate_clip_num_beams,
                    min_length=opts.interrogate_clip_min_length,
                    max_length=opts.interrogate_clip_max_length,
                )
            )


class WebUIHost:
    name = "a1111"

    def __init__(self) -> None:
        self._webui_blip: WebUIBlipCaptioner | None = None
        self._installed = False

    def install(self) -> None:
        """Register settings and routes once per process (the WebUI may re-run the script file)."""
        if self._installed:
            return
        self._installed = True
        self.register_settings()
        unpickle.install()
        script_callbacks.on_app_started(self.on_app_started)

    def on_app_started(self, demo: Any, app: Any) -> None:
        from .api import mount

        mount(app, self)

    # -- captioner choice -------------------------------------------------------------------------------
    def captioners(self) -> tuple[str, ...]:
        return CAPTIONERS

    def captioner_note(self) -> str:
        return ""

    def check_captioner(self, name: str) -> None:
        if name not in self.captioners():
            raise DnpArgsError(
                f"'captioner' {name!r} is not available in this WebUI; use one of {', '.join(self.captioners())}"
            )

    # -- settings ---------------------------------------------------------------------------------------
    def register_settings(self) -> None:
        import gradio as gr

        def add() -> None:
            info = shared.OptionInfo
            labels = {
                "dnp_blip2_model": "BLIP-2 captioner: Hugging Face id or local folder",
                "dnp_blip_model": "BLIP captioner: Hugging Face id or local folder",
            }
            # Frozen like the WebUI's own path settings with --hide-ui-dir-config: hidden in Settings, and
            # refused by the settings API (a hidden component, and in opts.restricted_opts).
            for key, label in labels.items():
                opts.add_option(
                    key, info(DEFAULT_OPTIONS[key], label, component_args=shared.hide_dirs, section=SECTION)
                )
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
                info(True, "Move the SD model off the GPU while the captioner runs", section=SECTION).info(
                    "so that the captioner and the UNet are never on a small GPU together"
                ),
            )

        script_callbacks.on_ui_settings(add)

    # -- captioners -------------------------------------------------------------------------------------
    def captioner_device(self) -> Any:
        return devices.device_interrogate

    def captioner(self, name: str) -> Captioner:
        if name == "webui-blip":
            if self._webui_blip is None:
                self._webui_blip = WebUIBlipCaptioner(self.captioner_device())
            return self._webui_blip
        setting = CAPTIONER_SETTING[name]
        source = str(option(setting)).strip()
        if not source:
            raise CaptionerError(
                f"{name}: the setting {setting} is empty. Fix: set it in Settings > {TITLE} to a Hugging Face "
                "id or a local folder holding the model.",
                captioner=name,
                setting=setting,
            )
        return make_captioner(name, source, self.captioner_device())

    def offload_sd_model(self) -> bool:
        device = self.captioner_device()
        return bool(option("dnp_offload_sd_model")) and getattr(device, "type", str(device)) == "cuda"

    def free_sd_model(self) -> None:
        sd_models.send_model_to_cpu(shared.sd_model)

    def restore_sd_model(self) -> None:
        sd_models.send_model_to_device(shared.sd_model)

    # -- text encoding ----------------------------------------------------------------------------------
    def _text_encoders(self) -> list[Any]:
        clip = sd_hijack.model_hijack.clip
        if hasattr(clip, "tokenize_line"):
            return [clip]
        embedders = getattr(getattr(shared.sd_model, "conditioner", None), "embedders", [])
        return [e for e in embedders if hasattr(e, "tokenize_line")]

    def count_chunks(self, text: str, steps: int) -> int:
        """75-token chunks the negative encodes to, over every [from:to:when] schedule and text encoder."""
        schedules = prompt_parser.get_learned_conditioning_prompt_schedules([text], steps)[0]
        texts = [t for _, t in schedules] or [text]
        encoders = self._text_encoders()
        if not encoders:
            return 1
        return max(len(enc.tokenize_line(t)[0]) for enc in encoders for t in texts)

    # -- the run ----------------------------------------------------------------------------------------
    def dns_processing(self, p: Any, indices: Sequence[int], args: DnpArgs) -> Any:
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
        dns_p.extra_generation_params = dns_image_params(args)
        dns_p.scripts = NoScripts()
        return dns_p

    def run_dns(self, p: Any, indices: Sequence[int], args: DnpArgs) -> tuple[list[Any], list[str]]:
        dns_p = self.dns_processing(p, indices, args)
        try:
            with temporary_options(DNS_OVERRIDES):
                processed = processing.process_images(dns_p)
        finally:
            dns_p.close()
            # the nested run switches token merging off on its way out; the main run wants its own back
            sd_models.apply_token_merging(p.sd_model, p.get_token_merging_ratio())
        return list(processed.images), list(processed.infotexts)

    def check_sampler(self, sampler_name: str, scheduler: str) -> None:
        from modules import sd_samplers, sd_schedulers

        if sd_samplers.find_sampler_config(sampler_name) is None:
            names = ", ".join(sd_samplers.visible_sampler_names())
            raise DnpArgsError(f"'sampler_name' {sampler_name!r} is not a sampler of this WebUI; use one of {names}")
        labels = [x.label for x in sd_schedulers.schedulers] + [x.name for x in sd_schedulers.schedulers]
        if scheduler not in labels:
            raise DnpArgsError(f"'scheduler' {scheduler!r} is unknown; use one of {', '.join(labels)}")

    def suggest(self, req: SuggestRequest) -> SuggestResult:
        """DNS images and suggested negatives for txt2img settings, as the review flow shows them.

        The caller holds the WebUI's queue lock. The job state is begun and ended here so that Interrupt
        and the progress API work, as for any generation.
        """
        args = req.dnp_args()
        self.check_captioner(args.captioner)
        self.captioner(args.captioner).check()
        self.check_sampler(req.sampler_name, req.scheduler)
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
            result = run_auto_dnp(RunAdapter(self, p, args), args, p.all_negative_prompts, p.batch_size)
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

    def poll(self) -> Stop:
        if state.interrupted or getattr(state, "stopping_generation", False):
            return Stop.INTERRUPT
        if state.skipped:
            state.skipped = False
            return Stop.SKIP
        return Stop.NONE


class RunAdapter:
    """Binds the host to one processing object p: the ``DnpHost`` the core pipeline drives."""

    def __init__(self, host: WebUIHost, p: Any, args: DnpArgs) -> None:
        self.host, self.p, self.args = host, p, args
        self._captioner: Captioner | None = None
        self._sd_model_freed = False

    def run_dns(self, indices: Sequence[int]) -> tuple[list[Any], list[str]]:
        return self.host.run_dns(self.p, indices, self.args)

    def caption(self, images: Sequence[Any]) -> list[str]:
        if self._captioner is None:
            self._captioner = self.host.captioner(self.args.captioner)
            if self.host.offload_sd_model():
                self.host.free_sd_model()
                self._sd_model_freed = True
        try:
            return self._captioner.caption(list(images))
        except CaptionerError:
            raise
        except Exception as e:  # out of memory and the like, while loading or generating
            setting = CAPTIONER_SETTING.get(self.args.captioner, "")
            raise CaptionerError(
                f"{self.args.captioner}: captioning failed ({type(e).__name__}: {e}). Fix: free GPU memory "
                f"(Settings > {TITLE}: offload the SD model), check {setting or 'the model'}, or pick another "
                "captioner.",
                captioner=self.args.captioner,
                setting=setting,
            ) from e
        finally:
            state.nextjob()

    def release_captioner(self) -> None:
        try:
            if self._captioner is not None:
                self._captioner.release(str(option("dnp_captioner_after")))
        finally:
            if self._sd_model_freed:
                self.host.restore_sd_model()
                self._sd_model_freed = False

    def count_chunks(self, negative: str) -> int:
        return self.host.count_chunks(negative, self.p.steps)

    def poll(self) -> Stop:
        return self.host.poll()

    def set_phase(self, text: str) -> None:
        state.textinfo = text


def apply_result(p: Any, args: DnpArgs, result: DnpResult, host: WebUIHost) -> None:
    """Give the main run its per-image negatives (hires ones too) and drop skipped batches."""
    plan = DnpPlan.make(len(p.all_prompts), p.batch_size, args.per_image)
    p.all_negative_prompts = list(result.negatives)
    hr = getattr(p, "enable_hr", False) and getattr(p, "all_hr_negative_prompts", None)
    if hr:
        p.all_hr_negative_prompts = negatives_for(
            p.all_hr_negative_prompts,
            result.captions,
            args.merge,
            plan.batches,
            lambda t: host.count_chunks(t, p.steps),
        )
    p.extra_generation_params.update(generation_params(args, args.dns_steps or p.steps, result.captions))
    if result.skipped_batches:
        drop_batches(p, plan.batches, set(result.skipped_batches))
    p.main_negative_prompt = p.all_negative_prompts[0]


PER_IMAGE_LISTS = (
    "all_prompts",
    "all_negative_prompts",
    "all_seeds",
    "all_subseeds",
    "all_hr_prompts",
    "all_hr_negative_prompts",
)


def drop_batches(p: Any, batches: list[list[int]], skipped: set[int]) -> None:
    """Remove skipped batches from the run; with none left, run zero iterations (lists kept for infotext)."""
    keep = [i for k, b in enumerate(batches) if k not in skipped for i in b]
    state.job_count = max(0, state.job_count - len(skipped))
    if not keep:
        p.n_iter = 0
        return
    for name in PER_IMAGE_LISTS:
        values = getattr(p, name, None)
        if isinstance(values, list) and len(values) == sum(len(b) for b in batches):
            setattr(p, name, [values[i] for i in keep])
    for key, value in p.extra_generation_params.items():
        if isinstance(value, list) and len(value) == sum(len(b) for b in batches):
            p.extra_generation_params[key] = [value[i] for i in keep]
    p.n_iter = len(batches) - len(skipped)


def fail_run(p: Any, error: Exception) -> None:
    """Stop the run with this error before main sampling starts.

    The WebUI reports and swallows exceptions from script hooks, so the run would go on silently without
    DNP. p.init is the very next call after the scripts' process(): raising there stops the run before
    anything is sampled or any extra network is activated, and the WebUI's own cleanup restores settings.
    """

    def init(*_: Any, **__: Any) -> None:
        raise error

    p.init = init


def as_dnp_error(e: Exception) -> DnpError:
    if isinstance(e, DnpError):
        return e
    if isinstance(e, DnpArgsError):
        return DnpError(422, f"{TITLE}: {e}")
    if isinstance(e, CaptionerError):
        return DnpError(503, f"{TITLE}: {e}")
    return DnpError(500, f"{TITLE}: {type(e).__name__}: {e}")
