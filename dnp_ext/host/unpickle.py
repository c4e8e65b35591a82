"""A1111's safe unpickler, seen from the captioners: which weights files its torch.load will refuse.

A1111 replaces torch.load with modules.safe.load, which checks a file first and, when the check fails, prints
a report and returns None instead of raising; transformers then fails on the None far from the cause
("'NoneType' object has no attribute 'keys'"). Asking the same check up front lets the captioner name the
real cause. Forge keeps torch's own torch.load, so nothing is refused there.
"""

from __future__ import annotations

import os


def refusal(path: str) -> str | None:
    """Why the WebUI's torch.load would refuse ``path`` (the check's own message), or None if it reads it."""
    import torch
    from modules import safe, shared

    if torch.load is not safe.load or getattr(shared.cmd_opts, "disable_safe_unpickle", False):
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _checked:
        try:
            safe.check_pt(path, safe.global_extra_handler)
            _checked[key] = None
        except Exception as e:  # what load_with_extra catches and reports before returning None
            _checked[key] = f"{type(e).__name__}: {e}"
    return _checked[key]


# (path, mtime, size) -> refusal: the preflight runs before every generation, the check reads the pickle.
_checked: dict[tuple[str, int, int], str | None] = {}


def install() -> None:
    from ..captioners import hf

    hf.set_pickle_check(refusal)
