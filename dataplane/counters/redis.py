"""Redis counters, shared by every data plane: one Lua script call per admission.

Semantics are those of :mod:`dataplane.counters.base` (and of the in-process backend, tested by
the same contract suite). Each admission runs ``ADMIT`` once (``EVALSHA``; redis-py loads the
script on ``NOSCRIPT``), so the check of every limit of both scopes and the recording of the
request are one atomic step on the server; settle and release run ``FINISH`` once.

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
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from dataplane.counters.base import (
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

# KEYS: per scope: req, tok, fl, then one key per budget.
# ARGV[1]: JSON [now, rid, reserve, lease, allow_tail(0|1), [[rpm, rph, tpm, par, [[limit, seed,
# expires_at_ms], ...]], ...]]
# Reply: {0, kind, scope, budget, used, limit, reserved, retry_ms} when refused (kind indexes
# _KINDS, scope/budget are 0-based, budget -1 when not a budget), or {1, then per scope: req_min,
# req_hour, oldest_min, oldest_hour, tokens, in_flight, then per budget: spent, reserved, held}.
ADMIT_LUA = r"""
local p = cjson.decode(ARGV[1])
local now, rid, reserve, lease, allow_tail, scopes = p[1], p[2], p[3], p[4], p[5], p[6]
local MIN, HOUR, MARGIN, DAY = 60000, 3600000, 60000, 86400000
local LIFETIME_TTL = 30 * DAY
local function fmt(n) return string.format('%d', n) end
local hard, rate, soft = nil, nil, nil
local layout, seeded, held, tails, tokens = {}, {}, {}, {}, {}
local ki = 1
for si = 1, #scopes do
  local sc = scopes[si]
  local rpm, rph, tpm, par, budgets = sc[1], sc[2], sc[3], sc[4], sc[5]
  local kreq, ktok, kfl = KEYS[ki], KEYS[ki + 1], KEYS[ki + 2]
  ki = ki + 3
  local bkeys = {}
  for bi = 1, #budgets do bkeys[bi] = KEYS[ki]; ki = ki + 1 end
  layout[si] = bkeys
  if rpm > 0 or rph > 0 then
    local keep = MIN
    if rph > 0 then keep = HOUR end
    redis.call('ZREMRANGEBYSCORE', kreq, '-inf', fmt(now - keep))
    if not rate and rpm > 0 then
      local lo = '(' .. fmt(now - MIN)
      local count = redis.call('ZCOUNT', kreq, lo, '+inf')
      if count >= rpm then
        local e = redis.call('ZRANGEBYSCORE', kreq, lo, '+inf', 'WITHSCORES', 'LIMIT', count - rpm, 1)
        rate = {2, si - 1, -1, count, rpm, 0, tonumber(e[2]) + MIN - now}
      end
    end
    if not rate and rph > 0 then
      local count = redis.call('ZCARD', kreq)
      if count >= rph then
        local e = redis.call('ZRANGE', kreq, count - rph, count - rph, 'WITHSCORES')
        rate = {3, si - 1, -1, count, rph, 0, tonumber(e[2]) + HOUR - now}
      end
    end
  end
  tokens[si] = 0
  if tpm > 0 then
    local start = math.floor(now / 1000) - 60
    local h = redis.call('HGETALL', ktok)
    local used, secs = 0, {}
    for i = 1, #h, 2 do
      local sec, n = tonumber(h[i]), tonumber(h[i + 1])
      if sec < start then
        redis.call('HDEL', ktok, h[i])
      else
        used = used + n
        secs[#secs + 1] = {sec, n}
      end
    end
    tokens[si] = used
    if not rate and used >= tpm then
      table.sort(secs, function(a, b) return a[1] < b[1] end)
      local left, retry = used, 61000
      for i = 1, #secs do
        left = left - secs[i][2]
        if left < tpm then retry = (secs[i][1] + 61) * 1000 - now; break end
      end
      if retry < 1 then retry = 1 end
      rate = {4, si - 1, -1, used, tpm, 0, retry}
    end
  end
  if par > 0 or #budgets > 0 then
    local expired = redis.call('ZRANGEBYSCORE', kfl, '-inf', fmt(now))
    if #expired > 0 then
      for _, r in ipairs(expired) do
        for bi = 1, #budgets do
          local amt = redis.call('HGET', bkeys[bi], 'r:' .. r)
          if amt then
            redis.call('HINCRBY', bkeys[bi], 'reserved', fmt(-tonumber(amt)))
            redis.call('HDEL', bkeys[bi], 'r:' .. r)
          end
          if redis.call('HGET', bkeys[bi], 'tail') == r then redis.call('HDEL', bkeys[bi], 'tail') end
        end
      end
      redis.call('ZREMRANGEBYSCORE', kfl, '-inf', fmt(now))
    end
    if not rate and par > 0 then
      local n = redis.call('ZCARD', kfl)
      if n >= par then rate = {5, si - 1, -1, n, par, 0, 1000} end
    end
  end
  local s_seed, s_held, s_tail = {}, {}, {}
  for bi = 1, #budgets do
    local lim, seed = budgets[bi][1], budgets[bi][2]
    local v = redis.call('HMGET', bkeys[bi], 'spent', 'reserved', 'tail')
    local spent, reserved, tail = tonumber(v[1]) or 0, tonumber(v[2]) or 0, v[3]
    if seed > spent then spent = seed end
    local avail = lim - spent - reserved
    local amount, is_tail = 0, false
    if reserve <= avail then
      amount = reserve
    elseif allow_tail == 1 and avail > 0 and not tail then
      amount, is_tail = avail, true
    elseif spent >= lim then
      if not hard then hard = {0, si - 1, bi - 1, spent, lim, reserved, 0} end
    elseif not soft then
      soft = {1, si - 1, bi - 1, spent, lim, reserved, 0}
    end
    s_seed[bi], s_held[bi], s_tail[bi] = spent, amount, is_tail
  end
  seeded[si], held[si], tails[si] = s_seed, s_held, s_tail
end
local refusal = hard or rate or soft
if refusal then
  return {0, refusal[1], refusal[2], refusal[3], refusal[4], refusal[5], refusal[6], refusal[7]}
end
local out = {1}
ki = 1
for si = 1, #scopes do
  local sc = scopes[si]
  local rpm, rph, par, budgets = sc[1], sc[2], sc[4], sc[5]
  local kreq, kfl = KEYS[ki], KEYS[ki + 2]
  ki = ki + 3 + #budgets
  local req_min, req_hour, oldest_min, oldest_hour, flight = 0, 0, 0, 0, 0
  if rpm > 0 or rph > 0 then
    local keep = MIN
    if rph > 0 then keep = HOUR end
    redis.call('ZADD', kreq, fmt(now), rid)
    redis.call('PEXPIRE', kreq, keep + MARGIN)
    local lo = '(' .. fmt(now - MIN)
    req_min = redis.call('ZCOUNT', kreq, lo, '+inf')
    oldest_min = tonumber(redis.call('ZRANGEBYSCORE', kreq, lo, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)[2])
    if rph > 0 then
      req_hour = redis.call('ZCARD', kreq)
      oldest_hour = tonumber(redis.call('ZRANGE', kreq, 0, 0, 'WITHSCORES')[2])
    end
  end
  if par > 0 or #budgets > 0 then
    redis.call('ZADD', kfl, fmt(now + lease), rid)
    redis.call('PEXPIRE', kfl, lease + MARGIN)
    flight = redis.call('ZCARD', kfl)
  end
  out[#out + 1] = req_min
  out[#out + 1] = req_hour
  out[#out + 1] = oldest_min
  out[#out + 1] = oldest_hour
  out[#out + 1] = tokens[si]
  out[#out + 1] = flight
  local bkeys = layout[si]
  for bi = 1, #budgets do
    local k, amount = bkeys[bi], held[si][bi]
    redis.call('HSET', k, 'spent', fmt(seeded[si][bi]))
    local reserved = redis.call('HINCRBY', k, 'reserved', fmt(amount))
    redis.call('HSET', k, 'r:' .. rid, fmt(amount))
    if tails[si][bi] then redis.call('HSET', k, 'tail', rid) end
    local exp = budgets[bi][3]
    if exp > 0 then redis.call('PEXPIREAT', k, fmt(exp + DAY)) else redis.call('PEXPIRE', k, LIFETIME_TTL) end
    out[#out + 1] = seeded[si][bi]
    out[#out + 1] = reserved
    out[#out + 1] = amount
  end
end
return out
"""

# KEYS: as for ADMIT. ARGV[1]: JSON [now, rid, cost, tokens, [[tpm, flight(0|1), [expires_at_ms,
# ...]], ...]]. Releases the request's reservations, adds cost and tokens, leaves the flight sets.
FINISH_LUA = r"""
local p = cjson.decode(ARGV[1])
local now, rid, cost, tokens, scopes = p[1], p[2], p[3], p[4], p[5]
local MARGIN, DAY = 60000, 86400000
local LIFETIME_TTL = 30 * DAY
local function fmt(n) return string.format('%d', n) end
local ki = 1
for si = 1, #scopes do
  local sc = scopes[si]
  local tpm, flight, budgets = sc[1], sc[2], sc[3]
  local ktok, kfl = KEYS[ki + 1], KEYS[ki + 2]
  ki = ki + 3
  if tpm > 0 and tokens > 0 then
    redis.call('HINCRBY', ktok, fmt(math.floor(now / 1000)), fmt(tokens))
    redis.call('PEXPIRE', ktok, 61000 + MARGIN)
  end
  if flight == 1 then redis.call('ZREM', kfl, rid) end
  for bi = 1, #budgets do
    local k = KEYS[ki]
    ki = ki + 1
    local amt = redis.call('HGET', k, 'r:' .. rid)
    if amt then
      redis.call('HINCRBY', k, 'reserved', fmt(-tonumber(amt)))
      redis.call('HDEL', k, 'r:' .. rid)
    end
    if redis.call('HGET', k, 'tail') == rid then redis.call('HDEL', k, 'tail') end
    if cost > 0 then
      redis.call('HINCRBY', k, 'spent', fmt(cost))
      local exp = budgets[bi]
      if exp > 0 then redis.call('PEXPIREAT', k, fmt(exp + DAY)) else redis.call('PEXPIRE', k, LIFETIME_TTL) end
    end
  end
end
return 1
"""


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
            url,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            max_connections=max_connections,
            health_check_interval=30,
            # One immediate retry (a pooled connection that went stale), no backoff: the
            # request path is waiting; the breaker takes over after that.
            retry=Retry(NoBackoff(), 1),
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
