"""Integration-test harness: starts a real Stable Diffusion WebUI with tiny random-weight models.

Enabled by SD_WEBUI_DIR (an AUTOMATIC1111 or a Forge install; its interpreter is SD_WEBUI_PYTHON, else
<SD_WEBUI_DIR>/venv/bin/python). Without it every test in tests/webui is skipped. `WebUI.host` says which
one runs ("a1111" | "forge"), for the tests that must know a host difference.

Each server gets its own --data-dir in a pytest tmp folder (config.json, outputs, caches, and the
extensions/ folder A1111 scans), so runs never touch the install or each other: the extension is a
symlink <data-dir>/extensions/sd-webui-dnp -> project root, and a reference server simply has no link.
Servers bind 127.0.0.1 on a free port, run offline on CPU with --api, and are stopped (whole process
group) at session end, also when tests fail. Logs are kept; a failing test's report gets their tail.

Only the stdlib, numpy, pillow and pytest are used here (this runs in the project's test venv); the
models are built by the WebUI's own interpreter (A1111: transformers 4.30, Forge: 4.46), since folders saved
by one transformers release may not load in another.

The tiny checkpoints come from tests/webui/fixtures.py (one per model family: sd1 for the whole suite, sdxl and
sd2-v for test_model_families.py). Forge's are big (0.6 GB for sd1, more for sdxl), because Forge builds its
text encoders and VAE at full size whatever the file says. They are deterministic, so they are built once and
kept in a cache folder keyed by a hash of everything they are made from (DNP_TEST_CACHE, default
~/.cache/sd-webui-dnp-tests; DNP_TEST_CACHE="" builds them into the pytest tmp folder every session instead).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DNP_SCRIPT_KEY = "diffusion-negative prompting"  # the alwayson_scripts key: the script's title, lower-cased
HERE = Path(__file__).resolve().parent
EXTENSION_DIRNAME = "sd-webui-dnp"
START_TIMEOUT_S = float(os.environ.get("SD_WEBUI_START_TIMEOUT", "240"))
REQUEST_TIMEOUT_S = float(os.environ.get("SD_WEBUI_REQUEST_TIMEOUT", "600"))
LOG_TAIL_LINES = 80
# Printed by A1111 (and Forge) once webui() has added the API and run the app_started callbacks.
STARTUP_BANNER = b"Startup time:"

# Settings written to each server's config.json before start. Live previews would load the
# "Approx NN" preview model on every call; they are a UI feature the API tests do not need.
DEFAULT_SETTINGS: dict[str, Any] = {"live_previews_enable": False}

# Prompt styles every server loads from <data-dir>/styles.csv (the WebUI reads it only at start):
# name -> (prompt, negative prompt); "{prompt}" in a style's prompt stands for the user's prompt.
TEST_STYLES: dict[str, tuple[str, str]] = {"dnp-test-style": ("an oil painting of {prompt}", "blurry")}


def _webui_dir() -> Path | None:
    value = os.environ.get("SD_WEBUI_DIR")
    return Path(value).expanduser().resolve() if value else None


def detect_host(webui_dir: Path) -> str:
    """'forge' for Stable Diffusion WebUI Forge (it has a modules_forge package), else 'a1111'."""
    return "forge" if (webui_dir / "modules_forge").is_dir() else "a1111"


def webui_python(webui_dir: Path) -> Path:
    value = os.environ.get("SD_WEBUI_PYTHON")
    return Path(value).expanduser() if value else webui_dir / "venv" / "bin" / "python"


SKIP_REASON = (
    "SD_WEBUI_DIR not set: set SD_WEBUI_DIR to an AUTOMATIC1111 or Forge folder to run the WebUI integration "
    "tests (bash tests/webui/setup.sh a1111 DIR makes one)"
)


# Forge builds SDXL's text encoders at full size: each tiny-SDXL Forge server takes ~7.5 GB of RAM, too much
# beside the main suite's servers, so on Forge the model-family tests run in a pytest run of their own
# (.ci/run does that after the first host's suite; SD2 is not a Forge fixture). Without DNP_TEST_FAMILIES_FULL=1
# they are deselected, not skipped, and the report header says so.
FAMILIES_MODULE = "test_model_families.py"
FORGE_FAMILIES_ENV = "DNP_TEST_FAMILIES_FULL"


def _forge_families_on() -> bool:
    return os.environ.get(FORGE_FAMILIES_ENV, "") not in ("", "0")


def pytest_report_header(config: pytest.Config) -> str | None:
    webui_dir = _webui_dir()
    if webui_dir is not None and detect_host(webui_dir) == "forge" and not _forge_families_on():
        return f"Forge: {FAMILIES_MODULE} (SDXL, ~7.5 GB RAM) deselected; {FORGE_FAMILIES_ENV}=1 runs it"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    webui_dir = _webui_dir()
    if webui_dir is None:
        skip = pytest.mark.skip(reason=SKIP_REASON)
        for item in items:
            if HERE in Path(str(item.path)).resolve().parents:
                item.add_marker(skip)
        return
    if detect_host(webui_dir) != "forge":
        return
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        family = callspec.params.get("family") if callspec else None
        in_module = Path(str(item.path)).name == FAMILIES_MODULE
        (drop if in_module and (not _forge_families_on() or family == "sd2-v") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# --------------------------------------------------------------------------------------------- HTTP


@dataclass
class HttpResult:
    status: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def decode_image(b64: str) -> np.ndarray:
    """A base64 PNG (as the WebUI API returns it) -> HxWxC uint8 array."""
    if "," in b64[:64]:  # tolerate data URLs
        b64 = b64.split(",", 1)[1]
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return np.asarray(image.convert("RGB")).copy()


@dataclass
class TinyModels:
    """Paths of the fixtures built for this session."""

    root: Path
    checkpoint: Path
    checkpoint_dir: Path
    # A1111 only: the ldm yaml and the CLIP text encoder folder (also the tokenizer the chunk counter uses).
    # Forge has neither: it builds the model from the weights and ships the tokenizer.
    config: Path | None
    text_encoder: Path | None
    family: str = "sd1"  # sd1 | sdxl | sd2-v (tests/webui/fixtures.py)
    # Builds the tiny captioners on first use (see `captioners`); None when there is nothing to build.
    captioner_builder: Callable[[], dict[str, Path]] | None = field(default=None, repr=False)
    _captioners: dict[str, Path] | None = field(default=None, repr=False)

    @property
    def captioners(self) -> dict[str, Path]:
        """name -> folder from tests/tiny_captioners.py (e.g. "blip2", "blip"), built lazily so that a
        broken captioner builder fails only the tests that need captioners."""
        if self._captioners is None:
            self._captioners = self.captioner_builder() if self.captioner_builder else {}
        return self._captioners


@dataclass
class WebUI:
    base_url: str
    host: str  # "a1111" | "forge"
    webui_dir: Path
    data_dir: Path
    log_path: Path
    models: TinyModels
    with_extension: bool
    process: subprocess.Popen[bytes]
    auth: tuple[str, str] | None = None  # sent by default when the server runs with --api-auth

    # ---- raw requests
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: tuple[str, str] | bool | None = True,
        timeout: float = REQUEST_TIMEOUT_S,
    ) -> HttpResult:
        """Any status comes back as an HttpResult (no exception for 4xx/5xx).

        auth=True uses the server's credentials (if any), False/None sends none, a tuple sends that.
        """
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        creds = self.auth if auth is True else (auth or None)
        if creds:
            token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return HttpResult(resp.status, resp.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as err:
            return HttpResult(err.code, err.read().decode("utf-8", "replace"))

    def get(self, path: str, **kwargs: Any) -> Any:
        return self._ok(self.request("GET", path, **kwargs), "GET", path)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        """POST json, assert 2xx, return the decoded json."""
        return self._ok(self.request("POST", path, {} if body is None else body, **kwargs), "POST", path)

    def _ok(self, res: HttpResult, method: str, path: str) -> Any:
        if not 200 <= res.status < 300:
            raise AssertionError(f"{method} {path} -> HTTP {res.status}: {res.text[:2000]}")
        return res.json() if res.text else None

    # ---- generation helpers
    def txt2img(self, **payload: Any) -> dict[str, Any]:
        """POST /sdapi/v1/txt2img with small defaults (64x64, 4 steps, Euler, fixed seed)."""
        body = {
            "prompt": "a photo of a cat",
            "negative_prompt": "",
            "width": 64,
            "height": 64,
            "steps": 4,
            "cfg_scale": 7.0,
            "sampler_name": "Euler",
            "seed": 1234,
            "batch_size": 1,
        }
        body.update(payload)
        return self.post("/sdapi/v1/txt2img", body)

    @staticmethod
    def decode_image(b64: str) -> np.ndarray:
        return decode_image(b64)

    @staticmethod
    def images(response: dict[str, Any]) -> list[np.ndarray]:
        """Every image of an API response, in order (grid first if the server returned one)."""
        return [decode_image(b64) for b64 in response.get("images", [])]

    @staticmethod
    def info(response: dict[str, Any]) -> dict[str, Any]:
        return json.loads(response["info"])

    def set_options(self, **options: Any) -> None:
        self.post("/sdapi/v1/options", options)

    def get_options(self) -> dict[str, Any]:
        """The server's settings, as GET /sdapi/v1/options gives them on A1111.

        Forge's GET /sdapi/v1/options lists no extension's settings (ControlNet's own included): its answer
        model is built when the built-in ControlNet imports the API module while scripts load, before any
        extension has registered a setting. POST still sets them. There the extensions' settings are read from
        /internal/sysinfo's "Config", the same opts.data that the A1111 route answers from.
        """
        options = self.get("/sdapi/v1/options")
        if self.host == "forge":
            config = self.get("/internal/sysinfo").get("Config")
            assert isinstance(config, dict), f"/internal/sysinfo has no Config: {str(config)[:300]}"
            options = {**config, **options}
        return options

    def use_tiny_captioners(self) -> None:
        """Point the extension's captioner settings at the tiny captioners built for this session."""
        mapping = {"blip2": "dnp_blip2_model", "blip": "dnp_blip_model"}
        options = {
            opt: str(self.models.captioners[name]) for name, opt in mapping.items() if name in self.models.captioners
        }
        if not options:
            pytest.skip("no tiny captioners were built (tests/tiny_captioners.py missing or empty)")
        self.set_options(**options)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            return f"(no log: {err})"
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None


# ------------------------------------------------------------------------------------------ fixtures


@dataclass
class Install:
    dir: Path
    python: Path
    host: str


_RUNNING: list[WebUI] = []


@pytest.fixture(scope="session")
def webui_install() -> Install:
    webui_dir = _webui_dir()
    if webui_dir is None:
        pytest.skip(SKIP_REASON)
    if not (webui_dir / "launch.py").is_file():
        pytest.fail(f"SD_WEBUI_DIR={webui_dir} has no launch.py", pytrace=False)
    python = webui_python(webui_dir)
    if not python.exists():
        pytest.fail(f"WebUI interpreter {python} not found (set SD_WEBUI_PYTHON)", pytrace=False)
    return Install(webui_dir, python, detect_host(webui_dir))


def _run_builder(install: Install, args: list[str], what: str, log: Path) -> str:
    """Run a fixture builder with the WebUI's interpreter from the project root; return its stdout."""
    env = _server_env()
    env["SD_WEBUI_DIR"] = str(install.dir)
    with log.open("wb") as errfile:
        proc = subprocess.run(
            [str(install.python), *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=errfile,
            timeout=900,
            check=False,
        )
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        pytest.fail(f"building {what} failed (exit {proc.returncode}); stderr tail:\n{tail}", pytrace=False)
    return out


def _last_json_line(text: str) -> Any:
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(ValueError):
            return json.loads(line)
    return None


def _build_captioners(install: Install, outdir: Path, logdir: Path) -> dict[str, Path]:
    """Hook for the captioner team's tests/tiny_captioners.py.

    Contract: `python -m tests.tiny_captioners OUTDIR` (run with the WebUI's interpreter) builds the tiny
    captioner folders under OUTDIR and prints them, either as a JSON object {name: folder} on its last
    stdout line or as `name: folder` lines; failing both, every sub-folder of OUTDIR is name -> folder.
    """
    module = PROJECT_ROOT / "tests" / "tiny_captioners.py"
    if not module.is_file():
        return {}
    source = module.read_text(encoding="utf-8", errors="replace")
    if "__main__" not in source:
        # TODO(captioners): the module has no CLI yet; once it has `if __name__ == "__main__"` taking
        # OUTDIR, this hook builds it. Until then the captioner-dependent tests skip.
        return {}
    outdir.mkdir(parents=True, exist_ok=True)
    out = _run_builder(
        install, ["-m", "tests.tiny_captioners", str(outdir)], "tiny captioners", logdir / "tiny_captioners.log"
    )
    manifest = _last_json_line(out)
    if isinstance(manifest, dict):
        return {str(k): Path(v) for k, v in manifest.items() if isinstance(v, str)}
    listed = {}
    for line in out.splitlines():
        name, sep, path = line.partition(": ")
        if sep and name.strip().isidentifier() and Path(path.strip()).is_dir():
            listed[name.strip()] = Path(path.strip())
    return listed or {p.name: p for p in sorted(outdir.iterdir()) if p.is_dir()}


FAMILIES = ("sd1", "sdxl", "sd2-v")
# What each host's fixture builder makes (tests/webui/fixtures.py); a family a host lacks is skipped.
HOST_FAMILIES = {"a1111": ("sd1", "sdxl", "sd2-v"), "forge": ("sd1", "sdxl")}


def build_models(install: Install, family: str, root: Path, captioners: Callable[[], dict[str, Path]]) -> TinyModels:
    """The tiny checkpoint of a model family for this host (tests/webui/fixtures.py), from the fixture cache
    when it holds one built from the same inputs (Forge: its full-size text encoders make the file big)."""
    if family not in HOST_FAMILIES.get(install.host, ()):
        pytest.skip(f"no tiny {family} checkpoint for {install.host}")
    t0 = time.monotonic()
    cache = _cache_root() if install.host == "forge" else None
    if cache is None:
        manifest = _build_fixture(install, family, root / family, root / f"fixture-{family}.log")
    else:
        manifest = _cached_fixture(install, family, cache, root / f"fixture-{family}.log")
    sys.stderr.write(
        f"\n[webui harness] tiny {family} ready in {time.monotonic() - t0:.1f}s: {manifest['checkpoint']}\n"
    )
    return TinyModels(
        root=root,
        checkpoint=Path(manifest["checkpoint"]),
        checkpoint_dir=Path(manifest["checkpoint_dir"]),
        config=Path(manifest["config"]) if manifest.get("config") else None,
        text_encoder=Path(manifest["text_encoder"]) if manifest.get("text_encoder") else None,
        family=family,
        captioner_builder=captioners,
    )


@pytest.fixture(scope="session")
def tiny_models(webui_install: Install, tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Tiny SD1 checkpoint (+ yaml + CLIP text encoder on A1111), built for this session (captioners on first
    use). Forge's checkpoint comes from the fixture cache when it holds one built from the same inputs."""
    root = tmp_path_factory.mktemp("tiny-models")
    return build_models(webui_install, "sd1", root, lambda: _build_captioners(webui_install, root / "captioners", root))


@pytest.fixture(scope="session")
def family_models(
    webui_install: Install, tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], TinyModels]:
    """family -> its TinyModels (built once per session; captioners shared with the sd1 models)."""
    built: dict[str, TinyModels] = {"sd1": tiny_models}

    def get(family: str) -> TinyModels:
        if family not in built:
            root = tmp_path_factory.mktemp(f"tiny-{family}")
            built[family] = build_models(webui_install, family, root, lambda: tiny_models.captioners)
        return built[family]

    return get


def _cache_root() -> Path | None:
    value = os.environ.get("DNP_TEST_CACHE")
    if value is None:
        return Path.home() / ".cache" / "sd-webui-dnp-tests"
    return Path(value).expanduser() if value.strip() else None


# Forge files each family's bytes depend on (besides the builders and the Python packages).
FORGE_FIXTURE_INPUTS = {
    "sd1": ("backend/huggingface/runwayml/stable-diffusion-v1-5",),
    "sdxl": ("backend/huggingface/stabilityai/stable-diffusion-xl-base-1.0",),
}


def _fixture_key(install: Install, family: str) -> str:
    """Hash of what a cached fixture's bytes depend on: the family, the builders, the Forge configs and modules
    they build from, and the torch / transformers / safetensors releases of the host's interpreter."""
    h = hashlib.sha256(family.encode())
    for name in ("fixtures.py", "tiny_forge.py"):
        h.update((HERE / name).read_bytes())
    paths = [install.dir / "backend" / "nn" / "unet.py", install.dir / "backend" / "nn" / "vae.py"]
    for folder in FORGE_FIXTURE_INPUTS.get(family, ()):
        paths += sorted((install.dir / folder).glob("*/config.json"))
    for path in paths:
        h.update(str(path.relative_to(install.dir)).encode())
        h.update(path.read_bytes() if path.is_file() else b"-")
    site = sorted(install.python.parent.parent.glob("lib/python*/site-packages"))
    for package in ("torch", "transformers", "safetensors"):
        found = sorted(d.name for s in site for d in s.glob(f"{package}-*.dist-info"))
        h.update(repr(found).encode())
    return h.hexdigest()[:16]


def _cached_fixture(install: Install, family: str, cache: Path, log: Path) -> dict[str, Any]:
    """A fixture's manifest, from the cache or built now.

    A cache entry is a folder renamed into place only once it is complete, so a run that dies mid-build or
    a concurrent session never sees half a checkpoint; its checkpoints/ folder holds nothing but the
    checkpoint (it is the WebUI's --ckpt-dir, read-only for the WebUI).
    """
    entry = cache / f"tiny-{install.host}-{family}-{_fixture_key(install, family)}"
    manifest = _read_manifest(entry)
    if manifest is not None:
        return manifest
    cache.mkdir(parents=True, exist_ok=True)
    if entry.exists():  # an entry that lost its checkpoint (cleaned up by hand?): build it again
        shutil.rmtree(entry, ignore_errors=True)
    staging = cache / f".building-{entry.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _build_fixture(install, family, staging, log)
        with contextlib.suppress(OSError):  # a concurrent session got there first: keep its entry
            staging.rename(entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest = _read_manifest(entry)
    if manifest is None:
        pytest.fail(f"the tiny {family} checkpoint is missing from {entry}", pytrace=False)
    return manifest


def _read_manifest(outdir: Path) -> dict[str, Any] | None:
    """The builder's manifest with its paths re-rooted at outdir (a cache entry is built elsewhere, then
    renamed), or None when the folder has no complete fixture."""
    path = outdir / "fixture.json"
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text(encoding="utf-8"))
    built_in = Path(manifest["checkpoint"]).parents[1]
    for key in ("checkpoint", "checkpoint_dir", "config", "text_encoder"):
        if manifest.get(key):
            manifest[key] = str(outdir / Path(manifest[key]).relative_to(built_in))
    return manifest if Path(manifest["checkpoint"]).is_file() else None


def _build_fixture(install: Install, family: str, outdir: Path, log: Path) -> dict[str, Any]:
    out = _run_builder(
        install,
        [
            str(HERE / "fixtures.py"),
            family,
            "--host",
            install.host,
            "--out",
            str(outdir),
            "--webui-dir",
            str(install.dir),
        ],
        f"the tiny {family} checkpoint",
        log,
    )
    lines = out.strip().splitlines()
    manifest = _read_manifest(outdir)
    if not lines or manifest is None or Path(lines[-1]) != Path(manifest["checkpoint"]):
        pytest.fail(
            f"fixtures.py {family}: no checkpoint path on its last line / no manifest:\n{out[-2000:]}", pytrace=False
        )
    return manifest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_env(base: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    out = dict(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _server_env() -> dict[str, str]:
    env = dict(os.environ)
    # paths_internal appends $COMMANDLINE_ARGS to argv: a developer's own flags must not leak in.
    env.pop("COMMANDLINE_ARGS", None)
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "DO_NOT_TRACK": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            # 2 shared cores: one thread is faster under load and keeps results comparable across servers.
            "OMP_NUM_THREADS": os.environ.get("SD_WEBUI_THREADS", "1"),
            "MKL_NUM_THREADS": os.environ.get("SD_WEBUI_THREADS", "1"),
            "CUDA_VISIBLE_DEVICES": "",
        }
    )
    # The WebUI must not import this project's test-venv packages.
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    return env


def host_launch_args(host: str, *, port: int, data_dir: Path, models: TinyModels, webui_dir: Path) -> list[str]:
    if host not in ("a1111", "forge"):
        pytest.skip(f"WebUI host {host!r}: the harness has no launch flags for it")
    if host == "forge":
        # --always-cpu instead of --use-cpu all / --no-half / --precision full (it computes in fp32 on the CPU
        # anyway); the SD1.5 architecture comes from the checkpoint's weights, not a yaml. Gradio 4 serves
        # /file= only from allowed paths, which default to the data dir: without the install, the page's own
        # script.js, javascript/*.js and style.css answer 403 and the UI has no WebUI JavaScript.
        host_flags = ["--always-cpu", "--gradio-allowed-path", str(webui_dir)]
    else:
        host_flags = ["--use-cpu", "all", "--no-half", "--precision", "full"]
    return [
        "launch.py",
        "--skip-prepare-environment",
        "--skip-torch-cuda-test",
        "--skip-python-version-check",
        "--skip-version-check",
        *host_flags,
        "--api",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--ckpt-dir",
        str(models.checkpoint_dir),
        "--no-download-sd-model",
        "--disable-console-progressbars",
        "--enable-insecure-extension-access",
    ]


@contextlib.contextmanager
def start_webui(
    install: Install,
    models: TinyModels,
    workdir: Path,
    *,
    with_extension: bool = True,
    extra_args: list[str] | None = None,
    settings: dict[str, Any] | None = None,
    auth: tuple[str, str] | None = None,
    name: str = "webui",
    styles: dict[str, tuple[str, str]] | None = None,
    env: dict[str, str | None] | None = None,
) -> Iterator[WebUI]:
    """Start a WebUI server, wait until it serves /sdapi/v1/loras, yield it, then stop it.

    env: changes to the server's environment (None removes a variable), e.g. HF_ENDPOINT for a local Hub.

    auth=("user", "pass") starts it with --api-auth user:pass and makes the helpers send those creds.
    styles: the prompt styles it loads (default TEST_STYLES).
    """
    data_dir = workdir / f"{name}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "config.json").write_text(json.dumps({**DEFAULT_SETTINGS, **(settings or {})}))
    _write_styles(data_dir / "styles.csv", TEST_STYLES if styles is None else styles)
    link = data_dir / "extensions" / EXTENSION_DIRNAME
    if with_extension:
        link.parent.mkdir(exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(PROJECT_ROOT, target_is_directory=True)
    args = list(extra_args or [])
    if auth is not None:
        args += ["--api-auth", f"{auth[0]}:{auth[1]}"]

    log_path = workdir / f"{name}.log"
    server: WebUI | None = None
    try:
        for attempt in range(3):
            port = _free_port()
            cmd = [
                str(install.python),
                *host_launch_args(install.host, port=port, data_dir=data_dir, models=models, webui_dir=install.dir),
                *args,
            ]
            with log_path.open("ab") as log:
                log_offset = log.tell()
                log.write(f"\n===== attempt {attempt + 1}: {' '.join(cmd)}\n".encode())
                log.flush()
                proc = subprocess.Popen(
                    cmd,
                    cwd=install.dir,
                    env=_with_env(_server_env(), env or {}),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: teardown kills everything it spawned
                )
            server = WebUI(
                base_url=f"http://127.0.0.1:{port}",
                host=install.host,
                webui_dir=install.dir,
                data_dir=data_dir,
                log_path=log_path,
                models=models,
                with_extension=with_extension,
                process=proc,
                auth=auth,
            )
            _RUNNING.append(server)
            t0 = time.monotonic()
            if _wait_ready(server, log_offset):
                sys.stderr.write(
                    f"\n[webui harness] {name} ready in {time.monotonic() - t0:.1f}s at {server.base_url}\n"
                )
                break
            text = log_path.read_text(errors="replace")
            _stop(server)
            if "address already in use" in text.lower() and attempt < 2:
                continue  # lost the free-port race: try another port
            pytest.fail(f"{name} did not start; log {log_path} tail:\n{server.log_tail()}", pytrace=False)
        assert server is not None
        yield server
    finally:
        if server is not None:
            _stop(server)
        if with_extension and link.is_symlink():
            link.unlink()


def _write_styles(path: Path, styles: dict[str, tuple[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "prompt", "negative_prompt"])
        for name, (prompt, negative) in styles.items():
            writer.writerow([name, prompt, negative])


def _wait_ready(server: WebUI, log_offset: int) -> bool:
    """Wait for the startup banner in the log, then for /sdapi/v1/loras.

    No HTTP request may reach the server before the banner: A1111 adds its API middleware after
    gradio has started serving, and Starlette then refuses it ("Cannot add middleware after an
    application has started") if a request already built the middleware stack.
    The API answers before scripts are set up; the Lora extension's route appears only at app start.
    """
    deadline = time.monotonic() + START_TIMEOUT_S
    banner = False
    while time.monotonic() < deadline:
        if not server.alive():
            return False
        if not banner:
            with contextlib.suppress(OSError), server.log_path.open("rb") as log:
                log.seek(log_offset)
                banner = STARTUP_BANNER in log.read()
        if banner:
            with contextlib.suppress(OSError):
                if server.request("GET", "/sdapi/v1/loras", timeout=5).status == 200:
                    return True
        time.sleep(0.5)
    return False


def _stop(server: WebUI) -> None:
    if server in _RUNNING:
        _RUNNING.remove(server)
    proc = server.process
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def webui(webui_install: Install, tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebUI]:
    """The WebUI with this project linked as extension sd-webui-dnp."""
    with start_webui(webui_install, tiny_models, tmp_path_factory.mktemp("webui"), name="webui-dnp") as server:
        yield server


@pytest.fixture(scope="session")
def webui_no_ext(
    webui_install: Install, tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebUI]:
    """The same WebUI, same models and settings, WITHOUT the extension: reference for bit-identity."""
    with start_webui(
        webui_install, tiny_models, tmp_path_factory.mktemp("webui-ref"), with_extension=False, name="webui-ref"
    ) as server:
        yield server


@pytest.fixture
def webui_factory(
    webui_install: Install, tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., WebUI]]:
    """Start extra servers (e.g. with --api-auth): factory(with_extension=..., auth=..., extra_args=...).

    They stop when the test that started them ends (a Forge server holds GBs of RAM).
    """
    stack = contextlib.ExitStack()
    counter = iter(range(1_000_000))

    def factory(**kwargs: Any) -> WebUI:
        name = kwargs.pop("name", None) or f"webui-extra{next(counter)}"
        return stack.enter_context(
            start_webui(webui_install, tiny_models, tmp_path_factory.mktemp(name), name=name, **kwargs)
        )

    with stack:
        yield factory


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {}) or {}
    used = [v for v in funcargs.values() if isinstance(v, WebUI)]
    for server in used or list(_RUNNING):
        state = "running" if server.alive() else f"exited {server.process.returncode}"
        report.sections.append((f"WebUI log tail ({server.log_path}, {state})", server.log_tail()))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Fixtures normally stop servers; this catches anything left by an interrupted run.
    for server in list(_RUNNING):
        _stop(server)


@pytest.fixture(scope="module")
def dnp_webui(webui: WebUI) -> WebUI:
    """The extension's server with its captioner settings pointing at the tiny captioners."""
    if DNP_SCRIPT_KEY not in webui.get("/sdapi/v1/scripts")["txt2img"]:
        pytest.fail(f"the WebUI did not register {DNP_SCRIPT_KEY!r}", pytrace=False)
    webui.use_tiny_captioners()
    return webui


@pytest.fixture
def restore_options(dnp_webui: WebUI) -> Iterator[Callable[..., None]]:
    """set(**options): set options on the DNP server, restored after the test (also when it fails)."""
    saved: dict[str, Any] = {}

    def set_options(**options: Any) -> None:
        current = dnp_webui.get_options()
        for key in options:
            saved.setdefault(key, current[key])
        dnp_webui.set_options(**options)

    yield set_options
    if saved:
        dnp_webui.set_options(**saved)
