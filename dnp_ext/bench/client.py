"""Tiny stdlib HTTP client for the WebUI API (txt2img with the DNP alwayson script)."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

SCRIPT_KEY = "diffusion-negative prompting"


class WebUIError(RuntimeError):
    """An answer from the WebUI that retrying will not fix (4xx: bad arguments, missing script, auth)."""


class WebUIUnavailable(RuntimeError):
    """The WebUI could not be reached or failed (5xx); retrying may help."""


@dataclass
class Txt2ImgResult:
    images: list[bytes]  # decoded image files as returned (normally PNG)
    info: dict[str, Any]
    infotexts: list[str] = field(default_factory=list)


@dataclass
class WebUIClient:
    base_url: str
    auth: str | None = None  # "user:pass", as the WebUI's --api-auth takes it
    timeout: float = 900.0
    retries: int = 2
    retry_wait: float = 5.0

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.auth:
            headers["Authorization"] = "Basic " + base64.b64encode(self.auth.encode()).decode()
        return headers

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.base_url.rstrip("/") + path
        data = json.dumps(body).encode() if body is not None else None
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.retry_wait)
            req = urllib.request.Request(url, data=data, method=method, headers=self._headers())
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read().decode() or "null")
            except urllib.error.HTTPError as e:
                detail = e.read().decode(errors="replace")[:2000]
                if e.code < 500:
                    raise WebUIError(f"{method} {path}: HTTP {e.code}: {detail}") from e
                last = WebUIUnavailable(f"{method} {path}: HTTP {e.code}: {detail}")
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                last = WebUIUnavailable(f"{method} {path}: cannot reach {self.base_url}: {e}")
        assert last is not None
        raise last

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def current_model(self) -> str | None:
        try:
            opts = self.get("/sdapi/v1/options")
        except (WebUIError, WebUIUnavailable):
            return None
        return opts.get("sd_model_checkpoint") if isinstance(opts, dict) else None

    def txt2img(self, payload: dict[str, Any]) -> Txt2ImgResult:
        resp = self.request("POST", "/sdapi/v1/txt2img", payload)
        images = [base64.b64decode(s.split(",", 1)[-1]) for s in resp.get("images") or []]
        info = resp.get("info") or {}
        if isinstance(info, str):
            try:
                info = json.loads(info)
            except json.JSONDecodeError:
                info = {"raw": info}
        infotexts = [str(t) for t in info.get("infotexts") or []]
        return Txt2ImgResult(images, info, infotexts)


def dnp_script_args(captioner: str, dns_scale: float, show_dns: bool = True) -> dict[str, Any]:
    return {
        SCRIPT_KEY: {"args": [{"enabled": True, "captioner": captioner, "dns_scale": dns_scale, "show_dns": show_dns}]}
    }
