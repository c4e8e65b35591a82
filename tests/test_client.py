"""python -m dnp_ext.client end to end against a fake WebUI (no WebUI, no model)."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dnp_ext.bench import pnginfo
from dnp_ext.client import SCRIPT_KEY, as_png, main, negative_of, seed_of, server_message
from tests.fake_webui_server import make_png

DETAIL_401 = "Incorrect username or password"


def _caption(prompt: str, seed: int) -> str:
    return f"a dull grey blur unlike {prompt}, {seed}"


def _params(body: dict[str, Any], seed: int) -> str:
    return f"Steps: {body.get('steps', 20)}, Sampler: Euler, Seed: {seed}, Size: 64x64"


class FakeWebUI:
    """/dnp/v1/suggest and /sdapi/v1/txt2img as the WebUI with sd-webui-dnp answers them.

    txt2img embeds the infotext in the even images only (the client must add it to the others), returns a
    grid first when grid=True, and the DNS images (infotext "DNP: DNS image") last with show_dns.
    """

    def __init__(self, auth: str | None = None, grid: bool = False, routes: tuple[str, ...] = ()) -> None:
        self.auth, self.grid = auth, grid
        self.routes = routes or ("/dnp/v1/suggest", "/sdapi/v1/txt2img")
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.responses: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                fake.requests.append((self.path, dict(self.headers), body))
                code, answer = fake.answer(self.path, self.headers.get("Authorization"), body)
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeWebUI:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, authorization: str | None, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.auth and authorization != "Basic " + base64.b64encode(self.auth.encode()).decode():
            # A1111's HTTPException answer
            return 401, {"error": "HTTPException", "detail": DETAIL_401, "body": "", "errors": f"401: {DETAIL_401}"}
        if path not in self.routes:
            return 404, {"detail": "Not Found"}
        if body.get("steps") == 0:  # FastAPI's own validation answer
            return 422, {"detail": [{"loc": ["body", "steps"], "msg": "must be >= 1", "type": "value_error"}]}
        script = (body.get("alwayson_scripts") or {}).get(SCRIPT_KEY, {}).get("args", [{}])[0]
        if float(body.get("dns_scale", script.get("dns_scale", 7.5))) < 0:
            msg = "Diffusion-Negative Prompting: 'dns_scale' must be between 0 and 30, not -1.0"
            return 422, {"error": "DnpError", "detail": msg, "body": "", "errors": f"422: {msg}"}
        resp = self.suggest(body) if path.startswith("/dnp/") else self.txt2img(body, script)
        self.responses.append(resp)
        return 200, resp

    def suggest(self, body: dict[str, Any]) -> dict[str, Any]:
        seed, prompt, neg = body.get("seed", 100), body["prompt"], body.get("negative_prompt", "")
        seeds = [seed + i for i in range(body.get("batch_size", 1))]
        captions = [_caption(prompt, s) for s in seeds]
        texts = [f"\nNegative prompt: {prompt}\n{_params(body, s)}, DNP: DNS image, DNS scale: 7.5" for s in seeds]
        images = [pnginfo.add_text(make_png(f"dns|{s}", 8), "parameters", t) for s, t in zip(seeds, texts)]
        return {
            "captions": captions,
            "negative_prompts": [f"{neg}, {c}" if neg else c for c in captions],
            "images": [base64.b64encode(im).decode() for im in images],
            "seeds": seeds,
            "subseeds": seeds,
            "info": {"infotexts": texts},
        }

    def txt2img(self, body: dict[str, Any], script: dict[str, Any]) -> dict[str, Any]:
        seed, prompt, neg = body.get("seed", 100), body["prompt"], body.get("negative_prompt", "")
        seeds = [seed + i for i in range(body.get("batch_size", 1) * body.get("n_iter", 1))]
        images, texts = [], []
        for i, s in enumerate(seeds):
            n = f"{neg}, {_caption(prompt, s)}" if neg else _caption(prompt, s)
            texts.append(f'{prompt}\nNegative prompt: {n}\n{_params(body, s)}, DNP: "auto, per image, append"')
            png = make_png(f"{prompt}|{n}|{s}", 8)
            images.append(pnginfo.add_text(png, "parameters", texts[-1]) if i % 2 == 0 else png)
        if script.get("show_dns"):
            for s in seeds if script.get("per_image", True) else seeds[:1]:
                images.append(make_png(f"dns|{s}", 8))
                texts.append(f"\nNegative prompt: {prompt}\n{_params(body, s)}, DNP: DNS image, DNS scale: 7.5")
        first = 0
        if self.grid:
            images, texts, first = [make_png("grid", 8), *images], [texts[0], *texts], 1
        info = {"infotexts": texts, "all_seeds": seeds, "index_of_first_image": first}
        return {
            "images": [base64.b64encode(im).decode() for im in images],
            "parameters": body,
            "info": json.dumps(info),
        }


@pytest.fixture
def fake() -> Iterator[FakeWebUI]:
    with FakeWebUI() as f:
        yield f


def _png_text(path: Path) -> str:
    return pnginfo.read_text(path.read_bytes())["parameters"]


def _b64(s: str) -> bytes:
    return base64.b64decode(s)


def _pixels(png: bytes) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        return im.convert("RGB").tobytes()


# ---- suggest -------------------------------------------------------------------------------------------


def test_suggest_saves_dns_images_as_returned(fake: FakeWebUI, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["suggest", "a cat", "--url", fake.url, "--seed", "5", "--batch-size", "2", "-n", "ugly", "--out"]
    assert main([*argv, str(tmp_path)]) == 0
    path, headers, body = fake.requests[0]
    # only what the user gave: the server fills in its defaults
    assert path == "/dnp/v1/suggest" and body == {
        "prompt": "a cat",
        "negative_prompt": "ugly",
        "seed": 5,
        "batch_size": 2,
    }
    assert "Authorization" not in headers
    resp = fake.responses[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00001-5-dns.png", "00002-6-dns.png"]
    for name, b64 in zip(["00001-5-dns.png", "00002-6-dns.png"], resp["images"]):
        assert (tmp_path / name).read_bytes() == _b64(b64)  # byte for byte: they carry the infotext
    assert "DNP: DNS image" in _png_text(tmp_path / "00001-5-dns.png")
    out = capsys.readouterr().out
    for caption, negative in zip(resp["captions"], resp["negative_prompts"]):
        assert caption in out and f"negative:  {negative}" in out
    assert negative.startswith("ugly, ")


def test_suggest_sends_every_option(fake: FakeWebUI, tmp_path: Path) -> None:
    argv = "suggest p --seed 1 --subseed 2 --subseed-strength 0.5 --width 64 --height 72 --steps 3 --sampler Euler"
    argv += (
        " --scheduler Karras --cfg-scale 6 --batch-size 1 --dns-scale 5 --dns-steps 2 --captioner blip --merge replace"
    )
    assert main([*argv.split(), "--url", fake.url, "--out", str(tmp_path)]) == 0
    assert fake.requests[0][2] == {
        "prompt": "p", "seed": 1, "subseed": 2, "subseed_strength": 0.5, "width": 64, "height": 72, "steps": 3,
        "sampler_name": "Euler", "scheduler": "Karras", "cfg_scale": 6.0, "batch_size": 1, "dns_scale": 5.0,
        "dns_steps": 2, "captioner": "blip", "merge": "replace",
    }  # fmt: skip


def test_suggest_json(fake: FakeWebUI, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["suggest", "a dog", "--url", fake.url, "--json", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)  # stdout is the JSON alone
    expected = {k: v for k, v in fake.responses[0].items() if k != "images"}
    assert printed == expected
    assert str(tmp_path / "00001-100-dns.png") in captured.err


# ---- generate ------------------------------------------------------------------------------------------


def test_generate_saves_images_with_infotext_and_dns(
    fake: FakeWebUI, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["generate", "a cat", "-n", "blurry", "--seed", "10", "--batch-size", "2", "--steps", "4"]
    argv += ["--captioner", "blip", "--dns-scale", "5", "--show-dns", "--url", fake.url, "--out", str(tmp_path)]
    assert main(argv) == 0
    path, _, body = fake.requests[0]
    assert path == "/sdapi/v1/txt2img"
    assert body["prompt"] == "a cat" and body["negative_prompt"] == "blurry" and body["batch_size"] == 2
    assert body["alwayson_scripts"] == {
        SCRIPT_KEY: {"args": [{"enabled": True, "captioner": "blip", "dns_scale": 5.0, "show_dns": True}]}
    }
    resp = fake.responses[0]
    texts, images = json.loads(resp["info"])["infotexts"], resp["images"]
    names = ["00001-10.png", "00002-11.png", "00001-10-dns.png", "00002-11-dns.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    for name, text in zip(names, texts):
        assert _png_text(tmp_path / name) == text
    # an image that had its infotext already is kept as returned
    assert (tmp_path / names[0]).read_bytes() == _b64(images[0])
    assert (tmp_path / names[1]).read_bytes() != _b64(images[1])
    assert _pixels((tmp_path / names[1]).read_bytes()) == _pixels(_b64(images[1]))
    out = capsys.readouterr().out
    assert f"negative: blurry, {_caption('a cat', 10)}" in out and f"negative: blurry, {_caption('a cat', 11)}" in out


def test_generate_skips_grid_shares_dns_and_never_overwrites(tmp_path: Path) -> None:
    with FakeWebUI(grid=True) as fake:
        argv = ["generate", "a cat", "--seed", "7", "--batch-size", "2", "--no-per-image", "--show-dns"]
        assert main([*argv, "--url", fake.url, "--out", str(tmp_path)]) == 0
        assert fake.requests[0][2]["alwayson_scripts"][SCRIPT_KEY]["args"][0]["per_image"] is False
        assert sorted(p.name for p in tmp_path.iterdir()) == ["00001-7-dns.png", "00001-7.png", "00002-8.png"]
        assert main(["generate", "a cat", "--seed", "7", "--url", fake.url, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "00003-7.png").exists() and len(list(tmp_path.iterdir())) == 4
    assert pnginfo.read_text((tmp_path / "00001-7.png").read_bytes())["parameters"].startswith("a cat\n")


def test_generate_extra_fields_and_n_iter(fake: FakeWebUI, tmp_path: Path) -> None:
    extra = '{"enable_hr": false, "override_settings": {"CLIP_stop_at_last_layers": 2}}'
    assert main(["generate", "x", "--n-iter", "2", "--extra", extra, "--url", fake.url, "--out", str(tmp_path)]) == 0
    body = fake.requests[0][2]
    assert body["n_iter"] == 2 and body["override_settings"] == {"CLIP_stop_at_last_layers": 2}
    assert body["alwayson_scripts"] == {SCRIPT_KEY: {"args": [{"enabled": True}]}}
    assert len(list(tmp_path.glob("*.png"))) == 2


# ---- errors --------------------------------------------------------------------------------------------


def test_auth_header_and_401(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with FakeWebUI(auth="me:s3cret") as fake:
        assert main(["generate", "a cat", "--url", fake.url, "--out", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert "HTTP 401" in err and DETAIL_401 in err and "--auth" in err
        assert err.count(DETAIL_401) == 1  # "errors" repeats "detail": shown once
        assert not list(tmp_path.glob("*.png"))
        assert main(["suggest", "a cat", "--auth", "me:s3cret", "--url", fake.url, "--out", str(tmp_path)]) == 0
    assert fake.requests[-1][1]["Authorization"] == "Basic " + base64.b64encode(b"me:s3cret").decode()


@pytest.mark.parametrize("command", ["suggest", "generate"])
def test_422_shows_the_server_message(
    fake: FakeWebUI, tmp_path: Path, capsys: pytest.CaptureFixture, command: str
) -> None:
    assert main([command, "a cat", "--dns-scale", "-1", "--url", fake.url, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "HTTP 422" in err and "'dns_scale' must be between 0 and 30, not -1.0" in err
    assert main([command, "a cat", "--steps", "0", "--url", fake.url, "--out", str(tmp_path)]) == 1
    assert "body.steps: must be >= 1" in capsys.readouterr().err


def test_404_on_suggest_hints_at_the_extension(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with FakeWebUI(routes=("/sdapi/v1/txt2img",)) as fake:
        assert main(["suggest", "a cat", "--url", fake.url, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "sd-webui-dnp installed" in err


def test_connection_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["generate", "a cat", "--url", f"http://127.0.0.1:{port}", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "refused" in err.lower() and "is the WebUI running with --api" in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["suggest"],
        ["suggest", "p", "--auth", "nocolon"],
        ["generate", "p", "--merge", "x"],
        ["generate", "p", "--extra", "[1]"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "usage:" in capsys.readouterr().err


# ---- helpers -------------------------------------------------------------------------------------------


def test_server_message_shapes() -> None:
    assert server_message(json.dumps({"detail": "bad", "errors": "422: bad"})) == "bad"
    assert server_message(json.dumps({"error": "RuntimeError", "detail": "", "errors": "boom"})) == "boom"
    assert (
        server_message(json.dumps({"detail": [{"loc": ["body", "seed"], "msg": "not an int"}]}))
        == "body.seed: not an int"
    )
    assert server_message("<html>Bad Gateway</html>") == "<html>Bad Gateway</html>"


def test_infotext_parsing() -> None:
    text = "a cat\nNegative prompt: blurry,\nlow quality\nSteps: 4, Seed: 42, Variation seed: 3, DNP: auto"
    assert negative_of(text) == "blurry,\nlow quality" and seed_of(text) == 42
    assert negative_of("a cat\nSteps: 4, Seed: 1") == "" and seed_of("a cat") is None


def test_non_png_becomes_png_with_infotext() -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="JPEG")
    png = as_png(buf.getvalue(), "a cat\nSteps: 4, Seed: 1")
    assert pnginfo.is_png(png) and pnginfo.read_text(png)["parameters"] == "a cat\nSteps: 4, Seed: 1"
