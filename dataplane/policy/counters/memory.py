"""In-process counters: the default for a single data plane.

Every method runs without an ``await`` inside, so on the event loop each call is atomic by
construction: no lock is needed and no two admissions can interleave. Semantics are those of
:mod:`dataplane.policy.counters.base`, exactly as the Redis backend implements them in Lua.

Memory: per scope, one timestamp per admitted request in the rpm/rph window, at most 61 token
buckets, the in-flight set, and one small record per budget period. Idle scopes and periods that
ended more than a day ago are swept every minute.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from dataplane.policy.counters.base import (
    HOUR_MS,
    MINUTE_MS,
    TPM_BUCKETS,
    AdmitRequest,
    BudgetCheck,
    BudgetUsage,
    Refusal,
    RefusalKind,
    ScopeUsage,
    Ticket,
    Verdict,
    tpm_window_start,
)

__all__ = ["MemoryCounters"]

_SWEEP_EVERY_MS = MINUTE_MS
_KEEP_ENDED_MS = 24 * HOUR_MS  # a period's counter outlives its end (late settles land there)
_LIFETIME_IDLE_MS = 30 * 24 * HOUR_MS  # then it is re-seeded from the ledger, which has caught up


@dataclass(slots=True)
class _Budget:
    spent: int = 0
    reserved: int = 0
    tail: str = ""  # request id of the budget's one tail reservation in flight
    holds: dict[str, int] = field(default_factory=dict)  # request id -> micros reserved
    expires_at_ms: int = 0
    touched_ms: int = 0


@dataclass(slots=True)
class _Scope:
    log: list[int] = field(default_factory=list)  # admission times, ascending
    tokens: dict[int, int] = field(default_factory=dict)  # epoch second -> tokens
    flight: dict[str, int] = field(default_factory=dict)  # request id -> lease deadline (ms)
    budgets: dict[str, _Budget] = field(default_factory=dict)
    touched_ms: int = 0


class MemoryCounters:
    """The in-process backend."""

    def __init__(self) -> None:
        self._scopes: dict[str, _Scope] = {}
        self._next_sweep = 0

    # --- the Protocol -----------------------------------------------------------------------

    async def admit(self, request: AdmitRequest) -> Verdict:
        return self.admit_now(request)

    async def settle(self, ticket: Ticket, cost_micros: int, tokens: int, now_ms: int) -> None:
        self._finish(ticket, cost_micros, tokens, now_ms)

    async def release(self, ticket: Ticket, now_ms: int) -> None:
        self._finish(ticket, 0, 0, now_ms)

    async def peek(
        self, tag: str, scope: str, budgets: tuple[BudgetCheck, ...]
    ) -> tuple[BudgetUsage, ...]:
        st = self._scopes.get(scope)
        out: list[BudgetUsage] = []
        for bc in budgets:
            b = st.budgets.get(bc.counter) if st is not None else None
            spent = max(b.spent if b is not None else 0, bc.seed_micros)
            out.append(BudgetUsage(spent, b.reserved if b is not None else 0, 0))
        return tuple(out)

    async def aclose(self) -> None:
        self._scopes.clear()

    # --- implementation ---------------------------------------------------------------------

    def admit_now(self, request: AdmitRequest) -> Verdict:
        """The synchronous admission (also what :meth:`admit` runs)."""
        now = request.now_ms
        if now >= self._next_sweep:
            self._sweep(now)
        hard: Refusal | None = None
        rate: Refusal | None = None
        soft: Refusal | None = None
        states: list[_Scope] = []
        seeded: list[list[int]] = []
        held: list[list[int]] = []
        tail_of: list[list[bool]] = []
        for si, sc in enumerate(request.scopes):
            st = self._scopes.get(sc.counter)
            if st is None:
                st = self._scopes[sc.counter] = _Scope()
            st.touched_ms = now
            states.append(st)
            if sc.tracks_requests:
                keep = HOUR_MS if sc.rph > 0 else MINUTE_MS
                log = st.log
                cut = bisect.bisect_right(log, now - keep)
                if cut:
                    del log[:cut]
                if rate is None and sc.rpm > 0:
                    first = bisect.bisect_right(log, now - MINUTE_MS)
                    count = len(log) - first
                    if count >= sc.rpm:
                        oldest = log[first + count - sc.rpm]
                        rate = Refusal(
                            RefusalKind.RPM, si, -1, count, sc.rpm, 0, oldest + MINUTE_MS - now
                        )
                if rate is None and sc.rph > 0 and len(log) >= sc.rph:
                    oldest = log[len(log) - sc.rph]
                    rate = Refusal(
                        RefusalKind.RPH, si, -1, len(log), sc.rph, 0, oldest + HOUR_MS - now
                    )
            if sc.tpm > 0:
                start = tpm_window_start(now)
                for sec in [s for s in st.tokens if s < start]:
                    del st.tokens[sec]
                used = sum(st.tokens.values())
                if rate is None and used >= sc.tpm:
                    rate = Refusal(
                        RefusalKind.TPM, si, -1, used, sc.tpm, 0, _tpm_retry(st.tokens, sc.tpm, now)
                    )
            if sc.tracks_flight:
                self._reap(st, now)
                if rate is None and sc.max_parallel > 0 and len(st.flight) >= sc.max_parallel:
                    rate = Refusal(
                        RefusalKind.PARALLEL, si, -1, len(st.flight), sc.max_parallel, 0, 1000
                    )
            s_seeded: list[int] = []
            s_held: list[int] = []
            s_tail: list[bool] = []
            for bi, bc in enumerate(sc.budgets):
                b = st.budgets.get(bc.counter)
                spent = b.spent if b is not None else 0
                reserved = b.reserved if b is not None else 0
                tail = b.tail if b is not None else ""
                spent = max(spent, bc.seed_micros)
                avail = bc.limit_micros - spent - reserved
                amount, is_tail = 0, False
                if request.reserve_micros <= avail:
                    amount = request.reserve_micros
                elif request.allow_tail and avail > 0 and not tail:
                    amount, is_tail = avail, True
                elif spent >= bc.limit_micros:
                    if hard is None:
                        hard = Refusal(RefusalKind.BUDGET, si, bi, spent, bc.limit_micros, reserved)
                elif soft is None:
                    soft = Refusal(
                        RefusalKind.BUDGET_HELD, si, bi, spent, bc.limit_micros, reserved
                    )
                s_seeded.append(spent)
                s_held.append(amount)
                s_tail.append(is_tail)
            seeded.append(s_seeded)
            held.append(s_held)
            tail_of.append(s_tail)
        refusal = hard or rate or soft
        if refusal is not None:
            return Verdict(None, refusal)
        # All checks passed: record the request in every scope.
        rid = request.request_id
        usage: list[ScopeUsage] = []
        for si, sc in enumerate(request.scopes):
            st = states[si]
            req_min = req_hour = oldest_min = oldest_hour = 0
            if sc.tracks_requests:
                bisect.insort(st.log, now)
                first = bisect.bisect_right(st.log, now - MINUTE_MS)
                req_min = len(st.log) - first
                oldest_min = st.log[first]
                if sc.rph > 0:
                    req_hour, oldest_hour = len(st.log), st.log[0]
            if sc.tracks_flight:
                st.flight[rid] = now + request.lease_ms
            b_usage: list[BudgetUsage] = []
            for bi, bc in enumerate(sc.budgets):
                b = st.budgets.get(bc.counter)
                if b is None:
                    b = st.budgets[bc.counter] = _Budget(expires_at_ms=bc.expires_at_ms)
                b.spent = seeded[si][bi]
                amount = held[si][bi]
                b.reserved += amount
                b.holds[rid] = amount
                if tail_of[si][bi]:
                    b.tail = rid
                b.touched_ms = now
                b_usage.append(BudgetUsage(b.spent, b.reserved, amount))
            usage.append(
                ScopeUsage(
                    req_min,
                    req_hour,
                    oldest_min,
                    oldest_hour,
                    sum(st.tokens.values()) if sc.tpm > 0 else 0,
                    len(st.flight),
                    tuple(b_usage),
                )
            )
        return Verdict(Ticket(request, tuple(tuple(h) for h in held)), None, tuple(usage))

    def _finish(self, ticket: Ticket, cost: int, tokens: int, now: int) -> None:
        request = ticket.request
        rid = request.request_id
        for sc in request.scopes:
            st = self._scopes.get(sc.counter)
            if st is None:
                st = self._scopes[sc.counter] = _Scope()
            st.touched_ms = now
            if sc.tpm > 0 and tokens > 0:
                sec = now // 1000
                st.tokens[sec] = st.tokens.get(sec, 0) + tokens
            st.flight.pop(rid, None)
            for bc in sc.budgets:
                b = st.budgets.get(bc.counter)
                if b is None:
                    b = st.budgets[bc.counter] = _Budget(expires_at_ms=bc.expires_at_ms)
                amount = b.holds.pop(rid, None)
                if amount is not None:
                    b.reserved -= amount
                if b.tail == rid:
                    b.tail = ""
                b.spent += cost
                b.touched_ms = now

    @staticmethod
    def _reap(st: _Scope, now: int) -> None:
        """Drop in-flight entries whose lease ran out, with their reservations."""
        expired = [rid for rid, deadline in st.flight.items() if deadline <= now]
        for rid in expired:
            del st.flight[rid]
            for b in st.budgets.values():
                amount = b.holds.pop(rid, None)
                if amount is not None:
                    b.reserved -= amount
                if b.tail == rid:
                    b.tail = ""

    def _sweep(self, now: int) -> None:
        """Forget periods long ended and scopes with nothing left to remember."""
        self._next_sweep = now + _SWEEP_EVERY_MS
        for name in list(self._scopes):
            st = self._scopes[name]
            self._reap(st, now)
            for counter in list(st.budgets):
                b = st.budgets[counter]
                if b.holds:
                    continue
                if b.expires_at_ms:
                    gone = b.expires_at_ms + _KEEP_ENDED_MS <= now
                else:
                    gone = b.touched_ms + _LIFETIME_IDLE_MS <= now
                if gone:
                    del st.budgets[counter]
            if st.log and st.log[-1] <= now - HOUR_MS:
                st.log.clear()
            start = tpm_window_start(now)
            for sec in [s for s in st.tokens if s < start]:
                del st.tokens[sec]
            if not (st.log or st.tokens or st.flight or st.budgets):
                del self._scopes[name]


def _tpm_retry(tokens: dict[int, int], limit: int, now: int) -> int:
    """Milliseconds until the tokens counted at ``now`` drop below ``limit``."""
    used = sum(tokens.values())
    for sec in sorted(tokens):
        used -= tokens[sec]
        if used < limit:
            return max(1, (sec + TPM_BUCKETS) * 1000 - now)
    return TPM_BUCKETS * 1000  # unreachable: an empty window is below any positive limit
