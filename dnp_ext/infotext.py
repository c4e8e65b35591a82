"""Infotext (the PNG "parameters" text) keys DNP writes, and how pasting them back behaves.

Generated images record the negative they were really made with (n* merged) in "Negative prompt",
plus the DNP settings. Pasting such an infotext must reproduce the image, so it fills the settings but
leaves Auto-DNP off: the negative already holds n*, and running DNP again would add a second one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .args import DnpArgs

KEY_DNP = "DNP"
KEY_CAPTIONER = "DNP captioner"
KEY_DNS_SCALE = "DNS scale"
KEY_DNS_STEPS = "DNS steps"
KEY_CAPTION = "DNP caption"
KEY_DNS_PREVIEW = "DNS preview"  # written only below 1, so full-DNS infotexts stay as they were

DNS_IMAGE = "DNS image"  # value of KEY_DNP on the DNS images themselves


def dnp_value(args: DnpArgs) -> str:
    """Short description of how n* was made and merged, e.g. "auto, per image, append"."""
    return f"auto, {'per image' if args.per_image else 'shared'}, {args.merge}"


def generation_params(args: DnpArgs, dns_steps: int, captions: list[str] | None = None) -> dict[str, Any]:
    """Extra generation params for the main images. A list value is per image, as the WebUI expects."""
    params: dict[str, Any] = {
        KEY_DNP: dnp_value(args),
        KEY_CAPTIONER: args.captioner,
        KEY_DNS_SCALE: args.dns_scale,
        KEY_DNS_STEPS: dns_steps,
    }
    if args.dns_preview < 1:
        params[KEY_DNS_PREVIEW] = args.dns_preview
    if captions is not None:
        params[KEY_CAPTION] = list(captions)
    return params


def dns_image_params(args: DnpArgs) -> dict[str, Any]:
    """Extra generation params for a DNS image: a plain run with these settings reproduces it."""
    params: dict[str, Any] = {KEY_DNP: DNS_IMAGE, KEY_DNS_SCALE: args.dns_scale}
    if args.dns_preview < 1:
        params[KEY_DNS_PREVIEW] = args.dns_preview
    return params


def parse_pasted(params: Mapping[str, Any]) -> dict[str, Any]:
    """UI values to set from a pasted infotext; empty when it carries no DNP keys.

    ``enabled`` is always False: see the module docstring.
    """
    if KEY_DNP not in params:
        return {}
    out: dict[str, Any] = {"enabled": False}
    value = str(params[KEY_DNP])
    if value == DNS_IMAGE:
        return out
    parts = [p.strip() for p in value.split(",")]
    if "shared" in parts:
        out["per_image"] = False
    elif "per image" in parts:
        out["per_image"] = True
    for mode in ("append", "prepend", "replace"):
        if mode in parts:
            out["merge"] = mode
    if KEY_CAPTIONER in params:
        out["captioner"] = str(params[KEY_CAPTIONER])
    try:
        if KEY_DNS_SCALE in params:
            out["dns_scale"] = float(params[KEY_DNS_SCALE])
        if KEY_DNS_STEPS in params:
            out["dns_steps"] = int(float(params[KEY_DNS_STEPS]))
        preview = float(params.get(KEY_DNS_PREVIEW, 1.0))
        if 0 < preview <= 1:
            out["dns_preview"] = preview
    except (TypeError, ValueError):
        pass  # a hand-edited value: keep the UI's current setting
    return out
