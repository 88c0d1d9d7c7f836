"""Webhook delivery against a real HTTP server on 127.0.0.1: retries, give-ups, timeouts, and
statuses that never carry a response or error detail. The sink is on loopback, so these
deliveries allow internal destinations; test_webhook_destinations.py covers the refusals."""

from __future__ import annotations

import socket
import time
from email.utils import formatdate

import pytest

from controlplane.usage.webhooks import (
    AttemptReport,
    new_client,
    post_webhook,
    retry_after_s,
    retry_delay_s,
)
from tests.fakes.slack import FakeSlack
from tests.fakes.webhook import WebhookSink

PAYLOAD = {"type": "budget_alert", "text": "Key 'alice' reached 50 %"}


async def post(url: str, *, attempts: int = 3, timeout_s: float = 2.0) -> str:
    async with new_client() as client:
        return await post_webhook(
            client,
            url,
            PAYLOAD,
            timeout_s=timeout_s,
            attempts=attempts,
            backoff_s=0.01,
            allow_internal=True,
        )


async def test_delivered_first_time() -> None:
    with WebhookSink([204]) as sink:
        assert await post(sink.url) == "delivered"
    assert sink.bodies == [PAYLOAD]


async def test_server_errors_are_retried() -> None:
    with WebhookSink([500, 503, 200]) as sink:
        assert await post(sink.url) == "delivered"
    assert len(sink.bodies) == 3


async def test_gives_up_after_the_attempts() -> None:
    with WebhookSink([502]) as sink:
        assert await post(sink.url) == "failed: HTTP 502 (after 3 attempts)"
    assert len(sink.bodies) == 3


@pytest.mark.parametrize(
    ("status", "text"),
    [(404, "failed: HTTP 404"), (302, "failed: HTTP 302 (redirects are not followed)")],
)
async def test_client_errors_and_redirects_are_not_retried(status: int, text: str) -> None:
    with WebhookSink([status]) as sink:
        assert await post(sink.url) == text
    assert len(sink.bodies) == 1


async def test_rate_limited_is_retried() -> None:
    with WebhookSink([429, 200]) as sink:
        assert await post(sink.url) == "delivered"


async def test_timeout() -> None:
    with WebhookSink([200], delay_s=0.6) as sink:
        assert await post(sink.url, attempts=2, timeout_s=0.2) == (
            "failed: timed out after 0.2s (after 2 attempts)"
        )


async def test_connection_refused_never_raises() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status = await post(f"http://127.0.0.1:{port}/hook", attempts=2)
    # Exactly this: no "Connection refused", errno or address that would tell a workspace-admin
    # how an internal port answered.
    assert status == "failed: unreachable (after 2 attempts)"


async def test_a_name_that_does_not_resolve_is_unreachable() -> None:
    assert await post("http://hooks.invalid/x", attempts=1) == "failed: unreachable"


async def test_the_answer_body_is_never_read() -> None:
    """A receiver answering with an endless body: the status is taken from the status line and
    the connection closed, instead of reading (and holding) the body until the timeout."""
    with WebhookSink([200], endless_body=True) as sink:
        started = time.monotonic()
        assert await post(sink.url, attempts=1, timeout_s=5.0) == "delivered"
        assert time.monotonic() - started < 2.0
    assert sink.body_bytes_sent < 8 * 1024 * 1024  # the client hung up early


async def test_a_trickling_answer_is_bounded_by_the_timeout_overall() -> None:
    """Each attempt (DNS, connect, send, status line) has one deadline, not one per read."""
    with WebhookSink([200], trickle_s=0.1, trickle_lines=30) as sink:
        started = time.monotonic()
        assert await post(sink.url, attempts=1, timeout_s=0.5) == "failed: timed out after 0.5s"
        assert time.monotonic() - started < 1.5


# ---- retries: backoff with jitter, Retry-After within a cap, every attempt reported ------------


async def test_retry_after_is_honoured_up_to_the_cap_and_each_attempt_is_reported() -> None:
    """A 429 asking for 7 s waits 7 s; a 503 asking for an hour waits the 30 s cap; a 500 waits
    the backoff. The receiver is real; the waits are recorded instead of slept."""
    waits: list[float] = []
    reports: list[AttemptReport] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def note(report: AttemptReport) -> None:
        reports.append(report)

    script = [(429, {"Retry-After": "7"}), (503, {"Retry-After": "3600"}), (500, {})]
    with FakeSlack(script) as slack:
        async with new_client() as client:
            status = await post_webhook(
                client, slack.url, {"text": "Budget alert: …"}, timeout_s=2.0, attempts=5,
                backoff_s=0.01, max_delay_s=30.0, allow_internal=True, on_attempt=note,
                sleep=sleep, rng=lambda: 0.5,
            )  # fmt: skip
    assert status == "delivered"
    assert [r.status for r in slack.requests] == [429, 503, 500, 200]
    assert waits == [7.0, 30.0, 0.04]
    assert [(r.attempt, r.status) for r in reports] == [
        (1, "retrying: HTTP 429"), (2, "retrying: HTTP 503"), (3, "retrying: HTTP 500"),
        (4, "delivered"),
    ]  # fmt: skip
    for report, wait in zip(reports, [*waits, 0], strict=True):
        assert report.ended_ms > 0
        expected_next = report.ended_ms + int(wait * 1000) if wait else 0
        assert report.next_attempt_ms == expected_next


async def test_no_retry_on_a_client_error_and_the_final_report_says_so() -> None:
    reports: list[AttemptReport] = []

    async def note(report: AttemptReport) -> None:
        reports.append(report)

    with WebhookSink([403]) as sink:
        async with new_client() as client:
            status = await post_webhook(
                client, sink.url, PAYLOAD, timeout_s=2.0, attempts=5, backoff_s=0.01,
                allow_internal=True, on_attempt=note,
            )  # fmt: skip
    assert status == "failed: HTTP 403" and len(sink.bodies) == 1
    assert [(r.attempt, r.status, r.next_attempt_ms) for r in reports] == [
        (1, "failed: HTTP 403", 0)
    ]


async def test_a_failing_recorder_does_not_stop_the_delivery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(report: AttemptReport) -> None:
        raise RuntimeError("database away")

    with WebhookSink([500, 200]) as sink:
        async with new_client() as client:
            status = await post_webhook(
                client, sink.url, PAYLOAD, timeout_s=2.0, attempts=3, backoff_s=0.01,
                allow_internal=True, on_attempt=broken,
            )  # fmt: skip
    assert status == "delivered" and len(sink.bodies) == 2
    assert "could not record attempt 1" in caplog.text


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    def delay(attempt: int, r: float, **kw: float) -> float:
        return retry_delay_s(attempt, backoff_s=1.0, max_delay_s=10.0, rng=lambda: r, **kw)

    assert [delay(n, 0.5) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert delay(3, 0.0) == 2.0 and delay(3, 0.999) == pytest.approx(5.996)  # [0.5, 1.5) × 4
    assert delay(1, 0.5, retry_after=3.0) == 3.0  # Retry-After wins over a shorter backoff
    assert delay(3, 0.5, retry_after=1.0) == 4.0  # … never shortens it
    assert delay(1, 0.5, retry_after=3600.0) == 10.0  # … and is honoured up to the cap


def test_retry_after_forms() -> None:
    now = 1_800_000_000.0
    assert retry_after_s("120", now) == 120.0
    assert retry_after_s(" 0 ", now) == 0.0
    date = formatdate(now + 30, usegmt=True)  # "Fri, 15 Jan 2027 08:00:30 GMT"
    assert retry_after_s(date, now) == pytest.approx(30.0)
    assert retry_after_s(formatdate(now - 30, usegmt=True), now) == 0.0  # in the past: now
    for junk in (None, "", "soon", "-5", "1.5", "9" * 10, "x" * 100):
        assert retry_after_s(junk, now) is None
