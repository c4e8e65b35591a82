"""A fake WebUI HTTP server for the benchmark and client tests (stdlib only, draws deterministic images)."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dnp_ext.bench import pnginfo
from dnp_ext.bench.client import SCRIPT_KEY

# ---- images -----------------------------------------------------------------------------------------------


def make_png(seed_text: str, size: int = 64) -> bytes:
    """A deterministic RGB PNG whose colours depend on seed_text (stdlib only)."""
    h = hashlib.sha256(seed_text.encode()).digest()
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter type 0
        for x in range(size):
            k = (x * 7 + y * 13) % len(h)
            row += bytes(((h[k] + x * 3) % 256, (h[(k + 1) % 32] + y * 3) % 256, (h[(k + 2) % 32] + x + y) % 256))
        rows.append(bytes(row))
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        pnginfo.PNG_SIG
        + pnginfo._chunk(b"IHDR", ihdr)
        + pnginfo._chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + pnginfo._chunk(b"IEND", b"")
    )


# ---- fake WebUI -------------------------------------------------------------------------------------------


class FakeWebUI:
    """Answers /sdapi/v1/txt2img like the WebUI with the DNP script: auto-DNP's caption is
    "caption of <prompt>", appended to the user's negative; with show_dns the DNS image comes last.

    fail_after: answer HTTP 500 once that many images have been made (to simulate a crash).
    """

    def __init__(
        self,
        auth: str | None = None,
        fail_after: int | None = None,
        embed_infotext: bool = True,
        grid_first: bool = False,
    ):
        self.auth, self.fail_after, self.embed_infotext = auth, fail_after, embed_infotext
        self.grid_first = grid_first
        self.requests: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    @staticmethod
    def caption_for(prompt: str, seed: int) -> str:
        return f"caption of {prompt}, seed {seed}"

    def __enter__(self) -> FakeWebUI:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if not fake.auth:
                    return True
                want = "Basic " + base64.b64encode(fake.auth.encode()).decode()
                if self.headers.get("Authorization") == want:
                    return True
                self._send(401, {"detail": "Incorrect username or password"})
                return False

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                if self.path == "/sdapi/v1/options":
                    self._send(200, {"sd_model_checkpoint": "fake-model.safetensors"})
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                if not self._authorised():
                    return
                if self.path != "/sdapi/v1/txt2img":
                    self._send(404, {"detail": "Not Found"})
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if fake.fail_after is not None and len(fake.requests) >= fake.fail_after:
                    self._send(500, {"error": "simulated crash"})
                    return
                fake.requests.append(body)
                self._send(200, fake.answer(body))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt, neg, seed = body["prompt"], body.get("negative_prompt", ""), int(body["seed"])
        script = (body.get("alwayson_scripts") or {}).get(SCRIPT_KEY, {}).get("args", [{}])[0]
        dnp = bool(script.get("enabled"))
        extra = ""
        if dnp:
            caption = self.caption_for(prompt, seed)
            neg = f"{neg}, {caption}" if neg else caption
            extra = (
                f', DNP: "auto, per image, append", DNP captioner: {script.get("captioner")}, '
                f"DNS scale: {script.get('dns_scale')}, DNP caption: {_quote(caption)}"
            )
        params = (
            f"Steps: {body.get('steps')}, Sampler: {body.get('sampler_name', 'Euler')}, "
            f"CFG scale: {body.get('cfg_scale')}, Seed: {seed}, Size: {body.get('width')}x{body.get('height')}"
        )
        info = f"{prompt}\nNegative prompt: {neg}\n{params}{extra}" if neg else f"{prompt}\n{params}{extra}"
        image = make_png(f"{prompt}|{neg}|{seed}")
        if self.embed_infotext:
            image = pnginfo.add_text(image, "parameters", info)
        images, infotexts = [image], [info]
        if dnp and script.get("show_dns"):
            images.append(make_png(f"dns|{prompt}|{seed}"))  # without infotext, to test that we add it
            infotexts.append(f"\nNegative prompt: {prompt}\n{params}, DNP: DNS image")
        first = 0
        if self.grid_first:  # as the WebUI does when it returns a grid
            images, infotexts, first = [make_png("grid"), *images], [info, *infotexts], 1
        meta = {"infotexts": infotexts, "all_negative_prompts": [neg], "seed": seed, "index_of_first_image": first}
        return {
            "images": [base64.b64encode(i).decode() for i in images],
            "parameters": body,
            "info": json.dumps(meta),
        }


def _quote(text: str) -> str:
    # how the WebUI writes an infotext value
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",\n:") else text
