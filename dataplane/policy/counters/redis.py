"""Redis counters, shared by every data plane: one Lua script call per admission.

Semantics are those of :mod:`dataplane.policy.counters.base` (and of the in-process backend, tested by
the same contract suite). Each admission runs ``ADMIT`` (``admit.lua``, beside this module) once
(``EVALSHA``; redis-py loads the script on ``NOSCRIPT``), so the check of every limit of both
scopes and the recording of the request are one atomic step on the server; settle and release run
``FINISH`` (``finish.lua``) once.

Key layout (``P`` = prefix, default ``tollgate:``; ``T`` = the admission's tag, the workspace
name; ``S`` = ``k:<key id>``, ``d:<developer id>`` or ``w:<workspace>``)::

    P{T}:S:req        ZSET  request id -> admission ms        rpm/rph sliding log
                            TTL: 1 h (or 1 min without rph) + 1 min
    P{T}:S:tok        HASH  epoch second -> tokens             tpm buckets; TTL 61 s + 1 min
    P{T}:S:fl         ZSET  request id -> lease deadline ms    in flight (max_parallel, leases)
                            TTL: lease + 1 min
    P{T}:S:b:<period> HASH  spent, reserved, tail, r:<request id> -> micros held
                            <period> = the window id of gwcommon.periods, e.g.
                            day:2026-11-28@Europe/Berlin, week:2026-11-23@UTC,
                            month:2026-11-01@UTC, lifetime. TTL: period end + 1 day (late
                            settles still land in it); lifetime: 30 days after the last write
                            (then re-seeded from the ledger, which has long caught up).

Redis Cluster: every key of one admission carries the hash tag ``{T}`` (the key's workspace), so
they share a slot and one script may touch them all. The cost is that a whole workspace lives on
one shard; a single very hot workspace does not spread. Workspace names must not contain braces
(they are validated names).

Time is the calling data plane's clock (``AdmitRequest.now_ms``), not Redis ``TIME``: the engine
and its tests drive one clock. Replicas are expected to run NTP; a skew of δ shifts a sliding
window by δ for that replica's requests.

Lua numbers are doubles: values stay exact below 2**53 (micro-dollars: $9 billion) and every
number written back goes through ``string.format('%d')`` so Redis never sees ``1e+14``.

Unreachable Redis (connect refused, timeout, any Redis error) raises :class:`CountersUnavailable`;
after a failure the backend refuses to try again for ``breaker_s`` (a short circuit breaker), so
an outage costs one timeout, not one per request.
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dataplane.policy.counters.base import (
    AdmitRequest,
    BudgetCheck,
    BudgetUsage,
    CountersUnavailable,
    Refusal,
    RefusalKind,
    ScopeCheck,
    ScopeUsage,
    Ticket,
    Verdict,
)
from dataplane.policy.redis_client import connection_options

__all__ = ["ADMIT_LUA", "FINISH_LUA", "RedisCounters"]

log = logging.getLogger("tollgate.counters.redis")

_KINDS = (
    RefusalKind.BUDGET,
    RefusalKind.BUDGET_HELD,
    RefusalKind.RPM,
    RefusalKind.RPH,
    RefusalKind.TPM,
    RefusalKind.PARALLEL,
)

# Each script's KEYS/ARGV/reply contract is its opening comment. They are read once, at import
# (package data: pyproject.toml's package-data ships *.lua in the wheel).


def _script(name: str) -> str:
    return resources.files("dataplane.policy.counters").joinpath(name).read_text("utf-8")


ADMIT_LUA = _script("admit.lua")
FINISH_LUA = _script("finish.lua")


class RedisCounters:
    """The shared backend. ``client`` is a ``redis.asyncio.Redis`` (bytes replies)."""

    def __init__(
        self, client: aioredis.Redis, *, prefix: str = "tollgate:", breaker_s: float = 1.0
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._breaker_s = breaker_s
        self._down_until = 0.0
        self._admit = client.register_script(ADMIT_LUA)
        self._finish = client.register_script(FINISH_LUA)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "tollgate:",
        timeout_s: float = 0.5,
        max_connections: int = 64,
        breaker_s: float = 1.0,
    ) -> RedisCounters:
        """A backend with its own connection pool and short timeouts (the request path waits).

        The pool blocks: with every connection in use, a call waits up to ``timeout_s`` for one
        instead of failing at once (measured: a saturated data plane, 32 streams on one worker,
        ran past 64 connections in bursts and refused requests with ``Too many connections``,
        503, while Redis itself was healthy)."""
        pool = aioredis.BlockingConnectionPool.from_url(
            url, timeout=timeout_s, **connection_options(timeout_s, max_connections)
        )
        return cls(aioredis.Redis.from_pool(pool), prefix=prefix, breaker_s=breaker_s)

    @property
    def client(self) -> aioredis.Redis:
        return self._client

    def keys_for(self, request: AdmitRequest) -> list[str]:
        """Every key one admission touches, in the scripts' KEYS order."""
        keys: list[str] = []
        head = f"{self._prefix}{{{request.tag}}}:"
        for sc in request.scopes:
            base = head + sc.counter
            keys.append(base + ":req")
            keys.append(base + ":tok")
            keys.append(base + ":fl")
            keys.extend(f"{base}:{b.counter}" for b in sc.budgets)
        return keys

    async def _call(self, script: Any, keys: list[str], arg: bytes) -> Any:
        if self._down_until and time.monotonic() < self._down_until:
            raise CountersUnavailable("Redis was unreachable moments ago")
        try:
            result = await script(keys=keys, args=[arg])
        except (RedisError, OSError, TimeoutError) as exc:
            self._down_until = time.monotonic() + self._breaker_s
            log.warning("redis counters unavailable: %s: %s", type(exc).__name__, exc)
            raise CountersUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self._down_until = 0.0
        return result

    async def admit(self, request: AdmitRequest) -> Verdict:
        arg = orjson.dumps(
            [
                request.now_ms,
                request.request_id,
                request.reserve_micros,
                request.lease_ms,
                1 if request.allow_tail else 0,
                [_scope_arg(sc) for sc in request.scopes],
            ]
        )
        reply = await self._call(self._admit, self.keys_for(request), arg)
        values = [int(v) for v in reply]
        if values[0] == 0:
            kind, scope, budget, used, limit, reserved, retry = values[1:8]
            return Verdict(
                None,
                Refusal(_KINDS[kind], scope, budget, used, limit, reserved, max(0, retry)),
            )
        usage: list[ScopeUsage] = []
        held: list[tuple[int, ...]] = []
        i = 1
        for sc in request.scopes:
            req_min, req_hour, oldest_min, oldest_hour, tokens, flight = values[i : i + 6]
            i += 6
            budgets: list[BudgetUsage] = []
            for _ in sc.budgets:
                budgets.append(BudgetUsage(values[i], values[i + 1], values[i + 2]))
                i += 3
            held.append(tuple(b.held for b in budgets))
            usage.append(
                ScopeUsage(
                    req_min, req_hour, oldest_min, oldest_hour, tokens, flight, tuple(budgets)
                )
            )
        return Verdict(Ticket(request, tuple(held)), None, tuple(usage))

    async def _done(self, ticket: Ticket, cost: int, tokens: int, now_ms: int) -> None:
        request = ticket.request
        arg = orjson.dumps(
            [
                now_ms,
                request.request_id,
                cost,
                tokens,
                [
                    [sc.tpm, 1 if sc.tracks_flight else 0, [b.expires_at_ms for b in sc.budgets]]
                    for sc in request.scopes
                ],
            ]
        )
        await self._call(self._finish, self.keys_for(request), arg)

    async def settle(self, ticket: Ticket, cost_micros: int, tokens: int, now_ms: int) -> None:
        await self._done(ticket, max(0, cost_micros), max(0, tokens), now_ms)

    async def release(self, ticket: Ticket, now_ms: int) -> None:
        await self._done(ticket, 0, 0, now_ms)

    async def peek(
        self, tag: str, scope: str, budgets: tuple[BudgetCheck, ...]
    ) -> tuple[BudgetUsage, ...]:
        if not budgets:
            return ()
        if self._down_until and time.monotonic() < self._down_until:
            raise CountersUnavailable("Redis was unreachable moments ago")
        base = f"{self._prefix}{{{tag}}}:{scope}:"
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for bc in budgets:
                    pipe.hmget(base + bc.counter, "spent", "reserved")
                replies = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._down_until = time.monotonic() + self._breaker_s
            raise CountersUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return tuple(
            BudgetUsage(max(int(spent or 0), bc.seed_micros), int(reserved or 0), 0)
            for bc, (spent, reserved) in zip(budgets, replies, strict=True)
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def _scope_arg(sc: ScopeCheck) -> list[object]:
    return [
        sc.rpm,
        sc.rph,
        sc.tpm,
        sc.max_parallel,
        [[b.limit_micros, b.seed_micros, b.expires_at_ms] for b in sc.budgets],
    ]
