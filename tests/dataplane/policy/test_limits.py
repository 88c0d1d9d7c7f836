"""The enforcement engine: reservations, refusals Claude Code shows well, headers, seeds, periods,
the counter-store failure policy, and the concurrency acceptance on one and on three data planes.

This module is long because the enforcement engine's rules (reservations, refusals, headers, seeds,
periods, the counter-store failure policy) are checked on the same limiter, then together in the
concurrency acceptance.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType

import pytest

from dataplane.config.snapshot import Budget, Limits, Period, Snapshot, VirtualKey, Workspace
from dataplane.errors import GatewayError
from dataplane.metering.meter import TokenUsage
from dataplane.metering.pricing import DEFAULT_PRICES, PriceTable
from dataplane.policy.auth import Principal
from dataplane.policy.counters.base import (
    AdmitRequest,
    BudgetCheck,
    BudgetUsage,
    Counters,
    CountersUnavailable,
    ScopeCheck,
    Ticket,
    Verdict,
)
from dataplane.policy.counters.memory import MemoryCounters
from dataplane.policy.counters.redis import RedisCounters
from dataplane.policy.limits import (
    INPUT_TOKENS_CAP,
    Admission,
    Limiter,
    format_usd,
    reservation_micros,
)
from dataplane.policy.periods import current_window
from tests.dataplane import runtimes
from tests.dataplane.redis_support import REDIS_URL, redis_namespace

PRICES = PriceTable(DEFAULT_PRICES)
SONNET = "claude-sonnet-4-5"
USD = 1_000_000


def ts(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


NONE = Limits()


def principal(
    key_limits: Limits = NONE,
    ws_limits: Limits = NONE,
    *,
    tz: str = "",
    spend: Mapping[tuple[str, str, Period], tuple[int, int]] | None = None,
    key_id: str = "key_alice",
    key_name: str = "alice-laptop",
) -> Principal:
    ws = Workspace("team-a", ws_limits, tz)
    key = VirtualKey(key_id, key_name, "team-a", key_limits, "anthropic", "", (), 0, False)
    snap = Snapshot(
        version="v1",
        built_at_ms=0,
        workspaces=MappingProxyType({"team-a": ws}),
        keys_by_hash=MappingProxyType({"h": key}),
        providers=MappingProxyType({}),
        routes=MappingProxyType({}),
        prices=PRICES,
        spend=MappingProxyType(dict(spend or {})),
    )
    return Principal(key, ws, runtimes.runtime(snap))


def daily(usd: int | float, *, period: Period = Period.DAY) -> Limits:
    return Limits(budgets=(Budget(round(usd * USD), period),))


async def admit(
    limiter: Limiter,
    p: Principal,
    *,
    body_bytes: int = 3000,
    max_tokens: int = 4000,
    rid: str = "",
    model: str = SONNET,
) -> Admission:
    return await limiter.admit(
        p,
        model=model,
        body_bytes=body_bytes,
        max_tokens=max_tokens,
        prices=PRICES,
        request_id=rid or f"req-{random.getrandbits(48):x}",
    )


async def refused(limiter: Limiter, p: Principal, **kw: object) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await admit(limiter, p, **kw)  # type: ignore[arg-type]
    return info.value


def hdr(err: GatewayError | Sequence[tuple[bytes, bytes]], name: str) -> str | None:
    headers = err.headers if isinstance(err, GatewayError) else err
    for k, v in headers:
        if k == name.encode():
            return v.decode()
    return None


class Untouchable:
    """Counters that fail the test if the engine touches them."""

    async def admit(self, request: AdmitRequest) -> Verdict:
        raise AssertionError("counters touched")

    async def settle(self, ticket: Ticket, cost_micros: int, tokens: int, now_ms: int) -> None:
        raise AssertionError("counters touched")

    async def release(self, ticket: Ticket, now_ms: int) -> None:
        raise AssertionError("counters touched")

    async def peek(
        self, tag: str, scope: str, budgets: tuple[BudgetCheck, ...]
    ) -> tuple[BudgetUsage, ...]:
        raise AssertionError("counters touched")

    async def aclose(self) -> None:
        pass


class Down(Untouchable):
    async def admit(self, request: AdmitRequest) -> Verdict:
        raise CountersUnavailable("connection refused")


# --- reservation -----------------------------------------------------------------------------


def test_reservation_is_a_worst_case() -> None:
    # Sonnet 4.5: highest input-side rate is the 1h cache write ($6/MTok); output $15/MTok.
    # 3000 bytes -> 1000 tokens -> $0.006; 4000 output tokens -> $0.06.
    assert reservation_micros(PRICES, SONNET, 3000, 4000) == 66_000
    assert reservation_micros(PRICES, SONNET, 3001, 0) == 6_006  # ceil(3001/3) = 1001 tokens
    # Past the long-context threshold the long rates apply ($12 1h write, $22.50 output).
    assert reservation_micros(PRICES, SONNET, 3 * 300_000, 1000) == 300_000 * 12 + 22_500
    # The input estimate never passes the largest context window.
    huge = reservation_micros(PRICES, SONNET, 300 * 1024 * 1024, 0)
    assert huge == INPUT_TOKENS_CAP * 12
    assert reservation_micros(PRICES, "claude-opus-4-8", 0, 32_000) == 32_000 * 25


def test_format_usd() -> None:
    assert format_usd(50 * USD) == "$50.00"
    assert format_usd(1000 * USD) == "$1,000.00"
    assert format_usd(50_020_000) == "$50.02"
    assert format_usd(400_500) == "$0.4005"
    assert format_usd(50_010_001, round_up=True) == "$50.02"


# --- fast path -------------------------------------------------------------------------------


async def test_no_limits_is_a_noop_that_never_touches_counters() -> None:
    limiter = Limiter(Untouchable())
    a = await admit(limiter, principal())
    assert not a.limited and a.headers == ()
    await a.settle(100, 10, 10)
    await a.release()


# --- rate limits -------------------------------------------------------------------------------


async def test_rpm_10_of_12_then_workspace_15_admits_5_more_from_another_key() -> None:
    clock = Clock(ts(2026, 11, 28, 12, 0, 0))
    limiter = Limiter(MemoryCounters(), clock)
    ws_limits = Limits(rpm=15)
    alice = principal(Limits(rpm=10), ws_limits)
    bob = principal(Limits(), ws_limits, key_id="key_bob", key_name="bob-desktop")
    results: list[Admission | GatewayError] = []
    for i in range(12):
        clock.t += 0.25 if i else 0
        try:
            results.append(await admit(limiter, alice))
        except GatewayError as e:
            results.append(e)
    assert [isinstance(r, Admission) for r in results] == [True] * 10 + [False] * 2
    err = results[10]
    assert isinstance(err, GatewayError)
    assert (err.status, err.error_type) == (429, "rate_limit_error")
    # 2.5 s after the first request: the first slot frees in 57.5 s -> 58 (rounded up).
    assert err.message == (
        "Rate limit of 10 requests per minute for key 'alice-laptop' reached; retry in 58 s."
    )
    assert hdr(err, "retry-after") == "58" and hdr(err, "x-should-retry") is None
    admitted = 0
    last: GatewayError | None = None
    for _ in range(8):
        clock.t += 0.1
        try:
            await admit(limiter, bob)
            admitted += 1
        except GatewayError as e:
            last = e
    assert admitted == 5
    assert last is not None and last.message.startswith(
        "Rate limit of 15 requests per minute for workspace 'team-a' reached; retry in "
    )
    # A minute after the first request, alice has one slot again (the workspace too).
    clock.t = ts(2026, 11, 28, 12, 1, 0)
    await admit(limiter, alice)
    assert "requests per minute" in (await refused(limiter, alice)).message


async def test_rph_tpm_and_parallel_messages() -> None:
    clock = Clock(ts(2026, 11, 28, 12, 0, 0))
    limiter = Limiter(MemoryCounters(), clock)
    p = principal(Limits(rph=2, tpm=10_000, max_parallel=1))
    a = await admit(limiter, p)
    err = await refused(limiter, p)
    assert err.message == (
        "Limit of 1 parallel requests for key 'alice-laptop' reached; retry in 1 s."
    )
    assert hdr(err, "retry-after") == "1"
    clock.t += 2
    await a.settle(1000, 9_000, 1_500)  # tpm counts input + output
    clock.t += 1
    err = await refused(limiter, p)
    assert err.message.startswith(
        "Rate limit of 10,000 tokens per minute for key 'alice-laptop' reached; retry in "
    )
    clock.t += 61
    b = await admit(limiter, p)
    await b.release()
    clock.t += 1
    err = await refused(limiter, p)
    assert err.message == (
        "Rate limit of 2 requests per hour for key 'alice-laptop' reached; retry in 3535 s."
    )


async def test_count_tokens_passes_rate_limits_only_never_a_budget() -> None:
    clock = Clock(ts(2026, 11, 28, 15, 0, 0))
    start = int(ts(2026, 11, 28) * 1000)
    spent = {("key", "key_alice", Period.DAY): (start, 50_020_000)}  # the budget is spent
    limiter = Limiter(MemoryCounters(), clock)
    p = principal(Limits(budgets=daily(50).budgets, rpm=2, tpm=1_000, max_parallel=1), spend=spent)
    assert (await refused(limiter, p)).message.startswith("Budget of $50.00/day")

    async def count() -> Admission:
        return await limiter.admit(
            p, model=SONNET, body_bytes=900_000, max_tokens=0, prices=PRICES,
            request_id=f"req-{random.getrandbits(48):x}", count_only=True,
        )  # fmt: skip

    a = await count()
    assert a.reserve_micros == 0 and a.limited  # counted, nothing reserved
    with pytest.raises(GatewayError) as info:  # max_parallel applies
        await count()
    assert info.value.message.startswith("Limit of 1 parallel requests for key 'alice-laptop'")
    await a.settle(0, 0, 0)
    await (await count()).release()
    with pytest.raises(GatewayError) as info:  # the refused one counted nothing: rpm 2 is full
        await count()
    assert info.value.status == 429
    assert info.value.message.startswith(
        "Rate limit of 2 requests per minute for key 'alice-laptop' reached; retry in "
    )
    # tpm neither refuses nor is consumed by counting; with no rate limit at all, nothing is checked.
    free = principal(Limits(budgets=daily(50).budgets, tpm=1), spend=spent)
    untouched = Limiter(Untouchable(), clock)
    admission = await untouched.admit(
        free, model=SONNET, body_bytes=10, max_tokens=0, prices=PRICES, request_id="r",
        count_only=True,
    )  # fmt: skip
    assert not admission.limited


# --- budgets -----------------------------------------------------------------------------------


async def test_budget_spent_message_retry_after_and_no_retry() -> None:
    clock = Clock(ts(2026, 11, 28, 15, 0, 0))
    start = int(ts(2026, 11, 28) * 1000)
    seed = {("key", "key_alice", Period.DAY): (start, 50_020_000)}
    limiter = Limiter(MemoryCounters(), clock)
    err = await refused(limiter, principal(daily(50), spend=seed))
    assert (err.status, err.error_type) == (429, "rate_limit_error")
    assert err.message == (
        "Budget of $50.00/day for key 'alice-laptop' (workspace team-a) is spent ($50.02); "
        "it resets at 2026-11-29T00:00:00Z."
    )
    assert hdr(err, "x-should-retry") == "false"
    assert hdr(err, "retry-after") == str(9 * 3600)


async def test_workspace_budget_message() -> None:
    clock = Clock(ts(2026, 11, 28, 15, 0, 0))
    start = int(ts(2026, 11, 1) * 1000)
    seed = {("workspace", "team-a", Period.MONTH): (start, 1_000_400_000)}
    limiter = Limiter(MemoryCounters(), clock)
    p = principal(Limits(rpm=100), daily(1000, period=Period.MONTH), spend=seed)
    err = await refused(limiter, p)
    assert err.message == (
        "Budget of $1,000.00/month for workspace 'team-a' is spent ($1,000.40); "
        "it resets at 2026-12-01T00:00:00Z."
    )
    assert hdr(err, "retry-after") == str((2 * 24 + 9) * 3600)


async def test_lifetime_budget_message_has_no_retry_after() -> None:
    seed = {("key", "key_alice", Period.LIFETIME): (0, 500 * USD)}
    limiter = Limiter(MemoryCounters(), Clock(ts(2026, 11, 28, 15)))
    err = await refused(limiter, principal(daily(500, period=Period.LIFETIME), spend=seed))
    assert err.message == (
        "Budget of $500.00 (lifetime) for key 'alice-laptop' (workspace team-a) is spent "
        "($500.00); it does not reset; ask your platform team to raise it."
    )
    assert hdr(err, "retry-after") is None and hdr(err, "x-should-retry") == "false"


async def test_time_zone_reset_and_rollover_at_local_midnight() -> None:
    berlin = "Europe/Berlin"
    clock = Clock(ts(2026, 11, 28, 22, 0, 0))  # 23:00 in Berlin
    limiter = Limiter(MemoryCounters(), clock)
    p = principal(daily(0.10), tz=berlin)
    a = await admit(limiter, p, body_bytes=0, max_tokens=6000)  # reserves $0.09
    await a.settle(100_000, 10, 10)
    err = await refused(limiter, p, body_bytes=0, max_tokens=10)
    assert err.message.endswith("is spent ($0.10); it resets at 2026-11-29T00:00:00+01:00.")
    assert hdr(err, "retry-after") == "3600"
    clock.t = ts(2026, 11, 28, 22, 59, 59)
    await refused(limiter, p, body_bytes=0, max_tokens=10)
    clock.t = ts(2026, 11, 28, 23, 0, 0)  # local midnight: a new day, a fresh counter
    b = await admit(limiter, p, body_bytes=0, max_tokens=10)
    assert hdr(b.headers, "x-tollgate-budget-remaining-usd") == "0.100000"
    # Headers give instants in UTC (RFC 3339), like Anthropic's own reset headers.
    assert hdr(b.headers, "x-tollgate-budget-reset") == "2026-11-29T23:00:00Z"


async def test_seed_counts_only_for_its_own_period() -> None:
    clock = Clock(ts(2026, 11, 28, 15))
    today = int(ts(2026, 11, 28) * 1000)
    yesterday = int(ts(2026, 11, 27) * 1000)
    limiter = Limiter(MemoryCounters(), clock)
    stale = {("key", "key_alice", Period.DAY): (yesterday, 50 * USD)}
    a = await admit(limiter, principal(daily(50), spend=stale))
    assert hdr(a.headers, "x-tollgate-budget-remaining-usd") == "50.000000"
    await a.release()
    fresh = {("key", "key_alice", Period.DAY): (today, 49 * USD)}
    a = await admit(limiter, principal(daily(50), spend=fresh))
    assert hdr(a.headers, "x-tollgate-budget-remaining-usd") == "1.000000"
    await a.settle(600_000, 1, 1)
    # A restart / new replica: fresh counters, the ledger says 49.60 now.
    restarted = Limiter(MemoryCounters(), clock)
    seed = {("key", "key_alice", Period.DAY): (today, 49_600_000)}
    a = await admit(restarted, principal(daily(50), spend=seed))
    assert hdr(a.headers, "x-tollgate-budget-remaining-usd") == "0.400000"


async def test_reserve_settle_release_and_held_refusal() -> None:
    clock = Clock(ts(2026, 11, 28, 15))
    limiter = Limiter(MemoryCounters(), clock)
    p = principal(daily(0.20))  # room for 3 reservations of $0.066
    held = [await admit(limiter, p) for _ in range(3)]
    tail = await admit(limiter, p)  # $0.002 left: the tail request
    assert tail.ticket is not None and tail.ticket.held == ((2_000,),)
    err = await refused(limiter, p)
    assert err.message == (
        "Budget of $0.20/day for key 'alice-laptop' (workspace team-a) is almost spent "
        "($0.00 spent, $0.20 held by requests in flight); retry in 5 s."
    )
    assert hdr(err, "retry-after") == "5" and hdr(err, "x-should-retry") is None
    await held[0].release()
    again = await admit(limiter, p)
    await again.settle(50_000, 1000, 3000)
    await again.settle(50_000, 1000, 3000)  # idempotent
    await again.release()  # after settle: no effect
    for a in (*held[1:], tail):
        await a.settle(50_000, 1000, 3000)
    err = await refused(limiter, p)
    assert "is spent ($0.20)" in err.message and hdr(err, "x-should-retry") == "false"


async def test_headers() -> None:
    clock = Clock(ts(2026, 11, 28, 15))
    limiter = Limiter(MemoryCounters(), clock)
    p = principal(Limits(rpm=10, tpm=50_000, budgets=daily(50).budgets), Limits(rpm=15))
    a = await admit(limiter, p)
    await admit(limiter, p)
    b = await admit(limiter, p)
    headers = dict(b.headers)
    assert headers == {
        b"x-tollgate-ratelimit-requests-limit": b"10",
        b"x-tollgate-ratelimit-requests-remaining": b"7",
        b"x-tollgate-ratelimit-requests-reset": b"2026-11-28T15:01:00Z",
        b"x-tollgate-ratelimit-tokens-limit": b"50000",
        b"x-tollgate-ratelimit-tokens-remaining": b"50000",
        b"x-tollgate-ratelimit-tokens-reset": b"2026-11-28T15:01:00Z",
        b"x-tollgate-budget-limit-usd": b"50.000000",
        b"x-tollgate-budget-remaining-usd": b"50.000000",
        b"x-tollgate-budget-scope": b"key/day",
        b"x-tollgate-budget-reset": b"2026-11-29T00:00:00Z",
    }
    assert not any(k.startswith(b"anthropic-") for k in headers)
    await a.settle(1_234_567, 100, 200)


# --- counter store failure policy -------------------------------------------------------------


async def test_counters_down_fail_closed_for_budgets() -> None:
    limiter = Limiter(Down())
    err = await refused(limiter, principal(daily(50)))
    assert (err.status, err.error_type) == (503, "overloaded_error")
    assert hdr(err, "retry-after") == "5"
    # Rate limits only: they protect capacity, not money; the request goes through.
    a = await admit(limiter, principal(Limits(rpm=5)))
    assert a.unchecked and not a.limited


async def test_counters_down_fail_open_when_configured() -> None:
    limiter = Limiter(Down(), redis_failure="open")
    a = await admit(limiter, principal(daily(50)))
    assert a.unchecked and a.headers == ()
    await a.settle(100, 1, 1)
    # A per-request override (the workspace's own policy) wins over the limiter's default.
    with pytest.raises(GatewayError):
        await limiter.admit(
            principal(daily(50)),
            model=SONNET,
            body_bytes=10,
            max_tokens=10,
            prices=PRICES,
            request_id="r",
            redis_failure="closed",
        )


async def test_settle_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class SettleDown(MemoryCounters):
        async def settle(self, ticket: Ticket, cost_micros: int, tokens: int, now_ms: int) -> None:
            raise CountersUnavailable("gone")

    limiter = Limiter(SettleDown())
    a = await admit(limiter, principal(daily(50)))
    await a.settle(100, 1, 1)
    assert "could not settle" in caplog.text


# --- concurrency acceptance ---------------------------------------------------------------------

BUDGET = 400_000  # $0.40: room for 6 reservations of $0.066 and a tail
BUDGET_ERROR = re.compile(
    r"^Budget of \$0\.40/day for key 'alice-laptop' \(workspace team-a\) is (spent|almost spent) "
)


def realistic_cost(rng: random.Random, worst: bool) -> tuple[int, int, int]:
    """A request that used 1000 input tokens and 3000..4000 of its 4000 max_tokens; or, when
    ``worst``, exactly its reservation (1000 tokens written to the 1h cache, all 4000 out)."""
    if worst:
        usage = TokenUsage(
            cache_creation_input_tokens=1000, cache_write_1h_tokens=1000, output_tokens=4000
        )
        return PRICES.price(SONNET, usage).cost_micros, 1000, 4000
    usage = TokenUsage(input_tokens=1000, output_tokens=rng.randint(3000, 4000))
    cost = PRICES.price(SONNET, usage).cost_micros
    return cost, usage.input_tokens, usage.output_tokens


async def run_burst(limiters: list[Limiter], n: int, seed: int) -> tuple[int, int, list[str]]:
    """n concurrent requests spread over the limiters; returns (settled spend, max cost, refusals)."""
    rng = random.Random(seed)
    p = principal(daily(BUDGET / USD))
    settled: list[int] = []
    refusals: list[str] = []
    worst = seed == 0
    plan = [
        (limiters[i % len(limiters)], realistic_cost(rng, worst), rng.random(), rng.random())
        for i in range(n)
    ]

    async def one(limiter: Limiter, cost: tuple[int, int, int], d1: float, d2: float) -> None:
        await asyncio.sleep(d1 * 0.003)
        try:
            a = await admit(limiter, p)
        except GatewayError as err:
            assert err.status == 429, err
            refusals.append(err.message)
            return
        await asyncio.sleep(0.001 + d2 * 0.01)
        await a.settle(*cost)
        settled.append(cost[0])

    await asyncio.gather(*(one(*args) for args in plan))
    return sum(settled), max(c[1][0] for c in plan), refusals


async def spent_in(counters: Counters, limiter: Limiter) -> int:
    """The key's settled spend as the counters hold it."""
    now = int(limiter.clock() * 1000)
    window = current_window(Period.DAY, now, "")
    check = ScopeCheck(
        "k:key_alice", budgets=(BudgetCheck(f"b:{window.id}", 10**15, 0, window.end_ms),)
    )
    v = await counters.admit(AdmitRequest("probe", now, 0, (check,), 1000, True, "team-a"))
    assert v.ticket is not None
    await counters.release(v.ticket, now)
    return v.usage[0].budgets[0].spent


def check_acceptance(total: int, max_cost: int, refusals: list[str], n: int) -> None:
    served = n - len(refusals)
    print(f"served {served}/{n}, settled {total} of {BUDGET} (max cost {max_cost})")
    assert total <= BUDGET + max_cost, (total, served)
    assert served >= BUDGET // max_cost - 1, (served, total)
    assert refusals and all(BUDGET_ERROR.match(m) for m in refusals), refusals[:3]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])  # 0: every request costs its whole reservation
async def test_32_concurrent_requests_on_one_data_plane(seed: int) -> None:
    counters = MemoryCounters()
    limiter = Limiter(counters)
    total, max_cost, refusals = await run_burst([limiter], 32, seed)
    check_acceptance(total, max_cost, refusals, 32)
    assert await spent_in(counters, limiter) == total


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    async with redis_namespace() as prefix:
        yield prefix


@pytest.mark.redis
@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_48_concurrent_requests_on_three_data_planes_sharing_redis(
    redis_prefix: str, seed: int
) -> None:
    planes = [RedisCounters.from_url(REDIS_URL, prefix=redis_prefix) for _ in range(3)]
    try:
        assert len({id(c.client.connection_pool) for c in planes}) == 3
        limiters = [Limiter(c) for c in planes]
        total, max_cost, refusals = await run_burst(limiters, 48, seed)
        check_acceptance(total, max_cost, refusals, 48)
        assert await spent_in(planes[0], limiters[0]) == total
    finally:
        for c in planes:
            await c.aclose()


@pytest.mark.redis
async def test_engine_on_redis_rpm_and_budget(redis_prefix: str) -> None:
    counters = RedisCounters.from_url(REDIS_URL, prefix=redis_prefix)
    try:
        limiter = Limiter(counters)
        ws_limits = Limits(rpm=15)
        alice = principal(Limits(rpm=10, budgets=daily(50).budgets), ws_limits)
        bob = principal(ws_limits=ws_limits, key_id="key_bob", key_name="bob")
        outcomes = []
        for _ in range(12):
            try:
                a = await admit(limiter, alice)
                await a.settle(10_000, 10, 10)
                outcomes.append(True)
            except GatewayError as err:
                assert err.message.startswith("Rate limit of 10 requests per minute for key ")
                outcomes.append(False)
        assert outcomes == [True] * 10 + [False] * 2
        served = 0
        for _ in range(8):
            try:
                await admit(limiter, bob)
                served += 1
            except GatewayError:
                pass
        assert served == 5
        assert await spent_in(counters, limiter) == 100_000
    finally:
        await counters.aclose()
