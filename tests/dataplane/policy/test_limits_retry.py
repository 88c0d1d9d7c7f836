"""Settles and releases the counter store missed are retried until it answers: no reservation
stays held until its lease ends, and the spend still counts."""

from __future__ import annotations

import asyncio

from dataplane.policy.counters.base import CountersUnavailable, Ticket
from dataplane.policy.counters.memory import MemoryCounters
from dataplane.policy.limits import Limiter
from tests.dataplane.policy.test_limits import admit, daily, principal


class Flaky(MemoryCounters):
    """In-process counters whose settle/release fail while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def settle(self, ticket: Ticket, cost_micros: int, tokens: int, now_ms: int) -> None:
        if self.down:
            raise CountersUnavailable("connection refused")
        await super().settle(ticket, cost_micros, tokens, now_ms)

    async def release(self, ticket: Ticket, now_ms: int) -> None:
        if self.down:
            raise CountersUnavailable("connection refused")
        await super().release(ticket, now_ms)


def budget(counters: MemoryCounters) -> tuple[int, int]:
    st = counters._scopes["k:key_alice"]
    return sum(b.spent for b in st.budgets.values()), sum(b.reserved for b in st.budgets.values())


async def test_missed_settle_and_release_are_applied_when_the_store_returns() -> None:
    counters = Flaky()
    limiter = Limiter(counters)
    p = principal(daily(50))
    served, failed = await admit(limiter, p), await admit(limiter, p)
    assert budget(counters)[1] > 0
    counters.down = True
    await served.settle(1234, 10, 5)
    await failed.release()
    assert limiter.unfinished == 2 and budget(counters)[1] > 0
    await asyncio.sleep(0.7)
    assert limiter.unfinished == 2  # still down: kept, retried later
    counters.down = False
    for _ in range(100):
        if limiter.unfinished == 0:
            break
        await asyncio.sleep(0.05)
    assert limiter.unfinished == 0
    assert budget(counters) == (1234, 0)  # the spend counted once, nothing held
    await served.settle(1234, 10, 5)  # idempotent afterwards too
    assert budget(counters) == (1234, 0)
    await limiter.aclose()


async def test_aclose_stops_retrying() -> None:
    counters = Flaky()
    limiter = Limiter(counters)
    a = await admit(limiter, principal(daily(50)))
    counters.down = True
    await a.settle(10, 1, 1)
    await limiter.aclose()
    assert limiter.settlements._retrying is not None and limiter.settlements._retrying.done()
