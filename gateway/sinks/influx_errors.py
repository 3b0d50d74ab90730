"""What an InfluxDB write failure means: retry later, drop the rejected points, or give up.

Like Telegraf's influxdb outputs, the sink only says "retryable or not"; the runtime retries.

=====================================  ===================================================
response                               outcome
=====================================  ===================================================
no response: refused, reset, timeout   RetryableSinkError
408, 429, 5xx                          RetryableSinkError, honouring Retry-After
500 "... not found" (1.x: unknown      RetryableSinkError every 30 s, naming what to check:
retention policy), 401, 403, 404       a misconfigured database must not cost the data;
                                       the runtime holds it until someone fixes the config
400, 422                               partial write: the server kept the valid points;
                                       the rejected ones are counted and dropped
other 4xx (e.g. 413)                   SinkError: this data can never be written
=====================================  ===================================================
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from gateway.errors import RetryableSinkError, SinkError

MISCONFIGURED_RETRY = 30.0
"""Seconds between attempts while credentials, bucket or database are wrong."""

__all__ = [
    "MAX_RETRY_AFTER",
    "MISCONFIGURED_RETRY",
    "PartialWrite",
    "classify",
    "count_rejected",
    "parse_retry_after",
    "server_message",
]

MAX_RETRY_AFTER = 300.0
"""Seconds: a longer Retry-After is cut to this, so a bogus header cannot stall the sink."""

_MESSAGE_LIMIT = 500
_RETRYABLE = frozenset({408, 429})
_PARTIAL = frozenset({400, 422})
_DROPPED = re.compile(r"\bdropped=(\d+)")
_UNPARSABLE = re.compile(r"unable to parse '")
_MISCONFIGURED = (401, 403, 404)
_HINTS = {
    401: "check the token (api v2) or username and password (api v1)",
    403: "the credentials may not write there: check the token's or user's permissions",
    404: "check the bucket and org (api v2) or database (api v1), and the url; a 1.x server "
    "before 1.8 needs api: v1",
    413: "the request is larger than the server accepts: lower runtime.write_max_batches",
}


@dataclass(frozen=True, slots=True)
class PartialWrite:
    """The server refused some (or all) points of a write and kept the others."""

    rejected: int | None
    """Points the server says it rejected; None if it did not say."""
    reason: str


def server_message(body: bytes | str | None) -> tuple[str, int | None]:
    """The error text of a response body and, for InfluxDB 3's per-line errors, their count.

    InfluxDB answers ``{"error": ...}`` (1.x), ``{"code": ..., "message": ...}`` (2.x) or
    ``{"error": ..., "data": [per-line errors]}`` (3.x); other servers may answer plain text.
    """
    if body is None:
        return "", None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.strip()
    try:
        document = json.loads(text)
    except ValueError:
        return text[:_MESSAGE_LIMIT], None
    if not isinstance(document, dict):
        return text[:_MESSAGE_LIMIT], None
    message = document.get("message") or document.get("error") or text
    data = document.get("data")
    lines = len(data) if isinstance(data, list) and data else None
    return str(message)[:_MESSAGE_LIMIT], lines


def count_rejected(message: str) -> int | None:
    """Points rejected according to an InfluxDB 1.x/2.x message; None if it does not say.

    ``partial write: field type conflict: ... dropped=1`` counts 1; each
    ``unable to parse '<line>'`` counts one line.
    """
    dropped = _DROPPED.findall(message)
    unparsable = len(_UNPARSABLE.findall(message))
    if not dropped and not unparsable:
        return None
    return sum(int(n) for n in dropped) + unparsable


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), at most
    ``MAX_RETRY_AFTER``; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is always GMT
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # nan
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def classify(
    status: int, body: bytes | str | None, retry_after: str | None, target: str
) -> SinkError | PartialWrite:
    """The outcome of an HTTP error response from ``target`` (e.g. "InfluxDB http://...")."""
    message, lines = server_message(body)
    detail = f": {message}" if message else ""
    if status in _PARTIAL:
        rejected = lines if lines is not None else count_rejected(message)
        return PartialWrite(rejected, message or f"HTTP {status}")
    hint = _HINTS.get(status)
    suffix = f" ({hint})" if hint else ""
    if status in _MISCONFIGURED or (status >= 500 and "not found" in message):
        return RetryableSinkError(
            f"{target}: HTTP {status}{detail}{suffix}", retry_after=MISCONFIGURED_RETRY
        )
    if status in _RETRYABLE or status >= 500:
        delay = parse_retry_after(retry_after)
        wait = f" (Retry-After {delay:g} s)" if delay is not None else ""
        return RetryableSinkError(f"{target}: HTTP {status}{detail}{wait}", retry_after=delay)
    return SinkError(f"{target}: HTTP {status}{detail}{suffix}")
