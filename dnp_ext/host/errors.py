"""The error DNP raises inside a WebUI run: an HTTP error for the API, a readable message in the UI."""

from __future__ import annotations

from fastapi import HTTPException

from .. import TITLE
from ..args import DnpArgsError
from ..captioners.base import CaptionerError


class DnpError(HTTPException):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code=status_code, detail=message)
        self.args = (message,)

    def __str__(self) -> str:
        return str(self.detail)


def as_dnp_error(e: Exception) -> DnpError:
    """Bad input is 422, a captioner that can't be used 503, anything else 500."""
    if isinstance(e, DnpError):
        return e
    if isinstance(e, DnpArgsError):
        return DnpError(422, f"{TITLE}: {e}")
    if isinstance(e, CaptionerError):
        return DnpError(503, f"{TITLE}: {e}")
    return DnpError(500, f"{TITLE}: {type(e).__name__}: {e}")
