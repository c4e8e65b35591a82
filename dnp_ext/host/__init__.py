"""WebUI glue: the only code that touches the WebUI's ``modules.*``, one module per job.

``webui.WebUIHost`` is the AUTOMATIC1111 host; it composes ``settings``, ``webui_blip``, ``text``, ``dns``,
``suggest`` and ``run``. ``forge.ForgeHost`` overrides the few places where Forge differs; ``script`` is the
Script class, ``api`` the HTTP routes, ``review`` the review flow's UI, ``errors`` the error they raise.
``current()`` picks the host at run time (Forge ships the ``modules_forge`` package).
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
