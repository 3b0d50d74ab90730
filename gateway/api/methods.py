"""OPTIONS and 405 as HTTP says (RFC 9110): ``Allow`` lists every method of the path, not only
those of the first route that matched it (Starlette's 405 does that). The methods come from
every route of the app whose path pattern matches."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AllowedMethods"]


class AllowedMethods:
    def __init__(self, app: ASGIApp, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self.app = app
        self._routes = routes
        self._paths: list[tuple[re.Pattern[str], set[str]]] | None = None

    def allowed(self, path: str) -> list[str]:
        if self._paths is None:
            self._paths = [
                (pattern, set(methods))
                for route in self._routes()
                if isinstance(pattern := getattr(route, "path_regex", None), re.Pattern)
                and (methods := getattr(route, "methods", None))
            ]
        methods = {m.upper() for pattern, ms in self._paths if pattern.match(path) for m in ms}
        if methods:
            methods |= {"OPTIONS"} | ({"HEAD"} if "GET" in methods else set())
        return sorted(methods)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            allowed = self.allowed(scope["path"])
            if allowed:
                start = {"type": "http.response.start", "status": 204,
                         "headers": [(b"allow", ", ".join(allowed).encode())]}  # fmt: skip
                await send(start)
                await send({"type": "http.response.body", "body": b""})
                return

        async def with_allow(message: Message) -> None:
            # Only a 405 needs the path's methods: every other answer passes untouched.
            if message["type"] == "http.response.start" and message["status"] == 405:
                allowed = self.allowed(scope["path"])
                if allowed:
                    headers = [
                        (k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"
                    ]
                    headers.append((b"allow", ", ".join(allowed).encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_allow)
