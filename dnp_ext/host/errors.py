"""The error DNP raises inside a WebUI run: an HTTP error for the API, a readable message in the UI."""

from __future__ import annotations

from fastapi import HTTPException


class DnpError(HTTPException):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code=status_code, detail=message)
        self.args = (message,)

    def __str__(self) -> str:
        return str(self.detail)
