"""Limits of a signed-in developer: their own counters (``d:<id>``), spend seeded from the ledger's
"developer" scope, their label in refusals and headers — and the workspace's limits on top."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from dataplane.config.members import Developer
from dataplane.config.snapshot import Limits, Period, Snapshot, Workspace
from dataplane.policy.auth import Principal
from dataplane.policy.counters.base import AdmitRequest, Verdict
from dataplane.policy.counters.memory import MemoryCounters
from dataplane.policy.limits import Limiter
from dataplane.policy.periods import current_window
from tests.dataplane import runtimes
from tests.dataplane.policy.test_limits import PRICES, USD, Clock, admit, daily, hdr, refused, ts

T0 = ts(2026, 11, 28, 12)
NONE = Limits()


def developer_principal(
    limits: Limits,
    ws_limits: Limits = NONE,
    spend: Mapping[tuple[str, str, Period], tuple[int, int]] | None = None,
) -> Principal:
    ws = Workspace("team-a", ws_limits, "")
    dev = Developer("dev_alice", "team-a", "alice@example.com", "Alice", limits, "anthropic", "")
    snap = Snapshot(
        version="v1",
        built_at_ms=0,
        workspaces=MappingProxyType({"team-a": ws}),
        keys_by_hash=MappingProxyType({}),
        providers=MappingProxyType({}),
        routes=MappingProxyType({}),
        prices=PRICES,
        spend=MappingProxyType(dict(spend or {})),
        developers=MappingProxyType({dev.id: dev}),
    )
    return Principal(dev, ws, runtimes.runtime(snap))


class Recording(MemoryCounters):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[AdmitRequest] = []

    async def admit(self, request: AdmitRequest) -> Verdict:
        self.requests.append(request)
        return await super().admit(request)


async def test_a_developer_has_own_counters_and_label() -> None:
    counters = Recording()
    limiter = Limiter(counters, Clock(T0))
    p = developer_principal(Limits(rpm=1), Limits(rpm=100))
    await admit(limiter, p)
    assert [s.counter for s in counters.requests[0].scopes] == ["d:dev_alice", "w:team-a"]
    err = await refused(limiter, p)
    assert err.status == 429
    assert err.message.startswith(
        "Rate limit of 1 requests per minute for developer 'alice@example.com' reached"
    )


async def test_the_workspace_limit_still_applies_on_top() -> None:
    limiter = Limiter(MemoryCounters(), Clock(T0))
    p = developer_principal(Limits(rpm=100), Limits(rpm=1))
    await admit(limiter, p)
    err = await refused(limiter, p)
    assert "for workspace 'team-a'" in err.message


async def test_spend_is_seeded_from_the_developer_scope() -> None:
    window = current_window(Period.DAY, int(T0 * 1000), "")
    seed = {("developer", "dev_alice", Period.DAY): (window.start_ms, 50 * USD)}
    limiter = Limiter(MemoryCounters(), Clock(T0))
    err = await refused(limiter, developer_principal(daily(50), spend=seed))
    assert err.message.startswith(
        "Budget of $50.00/day for developer 'alice@example.com' (workspace team-a) is spent"
    )
    assert hdr(err, "x-should-retry") == "false"
    # A key's seed with the same id does not count for the developer.
    other = {("key", "dev_alice", Period.DAY): (window.start_ms, 50 * USD)}
    admission = await admit(limiter, developer_principal(daily(50), spend=other))
    headers = admission.headers
    assert hdr(headers, "x-tollgate-budget-scope") == "developer/day"
    assert hdr(headers, "x-tollgate-budget-limit-usd") == "50.000000"
