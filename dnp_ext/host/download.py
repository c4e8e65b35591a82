"""First use downloads the captioner, in the open: progress in the WebUI's status text, Interrupt stops it, the
next run resumes it. Models go to <models>/dnp/<owner>--<name>; one already in the Hugging Face cache is used
from there as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from modules import paths_internal
from modules.shared import state

from ..captioners import hf
from ..captioners.download import DownloadStopped, Progress, download, is_complete
from .settings import CAPTIONER_SETTING, option

_LOCK = threading.Lock()  # one download at a time (a run and the Settings button)


def folder_for(repo: str) -> Path:
    return Path(paths_internal.models_path) / "dnp" / repo.replace("/", "--")


def in_hf_cache(repo: str) -> bool:
    """The model is already in the Hugging Face cache (downloaded before this extension did it itself)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return all(
            isinstance(try_to_load_from_cache(repo, name), str) for name in ("config.json", "preprocessor_config.json")
        )
    except Exception:
        return False


def interrupted() -> bool:
    return bool(state.interrupted or getattr(state, "stopping_generation", False))


def fetch(
    name: str,
    repo: str,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] = interrupted,
) -> str | None:
    """The folder to load ``repo`` from, downloading what is missing; None: use the Hugging Face cache."""
    dest = folder_for(repo)
    if is_complete(dest):
        return str(dest)
    if in_hf_cache(repo):
        return None

    def show(p: Progress) -> None:
        state.textinfo = p.text()

    with _LOCK:
        download(repo, dest, on_progress=on_progress or show, should_stop=should_stop)
    return str(dest)


def install() -> None:
    hf.set_hub_fetcher(fetch)


def download_now() -> Iterator[str]:
    """The Settings button: fetch every built-in captioner whose setting is a Hub id; yields status text."""
    lines: list[str] = []
    state.interrupted = False  # a stale Interrupt from an earlier run must not stop this
    for name, setting in CAPTIONER_SETTING.items():
        repo = str(option(setting)).strip()
        if not repo or hf.looks_like_path(repo) or Path(repo).expanduser().is_dir():
            lines.append(f"{name}: {repo!r} is a folder, nothing to download")
            continue
        last = ""
        for last in _fetch_in_thread(name, repo):
            yield "\n".join([*lines, last])
        lines.append(last)
    yield "\n".join(lines)


def _fetch_in_thread(name: str, repo: str) -> Iterator[str]:
    """Progress lines of one download (run in a thread, polled twice a second), then its outcome."""
    latest: list[str] = []
    outcome: list[str] = []
    done = threading.Event()

    def work() -> None:
        try:
            folder = fetch(name, repo, on_progress=lambda p: latest.append(p.text()))
            outcome.append(f"{name}: {repo} is ready in {folder or 'the Hugging Face cache'}")
        except DownloadStopped:
            outcome.append(f"{name}: stopped; press the button again to resume")
        except Exception as e:  # shown to the user, never raised into gradio
            outcome.append(f"{name}: failed: {e}")
        finally:
            done.set()

    threading.Thread(target=work, daemon=True).start()
    while not done.wait(0.5):
        if latest:
            yield latest[-1]
    yield outcome[0]
