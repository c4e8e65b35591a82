"""Download a captioner from the Hugging Face Hub into a folder, file by file, with progress, stop and resume.

Only what the captioner loads is fetched: config, tokenizer and processor files, and one weights format
(safetensors where the repository has them, else the pickle files). Each file is written to ``NAME.part`` and
renamed when complete; a stopped download keeps its ``.part`` and the next call resumes it with an HTTP Range
request. ``HF_ENDPOINT`` (a mirror, or a test server) and ``HF_TOKEN`` are honoured as by huggingface_hub;
``HF_HUB_OFFLINE=1`` forbids downloading.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SMALL_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "spiece.model",
    "chat_template.json",
)
# (index, single file, shard pattern), in order of preference
WEIGHTS = (
    ("model.safetensors.index.json", "model.safetensors", r"model-\d+-of-\d+\.safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin", r"pytorch_model-\d+-of-\d+\.bin"),
)
COMPLETE = ".dnp-complete"
CHUNK = 1 << 16  # small enough that Interrupt and the progress text react at once
TIMEOUT_S = 60


class DownloadError(RuntimeError):
    """The download cannot happen (offline, not found, no weights); the message says which and why."""


class DownloadStopped(Exception):
    """Stopped by the caller; the partial file is kept and the next download resumes it."""


@dataclass(frozen=True)
class Progress:
    repo: str
    file: str
    index: int  # 1-based number of the file
    files: int
    done: int  # bytes of this file on disk
    total: int | None  # its size, when the Hub gave it
    rate: float  # bytes per second of this call

    def text(self) -> str:
        size = f"{_mb(self.done)} of {_mb(self.total)}" if self.total else _mb(self.done)
        return f"DNP: downloading {self.repo}: {self.file} ({self.index}/{self.files}), {size}, {_mb(self.rate)}/s"


def _mb(n: float | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _request(url: str, start: int = 0) -> urllib.request.Request:
    headers = {"User-Agent": "sd-webui-dnp"}
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.Request(url, headers=headers)


def _open(url: str, what: str, start: int = 0):
    try:
        return urllib.request.urlopen(_request(url, start), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # nothing left to fetch: the part file is whole
            return None
        hint = " (a private or gated model: set HF_TOKEN)" if e.code in (401, 403) else ""
        raise DownloadError(f"{what}: HTTP {e.code} from {url}{hint}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"{what}: cannot reach {url} ({e})") from e


def repo_files(repo: str, revision: str = "main") -> dict[str, int | None]:
    """File name -> size (None when unknown) of a Hub model repository."""
    url = f"{endpoint()}/api/models/{urllib.parse.quote(repo)}/revision/{urllib.parse.quote(revision)}?blobs=true"
    with _open(url, f"listing {repo}") as resp:
        data = json.load(resp)
    return {s["rfilename"]: s.get("size") for s in data.get("siblings", []) if "rfilename" in s}


def wanted_files(files: dict[str, int | None]) -> list[str]:
    """What a captioner loads, in download order (small files first)."""
    names = [f for f in SMALL_FILES if f in files]
    for index, single, shard in WEIGHTS:
        shards = sorted(f for f in files if re.fullmatch(shard, f))
        if index in files and shards:
            return [*names, index, *shards]
        if single in files:
            return [*names, single]
    raise DownloadError("the repository holds no model.safetensors or pytorch_model.bin weights")


def is_complete(dest: str | Path) -> bool:
    return (Path(dest) / COMPLETE).is_file()


def download(
    repo: str,
    dest: str | Path,
    *,
    revision: str = "main",
    on_progress: Callable[[Progress], None] = lambda p: None,
    should_stop: Callable[[], bool] = lambda: False,
    every_s: float = 0.5,
) -> Path:
    """Fetch ``repo`` into ``dest`` (resuming what an earlier call left); returns ``dest`` once complete."""
    dest = Path(dest)
    if is_complete(dest):
        return dest
    if offline():
        raise DownloadError(f"{repo} is not downloaded yet and HF_HUB_OFFLINE is set")
    files = repo_files(repo, revision)
    names = wanted_files(files)
    dest.mkdir(parents=True, exist_ok=True)
    for number, name in enumerate(names, 1):
        target, total = dest / name, files.get(name)
        if target.is_file() and (total is None or target.stat().st_size == total):
            continue
        part = target.with_name(target.name + ".part")
        start = part.stat().st_size if part.is_file() else 0
        url = f"{endpoint()}/{repo}/resolve/{urllib.parse.quote(revision)}/{urllib.parse.quote(name)}"
        resp = _open(url, f"downloading {repo}/{name}", start)
        t0, last, got = time.monotonic(), 0.0, 0
        if resp is not None:
            with resp, part.open("ab" if resp.status == 206 else "wb") as out:
                done = start if resp.status == 206 else 0
                while True:
                    if should_stop():
                        raise DownloadStopped(f"{repo}/{name}: stopped at {done} bytes")
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    done, got = done + len(block), got + len(block)
                    now = time.monotonic()
                    if now - last >= every_s:
                        last = now
                        rate = got / max(now - t0, 1e-6)
                        on_progress(Progress(repo, name, number, len(names), done, total, rate))
        size = part.stat().st_size
        if total is not None and size != total:
            raise DownloadError(f"{repo}/{name}: got {size} bytes, expected {total}; run again to resume")
        os.replace(part, target)
        on_progress(Progress(repo, name, number, len(names), size, total, got / max(time.monotonic() - t0, 1e-6)))
    (dest / COMPLETE).write_text(repo + "\n", encoding="utf-8")
    return dest
