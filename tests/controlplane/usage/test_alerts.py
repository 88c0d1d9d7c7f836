"""Webhook delivery against a real HTTP server on 127.0.0.1: retries, give-ups, timeouts, and
statuses that never carry a response or error detail. The sink is on loopback, so these
deliveries allow internal destinations; test_webhook_destinations.py covers the refusals."""

from __future__ import annotations

import socket
import time

import pytest

from controlplane.usage.webhooks import new_client, post_webhook
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
