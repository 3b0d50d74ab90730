"""The page's files as the router serves them: its policy, every file it loads present and
typed, revalidation by ETag, and nothing outside the static directory."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.api.routes import page

STATIC = Path(page.__file__).resolve().parents[1] / "static"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = FastAPI()
    page.routes.add_to(app.router)
    with TestClient(app) as test_client:
        yield test_client


def loaded() -> set[str]:
    """Every /static/ file the page and its modules name (links, scripts, imports)."""
    names = set(re.findall(r'"/static/([^"]+)"', (STATIC / "index.html").read_text()))
    for script in STATIC.glob("*.js"):
        if script.name.startswith("uPlot"):
            continue
        text = script.read_text()
        names |= set(re.findall(r'from "\./([^"]+)"', text))
        names |= set(re.findall(r'"/static/([^"]+)"', text))
    return names


def test_the_page_allows_no_inline_code(client: TestClient) -> None:
    response = client.get("/")
    assert response.headers["content-security-policy"] == page.CSP
    assert "script-src 'self';" in page.CSP and "'unsafe-inline'" not in page.CSP
    html = response.text
    assert "<style" not in html and " style=" not in html
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all(' src="/static/' in tag for tag in scripts), scripts


def test_every_file_the_page_loads_is_served_with_its_type(client: TestClient) -> None:
    names = loaded()
    assert {"app.js", "app.css", "lib.js", "uPlot.iife.min.js", "uPlot.min.css"} <= names
    kinds = {".js": "text/javascript", ".css": "text/css"}
    for name in names:
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith(kinds[Path(name).suffix]), name
    licence = client.get("/static/uPlot.LICENSE.txt")
    assert licence.headers["content-type"].startswith("text/plain")
    assert "Leon Sorokin" in licence.text


def test_unchanged_files_are_revalidated_without_a_body(client: TestClient) -> None:
    for path in ("/", "/static/app.js"):
        first = client.get(path)
        assert first.headers["cache-control"] == "no-cache"
        again = client.get(path, headers={"If-None-Match": first.headers["etag"]})
        assert (again.status_code, again.content) == (304, b"")
        changed = client.get(path, headers={"If-None-Match": '"stale"'})
        assert changed.status_code == 200 and changed.content == first.content


@pytest.mark.parametrize(
    "name", ["index.html", "nothing.js", "..%2Froutes%2Fpage.py", "%2E%2E", "app.js%00"]
)
def test_nothing_else_is_served(client: TestClient, name: str) -> None:
    assert client.get(f"/static/{name}").status_code == 404
