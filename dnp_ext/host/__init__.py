"""WebUI glue. ``webui`` holds everything that touches the WebUI's ``modules.*``; ``forge`` overrides the few
places where Forge differs. ``current()`` picks one at run time (Forge ships the ``modules_forge`` package).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .webui import WebUIHost


def is_forge() -> bool:
    return importlib.util.find_spec("modules_forge") is not None


@cache
def current() -> WebUIHost:
    if is_forge():
        from .forge import ForgeHost

        return ForgeHost()
    from .webui import WebUIHost

    return WebUIHost()
