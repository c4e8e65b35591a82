"""DNS preview: stop the nested DNS run after a fraction of its steps and keep the model's x0 prediction.

The WebUI's CFG denoiser calls ``on_cfg_denoiser`` (with the denoiser, its inputs and sigma) and then
``on_cfg_after_cfg`` (with the CFG-combined output) on every model evaluation. While one DNS run is armed, the
second callback turns that output into the CFG-combined x0 prediction and leaves it as the sampler's
``last_latent``; the sampler's own ``stop_at`` ends sampling in the step callback of the last preview step, and
the WebUI's sampler then returns ``last_latent``, which the WebUI decodes as the DNS image. A1111's k-diffusion
denoiser and Forge's already output x0 (``get_pred_x0`` returns it as is); A1111's DDIM/PLMS/UniPC denoiser
outputs eps, which ``get_pred_x0`` converts.

Counting is the sampler's own: the step callback runs once per step after the step's first model evaluation,
however many evaluations a step makes (Heun, DPM2: two), so a preview of k steps is k step callbacks.
The callbacks are registered only around the DNS run and act only on the denoiser of that run's p.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from modules import script_callbacks
from modules.shared import state


class DnsPreview:
    """Armed for one run of p: counts its model evaluations and, with `steps`, stops it there."""

    def __init__(self, p: Any, steps: int | None) -> None:
        self.p, self.steps = p, steps
        self.evaluations = 0  # model evaluations of the armed run (what the preview saves is visible here)
        self._current: tuple[Any, Any, Any] | None = None

    def on_denoiser(self, params: Any) -> None:
        self._current = None
        denoiser = params.denoiser
        if getattr(denoiser, "p", None) is not self.p:
            return  # another run's denoiser: never touched
        self.evaluations += 1
        if self.steps is None:
            return  # the full DNS: counted, nothing changed
        # raise in the step callback of step index steps - 1, i.e. after `steps` steps' first evaluations
        denoiser.sampler.stop_at = self.steps - 2
        state.sampling_steps = self.steps  # progress counts the shortened pass
        self._current = (denoiser, params.x, params.sigma)

    def on_after_cfg(self, params: Any) -> None:
        if self._current is None:
            return
        denoiser, x_in, sigma = self._current
        self._current = None
        n = params.x.shape[0]  # the images' rows come first in the denoiser's batched input
        denoiser.sampler.last_latent = denoiser.get_pred_x0(x_in[:n], params.x, sigma[:n])


@contextmanager
def preview(p: Any, steps: int | None) -> Iterator[DnsPreview]:
    """Arm a preview of `steps` sampler steps (None: the full run) for the run of p, during the block."""
    armed = DnsPreview(p, steps)
    script_callbacks.on_cfg_denoiser(armed.on_denoiser, name="dnp_dns_preview")
    script_callbacks.on_cfg_after_cfg(armed.on_after_cfg, name="dnp_dns_preview")
    try:
        yield armed
    finally:
        script_callbacks.remove_callbacks_for_function(armed.on_denoiser)
        script_callbacks.remove_callbacks_for_function(armed.on_after_cfg)
