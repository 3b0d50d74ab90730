"""The operator's page: ``index.html`` at ``/`` and its scripts, styles and the vendored chart
library at ``/static/<name>``, all from ``gateway/api/static`` (no CDN: plant networks are often
offline). The page talks to the API with the user's token.

The page's own Content-Security-Policy allows scripts and styles from this origin only (no
inline code), so an injected string can never run. The files are read once, at import: they
change only with the package, and the ETag lets browsers keep them until then.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import HTTPException, Request, Response

from gateway.api.routeset import RouteSet

__all__ = ["CSP", "routes"]

_STATIC = Path(__file__).parent.parent / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page's policy. ``img-src data:`` is for the inline favicon."""


class _File:
    def __init__(self, path: Path) -> None:
        self.body = path.read_bytes()
        self.media_type = _TYPES[path.suffix]
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'

    def response(self, request: Request, headers: dict[str, str] | None = None) -> Response:
        # no-cache: revalidated on every load, so an upgraded gateway serves its new page at
        # once; unchanged files cost a 304 without a body.
        headers = {"ETag": self.etag, "Cache-Control": "no-cache", **(headers or {})}
        if request.headers.get("if-none-match") == self.etag:
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


_FILES = {path.name: _File(path) for path in _STATIC.iterdir() if path.suffix in _TYPES}
_PAGE = _FILES.pop("index.html")

routes = RouteSet(include_in_schema=False)


@routes.get("/")
async def page(request: Request) -> Response:
    return _PAGE.response(request, {"Content-Security-Policy": CSP})


@routes.get("/static/{name}")
async def static(name: str, request: Request) -> Response:
    """Only the files of the directory itself, by exact name: no path reaches anything else."""
    found = _FILES.get(name)
    if found is None:
        raise HTTPException(404, f"no static file {name!r}")
    return found.response(request)
