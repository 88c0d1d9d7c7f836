"""Metering gaps, closed (P2 findings 2 and 5), through real servers: a control plane (its ledger,
on SQLite and PostgreSQL), a data plane, and the strict fakes of Anthropic and Bedrock.

* A stream the client closes after reading the answer, before its final ``message_delta``, is
  billed for the output it relayed (estimated, flagged ``output_estimated``), in the ledger and on
  the budget — not for input plus one token.
* A non-streamed call the client abandons while the upstream generates it is read to its end and
  billed exactly (status 499), not released.
* ``count_tokens`` passes the rate limits (never the budget) and leaves a zero-cost usage row.
* Server-tool fees (``usage.server_tool_use``) are priced, budgeted and in the ledger, streamed or
  not, through the Anthropic and the Bedrock provider and the Bedrock door.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from controlplane.server import running
from controlplane.settings import Settings as ControlPlaneSettings
from dataplane.policy.counters.memory import MemoryCounters
from dataplane.process.server import DataPlane, Settings
from gwapi.v1 import admin_pb2, common_pb2, telemetry_pb2
from gwclient.client import GatewayClient
from gwctl import usage as gwctl_usage
from gwctl.main import build_parser
from tests.dataplane.providers.test_bedrock import ENV as BEDROCK_ENV
from tests.e2e.faults_support import WatchedAnthropic
from tests.e2e.providers_support import bedrock_at
from tests.fakes import bedrock as fake_bedrock
from tests.fakes.anthropic import UPSTREAM_KEY, Scripted, anthropic_at, message_body, stream_frames

pytestmark = pytest.mark.e2e

ADMIN = "metering-admin-token-0123456789"
DP_TOKEN = "metering-dataplane-token-0123456789"
MODEL = "claude-sonnet-4-5-20250929"  # $3 input, $15 output per MTok; web search $10 per 1,000
SEARCH_MICROS = 10_000
BUDGET = 5_000_000  # $5/day: never refuses here, so every reservation shows in the counters
USAGE = {"input_tokens": 20, "output_tokens": 1}
SSE = [(b"content-type", b"text/event-stream")]
JSON = [(b"content-type", b"application/json")]


def cost(input_tokens: int, output_tokens: int, searches: int = 0) -> int:
    return input_tokens * 3 + output_tokens * 15 + searches * SEARCH_MICROS


def body(stream: bool, max_tokens: int = 1000) -> bytes:
    return orjson.dumps(
        {
            "model": MODEL,
            "max_tokens": max_tokens,
            "stream": stream,
            "messages": [{"role": "user", "content": "What is new on Mars?"}],
        }
    )


@dataclass
class Stack:
    admin: GatewayClient
    dp: DataPlane
    upstream: WatchedAnthropic
    bedrock: fake_bedrock.FakeBedrock
    keys: dict[str, tuple[str, str]]  # name -> (id, secret)

    def client(self, timeout: float = 10) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.dp.port}", timeout=timeout)

    def headers(self, key: str) -> dict[str, str]:
        return {
            "x-api-key": self.keys[key][1],
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        }

    def budget(self, key: str) -> tuple[int, int, int]:
        """(spent, reserved, in flight) of a key in the data plane's counters."""
        counters = self.dp.counters
        assert isinstance(counters, MemoryCounters)
        st = counters._scopes.get(f"k:{self.keys[key][0]}")  # no read API: look inside
        if st is None:
            return 0, 0, 0
        budgets = st.budgets.values()
        return sum(b.spent for b in budgets), sum(b.reserved for b in budgets), len(st.flight)

    async def ledger(self, n: int) -> list[telemetry_pb2.UsageEvent]:
        """The ledger's rows once it holds ``n`` (oldest first)."""
        deadline = time.monotonic() + 15
        while True:
            rows = await self.admin.query_usage()
            if rows and rows[0].requests >= n:
                break
            assert time.monotonic() < deadline, f"the ledger has {rows[0].requests} of {n} rows"
            await asyncio.sleep(0.05)
        events = [e async for e in self.admin.tail_logs(limit=100)]
        assert len(events) == n, [e.path for e in events]
        return events

    async def settled(self, key: str, micros: int) -> None:
        """The key's budget holds exactly ``micros`` spent, nothing reserved or in flight."""
        deadline = time.monotonic() + 5
        while self.budget(key) != (micros, 0, 0) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert self.budget(key) == (micros, 0, 0), "stuck reservation or unbilled usage"


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    upstream = WatchedAnthropic()
    bedrock = fake_bedrock.FakeBedrock()
    await upstream.start()
    await bedrock.start()
    settings = ControlPlaneSettings(
        listen="127.0.0.1:0", db_url=db_url, admin_token=ADMIN, dataplane_token=DP_TOKEN
    )
    try:
        async with running(settings) as cp, GatewayClient(f"127.0.0.1:{cp.port}", ADMIN) as admin:
            await admin.create_workspace(common_pb2.Workspace(name="team-a"))
            await admin.create_provider(anthropic_at(upstream.base_url))
            await admin.create_provider(bedrock_at(bedrock.base_url))
            budget = common_pb2.Budget(amount_micros=BUDGET, period=common_pb2.PERIOD_DAY)
            keys = {}
            for name, provider, limits in (
                ("alice", "anthropic", common_pb2.Limits(budgets=[budget])),
                ("bob", "bedrock", common_pb2.Limits(budgets=[budget])),
                # A budget of one micro-dollar, spent by the first request; 4 requests a minute.
                ("carol", "anthropic", common_pb2.Limits(
                    budgets=[common_pb2.Budget(amount_micros=1, period=common_pb2.PERIOD_DAY)],
                    rpm=4,
                )),
            ):  # fmt: skip
                created = await admin.create_key(
                    admin_pb2.CreateKeyRequest(
                        workspace="team-a", name=name, provider=provider, limits=limits
                    )
                )
                keys[name] = (created.key.id, created.secret)
            dp = DataPlane(
                Settings(
                    listen="127.0.0.1:0",
                    control_plane=f"127.0.0.1:{cp.port}",
                    token=DP_TOKEN,
                    state_dir=tmp_path / "dp",
                    env={"UPSTREAM_KEY": UPSTREAM_KEY, **BEDROCK_ENV},
                )
            )
            await dp.start()
            try:
                await dp.wait_for_snapshot()
                yield Stack(admin, dp, upstream, bedrock, keys)
            finally:
                await dp.stop()
    finally:
        await bedrock.stop()
        await upstream.stop()


# --- finding 2: closing early no longer avoids the output cost ------------------------------------


async def test_stream_closed_before_its_final_usage_is_billed_for_the_output_relayed(
    stack: Stack,
) -> None:
    texts = [f"Chunk {i:02d} of a long answer about Mars. " for i in range(30)]
    content_bytes = sum(len(t) for t in texts)
    frames = stream_frames(MODEL, texts, usage=USAGE, output_tokens=400)
    # The whole text arrives at once; the final message_delta (the output count) comes late.
    pause = {len(frames) - 2: 30.0}
    stack.upstream.script.append(Scripted(headers=SSE, frames=frames, pauses=pause))
    async with stack.client() as c:
        async with c.stream("POST", "/v1/messages", content=body(True), headers=stack.headers("alice")) as r:  # fmt: skip
            got = b""
            async for chunk in r.aiter_raw():
                got += chunk
                if b"content_block_stop" in got:
                    break  # read the whole answer, then hang up
    assert b"message_delta" not in got and texts[-1].encode() in got

    (event,) = await stack.ledger(1)
    estimate = -(-content_bytes // 3)  # ESTIMATE_BYTES_PER_TOKEN
    assert event.client_disconnected and event.usage.output_estimated
    assert event.usage.input_tokens == 20 and event.usage.output_tokens == estimate > 300
    assert event.usage.cost_micros == cost(20, estimate)  # not 20 input + 1 output token
    await stack.settled("alice", cost(20, estimate))
    assert stack.upstream.hung_up, "a stream is still cancelled when the client leaves"


async def test_non_streamed_call_abandoned_by_its_client_is_read_to_its_end_and_billed(
    stack: Stack,
) -> None:
    answer = message_body(MODEL, "A long answer.", usage=USAGE, output_tokens=500)
    stack.upstream.script.append(Scripted(headers=JSON, frames=[answer], wait=1.0))
    async with stack.client(timeout=0.3) as c:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
            await c.post("/v1/messages", content=body(False), headers=stack.headers("alice"))

    (event,) = await stack.ledger(1)
    assert (event.status, event.error_type) == (499, "client_disconnected")
    assert event.client_disconnected and not event.usage.output_estimated
    assert (event.usage.input_tokens, event.usage.output_tokens) == (20, 500)
    assert event.usage.cost_micros == cost(20, 500)  # exact, as the upstream billed it
    assert event.latency_ms >= 1000  # the gateway waited for the answer, the client did not
    await stack.settled("alice", cost(20, 500))
    assert len(stack.upstream.requests) == 1  # no retry for a client that is gone


# --- finding 5: count_tokens and server-tool fees ------------------------------------------------


async def test_count_tokens_is_rate_limited_never_budgeted_and_recorded(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    h = stack.headers("carol")
    async with stack.client() as c:
        # The first request spends carol's one-micro-dollar budget; the next one is refused.
        assert (await c.post("/v1/messages", content=body(False), headers=h)).status_code == 200
        spent = await c.post("/v1/messages", content=body(False), headers=h)
        assert spent.status_code == 429 and "Budget of" in spent.json()["error"]["message"]
        # Counting costs nothing: served with the budget spent, within rpm 4 (1 used already).
        for _ in range(3):
            r = await c.post("/v1/messages/count_tokens", content=body(False), headers=h)
            assert r.status_code == 200 and r.json()["input_tokens"] > 0
        r = await c.post("/v1/messages/count_tokens", content=body(False), headers=h)
    assert r.status_code == 429 and r.headers["retry-after"].isdigit()
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert r.json()["error"]["message"].startswith(
        "Rate limit of 4 requests per minute for key 'carol' reached; retry in "
    )
    assert len(stack.upstream.requests) == 4  # the refused ones never reached the upstream

    events = await stack.ledger(6)
    counts = [e for e in events if e.path == "/v1/messages/count_tokens"]
    assert [e.status for e in counts] == [200, 200, 200, 429]
    for e in counts:
        assert e.usage.cost_micros == 0 and e.usage.input_tokens == 0 and e.model_served
    # gwctl usage counts them as requests, at no cost.
    args = usage_args("--key", stack.keys["carol"][0], "-o", "json")
    assert await gwctl_usage.run(stack.admin, args) == 0
    total = orjson.loads(capsys.readouterr().out)["total"]
    assert (total["requests"], total["errors"]) == (6, 2)
    assert total["cost_micros"] == events[0].usage.cost_micros > 0  # the one Messages answer


def usage_args(*argv: str) -> argparse.Namespace:
    """``gwctl usage …`` parsed by gwctl's own parser (every flag gets its real default)."""
    return build_parser().parse_args(["usage", *argv])


def _searches(searches: int, fetches: int = 0) -> dict[str, Any]:
    return {**USAGE, "server_tool_use": {"web_search_requests": searches, "web_fetch_requests": fetches}}  # fmt: skip


async def test_server_tool_fees_are_priced_budgeted_and_in_the_ledger(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Anthropic provider: a stream whose final usage reports 3 searches, then a plain answer
    # with 2 searches and a fetch (fetches are free in the shipped table).
    frames = stream_frames(MODEL, ["Searching", " done."], usage=_searches(0), output_tokens=50)
    final = orjson.loads(frames[-2].split(b"data: ", 1)[1])
    final["usage"]["server_tool_use"] = {"web_search_requests": 3}
    frames[-2] = b"event: message_delta\ndata: " + orjson.dumps(final) + b"\n\n"
    stack.upstream.script.append(Scripted(headers=SSE, frames=frames))
    stack.upstream.script.append(
        Scripted(headers=JSON, frames=[message_body(MODEL, "ok", _searches(2, 1), 60)])
    )
    # Bedrock provider (bob), and the Bedrock door (alice's Anthropic provider behind it).
    stack.bedrock.script.append(
        fake_bedrock.Scripted(
            headers=[(b"content-type", b"application/vnd.amazon.eventstream")],
            frames=fake_bedrock.stream_frames(MODEL, ["b"], usage=_searches(1), output_tokens=70),
        )
    )
    stack.upstream.script.append(
        Scripted(
            headers=SSE,
            frames=stream_frames(MODEL, ["d"], usage=_searches(4), output_tokens=80),
        )
    )
    door_body = {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 100,
        "anthropic_version": "bedrock-2023-05-31",
    }
    async with stack.client() as c:
        r = await c.post("/v1/messages", content=body(True), headers=stack.headers("alice"))
        assert r.status_code == 200 and b"message_stop" in r.content
        r = await c.post("/v1/messages", content=body(False), headers=stack.headers("alice"))
        assert r.status_code == 200
        r = await c.post("/v1/messages", content=body(True), headers=stack.headers("bob"))
        assert r.status_code == 200 and b"message_stop" in r.content
        r = await c.post(
            "/bedrock/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream",
            content=orjson.dumps(door_body),
            headers={"authorization": f"Bearer {stack.keys['alice'][1]}", "content-type": "application/json"},
        )  # fmt: skip
        assert r.status_code == 200

    events = await stack.ledger(4)
    got = [
        (e.provider, e.usage.web_search_requests, e.usage.web_fetch_requests, e.usage.cost_micros)
        for e in events
    ]
    assert got == [
        ("anthropic", 3, 0, cost(20, 50, 3)),
        ("anthropic", 2, 1, cost(20, 60, 2)),
        ("bedrock", 1, 0, cost(20, 70, 1)),
        ("anthropic", 4, 0, cost(20, 80, 4)),
    ]
    assert events[3].path.startswith("/bedrock/model/")
    await stack.settled("alice", cost(20, 50, 3) + cost(20, 60, 2) + cost(20, 80, 4))
    await stack.settled("bob", cost(20, 70, 1))
    (total,) = await stack.admin.query_usage()
    assert (total.web_search_requests, total.web_fetch_requests) == (10, 1)
    args = usage_args("--by", "provider")
    assert await gwctl_usage.run(stack.admin, args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-3] == "SEARCHES" and lines[-1].split()[-2] == "10"
