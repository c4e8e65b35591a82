"""Fakes of the WebUI edges the glue touches (``modules.*`` and ``launch``), for tests without a WebUI.

Only the surface ``dnp_ext.host`` uses is modelled, shaped like AUTOMATIC1111 1.10.1: a processing dataclass
with the real constructor's field names (so a misspelt keyword fails here as it would there), a
``process_images`` that goes through the same steps in the same order (token merging on and off, prompts and
seeds, scripts' process, ``p.init``, one job per batch, Skip/Interrupt checks, postprocess) and records every
call, the job state, a CLIP tokenizer that counts 75-token chunks (one word = one token, BREAK closes a
chunk), and recorders for everything else.

gradio is not a ``modules`` edge, but it pins packages (pillow, huggingface_hub) that the test venv's
transformers can't share, so when it is not installed a small stand-in is used for building the accordion.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import sys
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

CHUNK_LENGTH = 75
FAKE_MODULES = (
    "modules",
    "modules.shared",
    "modules.processing",
    "modules.scripts",
    "modules.script_callbacks",
    "modules.devices",
    "modules.prompt_parser",
    "modules.sd_hijack",
    "modules.sd_models",
    "modules.sd_vae",
    "modules.call_queue",
    "modules.sd_samplers",
    "modules.sd_schedulers",
    "launch",
)
# Imported against the fakes, so dropped after each test: a later test imports them afresh.
GLUE_PREFIXES = ("dnp_ext.host", "dnp_ext.ui", "dnp_webui_script")
SAMPLERS = ("Euler a", "Euler", "DPM++ 2M")
SCHEDULERS = (("automatic", "Automatic"), ("karras", "Karras"), ("uniform", "Uniform"))
QUOTE_CHARS = ",:\n"
# Options of A1111 1.10.1 that the glue overrides for the DNS pass (name: default).
WEBUI_OPTIONS = {
    "skip_early_cond": 0.0,
    "s_min_uncond_all": False,
    "pad_cond_uncond": False,
    "pad_cond_uncond_v0": False,
}


# -- infotext: the "k: v, k: v" format, values with , : or newlines JSON-quoted ---------------------------
def write_params(params: dict[str, Any], index: int = 0) -> str:
    """The parameters line as the WebUI writes it; a list value is per image (``index``), None is left out."""
    parts = []
    for key, value in params.items():
        if isinstance(value, list):
            value = value[index]
        if value is None:
            continue
        text = str(value)
        quoted = json.dumps(text) if any(c in text for c in QUOTE_CHARS) else text
        parts.append(f"{key}: {quoted}")
    return ", ".join(parts)


def write_infotext(prompt: str, negative: str, params: dict[str, Any], index: int = 0) -> str:
    neg = f"\nNegative prompt: {negative}" if negative else ""
    return f"{prompt}{neg}\n{write_params(params, index)}"


def parse_params(line: str) -> dict[str, str]:
    """Inverse of ``write_params`` (all values as text, as the WebUI's paste parser gives them)."""
    out: dict[str, str] = {}
    decoder = json.JSONDecoder()
    i = 0
    while i < len(line):
        colon = line.index(": ", i)
        key, j = line[i:colon].strip(), colon + 2
        if line.startswith('"', j):
            value, end = decoder.raw_decode(line, j)
        else:
            end = line.find(", ", j)
            end = len(line) if end < 0 else end
            value = line[j:end]
        out[key] = value
        i = end + 2
    return out


# -- modules.shared ------------------------------------------------------------------------------------
class OptionInfo:
    def __init__(
        self,
        default: Any = None,
        label: str = "",
        component: Any = None,
        component_args: Any = None,
        onchange: Any = None,
        section: Any = None,
        refresh: Any = None,
        **_: Any,
    ) -> None:
        self.default, self.label, self.component, self.component_args = default, label, component, component_args
        self.section, self.onchange, self.refresh = section, onchange, refresh
        self.comment_after = ""
        self.do_not_save = False

    def info(self, text: str) -> OptionInfo:
        self.comment_after += text
        return self


class Options:
    """Settings: attribute access to ``data``; an unknown key raises AttributeError as the WebUI's does."""

    def __init__(self, **data: Any) -> None:
        object.__setattr__(self, "data", dict(data))
        object.__setattr__(self, "data_labels", {})

    def __getattr__(self, key: str) -> Any:
        data = object.__getattribute__(self, "data")
        if key in data:
            return data[key]
        labels = object.__getattribute__(self, "data_labels")
        if key in labels:
            return labels[key].default
        raise AttributeError(key)

    def __setattr__(self, key: str, value: Any) -> None:
        self.data[key] = value

    def add_option(self, key: str, info: OptionInfo) -> None:
        self.data_labels[key] = info
        if key not in self.data:
            self.data[key] = info.default

    def set(self, key: str, value: Any, is_api: bool = False, run_callbacks: bool = True) -> bool:
        self.data[key] = value
        return True


class State:
    """The job state; every value given to ``textinfo`` is kept in ``textinfos``."""

    def __init__(self) -> None:
        self.skipped = False
        self.interrupted = False
        self.stopping_generation = False
        self.job = ""
        self.job_no = 0
        self.job_count = 0
        self.processing_has_refined_job_count = False
        self.textinfos: list[str | None] = []
        self._textinfo: str | None = None
        self.begun = 0
        self.ended = 0

    @property
    def textinfo(self) -> str | None:
        return self._textinfo

    @textinfo.setter
    def textinfo(self, value: str | None) -> None:
        self._textinfo = value
        self.textinfos.append(value)

    def begin(self, job: str = "(unknown)") -> None:
        self.begun += 1
        self.job, self.job_count, self.job_no = job, -1, 0
        self.processing_has_refined_job_count = False
        self.skipped = self.interrupted = self.stopping_generation = False
        self._textinfo = None

    def end(self) -> None:
        self.ended += 1
        self.job, self.job_count = "", 0

    def nextjob(self) -> None:
        self.job_no += 1

    def skip(self) -> None:
        self.skipped = True

    def interrupt(self) -> None:
        self.interrupted = True


class Device:
    """Stands for torch.device (the glue reads ``.type``)."""

    def __init__(self, name: str) -> None:
        self.type = name.split(":")[0]
        self.name = name

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__


class SdModel:
    """The loaded checkpoint: its identity, and the file and hash the DNS cache keys on."""

    def __init__(self) -> None:
        self.sd_checkpoint_info = types.SimpleNamespace(filename=__file__)  # any file that exists
        self.sd_model_hash = "0123456789"


# -- modules.processing --------------------------------------------------------------------------------
@dataclass(repr=False)
class StableDiffusionProcessing:
    sd_model: object = None
    outpath_samples: str | None = None
    outpath_grids: str | None = None
    prompt: Any = ""
    prompt_for_display: str | None = None
    negative_prompt: Any = ""
    styles: list[str] | None = None
    seed: Any = -1
    subseed: Any = -1
    subseed_strength: float = 0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    seed_enable_extras: bool = True
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    extra_generation_params: dict[str, Any] | None = None
    overlay_images: list | None = None
    eta: float | None = None
    do_not_reload_embeddings: bool = False
    denoising_strength: float | None = None
    ddim_discretize: str | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    sampler_index: int | None = None
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    firstpass_image: Any = None
    comments: dict | None = None

    scripts: Any = field(default=None, init=False)
    script_args: Any = field(default=None, init=False)
    all_prompts: list | None = field(default=None, init=False)
    all_negative_prompts: list | None = field(default=None, init=False)
    all_seeds: list | None = field(default=None, init=False)
    all_subseeds: list | None = field(default=None, init=False)
    main_prompt: str | None = field(default=None, init=False)
    main_negative_prompt: str | None = field(default=None, init=False)
    closed: bool = field(default=False, init=False)

    token_merging_ratio = 0

    def __post_init__(self) -> None:
        self.styles = [] if self.styles is None else self.styles
        self.extra_generation_params = self.extra_generation_params or {}
        self.override_settings = self.override_settings or {}
        self.comments = {}

    def comment(self, text: str) -> None:
        self.comments[text] = 1

    def setup_prompts(self) -> None:
        if isinstance(self.prompt, list):
            self.all_prompts = list(self.prompt)
        elif isinstance(self.negative_prompt, list):
            self.all_prompts = [self.prompt] * len(self.negative_prompt)
        else:
            self.all_prompts = [self.prompt] * (self.batch_size * self.n_iter)
        if isinstance(self.negative_prompt, list):
            self.all_negative_prompts = list(self.negative_prompt)
        else:
            self.all_negative_prompts = [self.negative_prompt] * len(self.all_prompts)
        if len(self.all_prompts) != len(self.all_negative_prompts):
            raise RuntimeError("different numbers of prompts and negative prompts")
        # styles would be applied here; the tests use none
        self.main_prompt, self.main_negative_prompt = self.all_prompts[0], self.all_negative_prompts[0]

    def init(self, all_prompts: list, all_seeds: list, all_subseeds: list) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def get_token_merging_ratio(self, for_hr: bool = False) -> float:
        return self.token_merging_ratio or sys.modules["modules.shared"].opts.token_merging_ratio


@dataclass(repr=False)
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    enable_hr: bool = False
    denoising_strength: float = 0.75
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: Any = ""
    hr_negative_prompt: Any = ""
    force_task_id: str | None = None

    all_hr_prompts: list | None = field(default=None, init=False)
    all_hr_negative_prompts: list | None = field(default=None, init=False)

    def setup_prompts(self) -> None:
        super().setup_prompts()
        if not self.enable_hr:
            return
        hr_prompt = self.hr_prompt or self.prompt
        hr_negative = self.hr_negative_prompt or self.negative_prompt
        n = self.batch_size * self.n_iter
        self.all_hr_prompts = list(hr_prompt) if isinstance(hr_prompt, list) else [hr_prompt] * n
        self.all_hr_negative_prompts = list(hr_negative) if isinstance(hr_negative, list) else [hr_negative] * n

    def init(self, all_prompts: list, all_seeds: list, all_subseeds: list) -> None:
        # with hires fix every batch is two jobs: the job count doubles here, once per job
        state = sys.modules["modules.shared"].state
        if self.enable_hr and not state.processing_has_refined_job_count:
            if state.job_count == -1:
                state.job_count = self.n_iter
            state.job_count *= 2
            state.processing_has_refined_job_count = True


class Processed:
    def __init__(self, p: StableDiffusionProcessing, images: list[Any], infotexts: list[str]) -> None:
        self.images = images
        self.infotexts = infotexts
        self.prompt, self.negative_prompt = p.prompt, p.negative_prompt
        self.all_prompts, self.all_negative_prompts = p.all_prompts, p.all_negative_prompts
        self.all_seeds, self.all_subseeds = p.all_seeds, p.all_subseeds
        self.seed = p.all_seeds[0] if p.all_seeds else -1
        self.extra_generation_params = p.extra_generation_params
        self.comments = "".join(f"{comment}\n" for comment in p.comments)  # shown under the gallery in the UI

    def js(self) -> str:
        """The API answer's `info` (a subset of the WebUI's keys; it has no comments either)."""
        keys = ("all_prompts", "all_negative_prompts", "all_seeds", "extra_generation_params", "infotexts")
        return json.dumps({k: getattr(self, k) for k in keys}, default=lambda o: None)


@dataclass
class Call:
    """What one process_images call sampled with, taken after p.init (so scripts' changes are in)."""

    p: Any
    prompts: list[str]
    negative_prompts: list[str]
    hr_negative_prompts: list[str] | None
    seeds: list[int]
    subseeds: list[int]
    subseed_strength: float
    cfg_scale: float
    steps: int
    sampler_name: str | None
    scheduler: str | None
    width: int
    height: int
    batch_size: int
    n_iter: int
    override_settings: dict[str, Any]
    options: dict[str, Any]  # opts.data while the run sampled
    s_min_uncond: float | None
    enable_hr: bool
    styles: list[str]
    do_not_save_samples: bool
    do_not_save_grid: bool
    extra_generation_params: dict[str, Any]
    evaluations: int = 0  # model evaluations the fake sampler made (set after sampling)

    @property
    def is_dns(self) -> bool:
        return self.extra_generation_params.get("DNP") == "DNS image"


def fake_image(p: Any, i: int, latent: Any = None) -> Image.Image:
    """A tiny image that is a pure function of image i's sampling settings (so equal settings, equal pixels).

    latent: what the sampler returned for this image when it stopped early (None: it ran all its steps).
    """
    key = repr(
        (
            p.all_prompts[i],
            p.all_negative_prompts[i],
            p.all_seeds[i],
            p.all_subseeds[i],
            p.subseed_strength,
            p.cfg_scale,
            p.steps,
            p.sampler_name,
            p.scheduler,
            p.width,
            p.height,
        )
    )
    if latent is not None:
        key += repr(latent)
    digest = hashlib.sha256(key.encode()).digest()
    image = Image.new("RGB", (max(1, p.width // 64), max(1, p.height // 64)), tuple(digest[:3]))
    image.info["seed"], image.info["subseed"] = p.all_seeds[i], p.all_subseeds[i]
    return image


# -- sampling: the WebUI's CFG denoiser and k-diffusion loop, in the order the real ones call things -----
class InterruptedException(BaseException):
    pass


class FakeSampler:
    def __init__(self) -> None:
        self.stop_at: int | None = None
        self.last_latent: Any = None


class FakeDenoiser:
    def __init__(self, p: Any, sampler: FakeSampler) -> None:
        self.p, self.sampler = p, sampler

    def get_pred_x0(self, x_in: Any, x_out: Any, sigma: Any) -> Any:
        return x_out  # k-diffusion: the model's output already is x0


TWO_EVALUATIONS = ("Heun", "DPM2")  # samplers that evaluate the model twice per step


def sample(p: Any, n: int, callbacks: dict[str, list[Callable[[Any], None]]], state: Any, call: Call) -> Any:
    """Run p.steps steps; None when all ran, else the sampler's last_latent (rows: images) when it stopped.

    Per step: first evaluation, then the step callback (which raises past sampler.stop_at), then any second
    evaluation, as k-diffusion's loops do. An evaluation calls on_cfg_denoiser before the model and
    on_cfg_after_cfg with the CFG-combined x0 after it.
    """
    import numpy as np

    sampler = FakeSampler()
    denoiser = FakeDenoiser(p, sampler)
    state.sampling_steps, state.sampling_step = p.steps, 0

    def evaluate(step: int, k: int) -> None:
        sigma = np.full(2 * n, float(p.steps - step))
        x_in = np.arange(2 * n, dtype=float)[:, None] + step  # cond rows first, then uncond rows
        for cb in list(callbacks["denoiser"]):
            cb(types.SimpleNamespace(x=x_in, sigma=sigma, denoiser=denoiser, sampling_step=state.sampling_step))
        call.evaluations += 1
        sampler.last_latent = np.full((n, 1), -1.0)  # the cond branch's x0, as the real denoiser leaves it
        after = types.SimpleNamespace(x=np.full((n, 1), step * 10.0 + k) + np.arange(n)[:, None] * 0.5)
        for cb in list(callbacks["after_cfg"]):
            cb(after)

    try:
        for step in range(p.steps):
            evaluate(step, 0)
            if sampler.stop_at is not None and step > sampler.stop_at:
                raise InterruptedException
            state.sampling_step = step
            if p.sampler_name in TWO_EVALUATIONS:
                evaluate(step, 1)
    except InterruptedException:
        return sampler.last_latent
    return None


# -- modules.scripts -----------------------------------------------------------------------------------
class Script:
    name = None
    filename = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    infotext_fields = None
    paste_field_names = None

    def title(self) -> str:
        raise NotImplementedError

    def show(self, is_img2img: bool) -> Any:
        return True

    def ui(self, is_img2img: bool) -> Any:
        pass

    def process(self, p: Any, *args: Any) -> None:
        pass

    def postprocess(self, p: Any, processed: Any, *args: Any) -> None:
        pass


class ScriptRunner:
    """The alwayson scripts of one run, each with its own args."""

    def __init__(self, scripts: Sequence[tuple[Script, Sequence[Any]]]) -> None:
        self.scripts = list(scripts)

    def process(self, p: Any) -> None:
        for script, args in self.scripts:
            script.process(p, *args)

    def post_sample(self, p: Any, ps: Any) -> None:
        pass  # no fake script uses it; the DNS pass's own runner does

    def postprocess(self, p: Any, processed: Any) -> None:
        for script, args in self.scripts:
            script.postprocess(p, processed, *args)


# -- modules.sd_hijack ---------------------------------------------------------------------------------
class FakeClip:
    """CLIP text encoder's tokenize_line: one word is one token, BREAK closes a chunk, 75 tokens a chunk."""

    def tokenize_line(self, line: str) -> tuple[list[list[str]], int]:
        chunks: list[list[str]] = []
        chunk: list[str] = []
        count = 0
        for word in line.split():
            if word == "BREAK":
                chunks.append(chunk)
                chunk, count = [], count + CHUNK_LENGTH
                continue
            if len(chunk) == CHUNK_LENGTH:
                chunks.append(chunk)
                chunk, count = [], count + CHUNK_LENGTH
            chunk.append(word)
        if chunk or not chunks:
            chunks.append(chunk)
            count += len(chunk)
        return chunks, count


def chunk_count(text: str) -> int:
    return len(FakeClip().tokenize_line(text)[0])


# -- gradio stand-in -----------------------------------------------------------------------------------
class _GrEvent:
    def __init__(self, owner: Any, kind: str, kwargs: dict[str, Any]) -> None:
        self.owner, self.kind, self.kwargs = owner, kind, kwargs
        self.then_kwargs: dict[str, Any] | None = None

    def then(self, **kwargs: Any) -> _GrEvent:
        self.then_kwargs = kwargs
        return self


class _GrBlock:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs
        self.value = kwargs.get("value")
        self.label = kwargs.get("label")
        self.elem_id = kwargs.get("elem_id")
        self.events: list[_GrEvent] = []

    def __enter__(self) -> _GrBlock:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def _event(self, kind: str) -> Callable[..., _GrEvent]:
        def listen(**kwargs: Any) -> _GrEvent:
            event = _GrEvent(self, kind, kwargs)
            self.events.append(event)
            return event

        return listen

    def __getattr__(self, name: str) -> Any:
        if name in ("click", "select", "input", "change", "release", "submit"):
            return self._event(name)
        raise AttributeError(name)


def gradio_stub() -> types.ModuleType:
    gr = types.ModuleType("gradio")
    gr.__version__ = "0.0-stub"
    for name in (
        "Blocks",
        "Accordion",
        "Row",
        "Column",
        "Group",
        "Checkbox",
        "HTML",
        "Dropdown",
        "Radio",
        "Slider",
        "Button",
        "Gallery",
        "State",
        "Textbox",
        "Number",
    ):
        setattr(gr, name, type(name, (_GrBlock,), {}))
    gr.update = lambda **kwargs: {"__type__": "update", **kwargs}
    gr.SelectData = type("SelectData", (), {"__init__": lambda self, index=0: setattr(self, "index", index)})
    return gr


# -- the whole fake ------------------------------------------------------------------------------------
class FakeWebUI:
    """The fake modules plus everything they record. ``install()`` / ``uninstall()`` wrap one test."""

    def __init__(self) -> None:
        self.state = State()
        self.opts = Options(
            token_merging_ratio=0.0,
            interrogate_clip_num_beams=1,
            interrogate_clip_min_length=5,
            interrogate_clip_max_length=20,
            s_churn=0.0,
            s_tmin=0.0,
            s_tmax=0.0,
            s_noise=1.0,
            tiling=False,
        )
        for key, default in WEBUI_OPTIONS.items():
            self.opts.add_option(key, OptionInfo(default))
        self.cmd_opts = types.SimpleNamespace(api=False, nowebui=False, api_auth=None, no_half=False)
        self.sd_model = SdModel()
        self.interrogator: Any = None
        self.calls: list[Call] = []  # every process_images call, in order
        self.events: list[tuple[Any, ...]] = []  # model moves, token merging, captioner use; in order
        self.ui_settings_callbacks: list[Callable[[], None]] = []
        self.app_started_callbacks: list[Callable[[Any, Any], None]] = []
        self.before_ui_callbacks: list[Callable[[], None]] = []
        self.cfg_callbacks: dict[str, list[Callable[[Any], None]]] = {"denoiser": [], "after_cfg": []}
        # Called once per batch "while sampling" (after the job starts): tests press Skip or Interrupt here.
        self.on_sample: Callable[[Any, int], None] | None = None
        self.launch_present: set[str] = set()
        self.pip_calls: list[tuple[str, str | None]] = []
        self.device_interrogate = Device("cpu")
        self.modules = self._build()
        self._saved: dict[str, Any] = {}

    @property
    def dns_calls(self) -> list[Call]:
        return [c for c in self.calls if c.is_dns]

    # -- building the modules ------------------------------------------------------------------------
    def _module(self, name: str, **attrs: Any) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        return module

    def _build(self) -> dict[str, types.ModuleType]:
        web = self
        m: dict[str, types.ModuleType] = {}
        m["modules"] = self._module("modules", __path__=[])
        m["modules.shared"] = self._module(
            "modules.shared",
            opts=self.opts,
            state=self.state,
            cmd_opts=self.cmd_opts,
            OptionInfo=OptionInfo,
            hide_dirs={"visible": True},  # {"visible": False} with --hide-ui-dir-config
        )
        # sd_model and interrogator are read at call time, as the WebUI's shared module is
        shared_cls = type("SharedModule", (types.ModuleType,), {})
        shared_cls.sd_model = property(lambda _: web.sd_model)
        shared_cls.interrogator = property(lambda _: web.interrogator)
        m["modules.shared"].__class__ = shared_cls
        m["modules.paths_internal"] = self._module("modules.paths_internal", models_path="/nonexistent/models")
        m["modules.processing"] = self._module(
            "modules.processing",
            StableDiffusionProcessing=StableDiffusionProcessing,
            StableDiffusionProcessingTxt2Img=StableDiffusionProcessingTxt2Img,
            Processed=Processed,
            process_images=self.process_images,
            get_fixed_seed=get_fixed_seed,
        )
        m["modules.scripts"] = self._module(
            "modules.scripts", Script=Script, ScriptRunner=ScriptRunner, AlwaysVisible=object(), scripts_data=[]
        )
        m["modules.script_callbacks"] = self._module(
            "modules.script_callbacks",
            on_ui_settings=lambda cb, *, name=None: self.ui_settings_callbacks.append(cb),
            on_app_started=lambda cb, *, name=None: self.app_started_callbacks.append(cb),
            on_before_ui=lambda cb, *, name=None: self.before_ui_callbacks.append(cb),
            on_after_component=lambda cb, *, name=None: None,
            on_cfg_denoiser=lambda cb, *, name=None: self.cfg_callbacks["denoiser"].append(cb),
            on_cfg_after_cfg=lambda cb, *, name=None: self.cfg_callbacks["after_cfg"].append(cb),
            remove_callbacks_for_function=self._remove_callback,
            callback_map={"callbacks_cfg_denoiser": []},  # named hooks of other extensions (none)
        )
        devices = self._module("modules.devices", torch_gc=lambda: None)
        devices_cls = type("DevicesModule", (types.ModuleType,), {})
        devices_cls.device_interrogate = property(lambda _: web.device_interrogate)
        devices.__class__ = devices_cls
        m["modules.devices"] = devices
        m["modules.prompt_parser"] = self._module(
            "modules.prompt_parser",
            # no [from:to:when] editing in these tests: one schedule, the whole prompt
            get_learned_conditioning_prompt_schedules=lambda prompts, steps, *a, **k: [[[steps, t]] for t in prompts],
        )
        m["modules.sd_hijack"] = self._module(
            "modules.sd_hijack", model_hijack=types.SimpleNamespace(clip=FakeClip(), extra_generation_params={})
        )
        m["modules.sd_models"] = self._module(
            "modules.sd_models",
            apply_token_merging=lambda model, ratio: self.events.append(("token_merging", model, ratio)),
            send_model_to_cpu=lambda model: self.events.append(("sd_model_to_cpu", model)),
            send_model_to_device=lambda model: self.events.append(("sd_model_to_device", model)),
            reload_model_weights=lambda *a, **k: None,
        )
        m["modules.sd_vae"] = self._module("modules.sd_vae", loaded_vae_file=None)
        m["modules.call_queue"] = self._module("modules.call_queue", queue_lock=threading.Lock())
        m["modules.sd_samplers"] = self._module(
            "modules.sd_samplers",
            find_sampler_config=lambda name: types.SimpleNamespace(name=name) if name in SAMPLERS else None,
            visible_sampler_names=lambda: list(SAMPLERS),
        )
        m["modules.sd_schedulers"] = self._module(
            "modules.sd_schedulers",
            schedulers=[types.SimpleNamespace(name=n, label=label) for n, label in SCHEDULERS],
        )
        m["launch"] = self._module(
            "launch",
            is_installed=lambda package: package in self.launch_present,
            run_pip=lambda command, desc=None, live=False: self.pip_calls.append((command, desc)),
        )
        for name, module in m.items():
            if name.startswith("modules."):
                setattr(m["modules"], name.split(".", 1)[1], module)
        return m

    # -- processing --------------------------------------------------------------------------------------
    def prepare(self, p: Any) -> Any:
        """What process_images does before the scripts' process(): prompts and seeds (and the job state)."""
        p.setup_prompts()
        seed, subseed = get_fixed_seed(p.seed), get_fixed_seed(p.subseed)
        n = len(p.all_prompts)
        if isinstance(seed, list):
            p.all_seeds = list(seed)
        else:
            p.all_seeds = [int(seed) + (x if p.subseed_strength == 0 else 0) for x in range(n)]
        p.all_subseeds = list(subseed) if isinstance(subseed, list) else [int(subseed) + x for x in range(n)]
        return p

    def process_images(self, p: Any) -> Processed:
        sd_models = self.modules["modules.sd_models"]
        sd_models.apply_token_merging(p.sd_model, p.get_token_merging_ratio())
        try:
            return self._process_images_inner(p)
        finally:
            sd_models.apply_token_merging(p.sd_model, 0)

    def _process_images_inner(self, p: Any) -> Processed:
        state = self.state
        self.prepare(p)
        if p.scripts is not None:
            p.scripts.process(p)
        p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
        if state.job_count == -1:
            state.job_count = p.n_iter
        self.calls.append(self._record(p))
        images: list[Any] = []
        infotexts: list[str] = []
        for n in range(p.n_iter):
            if state.skipped:
                state.skipped = False
            if state.interrupted or state.stopping_generation:
                break
            indices = range(n * p.batch_size, min((n + 1) * p.batch_size, len(p.all_prompts)))
            if not indices:
                break
            if self.on_sample is not None:
                self.on_sample(p, n)
            latents = sample(p, len(indices), self.cfg_callbacks, state, self.calls[-1])
            if p.scripts is not None:
                p.scripts.post_sample(p, types.SimpleNamespace(samples=latents))  # then decoding, before nextjob
            for j, i in enumerate(indices):
                images.append(fake_image(p, i, None if latents is None else latents[j].tolist()))
                params = {
                    "Steps": p.steps,
                    "Sampler": p.sampler_name,
                    "CFG scale": p.cfg_scale,
                    "Seed": p.all_seeds[i],
                    "Size": f"{p.width}x{p.height}",
                    **p.extra_generation_params,
                }
                infotexts.append(write_infotext(p.all_prompts[i], p.all_negative_prompts[i], params, i))
            if getattr(p, "enable_hr", False):
                state.nextjob()  # first pass done, the hires pass is the batch's second job
            state.nextjob()
        processed = Processed(p, images, infotexts)
        if p.scripts is not None:
            p.scripts.postprocess(p, processed)
        return processed

    def _remove_callback(self, fn: Callable[..., Any]) -> None:
        for callbacks in self.cfg_callbacks.values():
            callbacks[:] = [cb for cb in callbacks if cb != fn]

    def _record(self, p: Any) -> Call:
        hr = getattr(p, "all_hr_negative_prompts", None)
        return Call(
            p=p,
            prompts=list(p.all_prompts),
            negative_prompts=list(p.all_negative_prompts),
            hr_negative_prompts=list(hr) if hr is not None else None,
            seeds=list(p.all_seeds),
            subseeds=list(p.all_subseeds),
            subseed_strength=p.subseed_strength,
            cfg_scale=p.cfg_scale,
            steps=p.steps,
            sampler_name=p.sampler_name,
            scheduler=p.scheduler,
            width=p.width,
            height=p.height,
            batch_size=p.batch_size,
            n_iter=p.n_iter,
            override_settings=dict(p.override_settings),
            options=dict(self.opts.data),
            s_min_uncond=p.s_min_uncond,
            enable_hr=getattr(p, "enable_hr", False),
            styles=list(p.styles),
            do_not_save_samples=p.do_not_save_samples,
            do_not_save_grid=p.do_not_save_grid,
            extra_generation_params=dict(p.extra_generation_params),
        )

    def txt2img(self, **kwargs: Any) -> StableDiffusionProcessingTxt2Img:
        """A txt2img p as the WebUI builds it for a request, on the loaded model."""
        kwargs.setdefault("sd_model", self.sd_model)
        kwargs.setdefault("sampler_name", "Euler a")
        kwargs.setdefault("scheduler", "Automatic")
        kwargs.setdefault("steps", 20)
        kwargs.setdefault("width", 512)
        kwargs.setdefault("height", 512)
        return StableDiffusionProcessingTxt2Img(**kwargs)

    # -- install / uninstall -------------------------------------------------------------------------
    def install(self) -> None:
        names = list(FAKE_MODULES)
        if importlib.util.find_spec("gradio") is None and "gradio" not in sys.modules:
            self.modules["gradio"] = gradio_stub()
            names.append("gradio")
        for name in names:
            self._saved[name] = sys.modules.get(name)
            sys.modules[name] = self.modules[name]
        drop_glue_modules()

    def uninstall(self) -> None:
        drop_glue_modules()
        for name, module in self._saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        self._saved.clear()


def get_fixed_seed(seed: Any) -> Any:
    if seed in ("", None):
        seed = -1
    if isinstance(seed, str):
        try:
            seed = int(seed)
        except ValueError:
            seed = -1
    return random.randrange(4294967294) if seed == -1 else seed


def drop_glue_modules() -> None:
    """Forget the glue modules (and the parent package's attribute for them) so the next import is fresh."""
    for name in [n for n in sys.modules if n.startswith(GLUE_PREFIXES)]:
        module = sys.modules.pop(name)
        parent_name, _, child = name.rpartition(".")
        parent = sys.modules.get(parent_name)
        if parent is not None and getattr(parent, child, None) is module:
            delattr(parent, child)


@contextmanager
def fake_webui() -> Iterator[FakeWebUI]:
    web = FakeWebUI()
    web.install()
    try:
        yield web
    finally:
        web.uninstall()
