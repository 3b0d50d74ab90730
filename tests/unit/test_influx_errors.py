"""Classification of InfluxDB write failures: retry, partial write, or give up."""

from __future__ import annotations

import email.utils

import pytest

from gateway.errors import RetryableSinkError, SinkError
from gateway.sinks.influx_errors import (
    MAX_RETRY_AFTER,
    MISCONFIGURED_RETRY,
    PartialWrite,
    classify,
    count_rejected,
    parse_retry_after,
    server_message,
)

TARGET = "InfluxDB http://db:8086 (bucket b)"

# (status, body, Retry-After, expected class, words the message must contain)
STATUSES: list[tuple[int, str, str | None, type[SinkError], list[str]]] = [
    (429, '{"code":"too many requests","message":"org over limit"}', "7", RetryableSinkError,
     ["HTTP 429", "org over limit", "Retry-After 7 s"]),
    (503, "", None, RetryableSinkError, ["HTTP 503"]),
    (500, '{"error":"timeout"}', None, RetryableSinkError, ["HTTP 500: timeout"]),
    (502, "<html>Bad Gateway</html>", None, RetryableSinkError, ["Bad Gateway"]),
    (504, "", "1.5", RetryableSinkError, ["HTTP 504"]),
    (408, "", None, RetryableSinkError, ["HTTP 408"]),
    (500, '{"error":"retention policy not found: nope"}', None, RetryableSinkError,
     ["retention policy not found"]),
    (401, '{"error":"authorization failed"}', None, RetryableSinkError,
     ["HTTP 401", "authorization failed", "token"]),
    (403, '{"error":"\\"reader\\" user is not authorized to write to database \\"t1\\""}', None,
     RetryableSinkError, ["HTTP 403", "not authorized", "permissions"]),
    (404, '{"code":"not found","message":"bucket \\"nope\\" not found"}', None, RetryableSinkError,
     ["HTTP 404", 'bucket "nope" not found', "check the bucket"]),
    (404, '{"error":"database not found: \\"nope\\""}', None, RetryableSinkError,
     ["database not found"]),
    (413, '{"code":"request too large"}', None, SinkError, ["write_max_batches"]),
    (405, "", None, SinkError, ["HTTP 405"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "kind", "words"),
    STATUSES,
    ids=[f"{s[0]}-{s[3].__name__}" for s in STATUSES],
)
def test_statuses_are_retryable_or_final(
    status: int, body: str, retry_after: str | None, kind: type[SinkError], words: list[str]
) -> None:
    outcome = classify(status, body.encode(), retry_after, TARGET)
    assert type(outcome) is kind
    assert str(outcome).startswith(TARGET)
    for word in words:
        assert word in str(outcome)


def test_a_misconfigured_database_holds_the_data_and_retries_slowly() -> None:
    outcome = classify(401, b"", None, TARGET)
    assert isinstance(outcome, RetryableSinkError)
    assert outcome.retry_after == MISCONFIGURED_RETRY


def test_retry_after_is_carried_by_the_retryable_error() -> None:
    outcome = classify(429, b"", "12", TARGET)
    assert isinstance(outcome, RetryableSinkError)
    assert outcome.retry_after == 12.0
    plain = classify(503, b"", None, TARGET)
    assert isinstance(plain, RetryableSinkError)
    assert plain.retry_after is None


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("0", 0.0),
        ("30", 30.0),
        (" 2.5 ", 2.5),
        ("-4", 0.0),
        ("86400", MAX_RETRY_AFTER),
        (email.utils.formatdate(NOW + 42, usegmt=True), 42.0),
        (email.utils.formatdate(NOW - 42, usegmt=True), 0.0),
        ("soon", None),
        ("nan", None),
        ("", None),
    ],
)
def test_retry_after_seconds_or_http_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


PARTIAL: list[tuple[int, str, int | None]] = [
    # InfluxDB 1.x: a type conflict, counted by the server.
    (400, '{"error":"partial write: field type conflict: input field \\"z\\" on measurement '
          '\\"m\\" is type float, already exists as type integer dropped=1"}', 1),
    # InfluxDB 1.x: unparsable lines are listed, the valid ones kept.
    (400, '{"error":"partial write: unable to parse \'bad line\': invalid field format '
          'dropped=0"}', 1),
    (400, '{"error":"unable to parse \'a\': missing fields\\nunable to parse \'b\': x"}', 2),
    # InfluxDB 1.x/2.x: points outside the retention policy.
    (400, '{"error":"partial write: points beyond retention policy dropped=3"}', 3),
    # InfluxDB 3: one entry per rejected line.
    (400, '{"error":"partial write of line protocol occurred","data":[{"line_number":2},'
          '{"line_number":5}]}', 2),
    # A server that does not say how many: the caller counts the whole write.
    (400, '{"code":"invalid","message":"failed to parse line protocol"}', None),
    (422, "points are outside the bucket's retention", None),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "rejected"), PARTIAL)
def test_400_is_a_partial_write_counting_what_the_server_rejected(
    status: int, body: str, rejected: int | None
) -> None:
    outcome = classify(status, body.encode(), None, TARGET)
    assert isinstance(outcome, PartialWrite)
    assert outcome.rejected == rejected
    assert outcome.reason
    assert not outcome.reason.startswith("{")


def test_count_rejected_sums_every_dropped_count() -> None:
    assert count_rejected("partial write: a dropped=2; partial write: b dropped=5") == 7
    assert count_rejected("something else") is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, ""),
        (b"", ""),
        (b'{"error":"database not found"}', "database not found"),
        (b'{"code":"invalid","message":"bad"}', "bad"),
        (b"plain text\n", "plain text"),
        (b"[1, 2]", "[1, 2]"),
        (b"\xff\xfe broken", "\ufffd\ufffd broken"),
        (b"x" * 10_000, "x" * 500),
    ],
)
def test_server_message_reads_json_or_text(body: bytes | None, message: str) -> None:
    assert server_message(body)[0] == message
