"""HTTP routes under /dnp/v1, added to the WebUI's FastAPI app next to /sdapi/v1.

They honour --api-auth exactly as /sdapi/v1/* does (HTTP basic, 401 otherwise) and run under the WebUI's
queue lock, so they never run while another generation holds the GPU.
"""

from __future__ import annotations

from secrets import compare_digest
from typing import Any

from fastapi import Body, Depends, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from modules import shared
from modules.call_queue import queue_lock

from .. import TITLE
from ..args import DnpArgsError
from ..suggest import parse_suggest_request
from . import guard
from .errors import as_dnp_error

SUGGEST_PATH = "/dnp/v1/suggest"
CACHE_PATH = "/dnp/v1/cache"


def credentials() -> dict[str, str]:
    """--api-auth "user:pass,user2:pass2", parsed as the WebUI's Api class parses it."""
    out: dict[str, str] = {}
    for pair in (shared.cmd_opts.api_auth or "").split(","):
        if pair:
            user, _, password = pair.partition(":")
            out[user] = password
    return out


def make_auth(creds: dict[str, str]) -> Any:
    def auth(c: HTTPBasicCredentials = Depends(HTTPBasic())) -> bool:  # noqa: B008 - FastAPI idiom
        if c.username in creds and compare_digest(c.password, creds[c.username]):
            return True
        raise HTTPException(
            status_code=401, detail="Incorrect username or password", headers={"WWW-Authenticate": "Basic"}
        )

    return auth


def mount(app: Any, host: Any) -> None:
    """Add DNP's routes to the WebUI's FastAPI app (only when the WebUI serves its API)."""
    opts = shared.cmd_opts
    if not (getattr(opts, "api", False) or getattr(opts, "nowebui", False)):
        return
    guard.install(app)
    creds = credentials()
    dependencies = [Depends(make_auth(creds))] if creds else []

    def suggest(body: Any = Body(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI idiom
        """Run DNS for txt2img settings, caption the DNS images and return suggested negatives."""
        try:
            req = parse_suggest_request(body)
        except DnpArgsError as e:
            raise HTTPException(status_code=422, detail=f"{TITLE}: {e}") from e
        with queue_lock:
            try:
                return host.suggest(req).to_json()
            except Exception as e:
                raise as_dnp_error(e) from e

    def cache() -> dict[str, Any]:
        """The DNS cache: entries, bytes, budget, hits, misses, and DNS passes sampled by this process."""
        from .cache import stats

        return stats()

    app.add_api_route(SUGGEST_PATH, suggest, methods=["POST"], dependencies=dependencies, tags=["dnp"])
    app.add_api_route(CACHE_PATH, cache, methods=["GET"], dependencies=dependencies, tags=["dnp"])
