"""The extension as a native part of the WebUI: captioner files the WebUI refuses, model paths as settings only.

Runs on AUTOMATIC1111 and Forge (SD_WEBUI_DIR), tiny random models, CPU.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Install, TinyModels, WebUI, _run_builder, _server_env
from .test_dnp_api import PROMPT, SCRIPT_KEY, STEPS, TITLE, run_dnp, script_args


@pytest.fixture(scope="module")
def dnp_webui(webui: WebUI) -> WebUI:
    if SCRIPT_KEY not in webui.get("/sdapi/v1/scripts")["txt2img"]:
        pytest.fail(f"the WebUI did not register {SCRIPT_KEY!r}", pytrace=False)
    webui.use_tiny_captioners()
    return webui


@pytest.fixture
def restore_options(dnp_webui: WebUI) -> Iterator[Callable[..., None]]:
    saved: dict[str, Any] = {}

    def set_options(**options: Any) -> None:
        current = dnp_webui.get_options()
        for key in options:
            saved.setdefault(key, current[key])
        dnp_webui.set_options(**options)

    yield set_options
    if saved:
        dnp_webui.set_options(**saved)


def dnp_body(seed: int, **args: Any) -> dict[str, Any]:
    return {
        "prompt": PROMPT,
        "width": 64,
        "height": 64,
        "steps": STEPS,
        "sampler_name": "Euler",
        "seed": seed,
        "alwayson_scripts": script_args({"enabled": True, **args}),
    }


# ------------------------------------------------------------------------------ pickle weights (A1111 only)


def test_pickle_weights_the_webui_refuses(
    dnp_webui: WebUI, webui_install: Install, tiny_models: TinyModels, tmp_path: Path, restore_options
) -> None:
    """A BLIP-2 folder whose only weights are a pytorch_model.bin written by this torch: A1111's safe unpickler
    refuses it, and the 503 says so and gives both fixes; the conversion it names makes the folder work.
    Forge keeps torch's own torch.load: there the folder simply works."""
    folder = tmp_path / "blip2-bin"
    _run_builder(
        webui_install,
        [
            "-c",
            "import sys; from tests.tiny_captioners import save_as_pickle; save_as_pickle(sys.argv[1], sys.argv[2])",
            str(tiny_models.captioners["blip2"]),
            str(folder),
        ],
        "a pickle-weights captioner",
        tmp_path / "save_as_pickle.log",
    )
    reference = run_dnp(dnp_webui, {"enabled": True}, 1, prompt=PROMPT, seed=5)
    restore_options(dnp_blip2_model=str(folder))
    result = dnp_webui.request("POST", "/sdapi/v1/txt2img", dnp_body(5))
    if dnp_webui.host == "forge":
        assert result.status == 200, f"HTTP {result.status}: {result.text[:2000]}"
        return
    assert result.status == 503, f"HTTP {result.status}: {result.text[:2000]}"
    detail = str(result.json().get("detail", ""))
    for word in (
        TITLE,
        "blip2",
        "dnp_blip2_model",
        "safe unpickler",
        "pytorch_model.bin",
        "safetensors",
        "--disable-safe-unpickle",
    ):
        assert word in detail, f"the 503 does not name {word!r}: {detail}"
    assert "does not hold a loadable" not in detail and "NoneType" not in detail, detail
    assert not result.json().get("images")

    # the conversion, run as the message gives it with the WebUI's Python, makes the same folder work
    command = re.search(r'python -c "([^"]+)"', detail)
    assert command, detail
    subprocess.run(
        [str(webui_install.python), "-c", command.group(1)],
        check=True,
        env=_server_env(),
        cwd=tmp_path,
        timeout=600,
        capture_output=True,
    )
    converted = run_dnp(dnp_webui, {"enabled": True}, 1, prompt=PROMPT, seed=5)
    assert converted.negatives == reference.negatives  # same weights, same caption
