"""The counter Protocol both backends implement, and the plain values that cross it.

One admission is ONE atomic operation (one Lua script call on Redis, one uninterrupted piece of
code on the event loop in memory): :meth:`Counters.admit` checks every limit of every scope of a
request and, only if all pass, records the request in all of them. A refusal changes nothing
observable (expired entries may be pruned on the way; that is housekeeping, not state).

Semantics, identical in both backends (``tests/dataplane/policy/counters/contract.py`` runs the same
suite against each):

* **Requests per minute / hour** — an exact *sliding log*: every admitted request is recorded with
  its admission time; a request is admitted iff fewer than ``rpm`` requests were admitted in the
  last 60 s (``rph``: 3600 s) in that scope. ``retry_after_ms`` is when the oldest entry that keeps
  the window full leaves it. Precise at every instant (no 2x burst at a fixed window's edge);
  memory is one entry per admitted request per scope, so at most ``rph`` (or ``rpm``) entries.
* **Tokens per minute** — input + output tokens are added at *settle*, into one-second buckets; a
  request is admitted iff the tokens in the last 61 started seconds are below ``tpm`` (the request's
  own tokens are unknown at admission). Counting 61 buckets keeps a token at most one second too
  long, never too short (conservative).
* **Concurrency** (``max_parallel``) — the scope's in-flight set; an entry leaves on settle or
  release, or when its *lease* (``AdmitRequest.lease_ms``) runs out, so a replica that dies with
  requests in flight frees their slots (and reservations) eventually.
* **Budgets** — per scope and period: ``spent`` (settled micro-dollars, never lowered; raised to
  the ledger's seed when that is higher) and ``reserved`` (sum of the in-flight reservations).
  With ``avail = limit - spent - reserved``: a request reserves its full ``reserve_micros`` if that
  fits in ``avail``; otherwise, when ``allow_tail`` is set, ``avail > 0`` and no other *tail*
  reservation is in flight on that budget, it reserves just ``avail`` (it is the budget's single
  tail request); otherwise it is refused. Settle moves the reservation to ``spent`` at the real
  cost. Overshoot bound per budget: spent ≤ limit + (real cost − reservation) of at most one tail
  request, i.e. < limit + one request's cost (exactly ≤ limit when ``allow_tail`` is off).

Refusal priority (all checks are evaluated, the first in this order is reported): a budget that is
really spent (``spent ≥ limit``, nothing a retry fixes), then the rate and concurrency limits in
scope order, then a budget that is only held by reservations in flight (transient).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "HOUR_MS",
    "MINUTE_MS",
    "TPM_BUCKETS",
    "AdmitRequest",
    "BudgetCheck",
    "BudgetUsage",
    "Counters",
    "CountersUnavailable",
    "Refusal",
    "RefusalKind",
    "ScopeCheck",
    "ScopeUsage",
    "Ticket",
    "Verdict",
    "tpm_window_start",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
TPM_BUCKETS = 61  # one-second buckets counted for tokens per minute (see module docstring)


def tpm_window_start(now_ms: int) -> int:
    """The oldest one-second bucket (epoch seconds) still counted at ``now_ms``."""
    return now_ms // 1000 - (TPM_BUCKETS - 1)


class CountersUnavailable(Exception):
    """The counter store cannot be reached (Redis down, timed out); the engine applies policy."""


class RefusalKind(enum.Enum):
    BUDGET = "budget"  # spent >= limit: nothing a retry fixes before the period resets
    BUDGET_HELD = "budget_held"  # spent < limit but reservations in flight hold the rest
    RPM = "rpm"
    RPH = "rph"
    TPM = "tpm"
    PARALLEL = "parallel"


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    """One budget of a scope for the current period."""

    counter: str  # unique within the scope, e.g. "b:day:2026-11-28@UTC"
    limit_micros: int
    seed_micros: int  # spent per the control plane's ledger for this period (0 if none)
    expires_at_ms: int  # end of the period; 0 = lifetime (no end)


@dataclass(frozen=True, slots=True)
class ScopeCheck:
    """A key, a developer or a workspace with its limits (0 = no limit)."""

    counter: str  # e.g. "k:key_123", "d:dev_123" or "w:team-a"
    rpm: int = 0
    rph: int = 0
    tpm: int = 0
    max_parallel: int = 0
    budgets: tuple[BudgetCheck, ...] = ()

    @property
    def tracks_requests(self) -> bool:
        return self.rpm > 0 or self.rph > 0

    @property
    def tracks_flight(self) -> bool:
        """Whether the scope keeps an in-flight set (for concurrency and reservation leases)."""
        return self.max_parallel > 0 or bool(self.budgets)


@dataclass(frozen=True, slots=True)
class AdmitRequest:
    request_id: str
    now_ms: int
    reserve_micros: int
    scopes: tuple[ScopeCheck, ...]
    lease_ms: int = 30 * MINUTE_MS
    allow_tail: bool = True
    # Groups the counters of one admission (the workspace name): Redis keeps them on one cluster
    # slot so that one script may touch them all.
    tag: str = ""


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: RefusalKind
    scope: int  # index into AdmitRequest.scopes
    budget: int  # index into that scope's budgets, -1 for other kinds
    used: int  # requests in window / tokens in window / in flight / spent micros
    limit: int
    reserved: int = 0  # budgets: micros held by requests in flight
    retry_after_ms: int = 0  # rate limits: until a slot frees; 0 when not applicable


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    spent: int
    reserved: int  # all reservations in flight, this request's included
    held: int  # this request's reservation on this budget (< reserve_micros for a tail)


@dataclass(frozen=True, slots=True)
class ScopeUsage:
    """A scope's counters right after an admission (this request included), for headers."""

    requests_minute: int = 0
    requests_hour: int = 0
    oldest_minute_ms: int = 0  # admission time of the oldest request in the window (0 = none)
    oldest_hour_ms: int = 0
    tokens_minute: int = 0
    in_flight: int = 0
    budgets: tuple[BudgetUsage, ...] = ()


@dataclass(frozen=True, slots=True)
class Ticket:
    """What an admission recorded, handed back to settle/release."""

    request: AdmitRequest
    held: tuple[tuple[int, ...], ...]  # per scope, per budget: micros reserved


@dataclass(frozen=True, slots=True)
class Verdict:
    ticket: Ticket | None  # None when refused
    refusal: Refusal | None
    usage: tuple[ScopeUsage, ...] = ()  # per scope, only when admitted


class Counters(Protocol):
    """Rate, concurrency and budget counters. Every method is one atomic step."""

    async def admit(self, request: AdmitRequest) -> Verdict:
        """Check all limits of all scopes; record the request everywhere iff all pass.

        Raises CountersUnavailable when the store cannot be reached.
        """
        ...

    async def settle(self, ticket: Ticket, cost_micros: int, tokens: int, now_ms: int) -> None:
        """Release the reservations, add ``cost_micros`` to spent and ``tokens`` to the tpm
        window, and leave the in-flight sets. Raises CountersUnavailable."""
        ...

    async def release(self, ticket: Ticket, now_ms: int) -> None:
        """Undo the admission's reservations and in-flight entries; nothing is spent (the
        request entries stay in the rpm/rph logs: the request was made)."""
        ...

    async def peek(
        self, tag: str, scope: str, budgets: tuple[BudgetCheck, ...]
    ) -> tuple[BudgetUsage, ...]:
        """Each budget's ``spent`` (raised to its seed, as an admission would) and ``reserved``
        now, changing nothing (``held`` is 0): ``GET /v1/tollgate/whoami`` only, never the
        request path. ``tag`` and ``scope`` are an admission's. Raises CountersUnavailable."""
        ...

    async def aclose(self) -> None: ...
