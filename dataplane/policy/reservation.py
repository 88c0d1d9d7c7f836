"""A request's reservation once it is admitted: its settlement, at the request's close-out.

:meth:`dataplane.policy.limits.Limiter.admit` decides and reserves; what it returns, an
:class:`Admission`, is bound to the counter store it reserved in (through :class:`Settlements`),
so the end of the request settles it without going back through the admission logic::

    await admission.settle(cost_micros, input_tokens, output_tokens)  # the response ended,
                                                                      # also on a disconnect
    await admission.release()                        # failed before any cost

settle and release are idempotent and never raise. When the counter store fails at that point
(Redis gone mid-request) the outcome is kept and retried in the background (0.5 s, doubling to
5 s; at most ``MAX_UNFINISHED`` kept, the lease frees the rest) until the store answers: the
reservation does not stay stuck until its lease ends, and the spend still counts. A retry after a
reply that was lost (the script ran, the answer timed out) may count that one request twice: the
conservative side for a budget. ``input_tokens`` is every prompt token the response reports
(input + cache writes + cache reads); tpm counts input + output.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from dataplane.asgi import Header
from dataplane.policy.counters.base import Counters, CountersUnavailable, ScopeUsage, Ticket
from dataplane.policy.periods import Window

__all__ = ["MAX_UNFINISHED", "Admission", "ScopeInfo", "Settlements"]

log = logging.getLogger("tollgate.limits")

MAX_UNFINISHED = 10_000  # settles/releases waiting for the counter store to come back


class Settlements:
    """The counter store's side of every reservation's end, one per data plane (the limiter's):
    settles and releases, and those the store missed, retried until it answers."""

    def __init__(self, counters: Counters, clock: Callable[[], float] = time.time) -> None:
        self.counters = counters
        self.clock = clock
        # (ticket, cost, tokens, now_ms); cost < 0 marks a release.
        self._unfinished: deque[tuple[Ticket, int, int, int]] = deque(maxlen=MAX_UNFINISHED)
        self._retrying: asyncio.Task[None] | None = None

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def settle(self, ticket: Ticket, request_id: str, cost_micros: int, tokens: int) -> None:
        now = self.now_ms()
        try:
            await self.counters.settle(ticket, cost_micros, tokens, now)
        except CountersUnavailable as exc:
            log.warning(
                "request %s: could not settle %d micro-dollars yet (%s); retrying",
                request_id,
                cost_micros,
                exc,
            )
            self._later(ticket, cost_micros, tokens, now)

    async def release(self, ticket: Ticket, request_id: str) -> None:
        now = self.now_ms()
        try:
            await self.counters.release(ticket, now)
        except CountersUnavailable as exc:
            log.warning("request %s: could not release yet (%s); retrying", request_id, exc)
            self._later(ticket, -1, 0, now)

    @property
    def unfinished(self) -> int:
        """Settles and releases waiting for the counter store."""
        return len(self._unfinished)

    def _later(self, ticket: Ticket, cost: int, tokens: int, now_ms: int) -> None:
        self._unfinished.append((ticket, cost, tokens, now_ms))
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.create_task(self._retry(), name="limits-retry")

    async def _retry(self) -> None:
        delay = 0.5
        while self._unfinished:
            await asyncio.sleep(delay)
            while self._unfinished:
                ticket, cost, tokens, now_ms = self._unfinished[0]
                try:
                    if cost < 0:
                        await self.counters.release(ticket, now_ms)
                    else:
                        await self.counters.settle(ticket, cost, tokens, now_ms)
                except CountersUnavailable:
                    delay = min(5.0, delay * 2)
                    break
                self._unfinished.popleft()
        log.info("counter store back: pending settlements applied")

    async def aclose(self) -> None:
        """Stop retrying (what is still pending is left to the reservations' leases)."""
        if self._retrying is not None:
            self._retrying.cancel()
            await asyncio.gather(self._retrying, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class ScopeInfo:
    """What messages and headers need to know about one checked scope."""

    label: str  # "key 'alice-laptop'" / "developer 'alice@example.com'" / "workspace 'team-a'"
    budget_label: str  # "key 'alice-laptop' (workspace team-a)" / "workspace 'team-a'"
    kind: str  # "key" | "developer" | "workspace"
    windows: tuple[Window, ...]  # per budget


@dataclass(slots=True)
class Admission:
    """One admitted request: what it reserved, and (with a ticket) where to settle it."""

    request_id: str
    reserve_micros: int = 0
    ticket: Ticket | None = None
    scopes: tuple[ScopeInfo, ...] = ()
    usage: tuple[ScopeUsage, ...] = ()
    unchecked: bool = False  # admitted without counters (store unreachable, policy open)
    # The gateway's own x-tollgate-* headers for the answer, computed at the admission.
    headers: tuple[Header, ...] = ()
    done: bool = False
    settlements: Settlements | None = None  # set with the ticket: the store that holds it

    @property
    def limited(self) -> bool:
        return self.ticket is not None

    async def settle(self, cost_micros: int, input_tokens: int, output_tokens: int) -> None:
        """The response ended (fully, with an error mid-stream, or the client went away)."""
        ticket, settlements = self.ticket, self.settlements
        if self.done or ticket is None or settlements is None:
            return
        self.done = True
        tokens = max(0, input_tokens) + max(0, output_tokens)
        await settlements.settle(ticket, self.request_id, max(0, cost_micros), tokens)

    async def release(self) -> None:
        """The request failed before it cost anything: free its reservation and slot."""
        ticket, settlements = self.ticket, self.settlements
        if self.done or ticket is None or settlements is None:
            return
        self.done = True
        await settlements.release(ticket, self.request_id)
