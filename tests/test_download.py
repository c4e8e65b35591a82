"""The captioner download against a local Hub-compatible server (tests/hub_server.py): progress, stop, resume,
404, offline; the downloaded folder loads and captions like the original."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from PIL import Image  # noqa: E402

from dnp_ext.captioners import Blip2Captioner  # noqa: E402
from dnp_ext.captioners.download import (  # noqa: E402
    COMPLETE,
    DownloadError,
    DownloadStopped,
    download,
    is_complete,
    wanted_files,
)
from tests.hub_server import HubServer  # noqa: E402
from tests.tiny_captioners import build_tiny_blip2  # noqa: E402

REPO = "dnp-tests/tiny-blip2"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = build_tiny_blip2(tmp_path_factory.mktemp("hub") / "tiny-blip2")
    (folder / "README.md").write_text("not needed by the captioner\n")
    torch.save({}, folder / "pytorch_model.bin")  # a second weights format: only safetensors are fetched
    return folder


@pytest.fixture
def hub(repo: Path, monkeypatch: pytest.MonkeyPatch):
    with HubServer({REPO: repo}, throttle_s=0.002) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


def test_wanted_files_prefer_safetensors_and_shards() -> None:
    files = {"config.json": 1, "model.safetensors": 9, "pytorch_model.bin": 9, "README.md": 1, "tf_model.h5": 9}
    assert wanted_files(files) == ["config.json", "model.safetensors"]
    sharded = {"config.json": 1, "model.safetensors.index.json": 1, "model-00001-of-00002.safetensors": 5,
               "model-00002-of-00002.safetensors": 5, "pytorch_model.bin": 9}  # fmt: skip
    assert wanted_files(sharded)[1:] == [
        "model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    ]  # fmt: skip
    with pytest.raises(DownloadError, match=r"no model\.safetensors"):
        wanted_files({"config.json": 1})


def test_download_stop_resume_and_load(hub: HubServer, repo: Path, tmp_path: Path) -> None:
    dest = tmp_path / "blip2"
    seen = []

    def stop_in_weights() -> bool:
        return bool(seen) and seen[-1].file == "model.safetensors" and seen[-1].done > 0

    with pytest.raises(DownloadStopped):
        download(REPO, dest, on_progress=seen.append, should_stop=stop_in_weights, every_s=0.0)
    part = dest / "model.safetensors.part"
    kept = part.stat().st_size
    assert 0 < kept < (repo / "model.safetensors").stat().st_size and not is_complete(dest)
    assert (dest / "config.json").read_bytes() == (repo / "config.json").read_bytes()
    texts = [p.text() for p in seen]
    assert any("model.safetensors" in t and "MB" in t and "/s" in t for t in texts), texts

    hub.requests.clear()
    seen.clear()
    assert download(REPO, dest, on_progress=seen.append) == dest
    # resumed: the weights were asked for from where the first call stopped, the small files not again
    assert (f"/{REPO}/resolve/main/model.safetensors", f"bytes={kept}-") in hub.requests
    assert not any(path.endswith("config.json") for path, _ in hub.requests if "resolve" in path)
    assert is_complete(dest) and (dest / COMPLETE).is_file()
    for name in wanted_files({f.name: f.stat().st_size for f in repo.iterdir()}):
        assert (dest / name).read_bytes() == (repo / name).read_bytes(), name
    assert not (dest / "pytorch_model.bin").exists() and not (dest / "README.md").exists()
    assert not list(dest.glob("*.part"))

    images = [Image.fromarray((np.random.RandomState(i).rand(32, 32, 3) * 255).astype("uint8")) for i in range(2)]
    got = Blip2Captioner(str(dest), "cpu", max_new_tokens=6).caption(images)
    assert got == Blip2Captioner(str(repo), "cpu", max_new_tokens=6).caption(images)

    hub.requests.clear()
    download(REPO, dest)  # complete: nothing is asked of the Hub
    assert hub.requests == []


def test_download_404_and_offline(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download("dnp-tests/no-such-model", tmp_path / "x")
    assert "dnp-tests/no-such-model" in str(info.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE"):
        download(REPO, tmp_path / "y")
    assert hub.requests == [("/api/models/dnp-tests/no-such-model/revision/main", None)]
