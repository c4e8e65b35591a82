"""One run of the script: the adapter the core pipeline drives, and applying its result to the WebUI's p."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modules.shared import state

from .. import TITLE
from ..args import DnpArgs
from ..captioners.base import Captioner, CaptionerError
from ..captioners.download import DownloadStopped
from ..infotext import generation_params
from ..pipeline import DnpPlan, DnpResult, Stop, negatives_for
from .cache import COUNTERS
from .settings import CAPTIONER_SETTING, option

if TYPE_CHECKING:
    from .webui import WebUIHost


@dataclass
class RunState:
    """What one run of the script left on p, for postprocess."""

    args: DnpArgs
    result: DnpResult | None = None
    error: Exception | None = None
    dns_infotexts: list[str] = field(default_factory=list)


class RunAdapter:
    """Binds the host to one processing object p: the ``DnpHost`` the core pipeline drives."""

    def __init__(self, host: WebUIHost, p: Any, args: DnpArgs) -> None:
        self.host, self.p, self.args = host, p, args
        self._captioner: Captioner | None = None
        self._sd_model_freed = False

    def run_dns(self, indices: Sequence[int]) -> tuple[list[Any], list[str]]:
        COUNTERS["dns_passes"] += 1
        return self.host.run_dns(self.p, indices, self.args)

    def caption(self, images: Sequence[Any]) -> list[str]:
        if self._captioner is None:
            self._captioner = self.host.captioner(self.args.captioner)
            if self.host.offload_sd_model(self._captioner):
                self.host.free_sd_model()
                self._sd_model_freed = True
        try:
            return self._captioner.caption(list(images))
        except DownloadStopped:  # Interrupt during the first download: the pipeline sees the interrupt next
            return [""] * len(images)
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
            if self._captioner is not None and not self.host.keep_captioner_resident(self._sd_model_freed):
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
    # a new dict: the X/Y/Z plot shallow-copies p per cell, and a cell without DNP must not get DNP's keys
    p.extra_generation_params = {
        **p.extra_generation_params,
        **generation_params(args, args.dns_steps or p.steps, result.captions),
    }
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


@contextmanager
def torch_rng_kept() -> Iterator[None]:
    """Run DNP's work (DNS pass, captioner load) without moving torch's global random state.

    The main run draws from it after DNP: img2img's VAE encode samples the init latent with torch.randn, so
    without this an img2img result would depend on how many numbers DNS and a captioner load drew.
    """
    import torch

    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
