"""A data plane on loopback, fed a hand-built snapshot, in front of the strict fake upstream.

No control plane here: the subscriber retries against a closed port while the tests inject the
snapshot directly, and usage events stay in the spool where the tests read them back.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from dataplane.config.snapshot import Snapshot
from dataplane.process import server
from dataplane.process.server import DataPlane, Settings
from dataplane.providers.transport import Transport
from gwapi.v1 import common_pb2, discovery_pb2, telemetry_pb2
from tests.fakes.anthropic import UPSTREAM_KEY, FakeAnthropic

SECRET = "gw-test-0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
REVOKED = "gw-revoked-0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
EXPIRED = "gw-expired-0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
SIMULATED = "gw-sim-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH"
LIMITED = "gw-limited-0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
SUBSCRIBER = "gw-subscriber-0123456789abcdefghijklmnopqrstuvwxyzAB"
OAUTH_TOKEN = "sk-ant-oat01-user-subscription-token"


def sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def rates(i: str, w5: str, w1: str, r: str, o: str) -> common_pb2.PriceRates:
    def m(x: str) -> int:
        whole, _, frac = x.partition(".")
        return int(whole) * 1_000_000 + int((frac + "000000")[:6])

    return common_pb2.PriceRates(
        input=m(i), cache_write_5m=m(w5), cache_write_1h=m(w1), cache_read=m(r), output=m(o)
    )


PRICES = [
    common_pb2.Price(
        model_prefix="claude-opus-4-8",
        family="opus",
        family_default=True,
        rates=rates("5", "6.25", "10", "0.50", "25"),
    ),
    common_pb2.Price(
        model_prefix="claude-sonnet-4-5",
        family="sonnet",
        family_default=True,
        rates=rates("3", "3.75", "6", "0.30", "15"),
        long_context_threshold=200_000,
        long_context_beta="context-1m",
        long_rates=rates("6", "7.50", "12", "0.60", "22.50"),
    ),
    common_pb2.Price(
        model_prefix="claude-haiku-4-5",
        family="haiku",
        family_default=True,
        rates=rates("1", "1.25", "2", "0.10", "5"),
    ),
]


def build_snapshot(upstream_url: str, version: str = "v1") -> discovery_pb2.Snapshot:
    now = int(time.time() * 1000)
    ws = common_pb2.Workspace(name="team-a")

    def key(
        id: str, secret: str, name: str, provider: str = "anthropic", **extra: Any
    ) -> discovery_pb2.SnapshotKey:
        return discovery_pb2.SnapshotKey(
            id=id,
            secret_sha256=sha(secret),
            name=name,
            workspace="team-a",
            provider=provider,
            **extra,
        )

    snap = discovery_pb2.Snapshot(
        version=version,
        built_at_ms=now,
        workspaces=[ws],
        providers=[
            common_pb2.Provider(
                name="anthropic",
                kind="anthropic",
                base_url=upstream_url,
                api_key_env="UPSTREAM_KEY",
                options={"timeout_read_s": "2"},
            ),
            common_pb2.Provider(name="sim", kind="simulator"),
            common_pb2.Provider(
                name="subscription",
                kind="anthropic",
                base_url=upstream_url,
                options={"auth": "passthrough"},
            ),
            common_pb2.Provider(
                name="dead",
                kind="anthropic",
                base_url="http://127.0.0.1:9",
                api_key_env="UPSTREAM_KEY",
            ),
        ],
        keys=[
            key("key_alice", SECRET, "alice-laptop"),
            key("key_old", REVOKED, "old-laptop", revoked=True),
            key("key_exp", EXPIRED, "temp", expires_at_ms=now - 1000),
            key("key_sim", SIMULATED, "demo", provider="sim"),
            key("key_lim", LIMITED, "haiku-only", models=["claude-haiku-*"]),
        ],
        prices=PRICES,
    )
    snap.keys.append(key("key_sub", SUBSCRIBER, "max-plan", provider="subscription"))
    return snap


@pytest.fixture
def upstream_oauth_tokens() -> tuple[str, ...]:
    """The Claude subscription tokens the fake Anthropic API takes (a module may override)."""
    return (OAUTH_TOKEN,)


@pytest.fixture
async def upstream(upstream_oauth_tokens: tuple[str, ...]) -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic(oauth_tokens=upstream_oauth_tokens)
    await fake.start()
    yield fake
    await fake.stop()


async def start_dataplane(
    state_dir: Path, snapshot: discovery_pb2.Snapshot | None, **kw: Any
) -> DataPlane:
    settings = Settings(
        listen="127.0.0.1:0",
        control_plane="127.0.0.1:1",
        token="dp-token",
        state_dir=state_dir,
        env={"UPSTREAM_KEY": UPSTREAM_KEY},
        **kw,
    )
    dp = DataPlane(settings)
    await dp.start()
    if snapshot is not None:
        dp.holder.swap(Snapshot.from_proto(snapshot))
    return dp


@pytest.fixture
async def dataplane(tmp_path: Path, upstream: FakeAnthropic) -> AsyncIterator[DataPlane]:
    dp = await start_dataplane(
        tmp_path / "dp", build_snapshot(upstream.base_url), max_body=1024 * 1024
    )
    yield dp
    await dp.stop()


@pytest.fixture
async def client(dataplane: DataPlane) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dataplane.port}", timeout=10) as c:
        yield c


async def usage_events(
    dp: DataPlane, n: int, timeout: float = 3.0
) -> list[telemetry_pb2.UsageEvent]:
    """Wait until the data plane has spooled ``n`` usage events and return them."""
    deadline = time.monotonic() + timeout
    while True:
        records = dp.spool.pending(10_000)
        if len(records) >= n or time.monotonic() > deadline:
            return [telemetry_pb2.UsageEvent.FromString(p) for _, p in records]
        await asyncio.sleep(0.02)


@pytest.fixture
def jwt_decodes(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """One entry per ``jwt.decode`` call from now (each call still decodes): how often a
    token was really verified rather than found in a cache."""
    calls: list[None] = []
    real = jwt.decode

    def counting(*args: Any, **kw: Any) -> Any:
        calls.append(None)
        return real(*args, **kw)

    monkeypatch.setattr(jwt, "decode", counting)
    return calls


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The settings each ``dataplane.process.server.main()`` call would serve with, in order
    (``server.run`` is replaced: nothing is started)."""
    seen: list[Any] = []

    async def fake_run(settings: Any) -> None:
        seen.append(settings)

    monkeypatch.setattr(server, "run", fake_run)
    return seen


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    """The providers' shared HTTP transport, closed after the test."""
    t = Transport()
    yield t
    await t.aclose()
