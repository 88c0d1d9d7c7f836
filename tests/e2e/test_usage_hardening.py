"""P2 finding 1 against real servers: a PostgreSQL-backed control plane (a subprocess), a data plane
and the strict fake upstream. Before the fix each of these stopped the data plane's usage
reporting for good: the same batch was resent for ever while the ledger stood still.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from dataplane.process.server import DataPlane
from dataplane.sync.spool import Spool
from gwapi.v1 import common_pb2, telemetry_pb2
from gwclient.client import GatewayClient
from tests.conftest import _reset_pg_schema
from tests.e2e.test_gateway import (
    ControlPlaneProcess,
    alice_on_control_plane,
    start_dp,
    total,
    wait_for,
)
from tests.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

MODEL = "claude-sonnet-4-5-20250929"


@dataclass
class Setup:
    cp: ControlPlaneProcess
    admin: GatewayClient
    secret: str
    tmp: Path


@pytest.fixture
async def setup(pg_database: str, tmp_path: Path) -> AsyncIterator[Setup]:
    _reset_pg_schema(pg_database)
    async with alice_on_control_plane(pg_database, tmp_path) as s:
        yield Setup(s.cp, s.admin, s.created.secret, tmp_path)


def body(model: str = MODEL, text: str = "hi") -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "max_tokens": 20,
            "stream": False,
            "messages": [{"role": "user", "content": text}],
        }
    )


def headers(secret: str, **extra: str) -> dict[str, str]:
    return {
        "x-api-key": secret,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        **extra,
    }


async def ledger_has(admin: GatewayClient, n: int) -> bool:
    try:
        return (await total(admin))[0] == n
    except Exception:
        return False


async def test_bad_client_strings_never_block_usage_on_postgres(setup: Setup) -> None:
    """A NUL model used to reach PostgreSQL (DataError -> INTERNAL for the whole batch), a
    several-MB model was recorded twice before the access check, a 20 KB session id passed the
    B-tree limit of its index (-> UNAVAILABLE): each blocked every later event."""
    s = setup
    dp = await start_dp(s.cp, s.tmp / "dp")
    try:
        await dp.wait_for_snapshot()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}", timeout=30) as c:
            assert (
                await c.post("/v1/messages", content=body(), headers=headers(s.secret))
            ).is_success
            nul = await c.post(
                "/v1/messages", content=body(MODEL + "\x00"), headers=headers(s.secret)
            )
            huge = await c.post(
                "/v1/messages", content=body("claude-" + "x" * 3_000_000), headers=headers(s.secret)
            )
            long_session = await c.post(
                "/v1/messages",
                content=body(),
                headers=headers(s.secret, **{"x-claude-code-session-id": "s" * 20_000}),
            )
            odd_meta = await c.post(
                "/v1/messages",
                content=body(),
                headers=headers(s.secret, **{"x-tollgate-metadata": '{"team":"a\\u0000"}'}),
            )
            assert (
                await c.post("/v1/messages", content=body(), headers=headers(s.secret))
            ).is_success
        for refused, needle in (
            (nul, "is not a model id"),
            (huge, "at most 256 characters"),
            (odd_meta, "control character"),
        ):
            assert refused.status_code == 400
            assert refused.json()["error"]["type"] == "invalid_request_error"
            assert needle in refused.json()["error"]["message"]
        assert long_session.status_code == 200

        await wait_for(lambda: ledger_has(s.admin, 6), timeout=20)  # refused ones too
        by_model = {r.group: r.requests for r in await s.admin.query_usage(group_by="model")}
        assert by_model[MODEL] == 3 and by_model[MODEL + "\ufffd"] == 1
        (cut,) = [m for m in by_model if m.startswith("claude-xxx")]
        assert len(cut) == 256
        sessions = [r.group for r in await s.admin.query_usage(group_by="session")]
        assert max(len(g) for g in sessions) == 256
        assert dp.reporter is not None and dp.reporter.backlog == 0
        assert dp.spool.quarantined == 0  # all stored: nothing had to be set aside
    finally:
        await dp.stop()


async def test_events_of_an_older_spool_reach_postgres_and_a_refused_one_is_visible(
    setup: Setup,
) -> None:
    """Events an older data plane spooled (NUL, a huge session id) are stored cleaned; an event
    the control plane refuses for good (a request id it cannot take) is set aside, counted,
    shown by ListDataPlanes and /metrics, and blocks nothing."""
    s = setup

    def raw(rid: str, **fields: Any) -> bytes:
        return telemetry_pb2.UsageEvent(
            request_id=rid, workspace="team-a", status=200, time_ms=1, **fields
        ).SerializeToString()

    bad_id = "r" * 200
    Spool(s.tmp / "dp" / "spool").append(
        [
            raw("old-nul", model_requested="claude\x00", session_id="s\x00"),
            raw(bad_id),
            raw("old-session", session_id="x" * 10_000),
            raw("old-good", model_requested=MODEL),
        ]
    )
    dp = await start_dp(s.cp, s.tmp / "dp")
    try:
        await wait_for(lambda: ledger_has(s.admin, 3), timeout=20)

        async def listed() -> bool:
            (status,) = (await s.admin.list_dataplanes()).dataplanes
            return status.quarantined_events == 1

        await wait_for(listed, timeout=10)
        assert bad_id.encode() in (s.tmp / "dp" / "spool" / "rejected.log").read_bytes()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}") as c:
            metrics = (await c.get("/metrics")).text
        assert "tollgate_usage_quarantined 1" in metrics
        stored = await s.admin.get_log("old-nul")
        assert (stored.model_requested, stored.session_id) == ("claude\ufffd", "s\ufffd")
        assert len((await s.admin.get_log("old-session")).session_id) == 256
        assert dp.reporter is not None and dp.reporter.backlog == 0
    finally:
        await dp.stop()


async def test_a_backlog_over_the_grpc_limit_gets_through(setup: Setup) -> None:
    """--log-bodies full with large bodies during a control-plane outage: the spool held more
    than the control plane's 32 MiB message limit, sent as one batch and refused for ever."""
    s = setup
    await s.admin.update_workspace(
        common_pb2.Workspace(name="team-a", log_bodies="full", log_body_max_bytes=16 << 20),
        ["log_bodies", "log_body_max_bytes"],
    )
    dp = await start_dp(s.cp, s.tmp / "dp")
    try:
        await dp.wait_for_snapshot()

        async def full_policy() -> bool:
            snap = dp.holder.current
            return snap is not None and snap.workspaces["team-a"].log_bodies == "full"

        await wait_for(full_policy, timeout=5)
        s.cp.kill()
        text = "y" * 3_500_000
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}", timeout=30) as c:
            for i in range(11):  # 11 x 3.5 MB logged bodies: 38.5 MB waiting in the spool
                r = await c.post(
                    "/v1/messages", content=body(text=f"{i} {text}"), headers=headers(s.secret)
                )
                assert r.status_code == 200
        reporter = dp.reporter
        assert reporter is not None
        await eventually(lambda: reporter.backlog == 11, "the 11 events recorded")
        await reporter.drain()
        assert reporter.spool.backlog == 11  # waiting in the spool
        await s.cp.start()
        await wait_for(lambda: ledger_has(s.admin, 11), timeout=30)
        (last,) = [ev async for ev in s.admin.tail_logs(limit=1)]
        logged = await s.admin.get_log(last.request_id)  # the body itself reached the ledger
        assert logged.request_body_size > 3_500_000 and logged.request_body.startswith(b'{"model"')
        assert not logged.bodies_truncated
        assert dp.spool.quarantined == 0
        await wait_for(lambda: _drained(dp), timeout=5)
    finally:
        await dp.stop()


async def _drained(dp: DataPlane) -> bool:
    return dp.reporter is not None and dp.reporter.backlog == 0
