"""The review flow's request and response: DNS images and suggested negatives for the user to edit.

Host-independent: validation and response building; the host runs DNS and the captioner.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .args import (
    CAPTIONERS,
    DEFAULT_DNS_SCALE,
    MAX_DNS_SCALE,
    MAX_DNS_STEPS,
    DnpArgs,
    DnpArgsError,
    check_choice,
    check_keys,
    check_number,
    check_override_settings,
    check_preview,
)
from .negatives import MERGE_MODES

MAX_BATCH = 8
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class SuggestRequest:
    prompt: str
    negative_prompt: str = ""
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    width: int = 512
    height: int = 512
    steps: int = 20
    sampler_name: str = "Euler a"
    scheduler: str = "Automatic"
    cfg_scale: float = 7.0
    batch_size: int = 1
    dns_scale: float = DEFAULT_DNS_SCALE
    dns_steps: int = 0
    dns_preview: float = 1.0
    captioner: str = "blip2"
    merge: str = "append"

    def dnp_args(self) -> DnpArgs:
        return DnpArgs(
            enabled=True,
            captioner=self.captioner,
            dns_scale=self.dns_scale,
            dns_steps=self.dns_steps,
            dns_preview=self.dns_preview,
            merge=self.merge,
            per_image=True,
            show_dns=True,
        )


SUGGEST_FIELDS = tuple(f.name for f in fields(SuggestRequest))


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise DnpArgsError(f"'{key}' must be a string, not {value!r}")
    return value


def _int(key: str, value: Any, lo: float, hi: float) -> int:
    return int(check_number(key, value, lo, hi, integer=True))


def parse_suggest_request(data: Mapping[str, Any]) -> SuggestRequest:
    """Validate a JSON body; missing keys take their defaults, unknown keys and bad values are errors."""
    if isinstance(data, Mapping):
        check_override_settings(data.get("override_settings"))
    check_keys(data, SUGGEST_FIELDS, "field(s)")
    if "prompt" not in data:
        raise DnpArgsError("'prompt' is required")
    d = SuggestRequest(prompt="")
    get = data.get
    width = _int("width", get("width", d.width), 64, 2048)
    height = _int("height", get("height", d.height), 64, 2048)
    for key, size in (("width", width), ("height", height)):
        if size % 8:
            raise DnpArgsError(f"'{key}' must be a multiple of 8, not {size}")
    return SuggestRequest(
        prompt=_text("prompt", get("prompt")),
        negative_prompt=_text("negative_prompt", get("negative_prompt", d.negative_prompt)),
        seed=_int("seed", get("seed", d.seed), -1, MAX_SEED),
        subseed=_int("subseed", get("subseed", d.subseed), -1, MAX_SEED),
        subseed_strength=check_number("subseed_strength", get("subseed_strength", d.subseed_strength), 0, 1),
        width=width,
        height=height,
        steps=_int("steps", get("steps", d.steps), 1, MAX_DNS_STEPS),
        sampler_name=_text("sampler_name", get("sampler_name", d.sampler_name)),
        scheduler=_text("scheduler", get("scheduler", d.scheduler)),
        cfg_scale=check_number("cfg_scale", get("cfg_scale", d.cfg_scale), 0, 100),
        batch_size=_int("batch_size", get("batch_size", d.batch_size), 1, MAX_BATCH),
        dns_scale=check_number("dns_scale", get("dns_scale", d.dns_scale), 0, MAX_DNS_SCALE),
        dns_steps=_int("dns_steps", get("dns_steps", d.dns_steps), 0, MAX_DNS_STEPS),
        dns_preview=check_preview(get("dns_preview", d.dns_preview)),
        captioner=check_choice("captioner", get("captioner", d.captioner), CAPTIONERS),
        merge=check_choice("merge", get("merge", d.merge), MERGE_MODES),
    )


@dataclass
class SuggestResult:
    captions: list[str]
    negative_prompts: list[str]
    images: list[Any]  # PIL images of the DNS pass, in seed order
    infotexts: list[str]
    seeds: list[int]
    subseeds: list[int]
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["images"] = [png_base64(im, text) for im, text in zip(self.images, self.infotexts)]
        out["info"] = {**self.info, "infotexts": out.pop("infotexts")}
        return out


def png_base64(image: Any, infotext: str) -> str:
    """PNG bytes, base64, with the infotext in the "parameters" text chunk as the WebUI writes it."""
    from PIL import PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", infotext)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=meta)
    return base64.b64encode(buf.getvalue()).decode()
