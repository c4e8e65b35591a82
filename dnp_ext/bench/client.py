"""HTTP client for the benchmark: the stdlib WebUI client of dnp_ext.client, plus the DNP script args."""

from __future__ import annotations

from typing import Any

from ..client import SCRIPT_KEY, ClientError, Txt2ImgResult, WebUIClient, WebUIError, WebUIUnavailable

__all__ = ["SCRIPT_KEY", "ClientError", "Txt2ImgResult", "WebUIClient", "WebUIError", "WebUIUnavailable"]


def dnp_script_args(
    captioner: str, dns_scale: float, show_dns: bool = True, dns_preview: float | None = None
) -> dict[str, Any]:
    args: dict[str, Any] = {"enabled": True, "captioner": captioner, "dns_scale": dns_scale, "show_dns": show_dns}
    if dns_preview is not None:
        args["dns_preview"] = dns_preview
    return {SCRIPT_KEY: {"args": [args]}}


def txt2img_body(
    prompt: str,
    negative: str,
    seed: int,
    *,
    steps: int,
    width: int,
    height: int,
    cfg_scale: float,
    batch_size: int = 1,
    sampler: str | None = None,
    scheduler: str | None = None,
) -> dict[str, Any]:
    """A txt2img request of the benchmarks: one batch, images sent back, nothing saved on the server."""
    body: dict[str, Any] = {
        "prompt": prompt,
        "negative_prompt": negative,
        "seed": seed,
        "steps": steps,
        "width": width,
        "height": height,
        "cfg_scale": cfg_scale,
        "batch_size": batch_size,
        "n_iter": 1,
        "save_images": False,
        "send_images": True,
    }
    if sampler:
        body["sampler_name"] = sampler
    if scheduler:
        body["scheduler"] = scheduler
    return body
