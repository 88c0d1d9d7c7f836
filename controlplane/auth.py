"""Authentication and authorisation of every RPC, as one grpc.aio server interceptor.

The interceptor wraps each method's handler so that, in the task that serves the call, before
the servicer runs:

1. the bearer token (``authorization: Bearer <token>``) becomes a :class:`Principal` —
   :class:`Authenticator`: the bootstrap admin token (``TOLLGATE_ADMIN_TOKEN``, principal
   :data:`~controlplane.identity.BOOTSTRAP`), the data-plane token (a ``dataplane`` principal)
   or a created admin token (``tga-…``, looked up by SHA-256);
2. the method's policy from :mod:`controlplane.rpc_policies` is applied, including its resolver (which
   workspace the request targets);
3. :data:`controlplane.identity.current` and ``current_method`` are set, so the service layer
   (list filtering, audit) sees who is calling.

Refusals: UNAUTHENTICATED (no, malformed, unknown, expired or revoked token; the data-plane
token on an admin call) or PERMISSION_DENIED (the role does not allow it), with a readable
message that never echoes a token. Tokens are compared in constant time and never logged.

Created tokens are cached in memory by hash for ``cache_ttl_s`` (default 10 s). Revoking a token
through this process drops it from this process's cache at once; other control-plane replicas
empty theirs when the fleet bus announces the ``admin_token`` change
(:mod:`controlplane.fleet`), so a revocation holds on every replica at once; ``cache_ttl_s`` is
only the fallback while the bus is reconnecting. Expiry is checked on every call against the
cached expiry time, so it is exact everywhere.

Streams (TailLogs, TailAudit, StreamStats: every server-streaming RPC) are authorised at the
start like any call, and a created token's stream is then authenticated again every
``recheck_s`` (default 1 s) through the same cached lookup (:func:`_revalidated`), so revoking
or expiring the token ends its open streams with UNAUTHENTICATED within ``recheck_s`` on the
replica that revoked it and on the others. Bootstrap
and data-plane tokens cannot be revoked and are not re-checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import grpc

from controlplane import identity, rpc_policies
from controlplane.catalog import tokens as token_store
from controlplane.catalog.common import now_ms
from controlplane.domain import tokens as token_rules
from controlplane.domain.errors import DomainError, Unauthenticated
from controlplane.errors import status_for
from controlplane.identity import BOOTSTRAP, Principal, TokenRole
from controlplane.rpc_policies import Policy, Rule, Target
from controlplane.store.db import Database

log = logging.getLogger(__name__)

DATAPLANE = Principal(id="dataplane", name="data-plane token", role=TokenRole.DATAPLANE)
TOUCH_EVERY_MS = 60_000  # last_used_at_ms is recorded at most this often per token
MAX_CACHED = 10_000
RECHECK_S = 1.0  # an open stream of a created token is re-authenticated this often


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The token from ``authorization: Bearer …``; ``None`` if absent, ``""`` if malformed."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return ""
        return token.strip()
    return None


def _same(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class _Cached:
    principal: Principal
    expires_at_ms: int
    revoked_at_ms: int
    fetched: float  # time.monotonic()


class Authenticator:
    """Bearer token → :class:`Principal`, or :class:`Unauthenticated` with a readable reason."""

    def __init__(
        self,
        admin_token: str,
        dataplane_token: str,
        db: Database | None = None,
        *,
        cache_ttl_s: float = 10.0,
        clock: Callable[[], int] = now_ms,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not admin_token:
            raise ValueError("an admin token is required")
        self._admin = admin_token
        self._dataplane = dataplane_token  # "" = no data-plane token (never the admin token)
        self._db = db
        self._ttl = cache_ttl_s
        self._clock = clock
        self._monotonic = monotonic  # the cache's age (tests pass a manual one)
        self._cache: dict[str, _Cached] = {}

    @staticmethod
    def revocable(p: Principal) -> bool:
        """Whether ``p`` is a created token (which can be revoked or expire)."""
        return p.id not in (BOOTSTRAP.id, DATAPLANE.id)

    def forget_all(self) -> None:
        """Empty the cache (another replica changed a token: revoked, created, used)."""
        self._cache.clear()

    def forget(self, token_id: str) -> None:
        """Drop a token from the cache (after it was revoked through this process)."""
        for digest in [d for d, c in self._cache.items() if c.principal.id == token_id]:
            del self._cache[digest]

    async def authenticate(self, token: str | None, *, dataplane_call: bool) -> Principal:
        if token == "":
            raise Unauthenticated(
                "malformed authorization metadata: expected 'authorization: Bearer <token>'"
            )
        if token is None:
            raise Unauthenticated(
                "missing data-plane token: set TOLLGATE_DATAPLANE_TOKEN on the data plane"
                if dataplane_call
                else "missing admin token: set TOLLGATE_ADMIN_TOKEN or pass --token-file PATH"
            )
        if _same(token, self._admin):
            return BOOTSTRAP
        if _same(token, self._dataplane):
            return DATAPLANE
        if self._db is not None and token_rules.looks_like_token(token):
            found = await self._created(token_rules.hash_secret(token))
            if found is not None:
                return found
        if dataplane_call:
            raise Unauthenticated(
                "invalid data-plane token: check TOLLGATE_DATAPLANE_TOKEN on the data plane"
            )
        raise Unauthenticated("invalid admin token: check TOLLGATE_ADMIN_TOKEN or --token-file")

    async def _created(self, digest: str) -> Principal | None:
        cached = self._cache.get(digest)
        if cached is None or self._monotonic() - cached.fetched > self._ttl:
            cached = await self._load(digest)
            if cached is None:
                self._cache.pop(digest, None)
                return None
        now = self._clock()
        p = cached.principal
        if cached.revoked_at_ms:
            raise Unauthenticated(
                f"admin token {p.id} ({p.name}) was revoked at {_when(cached.revoked_at_ms)}; "
                "ask an admin for a new one"
            )
        if cached.expires_at_ms and cached.expires_at_ms <= now:
            raise Unauthenticated(
                f"admin token {p.id} ({p.name}) expired at {_when(cached.expires_at_ms)}; "
                "ask an admin for a new one"
            )
        return p

    async def _load(self, digest: str) -> _Cached | None:
        assert self._db is not None
        row = await self._db.read(lambda s: token_store.lookup(s, digest))
        if row is None:
            return None
        entry = _Cached(
            principal=token_store.principal_of(row),
            expires_at_ms=row.expires_at_ms,
            revoked_at_ms=row.revoked_at_ms,
            fetched=self._monotonic(),
        )
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[digest] = entry
        now = self._clock()
        if not row.revoked_at_ms and now - row.last_used_at_ms >= TOUCH_EVERY_MS:
            token_id = row.id
            try:
                await self._db.run(lambda s: token_store.touch(s, token_id, now))
            except Exception:  # bookkeeping only: never fail the call over it
                log.warning("could not record the use of token %s", token_id, exc_info=True)
        return entry


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    def __init__(
        self,
        authenticator: Authenticator,
        db: Database | None = None,
        *,
        recheck_s: float = RECHECK_S,
    ) -> None:
        self._auth = authenticator
        self._db = db
        self.recheck_s = recheck_s

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        policy = rpc_policies.policy_for(method)
        handler = await continuation(handler_call_details)
        if handler is None or policy.rule is Rule.OPEN:
            return handler
        token = bearer_token(handler_call_details.invocation_metadata)
        return _guarded(handler, _Gate(self, method, policy, token))

    async def authorize(
        self, method: str, policy: Policy, token: str | None, request: Any, peer: str
    ) -> Principal:
        """The caller's principal if ``policy`` lets it make this request; raises otherwise."""
        p = await self._auth.authenticate(token, dataplane_call=policy.rule is Rule.DATAPLANE)
        rpc_policies.check_role(policy, p, method)
        target: Target | None = None
        if policy.resolve is not None and request is not None:
            if rpc_policies.needs_lookup(policy, p):
                assert self._db is not None
                fn = policy.resolve.fn
                target = await self._db.read(lambda s: fn(request, s))
            elif not policy.resolve.needs_db:
                target = policy.resolve.fn(request, None)
        rpc_policies.check_target(policy, p, request, target)
        return replace(p, peer=peer)

    async def still_valid(self, token: str | None, p: Principal) -> None:
        """Raise :class:`Unauthenticated` if the token behind ``p`` was revoked or has expired
        since its call was authorised (a no-op for tokens that cannot be)."""
        if self._auth.revocable(p):
            await self._auth.authenticate(token, dataplane_call=False)


@dataclass(frozen=True)
class _Gate:
    interceptor: AuthInterceptor
    method: str
    policy: Policy
    token: str | None

    async def enter(self, request: Any, context: grpc.aio.ServicerContext) -> Principal:
        """Authorise, then set the identity context variables for the rest of this task."""
        peer = context.peer() or ""
        try:
            p = await self.interceptor.authorize(
                self.method, self.policy, self.token, request, peer
            )
        except Exception as exc:
            code, message = status_for(exc)
            if isinstance(exc, DomainError):
                log.warning("refused %s from %s: %s", self.method, peer, message)
            else:
                log.error("authorising %s failed", self.method, exc_info=exc)
            await context.abort(code, message)
            raise  # abort raises; not reached
        identity.current.set(p)
        identity.current_method.set(rpc_policies.short_name(self.method))
        return p

    def stream(
        self, items: AsyncGenerator[Any, None], p: Principal, context: grpc.aio.ServicerContext
    ) -> AsyncGenerator[Any, None]:
        """``items``, ended with UNAUTHENTICATED once ``p``'s token is revoked or expires."""
        if not self.interceptor._auth.revocable(p):
            return items

        async def check() -> None:
            try:
                await self.interceptor.still_valid(self.token, p)
            except Exception as exc:
                code, message = status_for(exc)
                if isinstance(exc, DomainError):
                    log.info("ended %s for %s: %s", self.method, p.id, message)
                    message = f"stream ended: {message}"
                else:
                    log.error("re-authorising %s failed", self.method, exc_info=exc)
                await context.abort(code, message)

        return _revalidated(items, check, self.interceptor.recheck_s)


async def _next(items: AsyncGenerator[Any, None]) -> Any:
    return await anext(items)


async def _revalidated(
    items: AsyncGenerator[Any, None], check: Callable[[], Awaitable[None]], every_s: float
) -> AsyncGenerator[Any, None]:
    """Yield ``items``; whenever ``every_s`` has passed, also between two items, await
    ``check()`` first (it raises to end the stream). The next item is awaited in a task of its
    own so that a stream waiting for news is checked too; that task is cancelled at the end."""
    pending: asyncio.Task[Any] | None = None
    due = time.monotonic() + every_s
    try:
        while True:
            if time.monotonic() >= due:
                await check()
                due = time.monotonic() + every_s
            if pending is None:
                pending = asyncio.get_running_loop().create_task(_next(items))
            await asyncio.wait({pending}, timeout=max(0.0, due - time.monotonic()))
            if pending.done():
                done, pending = pending, None
                try:
                    item = done.result()
                except StopAsyncIteration:
                    return
                yield item
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


def _guarded(handler: grpc.RpcMethodHandler, gate: _Gate) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that passes ``gate`` first.

    The context variables are set inside the wrapper, i.e. in the task grpc runs the handler in,
    so the servicer (and everything it awaits) sees them. Each call is its own task, so they
    need no reset.
    """
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await gate.enter(request, context)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
    if handler.unary_stream:
        inner_us = handler.unary_stream

        async def unary_stream(
            request: Any, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            p = await gate.enter(request, context)
            async with (
                contextlib.aclosing(inner_us(request, context)) as items,
                contextlib.aclosing(gate.stream(items, p, context)) as checked,
            ):
                async for item in checked:
                    yield item

        return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
    if handler.stream_unary:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await gate.enter(None, context)
            return await inner_su(requests, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
    inner_ss = handler.stream_stream

    async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        p = await gate.enter(None, context)
        async with (
            contextlib.aclosing(inner_ss(requests, context)) as items,
            contextlib.aclosing(gate.stream(items, p, context)) as checked,
        ):
            async for item in checked:
                yield item

    return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)
