"""Micro-benchmark of the limits engine: admit + settle per request, per backend.

``python -m bench.limits [--redis redis://127.0.0.1:6379/0] [--n 20000]``

A typical limited request: its key has a $50/day budget, rpm and tpm; its workspace a monthly
budget, rpm and max_parallel (two scopes, two budgets, all checks). Reported: p50/p99 of one
sequential admit + settle, in microseconds, and the no-limits fast path for comparison. With
``--redis``, the same against Redis (one round trip each for admit and settle), sequentially and
with 32 requests in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from types import MappingProxyType

from dataplane.config.snapshot import Budget, Limits, Period, Snapshot, VirtualKey, Workspace
from dataplane.metering.pricing import DEFAULT_PRICES, PriceTable
from dataplane.policy.auth import Principal
from dataplane.policy.counters.base import Counters
from dataplane.policy.counters.memory import MemoryCounters
from dataplane.policy.counters.redis import RedisCounters
from dataplane.policy.limits import Limiter
from dataplane.policy.runtime import compile_runtime
from dataplane.providers.registry import ProviderRegistry
from dataplane.providers.transport import Transport

PRICES = PriceTable(DEFAULT_PRICES)
REGISTRY = ProviderRegistry(Transport())  # the snapshots here have no providers


def principal(limited: bool, i: int = 0) -> Principal:
    if limited:
        key_limits = Limits((Budget(10**12, Period.DAY),), rpm=10**6, tpm=10**9)
        ws_limits = Limits((Budget(10**13, Period.MONTH),), rpm=10**6, max_parallel=10**4)
    else:
        key_limits = ws_limits = Limits()
    ws = Workspace(f"bench-{i}", ws_limits, "Europe/Berlin")
    key = VirtualKey(f"key_{i}", "bench", ws.name, key_limits, "anthropic", "", (), 0, False)
    snap = Snapshot(
        "v", 0, MappingProxyType({ws.name: ws}), MappingProxyType({"h": key}),
        MappingProxyType({}), MappingProxyType({}), PRICES,
    )  # fmt: skip
    return Principal(key, ws, compile_runtime(snap, REGISTRY, None))


async def one(limiter: Limiter, p: Principal, admit_only: list[float] | None = None) -> float:
    t = time.perf_counter()
    a = await limiter.admit(
        p,
        model="claude-sonnet-4-5",
        body_bytes=40_000,
        max_tokens=32_000,
        prices=PRICES,
        request_id=secrets.token_hex(8),
    )
    if admit_only is not None:
        admit_only.append(time.perf_counter() - t)
    await a.settle(12_345, 10_000, 500)
    return time.perf_counter() - t


async def sequential(
    counters: Counters, p: Principal, n: int, admit_only: list[float] | None = None
) -> list[float]:
    limiter = Limiter(counters)
    for _ in range(min(1000, n)):  # warm-up
        await one(limiter, p)
    return [await one(limiter, p, admit_only) for _ in range(n)]


async def concurrent(counters: Counters, p: Principal, n: int, inflight: int) -> list[float]:
    limiter = Limiter(counters)
    out: list[float] = []

    async def worker(k: int) -> None:
        for _ in range(k):
            out.append(await one(limiter, p))

    t = time.perf_counter()
    await asyncio.gather(*(worker(n // inflight) for _ in range(inflight)))
    elapsed = time.perf_counter() - t
    print(f"redis, {inflight} in flight: {len(out) / elapsed:,.0f} admit+settle per second")
    return out


def show(name: str, samples: list[float]) -> None:
    s = sorted(samples)
    p50 = statistics.median(s) * 1e6
    p99 = s[int(len(s) * 0.99)] * 1e6
    print(f"{name:<44} p50 {p50:8.1f} µs   p99 {p99:8.1f} µs   ({len(s)} requests)")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", default="")
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args()
    show("no limits (fast path)", await sequential(MemoryCounters(), principal(False), args.n))
    admits: list[float] = []
    both = await sequential(MemoryCounters(), principal(True), args.n, admits)
    show("in-process: admit + settle", both)
    show("in-process: admit alone", admits)
    if args.redis:
        prefix = f"tollgate-bench-{secrets.token_hex(4)}:"
        counters = RedisCounters.from_url(args.redis, prefix=prefix)
        try:
            admits = []
            both = await sequential(counters, principal(True, 1), args.n // 4, admits)
            show("redis: admit + settle, sequential", both)
            show("redis: admit alone, sequential", admits)
            show(
                "redis: admit + settle, 32 in flight",
                await concurrent(counters, principal(True, 2), args.n // 2, 32),
            )
        finally:
            keys = [k async for k in counters.client.scan_iter(match=prefix + "*")]
            if keys:
                await counters.client.delete(*keys)
            await counters.aclose()


if __name__ == "__main__":
    asyncio.run(main())
