"""Response cache backends: an in-process LRU with a byte cap, and Redis.

Both implement :class:`dataplane.policy.cache.CacheBackend`; neither ever raises for a backend
failure, so a cache can only make a request faster, never fail it.

* :class:`MemoryCache` — ``OrderedDict`` LRU, O(1) get/put. Bounded by an approximate byte
  budget (:attr:`CachedResponse.size`, default 64 MiB) and a per-entry cap (default 8 MiB);
  least recently used entries go first. Each entry expires ``ttl_s`` after its write, by an
  injected monotonic clock; an expired entry is dropped when read (or evicted by LRU order).
* :class:`RedisCache` — one string key per entry, ``{prefix}cache:{key}``, written with
  ``SET … PX ttl`` (Redis expires it). Entries are framed compactly (:func:`encode_entry`): no
  base64, the body chunks are stored raw. Entries over ``max_entry_bytes`` encoded (default
  8 MiB) are not stored. Any Redis error or a malformed value is a miss (get) or a no-op (put);
  the first failure of an outage is logged as a warning, the recovery at info, nothing in
  between. After a failure the backend skips Redis for ``breaker_s`` so an outage costs one
  timeout, not one per request.

Frame (version 1): ``b"TGC1"`` + u32 big-endian length of ``meta`` + ``meta`` + the chunks
concatenated, with ``meta`` = orjson of ``[status, model, [TokenUsage fields…], cost_micros,
[[header name, value]…] (latin-1 strings), [chunk lengths…]]``.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import astuple
from typing import Any

import orjson
import redis.asyncio as aioredis

from dataplane.metering.meter import TokenUsage
from dataplane.policy.cache import MAX_ENTRY_BYTES, CachedResponse
from dataplane.policy.redis_client import connection_options

__all__ = ["DEFAULT_MEMORY_BYTES", "MemoryCache", "RedisCache", "decode_entry", "encode_entry"]

log = logging.getLogger("tollgate.cache")

DEFAULT_MEMORY_BYTES = 64 * 1024 * 1024

_MAGIC = b"TGC1"
_LEN = struct.Struct(">I")
_HEAD = len(_MAGIC) + _LEN.size


class MemoryCache:
    """In-process LRU bounded by bytes; entries expire by TTL on ``clock`` (seconds)."""

    def __init__(
        self,
        max_bytes: int = DEFAULT_MEMORY_BYTES,
        *,
        max_entry_bytes: int = MAX_ENTRY_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = min(max_entry_bytes, max_bytes)
        self._clock = clock
        # key -> (expires_at, size, entry); order = least recently used first.
        self._entries: OrderedDict[str, tuple[float, int, CachedResponse]] = OrderedDict()
        self._bytes = 0

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    async def get(self, key: str) -> CachedResponse | None:
        item = self._entries.get(key)
        if item is None:
            return None
        expires_at, size, entry = item
        if self._clock() >= expires_at:
            del self._entries[key]
            self._bytes -= size
            return None
        self._entries.move_to_end(key)
        return entry

    async def put(self, key: str, entry: CachedResponse, ttl_s: int) -> None:
        if ttl_s <= 0:
            return
        size = entry.size
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        if size > self.max_entry_bytes:
            return  # too big to keep; a stale older answer for the key is gone too
        self._entries[key] = (self._clock() + ttl_s, size, entry)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, evicted, _) = self._entries.popitem(last=False)
            self._bytes -= evicted

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


def encode_entry(entry: CachedResponse) -> bytes:
    """The compact frame of the module docstring."""
    meta = orjson.dumps(
        [
            entry.status,
            entry.model,
            list(astuple(entry.usage)),
            entry.cost_micros,
            [[k.decode("latin-1"), v.decode("latin-1")] for k, v in entry.headers],
            [len(c) for c in entry.chunks],
        ]
    )
    return b"".join([_MAGIC, _LEN.pack(len(meta)), meta, *entry.chunks])


def decode_entry(data: bytes) -> CachedResponse:
    """Inverse of :func:`encode_entry`; raises ``ValueError`` for anything malformed."""
    if len(data) < _HEAD or data[:4] != _MAGIC:
        raise ValueError("not a cache entry frame")
    (n,) = _LEN.unpack_from(data, 4)
    try:
        status, model, usage, cost, headers, lengths = orjson.loads(data[_HEAD : _HEAD + n])
        view = memoryview(data)
        pos = _HEAD + n
        chunks: list[bytes] = []
        for length in lengths:
            if length < 0 or pos + length > len(data):
                raise ValueError("truncated cache entry")
            chunks.append(bytes(view[pos : pos + length]))
            pos += length
        if pos != len(data):
            raise ValueError("trailing bytes in cache entry")
        return CachedResponse(
            int(status),
            [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            chunks,
            str(model),
            TokenUsage(*(int(u) for u in usage)),
            int(cost),
        )
    except (orjson.JSONDecodeError, TypeError, AttributeError, UnicodeError) as exc:
        raise ValueError(f"malformed cache entry: {exc}") from exc


class RedisCache:
    """Entries shared by every data plane. ``client`` is a ``redis.asyncio.Redis`` (bytes)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "tollgate:",
        max_entry_bytes: int = MAX_ENTRY_BYTES,
        breaker_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prefix = prefix + "cache:"
        self.max_entry_bytes = max_entry_bytes
        self._breaker_s = breaker_s
        self._clock = clock
        self._down_until = 0.0
        self._down = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "tollgate:",
        timeout_s: float = 0.25,
        max_connections: int = 32,
        max_entry_bytes: int = MAX_ENTRY_BYTES,
        breaker_s: float = 1.0,
    ) -> RedisCache:
        """A backend with its own pool and short timeouts: a slow cache is worse than none."""
        client = aioredis.Redis.from_url(url, **connection_options(timeout_s, max_connections))
        return cls(client, prefix=prefix, max_entry_bytes=max_entry_bytes, breaker_s=breaker_s)

    @property
    def client(self) -> aioredis.Redis:
        return self._client

    def redis_key(self, key: str) -> str:
        return self._prefix + key

    def _skip(self) -> bool:
        return self._down_until > 0 and self._clock() < self._down_until

    def _failed(self, op: str, exc: BaseException) -> None:
        self._down_until = self._clock() + self._breaker_s
        if not self._down:
            self._down = True
            log.warning(
                "response cache: Redis unavailable (%s: %s: %s); serving without the cache",
                op,
                type(exc).__name__,
                exc,
            )

    def _ok(self) -> None:
        self._down_until = 0.0
        if self._down:
            self._down = False
            log.info("response cache: Redis is back")

    async def get(self, key: str) -> CachedResponse | None:
        if self._skip():
            return None
        try:
            data: Any = await self._client.get(self.redis_key(key))
        except Exception as exc:  # any failure is a miss: the cache never fails a request
            self._failed("get", exc)
            return None
        self._ok()
        if data is None:
            return None
        try:
            return decode_entry(bytes(data))
        except ValueError as exc:
            log.warning("response cache: dropping a malformed entry %s: %s", key, exc)
            return None

    async def put(self, key: str, entry: CachedResponse, ttl_s: int) -> None:
        if ttl_s <= 0 or entry.body_size > self.max_entry_bytes or self._skip():
            return
        data = encode_entry(entry)
        if len(data) > self.max_entry_bytes:
            return
        try:
            await self._client.set(self.redis_key(key), data, px=ttl_s * 1000)
        except Exception as exc:
            self._failed("put", exc)
            return
        self._ok()

    async def aclose(self) -> None:
        await self._client.aclose()
