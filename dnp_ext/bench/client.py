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
