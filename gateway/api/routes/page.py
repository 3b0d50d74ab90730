"""The operator's page: one HTML file served at ``/``, talking to the API with the user's token."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

__all__ = ["router"]

_PAGE = Path(__file__).parent.parent / "static" / "index.html"

router = APIRouter(include_in_schema=False)
_html = _PAGE.read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse)
async def page() -> HTMLResponse:
    return HTMLResponse(_html)
