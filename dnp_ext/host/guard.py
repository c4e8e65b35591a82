"""Model locations are settings, never request parameters: /sdapi/v1/txt2img and /img2img bodies whose
override_settings name one are answered 422 before the WebUI reads them (nothing is applied, nothing runs).

A pure ASGI middleware: it buffers the body, checks it and hands the same bytes on, so the WebUI's own route
reads the request unchanged. (The Script's before_process hook refuses the same keys for any other caller of
process_images.)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .. import TITLE
from ..args import DnpArgsError, check_override_settings

GUARDED_PATHS = frozenset({"/sdapi/v1/txt2img", "/sdapi/v1/img2img"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class RefuseModelPathOverrides:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or scope.get("path") not in GUARDED_PATHS:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message.get("type") != "http.request":  # the client went away: let the app see it
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        error = _refusal(body)
        if error is not None:
            payload = json.dumps({"detail": f"{TITLE}: {error}"}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
            await send({"type": "http.response.start", "status": 422, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _refusal(body: bytes) -> str | None:
    try:
        data = json.loads(body or b"null")
    except ValueError:
        return None  # not JSON: the WebUI answers it as it always does
    if not isinstance(data, dict):
        return None
    try:
        check_override_settings(data.get("override_settings"))
    except DnpArgsError as e:
        return str(e)
    return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def install(app: Any) -> None:
    """Put the guard in front of the WebUI's routes, at app start as the WebUI adds its own middleware."""
    if any(getattr(m, "cls", None) is RefuseModelPathOverrides for m in app.user_middleware):
        return
    app.middleware_stack = None  # rebuilt on the next request, with the guard (as the WebUI's setup_middleware)
    app.add_middleware(RefuseModelPathOverrides)
