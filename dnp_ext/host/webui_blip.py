"""The ``webui-blip`` captioner: the WebUI's own BLIP interrogator model, caption only."""

from __future__ import annotations

from typing import Any

from modules import shared
from modules.shared import opts

from ..captioners.base import CaptionerError, ModelCaptioner


class WebUIBlipCaptioner(ModelCaptioner):
    """The WebUI's own BLIP interrogator, caption only (its interrogate() also resets the job state)."""

    name = "webui-blip"

    def _module(self, loaded: Any) -> Any:
        return loaded.blip_model

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
