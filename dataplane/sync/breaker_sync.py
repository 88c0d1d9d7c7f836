"""Share the per-target circuit breakers between data planes through Redis, off the request path.

The in-process :class:`~dataplane.policy.breaker.CircuitBreaker` stays the only thing requests consult;
this background task only moves state around it:

* **publish** — each state change decided here (opened until T, a failed probe reopening it, a
  success closing it) is written at once (the task wakes on it) to ``P breaker:<target>``, a hash
  ``state`` (open | closed), ``open_until_ms``, ``updated_ms`` (wall-clock ms) and ``origin``
  (this replica), by a script that never overwrites a newer entry; ``P breakers`` is a set of
  the targets that have one. Entries expire ``ttl_s`` after the cooldown ends.
* **pull** — every ``interval_s`` every entry is read and handed to
  :meth:`~dataplane.policy.breaker.CircuitBreaker.apply_remote`: another replica's "open until T"
  opens the target here until T, a "closed" newer than this replica's last change closes it.

Times cross replicas as wall-clock ms (replicas are expected to run NTP, as for the counters)
and are converted to and from the breaker's monotonic clock here.

Redis unreachable (refused, timeout, any Redis error): each breaker keeps deciding alone, the
task logs one warning per outage, keeps the latest unpublished change per target and retries
every ``retry_s``. Nothing here ever raises into a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dataplane.policy.breaker import CircuitBreaker, Transition
from dataplane.policy.redis_client import connection_options

__all__ = ["PUBLISH_LUA", "BreakerSync"]

log = logging.getLogger("tollgate.breaker_sync")

# KEYS: entry hash, index set. ARGV: state, open_until_ms, updated_ms, origin, target, ttl_ms.
# Writes unless the entry holds a newer update; returns 1 when written.
PUBLISH_LUA = r"""
local cur = redis.call('HGET', KEYS[1], 'updated_ms')
if cur and tonumber(cur) > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'open_until_ms', ARGV[2], 'updated_ms', ARGV[3],
  'origin', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 1
"""

_ERRORS = (RedisError, OSError, TimeoutError)


class BreakerSync:
    """Publishes ``breaker``'s transitions and applies the other replicas' (see module doc)."""

    def __init__(
        self,
        client: aioredis.Redis,
        breaker: CircuitBreaker,
        *,
        prefix: str = "tollgate:",
        origin: str = "",
        interval_s: float = 0.5,
        retry_s: float = 1.0,
        ttl_s: float = 600.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._breaker = breaker
        self._prefix = prefix
        self.origin = origin or secrets.token_hex(6)
        self._interval_s = interval_s
        self._retry_s = retry_s
        self._ttl_ms = int(ttl_s * 1000)
        self._wall = wall
        self._publish = client.register_script(PUBLISH_LUA)
        self._pending: dict[str, Transition] = {}  # latest unpublished change per target
        self._wake = asyncio.Event()
        self._down = False
        self._task: asyncio.Task[None] | None = None
        breaker.on_transition = self._queue

    @classmethod
    def from_url(
        cls,
        url: str,
        breaker: CircuitBreaker,
        *,
        prefix: str = "tollgate:",
        origin: str = "",
        interval_s: float = 0.5,
        retry_s: float = 1.0,
        timeout_s: float = 0.5,
    ) -> BreakerSync:
        """A sync task with its own small connection pool and short timeouts."""
        client = aioredis.Redis.from_url(url, **connection_options(timeout_s, max_connections=2))
        return cls(
            client,
            breaker,
            prefix=prefix,
            origin=origin,
            interval_s=interval_s,
            retry_s=retry_s,
        )

    def _entry(self, name: str) -> str:
        return f"{self._prefix}breaker:{name}"

    @property
    def _index(self) -> str:
        return f"{self._prefix}breakers"

    def _queue(self, transition: Transition) -> None:
        """The breaker's callback: on the request path, so only a dict write and a wake-up."""
        self._pending[transition.name] = transition
        self._wake.set()

    def _to_wall_ms(self, t: float) -> int:
        return int((self._wall() + (t - self._breaker.now())) * 1000)

    def _from_wall_ms(self, ms: int) -> float:
        return self._breaker.now() + (ms / 1000 - self._wall())

    async def publish_pending(self) -> None:
        """Writes every queued change; on error the unwritten ones stay queued."""
        while self._pending:
            name, t = next(iter(self._pending.items()))
            until_ms = self._to_wall_ms(t.open_until) if t.open_until is not None else 0
            ttl_ms = self._ttl_ms + max(0, until_ms - int(self._wall() * 1000))
            await self._publish(
                keys=[self._entry(name), self._index],
                args=[t.state, until_ms, self._to_wall_ms(t.at), self.origin, name, ttl_ms],
            )
            if self._pending.get(name) is t:  # not replaced while we awaited
                del self._pending[name]

    async def pull(self) -> int:
        """Applies every other replica's entry; returns how many changed the local breaker."""
        names = sorted(_text(n) for n in await self._client.smembers(self._index))
        if not names:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.hmget(self._entry(name), ["state", "open_until_ms", "updated_ms", "origin"])
        rows = await pipe.execute()
        gone: list[str] = []
        changed = 0
        for name, (state, until, updated, origin) in zip(names, rows, strict=True):
            if state is None or updated is None:
                gone.append(name)
                continue
            if origin is not None and _text(origin) == self.origin:
                continue
            open_until = self._from_wall_ms(int(until)) if until and int(until) > 0 else None
            remote = _text(state)
            if self._breaker.apply_remote(
                name, remote, open_until, self._from_wall_ms(int(updated))
            ):
                changed += 1
                log.info("breaker %s: %s (from another data plane)", name, remote)
        if gone:
            await self._client.srem(self._index, *gone)
        return changed

    async def step(self) -> bool:
        """One publish + pull; False (logged once per outage) when Redis is unreachable."""
        try:
            await self.publish_pending()
            await self.pull()
        except _ERRORS as exc:
            if not self._down:
                self._down = True
                log.warning(
                    "breaker sync: Redis unavailable, breakers are local-only until it is back:"
                    " %s: %s",
                    type(exc).__name__,
                    exc,
                )
            return False
        if self._down:
            self._down = False
            log.info("breaker sync: Redis is back, breakers are shared again")
        return True

    async def run(self) -> None:
        """Until cancelled: publish as soon as something changes, pull every interval."""
        loop = asyncio.get_running_loop()
        next_pull = 0.0
        while True:
            wait = next_pull - loop.time()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):  # not wait_for: see gwcommon.tasks
                        await self._wake.wait()
            self._wake.clear()
            try:
                ok = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not kill sharing for good; requests never see it
                log.exception("breaker sync step failed")
                ok = False
            if ok:
                next_pull = loop.time() + self._interval_s
            else:  # an outage: retry later, without spinning on each new transition
                await asyncio.sleep(self._retry_s)
                next_pull = 0.0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="breaker-sync")

    async def stop(self) -> None:
        """Stops the task, detaches from the breaker and closes the connection pool."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._breaker.on_transition == self._queue:
            self._breaker.on_transition = None
        await self._client.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
