"""WebUI entry point: the Diffusion-Negative Prompting script (all logic lives in dnp_ext)."""

import sys
from pathlib import Path

# The WebUI puts an extension's folder on sys.path only while loading its scripts; keep it for later imports.
_root = str(Path(__file__).resolve().parents[1])
if _root not in sys.path:
    sys.path.append(_root)

from dnp_ext.host import current  # noqa: E402
from dnp_ext.host.script import DnpScript  # noqa: E402

current().install()


class Script(DnpScript):
    pass
