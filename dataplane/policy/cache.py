"""Exact-match response cache: the key, the policy, the entry, the recorder and the replay, and
:func:`consult_cache`, the cache's one part in a request (decide, look up, replay a hit).

Backends (in-process LRU, Redis) live in :mod:`dataplane.policy.cache_store`; both implement
:class:`CacheBackend`. Nothing here does I/O; only a backend's ``get``/``put`` may. This module is
long (~420 lines) because the request path enters the cache once, so the one entry sits next to
the key, policy and replay contract it applies.

**Key** (:func:`cache_key`) — hex SHA-256 over one orjson document (``OPT_SORT_KEYS``, so nested
key order and the client's whitespace never matter)::

    ["tollgate-cache/1", workspace, door, model, stream, body', anthropic-version, [betas]]

* ``workspace`` first: an entry is never shared across workspaces (two teams may send the same
  prompt; neither may read the other's answer, nor learn that it was asked).
* ``door`` (the client's wire format: anthropic | bedrock | vertex): a hit replays the bytes that
  were sent to a client of that format, so formats never share entries.
* ``model``: the model requested (the body's own ``model`` is in ``body'`` too).
* ``stream`` **is part of the key**: a hit replays the identical bytes, and an SSE stream and a
  JSON message are different bytes; a streamed request is never served from a non-streamed answer
  or the reverse. Absent ``stream`` is normalised to ``false`` (the API's default), so
  ``{"stream": false}`` and no ``stream`` share an entry. Doors whose stream flag lives in the
  URL (Bedrock) pass it as ``stream=``.
* ``body'`` is the parsed request body minus ``metadata`` (``metadata.user_id`` differs per
  user and never changes the answer) and minus ``stream`` (carried above). Everything else
  stays: ``messages``, ``system``, ``max_tokens``, ``tools``, ``tool_choice``, ``thinking``,
  ``temperature``, ``stop_sequences``, ``cache_control`` markers and any unknown field. An
  unknown field may change the answer, so it counts.
* headers that change the answer: ``anthropic-version`` (stripped) and ``anthropic-beta``
  (every such header, split on commas, stripped, de-duplicated, sorted: ``a, b`` == ``b,a``).
  No other header counts (``x-claude-code-session-id``, ``user-agent``… differ per client).

**Policy** (:func:`decide`, :func:`cacheable`) — ``x-tollgate-cache`` is the per-request control:

* The route's ``cache_ttl_s`` <= 0 → no cache at all (status ``""``); the header is ignored.
* ``no-store`` → neither read nor write (status ``bypass``).
* Sampled requests: ``temperature`` > 0 **or absent** (the API's default is 1.0, so an absent
  temperature is a sampled request — as is every extended-thinking request, which requires the
  default) are cached only when the route sets ``cache_sampled``; otherwise ``bypass``. Only a
  numeric ``temperature`` equal to 0 counts as deterministic; anything else (a string, a bool,
  a negative number the upstream will refuse) is treated as sampled.
* ``refresh`` → don't read, do write (status ``refresh``): the answer replaces the entry.
* Otherwise read, and write on a miss (status ``miss``; the caller turns it into ``hit``).
* An unknown control value is ignored (default behaviour). Only ``POST /v1/messages`` is meant
  to be cached (``count_tokens`` is free and never is).

**Entry** — :class:`CachedResponse`: the exact bytes the client received, in order. Only a
complete success is stored: status 200 and, for a stream, ``message_stop`` seen with no error
event and no gateway-emitted error (the caller only asks :meth:`CacheRecorder.entry` then).
Per-request response headers (request ids, rate-limit state, ``x-tollgate-*``, length/framing)
are not stored; :func:`replay_headers` adds fresh ones. ``usage``/``cost_micros`` are those of
the original upstream call: on a hit the request costs nothing and ``cost_micros`` is the cost
saved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from dataplane.asgi import Header, Send
from dataplane.metering.meter import TokenUsage
from dataplane.metering.record import RequestRecord
from dataplane.providers.base import UpstreamRequest

__all__ = [
    "BYPASS",
    "CONTROL_HEADER",
    "HIT",
    "MAX_ENTRY_BYTES",
    "MISS",
    "NO_CACHE",
    "REFRESH",
    "CacheBackend",
    "CacheDecision",
    "CachePlan",
    "CacheRecorder",
    "CachedResponse",
    "cache_key",
    "cacheable",
    "consult_cache",
    "decide",
    "is_sampled",
    "replay",
    "replay_headers",
    "storable_headers",
]


CONTROL_HEADER = b"x-tollgate-cache"
# Values of the usage event's cache_status ("" = the route has no cache).
HIT, MISS, BYPASS, REFRESH = "hit", "miss", "bypass", "refresh"
# The largest answer either backend keeps; a bigger one is relayed but not cached.
MAX_ENTRY_BYTES = 8 * 1024 * 1024

_KEY_VERSION = "tollgate-cache/1"
_EXCLUDED_FIELDS = frozenset({"metadata", "stream"})

# Response headers that describe one request, not the answer: never stored, never replayed.
_PER_REQUEST = frozenset(
    {
        b"request-id",
        b"x-request-id",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"date",
        b"server",
        b"set-cookie",
        b"retry-after",
        b"cf-ray",
        b"cf-cache-status",
        b"x-amzn-requestid",
        b"x-amzn-request-id",
    }
)
_PER_REQUEST_PREFIXES = (b"x-tollgate-", b"anthropic-ratelimit-", b"x-ratelimit-")
_STREAM_TYPES = (b"text/event-stream", b"application/vnd.amazon.eventstream")
_REPLAY_PIECE = 64 * 1024


# --------------------------------------------------------------------------------------- key


def _version(headers: Sequence[Header]) -> str:
    for k, v in headers:
        if k.lower() == b"anthropic-version":
            return v.decode("latin-1").strip()
    return ""


def cache_key(
    workspace: str,
    model: str,
    body: Mapping[str, Any],
    headers: Sequence[Header],
    betas: Sequence[str],
    *,
    stream: bool | None = None,
    door: str = "anthropic",
) -> str:
    """The entry's key: 64 hex chars. ``body`` is the parsed request body (JSON types only);
    ``headers`` the request headers (any case; only ``anthropic-version`` is read); ``betas``
    their ``anthropic-beta`` values (any order, duplicates allowed); ``stream`` overrides
    ``body["stream"]``."""
    if stream is None:
        stream = body.get("stream") is True
    rest = {k: v for k, v in body.items() if k not in _EXCLUDED_FIELDS}
    doc = [
        _KEY_VERSION,
        workspace,
        door,
        model,
        stream,
        rest,
        _version(headers),
        sorted(set(betas)),
    ]
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


# ------------------------------------------------------------------------------------ policy


@dataclass(frozen=True, slots=True)
class CacheDecision:
    """What the cache does for one request. ``status`` is the usage event's ``cache_status``
    unless a read hits (then ``hit``)."""

    read: bool
    write: bool
    status: str


_NO_CACHE = CacheDecision(False, False, "")
_BYPASS = CacheDecision(False, False, BYPASS)
_REFRESH = CacheDecision(False, True, REFRESH)
_NORMAL = CacheDecision(True, True, MISS)


def is_sampled(body: Mapping[str, Any]) -> bool:
    """True unless ``temperature`` is a number equal to 0 (absent means the default 1.0)."""
    t = body.get("temperature")
    if isinstance(t, bool) or not isinstance(t, int | float):
        return True
    return t != 0


def _control(value: str | bytes | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value.strip().lower()


def decide(
    body: Mapping[str, Any],
    route_cache_ttl_s: int,
    cache_sampled: bool,
    control: str | bytes | None,
) -> CacheDecision:
    """The policy of the module docstring. ``control`` is the ``x-tollgate-cache`` value."""
    if route_cache_ttl_s <= 0:
        return _NO_CACHE
    mode = _control(control)
    if mode == "no-store":
        return _BYPASS
    if not isinstance(body, Mapping) or (is_sampled(body) and not cache_sampled):
        return _BYPASS
    return _REFRESH if mode == "refresh" else _NORMAL


def cacheable(
    body: Mapping[str, Any],
    route_cache_ttl_s: int,
    cache_sampled: bool,
    control: str | bytes | None,
) -> bool:
    """May this request's answer be stored? (Read it only when ``decide(...).read``.)"""
    return decide(body, route_cache_ttl_s, cache_sampled, control).write


# ------------------------------------------------------------------------------------- entry


def storable_headers(headers: Iterable[Header]) -> list[Header]:
    """The response headers worth replaying: lower-cased, per-request ones dropped."""
    out: list[Header] = []
    for k, v in headers:
        k = k.lower()
        if k in _PER_REQUEST or k.startswith(_PER_REQUEST_PREFIXES):
            continue
        out.append((k, v))
    return out


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """One stored answer. ``chunks`` joined are the exact body bytes the client received."""

    status: int
    headers: list[Header]
    chunks: list[bytes]
    model: str
    usage: TokenUsage
    cost_micros: int

    @property
    def body_size(self) -> int:
        return sum(len(c) for c in self.chunks)

    @property
    def stream(self) -> bool:
        """Was this a streamed answer (SSE or AWS event stream)? Decided by content-type."""
        for k, v in self.headers:
            if k == b"content-type":
                return v.strip().lower().startswith(_STREAM_TYPES)
        return False

    @property
    def size(self) -> int:
        """Approximate bytes retained in memory (payload plus per-object overhead)."""
        n = 256 + len(self.model) + self.body_size + 48 * (len(self.chunks) + len(self.headers))
        return n + sum(len(k) + len(v) for k, v in self.headers)


class CacheBackend(Protocol):
    """Where entries live. Neither method ever raises for a backend failure: ``get`` degrades
    to a miss and ``put`` to a no-op."""

    async def get(self, key: str) -> CachedResponse | None: ...

    async def put(self, key: str, entry: CachedResponse, ttl_s: int) -> None: ...


class CacheRecorder:
    """Collects the bytes sent to the client, as they go, up to ``limit_bytes`` of body.

    ``add(chunk)`` after each chunk is sent; past the limit the recorder drops what it holds
    (memory stays bounded) and :meth:`entry` returns None.
    """

    __slots__ = ("_chunks", "_over", "_size", "limit_bytes")

    def __init__(self, limit_bytes: int = MAX_ENTRY_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self._chunks: list[bytes] = []
        self._size = 0
        self._over = False

    @property
    def size(self) -> int:
        return self._size

    @property
    def over_limit(self) -> bool:
        return self._over

    def add(self, chunk: bytes) -> None:
        if self._over or not chunk:
            return
        self._size += len(chunk)
        if self._size > self.limit_bytes:
            self._over = True
            self._chunks = []
            return
        self._chunks.append(bytes(chunk))

    def entry(
        self,
        status: int,
        headers: Iterable[Header],
        model: str,
        usage: TokenUsage,
        cost_micros: int,
    ) -> CachedResponse | None:
        """The entry to store, or None (not a 200, nothing recorded, or over the limit). Call it
        only for a complete answer (a stream: ``message_stop`` seen, no error event)."""
        if status != 200 or self._over or not self._chunks:
            return None
        return CachedResponse(
            status, storable_headers(headers), list(self._chunks), model, usage, cost_micros
        )


# ------------------------------------------------------------------------------------ replay


def replay_headers(
    entry: CachedResponse, request_id: str, extra: Iterable[Header] = ()
) -> list[Header]:
    """Stored headers + fresh request ids + ``x-tollgate-cache: hit`` + ``extra`` (+ the
    content-length of a non-streamed answer)."""
    rid = request_id.encode()
    out = [*entry.headers, (b"request-id", rid), (b"x-tollgate-request-id", rid)]
    out.append((CONTROL_HEADER, HIT.encode()))
    out.extend(extra)
    if not entry.stream:
        out.append((b"content-length", str(entry.body_size).encode()))
    return out


async def replay(send: Send, entry: CachedResponse, headers: list[Header]) -> None:
    """Send a hit: the stored bytes in order (small chunks coalesced up to 64 KiB per body
    message; the bytes on the wire are identical)."""
    await send({"type": "http.response.start", "status": entry.status, "headers": headers})
    piece: list[bytes] = []
    size = 0
    for chunk in entry.chunks:
        piece.append(chunk)
        size += len(chunk)
        if size >= _REPLAY_PIECE:
            await send({"type": "http.response.body", "body": b"".join(piece), "more_body": True})
            piece, size = [], 0
    await send({"type": "http.response.body", "body": b"".join(piece)})


# ----------------------------------------------------------------------------------- request


@dataclass(frozen=True, slots=True)
class CachePlan:
    """What :func:`consult_cache` settled for one request: ``served`` (a hit was replayed; the
    request is answered), else where a complete answer is stored (``key``, ``ttl_s``) and the
    ``recorder`` that collects it (None: the answer is not stored)."""

    key: str
    ttl_s: int
    recorder: CacheRecorder | None
    served: bool = False


NO_CACHE = CachePlan("", 0, None)


async def consult_cache(
    backend: CacheBackend,
    rec: RequestRecord,
    send: Send,
    request: UpstreamRequest,
    *,
    workspace: str,
    door: str,
    ttl_s: int,
    sampled: bool,
    control: bytes | None,
) -> CachePlan:
    """Decide (:func:`decide`: the route's ``ttl_s`` and ``sampled``, the ``control`` header),
    and when the decision reads, look the key up; a hit is replayed to ``send`` at once. Sets
    ``rec.cache_status``, and on a hit what the usage event says of it (provider ``cache``, the
    stored usage, ``cost_saved_micros``)."""
    body = request.json
    decision = decide(body, ttl_s, sampled, control)
    rec.cache_status = decision.status
    if not (decision.read or decision.write):
        return NO_CACHE
    key = cache_key(
        workspace,
        request.model,
        body,
        request.headers,
        request.betas,
        stream=request.stream,
        door=door,
    )
    entry = await backend.get(key) if decision.read else None
    if entry is None:
        return CachePlan(key, ttl_s, CacheRecorder() if decision.write else None)
    rec.cache_status = HIT
    rec.status = entry.status
    rec.provider = "cache"
    rec.usage = entry.usage
    rec.model_served = entry.model
    rec.cost_saved_micros = entry.cost_micros  # the hit itself costs no upstream money
    rec.mark_first_byte()
    extra = [(b"x-tollgate-provider", b"cache"), (b"x-tollgate-attempts", b"0")]
    await replay(send, entry, replay_headers(entry, rec.request_id, extra))
    return CachePlan(key, ttl_s, None, served=True)
