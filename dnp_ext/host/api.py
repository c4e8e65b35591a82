"""HTTP routes under /dnp/v1 (filled in by the review-flow work)."""

from __future__ import annotations

from typing import Any


def mount(app: Any, host: Any) -> None:
    """Add DNP's routes to the WebUI's FastAPI app."""
    return None
