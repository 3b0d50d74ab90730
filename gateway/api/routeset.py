"""Routes declared where they are written, built once, on the app.

FastAPI prepares a route's models (one pydantic validator and serializer per parameter and
response) when the route is made. An ``APIRouter`` makes its routes at once, and the app that
includes it makes them all again, for its own copy, on the first request: two sets of
validators (2.4 MiB of the 10-device gateway's 65) and 85 ms of the event loop held by that
first request. A ``RouteSet`` only records each route; ``add_to`` makes it once, on the
app's router, when the app is built (before polling starts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import APIRouter

__all__ = ["RouteSet"]

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


class RouteSet:
    """What ``APIRouter(prefix=, tags=, responses=, include_in_schema=)`` says for its routes,
    with the same decorators (``get``, ``post``, ``put``, ``patch``, ``delete``)."""

    def __init__(
        self,
        prefix: str = "",
        *,
        tags: Sequence[str] = (),
        responses: dict[int | str, dict[str, Any]] | None = None,
        include_in_schema: bool = True,
    ) -> None:
        self.prefix = prefix
        self.tags = list(tags)
        self.responses = dict(responses or {})
        self.include_in_schema = include_in_schema
        self._routes: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []

    def route(self, path: str, method: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        def record(endpoint: Endpoint) -> Endpoint:
            self._routes.append((path, endpoint, {"methods": [method], **options}))
            return endpoint

        return record

    def get(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route(path, "GET", **options)

    def post(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route(path, "POST", **options)

    def put(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route(path, "PUT", **options)

    def patch(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route(path, "PATCH", **options)

    def delete(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route(path, "DELETE", **options)

    def add_to(self, router: APIRouter) -> None:
        """Make every recorded route on ``router`` (the app's own: ``app.router``), merging
        this set's prefix, tags and responses into each as an ``APIRouter`` would."""
        for path, endpoint, options in self._routes:
            options = dict(options)
            router.add_api_route(
                self.prefix + path,
                endpoint,
                tags=[*self.tags, *options.pop("tags", [])],
                responses={**self.responses, **options.pop("responses", {})},
                include_in_schema=self.include_in_schema and options.pop("include_in_schema", True),
                **options,
            )
