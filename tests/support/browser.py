"""Headless Chromium for page tests, and a log of what a page did on the network and console.

Playwright's own browser download does not work on these machines: it drives the Debian
``chromium`` package instead (``apt-get install --no-install-recommends chromium``).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, sync_playwright

__all__ = ["PageLog", "chromium"]

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """The system Chromium under Playwright, or skip the test with how to install it."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip(
            "chromium is not installed (apt-get install --no-install-recommends chromium); "
            "Playwright's own browser download is not used"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageLog:
    """Every request a page made, every one that failed or got an error status, every console
    error, Content Security Policy violation and uncaught exception, from ``attach`` on."""

    origin: str
    requests: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    """``"METHOD /path STATUS"``, or ``"METHOD /path failed: REASON"`` for network errors."""
    console_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    """Console messages of any level about the page's Content-Security-Policy (a blocked
    inline style, script or connection)."""
    page_errors: list[str] = field(default_factory=list)

    @classmethod
    def attach(cls, page: Page, origin: str) -> PageLog:
        log = cls(origin.rstrip("/"))
        page.on("request", log._request)
        page.on("requestfailed", log._failed)
        page.on("response", log._response)
        page.on("console", log._console)
        page.on("pageerror", lambda error: log.page_errors.append(str(error)))
        return log

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _failed(self, request: Request) -> None:
        self.failures.append(f"{request.method} {_path(request.url)} failed: {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.failures.append(
                f"{response.request.method} {_path(response.url)} {response.status}"
            )

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.csp_violations.append(message.text)
        if message.type == "error":
            self.console_errors.append(message.text)

    def reload(self, page: Page) -> None:
        """Reload ``page``; the requests the reload cuts short (the live stream) are no
        failures."""
        page.reload()
        self.failures = [f for f in self.failures if not f.endswith("failed: net::ERR_ABORTED")]

    def foreign_requests(self) -> list[str]:
        """Requests to anywhere but the page's own origin (a CDN, a web font...)."""
        return [url for url in self.requests if not _same_origin(url, self.origin)]

    def assert_clean(self, expected_failures: Iterable[str] = ()) -> None:
        """Only own-origin requests, no failed request but the expected ones (which Chromium
        also reports on the console: "the server responded with a status of 422"), no other
        console error, no CSP violation and no uncaught exception."""
        expected = list(expected_failures)
        assert self.requests, "the page made no request at all"
        assert not self.foreign_requests(), self.foreign_requests()
        assert sorted(self.failures) == sorted(expected), self.failures  # requests may race
        statuses = [f"status of {failure.rsplit(' ', 1)[1]}" for failure in expected]
        unexpected = [e for e in self.console_errors if not any(s in e for s in statuses)]
        assert not unexpected, unexpected
        assert not self.csp_violations, self.csp_violations
        assert not self.page_errors, self.page_errors


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _same_origin(url: str, origin: str) -> bool:
    return url == origin or url.startswith(origin + "/")
