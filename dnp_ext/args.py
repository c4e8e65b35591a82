"""The script's arguments: one validated model, read by name (API dict) or by position (UI order)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from .negatives import MERGE_MODES

CAPTIONERS: tuple[str, ...] = ("blip2", "blip", "webui-blip")
DEFAULT_DNS_SCALE = 7.5  # the paper's s; the WebUI's CFG scale for the DNS pass is s + 1
MAX_DNS_SCALE = 50.0
MAX_DNS_STEPS = 150


class DnpArgsError(ValueError):
    """Bad script arguments; the message says which key and what is allowed."""


@dataclass(frozen=True)
class DnpArgs:
    enabled: bool = False
    captioner: str = "blip2"
    dns_scale: float = DEFAULT_DNS_SCALE
    dns_steps: int = 0  # 0: the run's steps
    merge: str = "append"
    per_image: bool = True
    show_dns: bool = False
    dns_preview: float = 1.0  # fraction of the DNS steps; below 1 the DNS image is that step's x0 prediction

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(DnpArgs))


def check_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise DnpArgsError(f"'{key}' must be true or false, not {value!r}")


def check_number(key: str, value: Any, lo: float, hi: float, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DnpArgsError(f"'{key}' must be a number, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise DnpArgsError(f"'{key}' must be a number, not {value!r}") from None
    if not math.isfinite(number) or not lo <= number <= hi:
        raise DnpArgsError(f"'{key}' must be between {lo:g} and {hi:g}, not {value!r}")
    if integer and number != int(number):
        raise DnpArgsError(f"'{key}' must be a whole number, not {value!r}")
    return number


def check_choice(key: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise DnpArgsError(f"'{key}' must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def check_keys(data: Any, allowed: Sequence[str], what: str) -> None:
    """An object whose keys are all known: the message lists the unknown ones and what is allowed."""
    if not isinstance(data, Mapping):
        raise DnpArgsError(f"{what} must be an object, not {type(data).__name__}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise DnpArgsError(f"unknown {what} {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")


def from_mapping(data: Mapping[str, Any]) -> DnpArgs:
    """Validate a dict of arguments by name; missing keys take their defaults, unknown keys are errors."""
    check_keys(data, FIELD_NAMES, "argument(s)")
    d = DnpArgs()
    get = data.get
    return DnpArgs(
        enabled=check_bool("enabled", get("enabled", d.enabled)),
        captioner=check_choice("captioner", get("captioner", d.captioner), CAPTIONERS),
        dns_scale=check_number("dns_scale", get("dns_scale", d.dns_scale), 0.0, MAX_DNS_SCALE),
        dns_steps=int(check_number("dns_steps", get("dns_steps", d.dns_steps), 0, MAX_DNS_STEPS, integer=True)),
        merge=check_choice("merge", get("merge", d.merge), MERGE_MODES),
        per_image=check_bool("per_image", get("per_image", d.per_image)),
        show_dns=check_bool("show_dns", get("show_dns", d.show_dns)),
        dns_preview=check_preview(get("dns_preview", d.dns_preview)),
    )


def check_preview(value: Any) -> float:
    number = check_number("dns_preview", value, 0.0, 1.0)
    if number <= 0:
        raise DnpArgsError(f"'dns_preview' must be above 0 and at most 1, not {value!r}")
    return number


def preview_steps(dns_preview: float, steps: int) -> int:
    """Sampler steps a DNS preview runs: the fraction of the DNS steps, rounded up, at least 1."""
    return max(1, min(steps, math.ceil(dns_preview * steps - 1e-9)))


def from_script_args(args: Sequence[Any]) -> DnpArgs:
    """Read the Script's positional args.

    The API may put one dict in the first slot (by name); the WebUI then fills the other slots with the
    UI's defaults, so they are ignored. Otherwise the slots are in ``FIELD_NAMES`` order.
    """
    if not args:
        return DnpArgs()
    if isinstance(args[0], Mapping):
        return from_mapping(args[0])
    if len(args) > len(FIELD_NAMES):
        raise DnpArgsError(f"expected at most {len(FIELD_NAMES)} arguments ({', '.join(FIELD_NAMES)}), got {len(args)}")
    return from_mapping(dict(zip(FIELD_NAMES, args)))


# Where the captioners' models come from: settings only (Settings, config.json, /sdapi/v1/options), never a
# request's override_settings, which would load any folder on the server for one request.
MODEL_PATH_SETTINGS: tuple[str, ...] = ("dnp_blip2_model", "dnp_blip_model")


def check_override_settings(overrides: Any) -> None:
    """A request's ``override_settings`` must not name a captioner model location."""
    if not isinstance(overrides, Mapping):
        return
    for key in MODEL_PATH_SETTINGS:
        if key in overrides:
            raise DnpArgsError(
                f"'override_settings' may not set {key!r}: captioner model locations are settings (Settings > "
                "Diffusion-Negative Prompting, or POST /sdapi/v1/options), never request parameters"
            )
