"""Datasette plugin: HTTP headers for the public endpoints the campaign website calls.

CORS for any origin and about a minute of shared caching on the public queries only; the rest of
the instance stays private and uncached (Datasette's --cors would open every path).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from datasette import hookimpl

PUBLIC_PREFIXES = ("/coverage/latest_headlines",)
PUBLIC_MAX_AGE = 60

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_public(path: str) -> bool:
    return path.startswith(PUBLIC_PREFIXES)


@hookimpl
def asgi_wrapper(datasette: Any) -> Callable[[ASGIApp], ASGIApp]:
    def wrap(app: ASGIApp) -> ASGIApp:
        async def public_headers(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or not is_public(scope["path"]):
                await app(scope, receive, send)
                return

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    headers = [
                        (k, v)
                        for k, v in message.get("headers", [])
                        if k.lower() not in (b"cache-control", b"access-control-allow-origin")
                    ]
                    headers += [
                        (b"access-control-allow-origin", b"*"),
                        (b"cache-control", f"public, max-age={PUBLIC_MAX_AGE}".encode()),
                        (b"vary", b"Accept-Encoding"),
                    ]
                    message = {**message, "headers": headers}
                await send(message)

            await app(scope, receive, send_with_headers)

        return public_headers

    return wrap
