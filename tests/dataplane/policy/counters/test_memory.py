"""The in-process counters, against the shared contract."""

from __future__ import annotations

import pytest

from dataplane.policy.counters.base import ScopeCheck
from dataplane.policy.counters.memory import MemoryCounters
from tests.dataplane.policy.counters.contract import (
    T0,
    CounterContract,
    budget,
    key_scope,
    req,
)


class TestMemoryCounters(CounterContract):
    @pytest.fixture
    def counters(self) -> MemoryCounters:
        return MemoryCounters()


async def test_sweep_forgets_ended_periods_and_idle_scopes() -> None:
    c = MemoryCounters()
    s = key_scope(rpm=5, tpm=100, budgets=(budget(1000),))
    v = await c.admit(req(T0, s, reserve=10))
    assert v.ticket is not None
    await c.settle(v.ticket, 10, 10, T0 + 1)
    assert "k:key_a" in c._scopes
    # An hour later the current day's counter is kept (its period has not ended)...
    await c.admit(req(T0 + 3_600_000, ScopeCheck("k:other")))
    assert c._scopes["k:key_a"].budgets
    # ...and a day after its end it is gone, with the scope.
    await c.admit(req(T0 + 3 * 86_400_000, ScopeCheck("k:other")))
    assert "k:key_a" not in c._scopes
