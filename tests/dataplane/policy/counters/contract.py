"""The counter contract: one suite, run against the in-process and the Redis backend.

Subclasses provide the ``counters`` fixture. Time is injected through ``now_ms``; nothing sleeps.
"""

from __future__ import annotations

import itertools
import time

from dataplane.policy.counters.base import (
    AdmitRequest,
    BudgetCheck,
    Counters,
    RefusalKind,
    ScopeCheck,
    Verdict,
)

# ms; near the real time because Redis expires keys (a period's end + 1 day) by its own clock.
T0 = int(time.time()) // 60 * 60_000
_ids = itertools.count()


def key_scope(**kw: object) -> ScopeCheck:
    return ScopeCheck("k:key_a", **kw)  # type: ignore[arg-type]


def ws_scope(**kw: object) -> ScopeCheck:
    return ScopeCheck("w:team-a", **kw)  # type: ignore[arg-type]


def budget(limit: int, seed: int = 0, counter: str = "b:d:2026-11-18@UTC") -> BudgetCheck:
    return BudgetCheck(counter, limit, seed, T0 + 86_400_000)


def req(
    now: int, *scopes: ScopeCheck, reserve: int = 0, lease_ms: int = 600_000, tail: bool = True
) -> AdmitRequest:
    return AdmitRequest(f"req-{next(_ids)}", now, reserve, scopes, lease_ms, tail, "team-a")


async def admitted(c: Counters, request: AdmitRequest) -> bool:
    return (await c.admit(request)).ticket is not None


class CounterContract:
    async def test_rpm_exact_then_workspace_then_refusals_do_not_count(
        self, counters: Counters
    ) -> None:
        ws = ws_scope(rpm=15)
        a = [key_scope(rpm=10), ws]
        results = [await counters.admit(req(T0 + i, *a)) for i in range(12)]
        assert [r.ticket is not None for r in results] == [True] * 10 + [False] * 2
        refusal = results[10].refusal
        assert refusal is not None
        assert (refusal.kind, refusal.scope, refusal.used, refusal.limit) == (
            RefusalKind.RPM,
            0,
            10,
            10,
        )
        assert refusal.retry_after_ms == 60_000 - 10  # the first entry (T0) leaves at T0+60 s
        # Another key of the same workspace: the workspace has room for exactly 5 more, because
        # key A's two refused requests were not counted.
        b = [ScopeCheck("k:key_b", rpm=100), ws]
        results = [await counters.admit(req(T0 + 100 + i, *b)) for i in range(8)]
        assert [r.ticket is not None for r in results] == [True] * 5 + [False] * 3
        refusal = results[5].refusal
        assert refusal is not None and (refusal.kind, refusal.scope) == (RefusalKind.RPM, 1)
        assert refusal.used == 15
        # The window slides: at T0+60 s the first request leaves, one slot opens for key A.
        assert not await admitted(counters, req(T0 + 59_999, *a))
        assert await admitted(counters, req(T0 + 60_000, *a))
        assert not await admitted(counters, req(T0 + 60_000, *a))

    async def test_rph(self, counters: Counters) -> None:
        s = key_scope(rpm=100, rph=3)
        for i in range(3):
            assert await admitted(counters, req(T0 + i * 60_000, s))
        v = await counters.admit(req(T0 + 1_000_000, s))
        assert v.refusal is not None and v.refusal.kind is RefusalKind.RPH
        assert v.refusal.retry_after_ms == 3_600_000 - 1_000_000
        assert await admitted(counters, req(T0 + 3_600_000, s))

    async def test_usage_reported_on_admission(self, counters: Counters) -> None:
        s = key_scope(rpm=10, rph=100)
        await counters.admit(req(T0, s))
        v = await counters.admit(req(T0 + 5, s))
        assert v.ticket is not None
        u = v.usage[0]
        assert (u.requests_minute, u.requests_hour, u.oldest_minute_ms, u.oldest_hour_ms) == (
            2,
            2,
            T0,
            T0,
        )
        v = await counters.admit(req(T0 + 61_000, s))
        u = v.usage[0]
        assert (u.requests_minute, u.requests_hour, u.oldest_minute_ms) == (1, 3, T0 + 61_000)

    async def test_tpm_counts_settled_tokens(self, counters: Counters) -> None:
        s = key_scope(tpm=1000)
        v1 = await counters.admit(req(T0, s))
        v2 = await counters.admit(req(T0, s))  # admitted: nothing counted yet
        assert v1.ticket is not None and v2.ticket is not None
        await counters.settle(v1.ticket, 0, 600, T0 + 1_500)
        v = await counters.admit(req(T0 + 2_000, s))
        assert v.ticket is not None and v.usage[0].tokens_minute == 600
        await counters.settle(v2.ticket, 0, 500, T0 + 3_200)
        assert v.ticket is not None
        await counters.release(v.ticket, T0 + 3_300)  # release adds no tokens
        v = await counters.admit(req(T0 + 4_000, s))
        assert v.refusal is not None and v.refusal.kind is RefusalKind.TPM
        assert v.refusal.used == 1100
        # 600 tokens in second T0+1 leave the window at the start of second T0+62.
        assert v.refusal.retry_after_ms == (T0 // 1000 + 1 + 61) * 1000 - (T0 + 4_000)
        assert not await admitted(counters, req(T0 + 61_999, s))
        assert await admitted(counters, req(T0 + 62_000, s))

    async def test_max_parallel_and_lease(self, counters: Counters) -> None:
        s = key_scope(max_parallel=2)
        v1 = await counters.admit(req(T0, s, lease_ms=10_000))
        v2 = await counters.admit(req(T0, s, lease_ms=10_000))
        v3 = await counters.admit(req(T0, s))
        assert v1.ticket and v2.ticket and v3.refusal is not None
        assert (v3.refusal.kind, v3.refusal.used, v3.refusal.limit) == (RefusalKind.PARALLEL, 2, 2)
        assert v2.usage[0].in_flight == 2
        await counters.release(v1.ticket, T0 + 1)
        v4 = await counters.admit(req(T0 + 2, s, lease_ms=60_000))
        assert v4.ticket is not None
        assert not await admitted(counters, req(T0 + 3, s))
        # v2's lease runs out (a replica died with it in flight): its slot frees.
        assert await admitted(counters, req(T0 + 10_000, s))
        await counters.settle(v2.ticket, 0, 0, T0 + 10_001)  # late settle: harmless

    async def test_budget_reserve_settle_release_and_tail(self, counters: Counters) -> None:
        s = key_scope(budgets=(budget(1000),))
        tickets = []
        for _ in range(3):
            v = await counters.admit(req(T0, s, reserve=300))
            assert v.ticket is not None
            tickets.append(v.ticket)
        assert v.usage[0].budgets[0].reserved == 900
        # 100 left: the next request takes exactly that as the budget's single tail request.
        tail = await counters.admit(req(T0, s, reserve=300))
        assert tail.ticket is not None and tail.ticket.held == ((100,),)
        assert tail.usage[0].budgets[0].held == 100
        # Nothing left, and a tail is in flight: refused as "held", not "spent".
        v = await counters.admit(req(T0, s, reserve=300))
        assert v.refusal is not None
        assert (v.refusal.kind, v.refusal.used, v.refusal.reserved, v.refusal.limit) == (
            RefusalKind.BUDGET_HELD,
            0,
            1000,
            1000,
        )
        # Settling below the reservation frees the difference; the tail still blocks a 2nd tail.
        await counters.settle(tickets[0], 120, 0, T0 + 1)
        v = await counters.admit(req(T0 + 2, s, reserve=300))
        assert v.refusal is not None and v.refusal.kind is RefusalKind.BUDGET_HELD
        v = await counters.admit(req(T0 + 2, s, reserve=180))
        assert v.ticket is not None and v.usage[0].budgets[0].spent == 120
        await counters.release(v.ticket, T0 + 3)
        await counters.release(v.ticket, T0 + 3)  # twice: no effect
        # The tail settles above what it held (overshoot bounded by its own cost).
        await counters.settle(tail.ticket, 350, 0, T0 + 4)
        await counters.settle(tickets[1], 300, 0, T0 + 5)
        await counters.settle(tickets[2], 300, 0, T0 + 6)
        v = await counters.admit(req(T0 + 7, s, reserve=1))
        assert v.refusal is not None
        assert (v.refusal.kind, v.refusal.used, v.refusal.reserved) == (RefusalKind.BUDGET, 1070, 0)

    async def test_no_tail_is_strict(self, counters: Counters) -> None:
        s = key_scope(budgets=(budget(1000),))
        assert await admitted(counters, req(T0, s, reserve=700, tail=False))
        v = await counters.admit(req(T0, s, reserve=400, tail=False))
        assert v.refusal is not None and v.refusal.kind is RefusalKind.BUDGET_HELD
        assert await admitted(counters, req(T0, s, reserve=300, tail=False))

    async def test_seed_raises_but_never_lowers(self, counters: Counters) -> None:
        s = key_scope(budgets=(budget(1000, seed=900),))
        v = await counters.admit(req(T0, s, reserve=50))
        assert v.ticket is not None and v.usage[0].budgets[0].spent == 900
        await counters.settle(v.ticket, 60, 0, T0 + 1)  # local spent: 960
        lower = key_scope(budgets=(budget(1000, seed=100),))
        v = await counters.admit(req(T0 + 2, lower, reserve=10))
        assert v.ticket is not None and v.usage[0].budgets[0].spent == 960
        await counters.release(v.ticket, T0 + 3)
        higher = key_scope(budgets=(budget(1000, seed=1000),))
        v = await counters.admit(req(T0 + 4, higher, reserve=10))
        assert v.refusal is not None and v.refusal.kind is RefusalKind.BUDGET
        assert v.refusal.used == 1000

    async def test_periods_are_separate_counters(self, counters: Counters) -> None:
        today = key_scope(budgets=(budget(100),))
        v = await counters.admit(req(T0, today, reserve=100))
        assert v.ticket is not None
        await counters.settle(v.ticket, 100, 0, T0 + 1)
        assert not await admitted(counters, req(T0 + 2, today, reserve=1))
        tomorrow = key_scope(budgets=(budget(100, counter="b:d:2026-11-19@UTC"),))
        assert await admitted(counters, req(T0 + 86_400_000, tomorrow, reserve=100))

    async def test_a_refusal_changes_nothing(self, counters: Counters) -> None:
        ws = ws_scope(rpm=100, max_parallel=10, budgets=(budget(10_000),))
        key = key_scope(budgets=(budget(100),))
        first = await counters.admit(req(T0, key, ws, reserve=100))
        assert first.ticket is not None
        v = await counters.admit(req(T0 + 1, key, ws, reserve=100))  # key budget refuses
        assert v.refusal is not None and (v.refusal.kind, v.refusal.scope) == (
            RefusalKind.BUDGET_HELD,
            0,
        )
        other = await counters.admit(req(T0 + 2, ScopeCheck("k:key_b"), ws, reserve=100))
        assert other.ticket is not None
        u = other.usage[1]
        assert (u.requests_minute, u.in_flight, u.budgets[0].reserved) == (2, 2, 200)

    async def test_hard_budget_wins_over_rate_limits(self, counters: Counters) -> None:
        s = key_scope(rpm=1, budgets=(budget(100, seed=100),))
        ws = ws_scope(rpm=1)
        assert await admitted(counters, req(T0, ws_scope(rpm=1)))
        v = await counters.admit(req(T0 + 1, s, ws, reserve=1))
        assert v.refusal is not None and v.refusal.kind is RefusalKind.BUDGET

    async def test_rate_limit_wins_over_held_budget(self, counters: Counters) -> None:
        s = key_scope(rpm=1, budgets=(budget(100),))
        assert await admitted(counters, req(T0, s, reserve=100))
        v = await counters.admit(req(T0 + 1, s, reserve=100))
        assert v.refusal is not None and v.refusal.kind is RefusalKind.RPM

    async def test_lease_expiry_frees_reservations(self, counters: Counters) -> None:
        s = key_scope(budgets=(budget(100),))
        v = await counters.admit(req(T0, s, reserve=100, lease_ms=5_000))
        assert v.ticket is not None
        assert not await admitted(counters, req(T0 + 4_999, s, reserve=1))
        v2 = await counters.admit(req(T0 + 5_000, s, reserve=100))
        assert v2.ticket is not None and v2.usage[0].budgets[0].reserved == 100
        # The lost request settles after all: its cost still counts.
        await counters.settle(v.ticket, 40, 0, T0 + 6_000)
        await counters.release(v2.ticket, T0 + 6_001)
        v3 = await counters.admit(req(T0 + 6_002, s, reserve=10))
        assert v3.ticket is not None and v3.usage[0].budgets[0].spent == 40

    async def test_large_amounts_stay_exact(self, counters: Counters) -> None:
        big = 123_456_789_012_345  # $123 million in micros: beyond %.14g, below 2**53
        s = key_scope(budgets=(budget(big * 2, seed=big, counter="b:life"),))
        v = await counters.admit(req(T0, s, reserve=big - 1))
        assert v.ticket is not None
        await counters.settle(v.ticket, big - 7, 0, T0 + 1)
        v = await counters.admit(req(T0 + 2, s, reserve=1))
        assert v.ticket is not None and v.usage[0].budgets[0].spent == 2 * big - 7
        assert v.usage[0].budgets[0].reserved == 1

    async def test_no_limits_scope_is_admitted(self, counters: Counters) -> None:
        v: Verdict = await counters.admit(req(T0, ScopeCheck("k:free")))
        assert v.ticket is not None and v.usage[0].in_flight == 0
        await counters.settle(v.ticket, 5, 5, T0 + 1)

    async def test_peek_reads_spent_and_reserved_and_changes_nothing(
        self, counters: Counters
    ) -> None:
        b, other = budget(1000, seed=50), budget(500, seed=40, counter="b:m:2026-11-01@UTC")
        s = key_scope(budgets=(b,))
        # Nothing recorded yet: the seed is what is spent.
        assert [(u.spent, u.reserved) for u in await counters.peek("team-a", s.counter, (b,))] == [
            (50, 0)
        ]
        v = await counters.admit(req(T0, s, reserve=300))
        assert v.ticket is not None
        seen = await counters.peek("team-a", s.counter, (b, other))
        assert [(u.spent, u.reserved, u.held) for u in seen] == [(50, 300, 0), (40, 0, 0)]
        await counters.settle(v.ticket, 120, 0, T0 + 1)
        seen = await counters.peek("team-a", s.counter, (b,))
        assert [(u.spent, u.reserved) for u in seen] == [(170, 0)]
        # Peeking changed nothing: exactly what is left is still admitted, no more.
        assert await admitted(counters, req(T0 + 2, s, reserve=830, tail=False))
        assert not await admitted(counters, req(T0 + 3, s, reserve=1, tail=False))
        assert await counters.peek("team-a", "k:nobody", ()) == ()
