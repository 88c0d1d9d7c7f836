"""A data plane on loopback whose control plane is the strict sign-in fake (tests/fakes/signin.py):
the snapshot arrives over a real Watch stream, every sign-in step is a real gRPC call."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from dataplane.process.server import DataPlane, Settings
from tests.fakes.anthropic import UPSTREAM_KEY, FakeAnthropic
from tests.fakes.signin import DP_TOKEN, FakeSignInControlPlane, sso_snapshot

StartDataPlane = Callable[..., Awaitable[DataPlane]]


@pytest.fixture
def upstream_oauth_tokens() -> tuple[str, ...]:
    """This module's fake Anthropic API takes no subscription tokens."""
    return ()


@pytest.fixture
async def cp(upstream: FakeAnthropic) -> AsyncIterator[FakeSignInControlPlane]:
    # Only the RPCs a data plane calls are served (the rest answer UNIMPLEMENTED).
    fake = FakeSignInControlPlane(sso_snapshot(upstream.base_url))  # type: ignore[abstract]
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def start_dp(tmp_path: Path, cp: FakeSignInControlPlane) -> AsyncIterator[StartDataPlane]:
    started: list[DataPlane] = []

    async def start(wait: bool = True, **kw: object) -> DataPlane:
        settings = Settings(
            listen=str(kw.pop("listen", "127.0.0.1:0")),
            control_plane=cp.address,
            token=DP_TOKEN,
            state_dir=Path(str(kw.pop("state_dir", tmp_path / f"dp{len(started)}"))),
            env={"UPSTREAM_KEY": UPSTREAM_KEY},
            drain_seconds=0,
            graceful_s=1,
            **kw,  # type: ignore[arg-type]
        )
        dp = DataPlane(settings)
        await dp.start()
        started.append(dp)
        if wait:
            await dp.wait_for_snapshot()
        return dp

    yield start
    for dp in started:
        await dp.stop()


@pytest.fixture
async def dp(start_dp: StartDataPlane) -> DataPlane:
    return await start_dp()


@pytest.fixture
async def client(dp: DataPlane) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}", timeout=10) as c:
        yield c


async def wait_for_version(dp: DataPlane, version: str, timeout: float = 5.0) -> None:
    import asyncio

    async with asyncio.timeout(timeout):
        while dp.holder.current is None or dp.holder.current.version != version:
            await asyncio.sleep(0.01)
