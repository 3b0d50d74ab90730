"""The API's guards, without a running gateway: body limit, security headers, the contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.api.guard import BodyLimit, SecurityHeaders
from gateway.assembly import Gateway
from gateway.config import parse_config


def small_app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(str(len(await request.body())))

    @app.get("/page")
    async def page() -> Response:
        return Response("<p>", headers={"content-security-policy": "default-src 'self'"})

    app.add_middleware(BodyLimit, limit=1024)
    app.add_middleware(SecurityHeaders, hsts=False)
    return app


def test_a_body_over_the_limit_is_refused_with_413() -> None:
    client = TestClient(small_app())
    assert client.post("/echo", content=b"x" * 1024).text == "1024"
    declared = client.post("/echo", content=b"x" * 1025)
    assert declared.status_code == 413
    assert declared.headers["content-type"] == "application/problem+json"
    assert declared.json()["status"] == 413

    def chunks() -> Iterator[bytes]:  # no content-length: counted as it arrives
        yield from (b"x" * 600 for _ in range(3))

    assert client.post("/echo", content=chunks()).status_code == 413


def test_every_response_carries_the_security_headers() -> None:
    client = TestClient(small_app())
    answer = client.post("/echo", content=b"{}")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert "strict-transport-security" not in answer.headers
    # A route's own policy (the page's) is kept.
    assert client.get("/page").headers["content-security-policy"] == "default-src 'self'"


def test_the_openapi_document_says_errors_are_problem_json(tmp_path: Path) -> None:
    config = parse_config({"gateway": {"id": "gw", "data_dir": str(tmp_path)}})
    gateway = Gateway(config)
    try:
        schema = create_app(gateway).openapi()
    finally:
        gateway.close()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    errors = 0
    for name, path in schema["paths"].items():
        for operation in path.values():
            for status, response in operation["responses"].items():
                if name in ("/healthz", "/readyz") and status == "503":
                    assert list(response["content"]) == ["application/json"]  # a state report
                elif status[0] in "45":
                    assert list(response.get("content", {})) == ["application/problem+json"]
                    errors += 1
    assert errors > 50
    bulk = schema["paths"]["/api/v1/devices/bulk"]["post"]
    assert set(bulk["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert {"400", "413", "422"} <= set(bulk["responses"])


def test_options_and_405_list_every_method_of_the_path(tmp_path: Path) -> None:
    config = parse_config({"gateway": {"id": "gw", "data_dir": str(tmp_path)}})
    gateway = Gateway(config)
    try:
        client = TestClient(create_app(gateway))
        options = client.options("/api/v1/devices/x")
        assert options.status_code == 204
        assert options.headers["allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"
        assert client.options("/api/v1/devices").headers["allow"] == "GET, HEAD, OPTIONS, POST"
        refused = client.request("TRACE", "/api/v1/devices")
        assert refused.status_code == 405
        assert refused.headers["allow"] == "GET, HEAD, OPTIONS, POST"
        assert refused.headers["content-type"] == "application/problem+json"
        assert client.options("/nowhere").status_code == 404
    finally:
        gateway.close()
