"""WebUI entry point: the Diffusion-Negative Prompting script (all logic lives in dnp_ext)."""

import sys
from pathlib import Path

# The WebUI puts an extension's folder on sys.path only while loading its scripts; keep it for later imports.
_root = str(Path(__file__).resolve().parents[1])
if _root not in sys.path:
    sys.path.append(_root)

# Import modules, not classes: the WebUI registers every Script subclass found in this file's namespace.
from dnp_ext import host as _host  # noqa: E402
from dnp_ext.host import script as _script  # noqa: E402

_host.current().install()


class Script(_script.DnpScript):
    pass
