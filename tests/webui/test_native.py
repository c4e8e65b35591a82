"""The extension as a native part of the WebUI: captioner files the WebUI refuses, model paths as settings only.

Runs on AUTOMATIC1111 and Forge (SD_WEBUI_DIR), tiny random models, CPU.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import Install, TinyModels, WebUI, _run_builder, _server_env
from .test_dnp_api import PROMPT, STEPS, TITLE, run_dnp, script_args


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


# ------------------------------------------------------------------------------ model locations are settings

MODEL_PATH_SETTINGS = ("dnp_blip2_model", "dnp_blip_model")


def _init_image() -> str:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 90, 60)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _requests(key: str) -> dict[str, dict[str, Any]]:
    small = {"prompt": PROMPT, "width": 64, "height": 64, "steps": STEPS, "sampler_name": "Euler", "seed": 7}
    override = {"override_settings": {"CLIP_stop_at_last_layers": 1, key: "/tmp"}}
    return {
        "/sdapi/v1/txt2img": {**small, **override, "alwayson_scripts": script_args({"enabled": True})},
        "/sdapi/v1/img2img": {**small, **override, "init_images": [_init_image()], "denoising_strength": 0.5},
        "/dnp/v1/suggest": {**small, **override},
    }


@pytest.mark.parametrize("key", MODEL_PATH_SETTINGS)
def test_override_settings_naming_a_model_location_get_422(dnp_webui: WebUI, key: str) -> None:
    before = {k: dnp_webui.get_options()[k] for k in MODEL_PATH_SETTINGS}
    for path, body in _requests(key).items():
        result = dnp_webui.request("POST", path, body)
        assert result.status == 422, f"{path}: HTTP {result.status}: {result.text[:1000]}"
        detail = str(result.json().get("detail"))
        assert key in detail and "override_settings" in detail and TITLE in detail, f"{path}: {detail}"
    assert {k: dnp_webui.get_options()[k] for k in MODEL_PATH_SETTINGS} == before
    # other overrides still work as before
    ok = dnp_webui.txt2img(override_settings={"CLIP_stop_at_last_layers": 1})
    assert len(dnp_webui.images(ok)) == 1


def _setting_components(webui: WebUI, keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    found = {}
    for component in webui.get("/config")["components"]:
        elem_id = component.get("props", {}).get("elem_id")
        for key in keys:
            if elem_id == f"setting_{key}":
                found[key] = component["props"]
    return found


def test_hide_ui_dir_config_freezes_model_locations(webui_factory: Callable[..., WebUI], tiny_models: TinyModels):
    """With --hide-ui-dir-config the model locations are frozen like the WebUI's own path settings (outdir_samples):
    hidden in Settings, unchanged by the settings API; config.json still sets them, and Auto-DNP runs."""
    tiny = {
        "dnp_blip2_model": str(tiny_models.captioners["blip2"]),
        "dnp_blip_model": str(tiny_models.captioners["blip"]),
    }
    server = webui_factory(extra_args=["--hide-ui-dir-config"], settings=tiny, name="webui-hide-dirs")
    keys = (*MODEL_PATH_SETTINGS, "outdir_samples")
    before = server.get_options()
    attempt = {"dnp_blip2_model": "/elsewhere/blip2", "dnp_blip_model": "someone/blip", "outdir_samples": "/elsewhere"}
    result = server.request("POST", "/sdapi/v1/options", attempt)
    after = server.get_options()
    assert {k: after[k] for k in keys} == {k: before[k] for k in keys}, f"HTTP {result.status}: {result.text[:500]}"
    assert {k: after[k] for k in MODEL_PATH_SETTINGS} == tiny
    props = _setting_components(server, keys)
    assert set(props) == set(keys), f"settings components found: {sorted(props)}"
    for key in keys:
        assert props[key].get("visible") is False, f"{key} is visible in Settings: {props[key]}"
    run = run_dnp(server, {"enabled": True}, 1, prompt=PROMPT, seed=9)
    assert run.negatives[0], "Auto-DNP gave no negative"
