"""The AUTOMATIC1111 host: what DNP asks of the WebUI, each job delegated to its module (Forge subclasses it).

settings (options), webui_blip (the WebUI's BLIP captioner), text (chunk counting), dns (the DNS pass),
suggest (the review flow's call), run (the adapter the core pipeline drives). The methods here are the seams
where Forge differs; ``forge.ForgeHost`` overrides them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modules import devices, script_callbacks, sd_models, shared
from modules.shared import state

from .. import TITLE, residency
from ..args import CAPTIONERS, DnpArgs, DnpArgsError
from ..captioners import make_captioner
from ..captioners.base import Captioner, CaptionerError, ModelCaptioner
from ..pipeline import Stop
from ..residency import offload_mode
from ..suggest import SuggestRequest, SuggestResult
from . import dns, download, unpickle, xyz
from . import suggest as suggest_mod
from . import text as text_mod
from .settings import CAPTIONER_SETTING, option, register_settings
from .webui_blip import WebUIBlipCaptioner


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
        download.install()
        script_callbacks.on_app_started(self.on_app_started)
        script_callbacks.on_before_ui(lambda: xyz.register(self.captioners()))

    def on_app_started(self, demo: Any, app: Any) -> None:
        from .api import mount

        mount(app, self)

    def register_settings(self) -> None:
        register_settings()

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

    def _on_cuda(self) -> bool:
        device = self.captioner_device()
        return getattr(device, "type", str(device)) == "cuda"

    def free_vram(self) -> int | None:
        """Bytes the captioner could take on its GPU: the driver's free memory plus torch's unused cache."""
        try:
            import torch

            device = self.captioner_device()
            free, _ = torch.cuda.mem_get_info(device)
            return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
        except Exception:  # no CUDA, or a driver that cannot tell: unknown
            return None

    def offload_sd_model(self, captioner: Captioner | None = None) -> bool:
        """Whether to move the SD model off the GPU before this captioner runs (see dnp_ext/residency.py)."""
        mode, cuda = offload_mode(option("dnp_offload_sd_model")), self._on_cuda()
        if mode != "auto" or not cuda:
            return residency.should_offload_sd_model(mode, cuda, None, None)
        loaded, on_gpu = captioner.residency() if isinstance(captioner, ModelCaptioner) else (None, False)
        source = str(option(CAPTIONER_SETTING.get(getattr(captioner, "name", ""), "")) or "")
        need = residency.captioner_need(
            getattr(captioner, "name", ""),
            loaded,
            residency.folder_weight_bytes(source.strip()),
            on_gpu,
            half=not getattr(shared.cmd_opts, "no_half", False),
        )
        return residency.should_offload_sd_model(mode, cuda, self.free_vram(), need)

    def keep_captioner_resident(self, sd_model_offloaded: bool) -> bool:
        """After captioning: leave the captioner on the GPU for the next run (auto, offload policy, room left)."""
        mode = offload_mode(option("dnp_offload_sd_model"))
        if option("dnp_captioner_after") != "offload" or mode != "auto" or not self._on_cuda():
            return False
        return residency.keep_captioner_resident(mode, True, sd_model_offloaded, self.free_vram())

    def free_sd_model(self) -> None:
        sd_models.send_model_to_cpu(shared.sd_model)

    def restore_sd_model(self) -> None:
        sd_models.send_model_to_device(shared.sd_model)

    # -- text encoding ----------------------------------------------------------------------------------
    def _text_encoders(self) -> list[Any]:
        return text_mod.text_encoders()

    def count_chunks(self, text: str, steps: int) -> int:
        return text_mod.count_chunks(text, steps, self._text_encoders())

    # -- the run ----------------------------------------------------------------------------------------
    def dns_processing(self, p: Any, indices: Sequence[int], args: DnpArgs) -> Any:
        return dns.dns_processing(p, indices, args)

    def run_dns(self, p: Any, indices: Sequence[int], args: DnpArgs) -> tuple[list[Any], list[str]]:
        return dns.run_dns(p, self.dns_processing(p, indices, args), args)

    def check_sampler(self, sampler_name: str, scheduler: str) -> None:
        dns.check_sampler(sampler_name, scheduler)

    def suggest(self, req: SuggestRequest) -> SuggestResult:
        return suggest_mod.suggest(self, req)

    def poll(self) -> Stop:
        if state.interrupted or getattr(state, "stopping_generation", False):
            return Stop.INTERRUPT
        if state.skipped:
            state.skipped = False
            return Stop.SKIP
        return Stop.NONE
