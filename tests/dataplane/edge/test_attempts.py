"""The attempt chain: it claims a half-open target's probe only when it sends to it, records the
outcome with the target's thresholds, and returns what it settled on (``Served``), which the
relay takes."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from dataplane.asgi import Header
from dataplane.config.snapshot import Snapshot
from dataplane.edge.attempts import Attempts
from dataplane.edge.doors.anthropic import AnthropicDoor
from dataplane.edge.relay import Exchange, Relay, Served
from dataplane.metering.record import RequestRecord
from dataplane.policy.auth import Principal
from dataplane.policy.breaker import CircuitBreaker
from dataplane.policy.cache import CacheRecorder
from dataplane.policy.routing import Plan
from dataplane.policy.runtime import Target
from dataplane.providers.base import (
    BufferedResponse,
    Diagnosis,
    UpstreamRequest,
    UpstreamResponse,
)
from tests.dataplane import runtimes
from tests.dataplane.anthropic_streams import text_stream
from tests.dataplane.conftest import build_snapshot


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Upstream:
    """A provider that answers ``status`` and notes whether its breaker's probe was claimed
    (by this request) when the request reached it."""

    kind = "simulator"

    def __init__(self, name: str, breaker: CircuitBreaker, status: int = 200) -> None:
        self.name = name
        self.breaker = breaker
        self.status = status
        self.probe_free_when_sent: list[bool] = []

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        self.probe_free_when_sent.append(self.breaker.may_probe(self.name))
        body = b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}'
        return BufferedResponse(self.status, [], body if self.status != 200 else b"{}")

    def diagnose(self, model: str) -> Diagnosis:
        return Diagnosis()

    async def aclose(self) -> None:
        return None


REQUEST = UpstreamRequest(
    path="/v1/messages",
    query=b"",
    headers=(),
    body=b"{}",
    model="claude-haiku-4-5",
    stream=False,
    request_id="req_1",
    json={},
    betas=(),
)


def half_open(breaker: CircuitBreaker, clock: Clock, name: str) -> None:
    for _ in range(2):
        breaker.record(name, False, failures=2, cooldown_s=10)
    clock.now += 11
    assert breaker.may_probe(name)


async def test_the_probe_is_claimed_when_sent_and_served_says_by_whom() -> None:
    clock = Clock()
    breaker = CircuitBreaker(clock)
    a, b = Upstream("a", breaker, status=529), Upstream("b", breaker)
    plan = Plan((Target(a, "a", "", 2, 10.0), Target(b, "b", "", 2, 10.0)))
    half_open(breaker, clock, "a")
    rec = RequestRecord("req_1", "dp", "/v1/messages")
    served = await Attempts(breaker).run(REQUEST, plan, rec, Exchange())
    assert a.probe_free_when_sent == [False]  # claimed by this request before it was sent
    assert breaker.state("a") == "open"  # the probe failed: another cooldown of the route's 10 s
    assert breaker.cooldown_left("a") == 10.0
    assert (served.provider, served.attempts, served.upstream.status) == ("b", 2, 200)
    assert served.request == REQUEST and served.chunks is None
    assert [x.outcome for x in rec.attempt_log] == ["fell_back", "served"]


async def test_when_every_attempt_fails_the_last_error_is_served() -> None:
    breaker = CircuitBreaker(Clock())
    a = Upstream("a", breaker, status=529)
    rec = RequestRecord("req_1", "dp", "/v1/messages")
    served = await Attempts(breaker).run(REQUEST, Plan((Target(a, "a", ""),)), rec, Exchange())
    assert (served.provider, served.attempts, served.upstream.status) == ("a", 1, 529)
    assert a.probe_free_when_sent == [False]  # closed: there was no probe to take


async def _relayed(stream: bytes) -> list[Header] | None:
    """Relay ``stream`` as a served streamed 200 (cut into 7-byte chunks); what answer gives."""
    runtime = runtimes.runtime(Snapshot.from_proto(build_snapshot("http://127.0.0.1:1")))
    key = next(iter(runtime.snapshot.keys_by_hash.values()))
    principal = Principal(key, runtime.snapshot.workspaces[key.workspace], runtime)
    rec = RequestRecord("req_1", "dp", "/v1/messages")
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    relay = Relay(AnthropicDoor(), principal, rec, send, [], Exchange(), CacheRecorder())
    request = dataclasses.replace(REQUEST, stream=True)
    chunks = [stream[i : i + 7] for i in range(0, len(stream), 7)]
    served = Served(request, BufferedResponse(200, [], b""), "sim", 1, _iterate(chunks))
    headers = await relay.answer(served)
    assert sent[0]["status"] == 200 and relay.exchange.answered
    assert (b"x-tollgate-attempts", b"1") in sent[0]["headers"]
    return headers


async def _iterate(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_the_relay_returns_its_headers_only_for_a_complete_answer() -> None:
    """What the handler stores in the response cache: a complete stream only (message_stop seen,
    no error), never one that ended early."""
    complete = await _relayed(text_stream())
    assert complete is not None and (b"x-tollgate-provider", b"sim") in complete
    assert await _relayed(text_stream(finish=False)) is None
