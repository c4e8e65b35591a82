"""python -m dnp_ext.client: use a running WebUI with sd-webui-dnp from the command line.

  suggest   POST /dnp/v1/suggest: DNS images, their captions and the suggested negative prompts
  generate  POST /sdapi/v1/txt2img with auto-DNP: images with their infotext, optionally the DNS images

Also the stdlib HTTP client that dnp_ext.bench uses. See docs/CLIENT.md.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import API_KEY
from .bench import pnginfo

SCRIPT_KEY = API_KEY  # alwayson_scripts key of the DNP script
DEFAULT_URL = "http://127.0.0.1:7860"
SUGGEST_PATH = "/dnp/v1/suggest"
TXT2IMG_PATH = "/sdapi/v1/txt2img"
DNS_MARK = "DNP: DNS image"  # in a DNS image's infotext (dnp_ext.infotext.DNS_IMAGE)

# ---- HTTP ---------------------------------------------------------------------------------------------


class ClientError(RuntimeError):
    """status: HTTP status (None: no answer); message: the server's own words; refused: nothing listens."""

    def __init__(self, text: str, status: int | None = None, message: str = "", refused: bool = False) -> None:
        super().__init__(text)
        self.status, self.message, self.refused = status, message or text, refused


class WebUIError(ClientError):
    """An answer from the WebUI that retrying will not fix (4xx: bad arguments, missing route, auth)."""


class WebUIUnavailable(ClientError):
    """The WebUI could not be reached or failed (5xx); retrying may help."""


def server_message(body: str) -> str:
    """The text of a WebUI error: A1111 answers {"detail", "errors", ...}, FastAPI validation {"detail": [...]}."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return body.strip()[:2000]
    detail, errors = data.get("detail"), data.get("errors")
    parts: list[str] = []
    if isinstance(detail, list):
        for d in detail:
            loc = ".".join(str(x) for x in d.get("loc", [])) if isinstance(d, dict) else ""
            parts.append(f"{loc}: {d.get('msg')}" if isinstance(d, dict) else str(d))
    elif detail:
        parts.append(str(detail))
    if errors and not any(p in str(errors) for p in parts):  # "errors" often repeats detail as "401: ..."
        parts.append(str(errors))
    return "; ".join(parts) or body.strip()[:2000]


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
        last: ClientError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.retry_wait)
            req = urllib.request.Request(url, data=data, method=method, headers=self._headers())
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    text = resp.read().decode()
            except urllib.error.HTTPError as e:
                msg = server_message(e.read().decode(errors="replace"))
                err = WebUIError if e.code < 500 else WebUIUnavailable
                last = err(f"{method} {path}: HTTP {e.code}: {msg}", status=e.code, message=msg)
                if e.code < 500:
                    raise last from e
                continue
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                reason = e.reason if isinstance(e, urllib.error.URLError) else e
                refused = isinstance(reason, ConnectionRefusedError)
                last = WebUIUnavailable(f"{method} {path}: cannot reach {self.base_url}: {reason}", refused=refused)
                continue
            try:
                return json.loads(text or "null")
            except ValueError as e:
                raise WebUIError(f"{method} {path}: answer is not JSON: {text[:200]!r}") from e
        assert last is not None
        raise last

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def current_model(self) -> str | None:
        try:
            opts = self.get("/sdapi/v1/options")
        except ClientError:
            return None
        return opts.get("sd_model_checkpoint") if isinstance(opts, dict) else None

    def txt2img(self, payload: dict[str, Any]) -> Txt2ImgResult:
        resp = self.request("POST", TXT2IMG_PATH, payload)
        images = [base64.b64decode(s.split(",", 1)[-1]) for s in resp.get("images") or []]
        info = resp.get("info") or {}
        if isinstance(info, str):  # the WebUI sends info as a JSON string
            try:
                info = json.loads(info)
            except json.JSONDecodeError:
                info = {"raw": info}
        infotexts = [str(t) for t in info.get("infotexts") or []]
        return Txt2ImgResult(images, info, infotexts)

    def suggest(self, body: dict[str, Any]) -> dict[str, Any]:
        resp = self.request("POST", SUGGEST_PATH, body)
        if not isinstance(resp, dict):
            raise WebUIError(f"POST {SUGGEST_PATH}: unexpected answer {str(resp)[:200]!r}")
        return resp


# ---- files ---------------------------------------------------------------------------------------------


def as_png(data: bytes, infotext: str | None) -> bytes:
    """The image as PNG with infotext in "parameters"; a PNG that has it already is kept byte for byte."""
    if not pnginfo.is_png(data):  # the WebUI answers in its samples_format
        import io

        from PIL import Image

        buf = io.BytesIO()
        with Image.open(io.BytesIO(data)) as im:
            im.save(buf, format="PNG")
        data = buf.getvalue()
    if infotext and "parameters" not in pnginfo.read_text(data):
        data = pnginfo.add_text(data, "parameters", infotext)
    return data


def seed_of(infotext: str) -> int | None:
    m = re.search(r"(?:^|, )Seed: (-?\d+)", infotext.rsplit("\n", 1)[-1])
    return int(m.group(1)) if m else None


def negative_of(infotext: str) -> str:
    """The text after "Negative prompt:" up to the last line (the parameters), as the WebUI writes it."""
    lines = infotext.split("\n")
    for i, line in enumerate(lines[:-1]):
        if line.startswith("Negative prompt:"):
            return "\n".join([line[len("Negative prompt:") :], *lines[i + 1 : -1]]).strip()
    return ""


def next_number(out: Path) -> int:
    """Numbered like the WebUI's outputs (00001-<seed>.png), so a rerun never overwrites."""
    nums = [int(m.group(1)) for f in out.glob("*.png") if (m := re.match(r"(\d{5,})-", f.name))]
    return max(nums, default=0) + 1


# ---- commands ------------------------------------------------------------------------------------------

# argparse dest -> request key; both commands send only what the user gave (server defaults otherwise)
GEN_KEYS = ["prompt", "negative_prompt", "seed", "subseed", "subseed_strength", "width", "height", "steps"]
GEN_KEYS += ["sampler_name", "scheduler", "cfg_scale", "batch_size"]
SUGGEST_KEYS = [*GEN_KEYS, "dns_scale", "dns_steps", "captioner", "merge"]
SCRIPT_KEYS = ["captioner", "dns_scale", "dns_steps", "merge", "per_image", "show_dns"]


def _given(a: argparse.Namespace, keys: Sequence[str]) -> dict[str, Any]:
    return {k: v for k in keys if (v := getattr(a, k, None)) is not None}


def _without_images(resp: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resp.items() if k != "images"}


def _at(items: Any, i: int, default: Any = None) -> Any:
    return items[i] if isinstance(items, list) and i < len(items) else default


def cmd_suggest(a: argparse.Namespace, client: WebUIClient) -> int:
    resp = client.suggest(_given(a, SUGGEST_KEYS))
    info = resp.get("info") if isinstance(resp.get("info"), dict) else {}
    captions, negatives, seeds = resp.get("captions"), resp.get("negative_prompts"), resp.get("seeds")
    images = resp.get("images") or []
    a.out.mkdir(parents=True, exist_ok=True)
    n = next_number(a.out)
    report = sys.stderr if a.json else sys.stdout
    for i in range(max(len(images), len(captions or []))):
        seed = _at(seeds, i, i)
        print(f"seed {seed}", file=report)
        if i < len(images):
            path = a.out / f"{n + i:05d}-{seed}-dns.png"
            path.write_bytes(as_png(base64.b64decode(images[i].split(",", 1)[-1]), _at(info.get("infotexts"), i)))
            print(f"  DNS image: {path}", file=report)
        print(f"  caption:   {_at(captions, i, '')}\n  negative:  {_at(negatives, i, '')}", file=report)
    if a.json:
        print(json.dumps(_without_images(resp), indent=2, ensure_ascii=False))
    return 0


def cmd_generate(a: argparse.Namespace, client: WebUIClient) -> int:
    payload = {**a.extra, **_given(a, [*GEN_KEYS, "n_iter"])}
    payload["alwayson_scripts"] = {
        **payload.get("alwayson_scripts", {}),
        SCRIPT_KEY: {"args": [{"enabled": True, **_given(a, SCRIPT_KEYS)}]},
    }
    res = client.txt2img(payload)
    first = int(res.info.get("index_of_first_image") or 0)  # a grid comes first; it is not saved
    seeds = res.info.get("all_seeds") or []
    n_gen = len(seeds) or len(res.images) - first
    a.out.mkdir(parents=True, exist_ok=True)
    n = next_number(a.out)
    number_of_seed: dict[int | None, int] = {}
    report = sys.stderr if a.json else sys.stdout
    for j, data in enumerate(res.images[first:]):
        text = _at(res.infotexts, first + j, "")
        dns = DNS_MARK in text if text else j >= n_gen
        seed = seed_of(text) if text else None
        if seed is None:
            seed = _at(seeds, j if not dns else j - n_gen)
        if dns:  # share the number of the image made with that seed
            num = number_of_seed.get(seed)
            if num is None:
                num, n = n, n + 1
            path = a.out / f"{num:05d}-{seed}-dns.png"
        else:
            number_of_seed.setdefault(seed, n)
            path, n = a.out / f"{n:05d}-{seed}.png", n + 1
        path.write_bytes(as_png(data, text))
        print(f"{path}{'  (DNS image)' if dns else ''}", file=report)
        if not dns:
            print(f"  negative: {negative_of(text)}", file=report)
    if a.json:
        print(json.dumps({"info": res.info, "images": len(res.images)}, indent=2, ensure_ascii=False))
    return 0


# ---- command line --------------------------------------------------------------------------------------


def _auth(value: str) -> str:
    if ":" not in value:
        raise argparse.ArgumentTypeError("expected USER:PASS")
    return value


def _json_object(value: str) -> dict[str, Any]:
    try:
        data = json.loads(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from e
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return data


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("WebUI")
    g.add_argument("--url", default=DEFAULT_URL, help="base URL of the WebUI (started with --api)")
    g.add_argument("--auth", type=_auth, metavar="USER:PASS", help="credentials of the WebUI's --api-auth")
    g.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for an answer")
    g = common.add_argument_group("output")
    g.add_argument("--out", type=Path, default=Path("dnp-out"), help="folder for the PNGs")
    g.add_argument("--json", action="store_true", help="print the response (without images) as JSON")
    g = common.add_argument_group("generation (server defaults when left out)")
    g.add_argument("prompt")
    g.add_argument("-n", "--negative-prompt", dest="negative_prompt")
    g.add_argument("--seed", type=int)
    g.add_argument("--subseed", type=int)
    g.add_argument("--subseed-strength", type=float)
    g.add_argument("--width", type=int)
    g.add_argument("--height", type=int)
    g.add_argument("--steps", type=int)
    g.add_argument("--sampler", dest="sampler_name")
    g.add_argument("--scheduler")
    g.add_argument("--cfg-scale", type=float)
    g.add_argument("--batch-size", type=int)
    g = common.add_argument_group("DNP")
    g.add_argument("--captioner", choices=["blip2", "blip", "webui-blip"])
    g.add_argument("--dns-scale", type=float, help="the paper's s (DNS runs at CFG scale s + 1)")
    g.add_argument("--dns-steps", type=int, help="steps of the DNS pass (0: the run's steps)")
    g.add_argument("--merge", choices=["append", "prepend", "replace"], help="how n* joins your negative")

    ap = argparse.ArgumentParser(prog="python -m dnp_ext.client", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("suggest", parents=[common], help="DNS images, captions and suggested negatives")
    gen = sub.add_parser("generate", parents=[common], help="txt2img with auto-DNP")
    gen.add_argument("--n-iter", type=int, help="batch count")
    gen.add_argument(
        "--per-image", action=argparse.BooleanOptionalAction, help="one DNS image per seed (server default: yes)"
    )
    gen.add_argument("--show-dns", action="store_true", default=None, help="save the DNS images too (*-dns.png)")
    gen.add_argument("--extra", type=_json_object, default={}, metavar="JSON", help="more txt2img fields")
    return ap


def describe(e: ClientError, url: str) -> str:
    """The error, with what to do about it."""
    if e.refused:
        return f"{e}\nnothing answers at {url}: is the WebUI running with --api (and is --url right)?"
    if e.status is None:
        hint = "raise --timeout" if "timed out" in str(e) else "is the WebUI running with --api?"
        return f"{e}\n{hint}"
    if e.status == 401:
        return f"{e}\ncheck --auth: it must be one of the WebUI's --api-auth USER:PASS pairs"
    if e.status == 404:
        dnp = SUGGEST_PATH in str(e)
        return f"{e}\n" + ("is sd-webui-dnp installed and the WebUI restarted?" if dnp else "is --api on?")
    return str(e)


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    client = WebUIClient(a.url, auth=a.auth, timeout=a.timeout, retries=0)
    try:
        return cmd_suggest(a, client) if a.command == "suggest" else cmd_generate(a, client)
    except ClientError as e:
        print(f"error: {describe(e, a.url)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
