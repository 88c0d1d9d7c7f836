"""Budgets and rate limits on the request path: the admission.

The proxy calls, per ``POST /v1/messages``::

    admission = await limiter.admit(principal, model=..., body_bytes=len(body), max_tokens=...,
        prices=principal.snapshot.prices, request_id=request_id)   # raises GatewayError 429/503

and is done with this module: the :class:`~dataplane.policy.reservation.Admission` it gets
carries the response's limit headers and is bound to the counters it reserved in, so the
request's close-out settles it (or releases it when nothing was served) through
:mod:`dataplane.policy.reservation`, whose docstring states that half of the contract.

A token-counting call (``count_tokens``) is admitted with ``count_only=True``: it costs no money
and consumes no tokens, so only the request rates (rpm, rph) and ``max_parallel`` apply — never a
budget or tpm — and it counts in those like any request (it uses the organisation's upstream
request quota all the same). The close-out releases it when it ends.

**The reservation** of a request is a worst case at the model's price entry:

* input: ``ceil(body_bytes / 3)`` tokens (JSON text is ≥ 3 bytes a token in practice; images and
  documents are far more), capped at ``INPUT_TOKENS_CAP`` (1M, the largest context window: no
  request can bill more), priced at the highest input-side rate (max of input, cache write 5m and
  1h), and at the entry's long-context rates when the estimate passes its threshold;
* output: ``max_tokens`` at the output rate;

rounded up to the micro-dollar. **The cap**: on each budget a request reserves its full
reservation when that fits in what is left (``limit - spent - reserved``); when it does not but
something is left, it may reserve *exactly what is left*, as that budget's single *tail* request
(one at a time per budget, see :mod:`dataplane.policy.counters.base`). So a huge ``max_tokens`` (or body)
never reserves more than the budget has left, and the end of a budget is usable. **Overshoot
bound**, per budget and period, across any number of replicas sharing the counters: settled spend
≤ limit + (real cost − what was left) of one tail request < limit + one request's real cost (and
exactly ≤ limit with ``allow_tail=False``), provided the real cost does not exceed the worst-case
reservation — which the estimate above makes true for any normal request. Server-tool fees (a web
search is $0.01) are not reserved: the request's tools do not bound how many searches it makes,
so a request's searches may add to that one request's overshoot; they are settled like the rest.

**Refusals** (``GatewayError``):

* budget spent (settled spend ≥ limit): 429 ``rate_limit_error``, ``x-should-retry: false``,
  ``retry-after`` = whole seconds until the period resets (the real value, however far; none for a
  lifetime budget). "Budget of $50.00/day for key 'alice-laptop' (workspace team-a) is spent
  ($50.02); it resets at 2026-11-29T00:00:00Z." (a workspace in another time zone sees its local
  reset instant with its offset: "2026-11-29T00:00:00+01:00").
* budget held by requests in flight (settled spend < limit, but reservations fill the rest): 429,
  retryable, ``retry-after: 5`` — the in-flight requests will settle below their reservations.
* rate limits (rpm, rph, tpm, max_parallel): 429, ``retry-after`` = whole seconds until a slot
  frees (≥ 1). "Rate limit of 10 requests per minute for key 'alice-laptop' reached; retry in 7 s."
* counter store (Redis) unreachable, for a request that has a budget and the ``closed`` policy:
  503 ``overloaded_error`` with ``retry-after: 5``. Not a 429: the user has not hit a limit of
  theirs, and Claude Code shows a 503/overloaded as a service problem and retries it with backoff.
  With the ``open`` policy, or for a request with rate limits only (they protect capacity, not
  money), the request goes through unchecked and the failure is logged.

**Headers** (``Admission.headers``, computed at the admission):
``x-tollgate-ratelimit-{requests,tokens}-{limit,remaining,reset}``,
``x-tollgate-budget-{limit,remaining}-usd`` and ``x-tollgate-budget-{reset,scope}`` — the
tightest limit of each kind over key and workspace; resets are RFC 3339 instants in UTC,
remaining budget is exact dollars (``49.200000``).
Never ``anthropic-ratelimit-*``: upstream sends those (the proxy passes them through) and a second
copy with other numbers would be ambiguous to clients that read them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Literal

from dataplane.asgi import Header
from dataplane.config.snapshot import Budget, Limits, Period
from dataplane.errors import GatewayError, LimitError, Unavailable
from dataplane.metering.pricing import PriceTable, Rates
from dataplane.policy.auth import Principal
from dataplane.policy.counters.base import (
    HOUR_MS,
    MINUTE_MS,
    AdmitRequest,
    BudgetCheck,
    Counters,
    CountersUnavailable,
    Refusal,
    RefusalKind,
    ScopeCheck,
    ScopeUsage,
    Ticket,
)
from dataplane.policy.periods import Window, current_window, format_instant
from dataplane.policy.reservation import Admission, ScopeInfo, Settlements
from gwcommon import money

__all__ = [
    "INPUT_TOKENS_CAP",
    "Admission",
    "Limiter",
    "RedisFailure",
    "budget_check",
    "format_usd",
    "reservation_micros",
]

log = logging.getLogger("tollgate.limits")

RedisFailure = Literal["closed", "open"]

INPUT_TOKENS_CAP = 1_000_000  # the largest context window: no request bills more input
BYTES_PER_TOKEN = 3
HELD_RETRY_S = 5  # budget held by requests in flight: they settle soon, usually below their hold
UNAVAILABLE_RETRY_S = 5
_PER = 1_000_000

_PERIOD_WORD = {Period.DAY: "day", Period.WEEK: "week", Period.MONTH: "month"}


def format_usd(micros: int, *, round_up: bool = False) -> str:
    """``$1,000.00``; exact (up to 6 decimals) unless whole cents, or rounded up to the cent."""
    return money.dollars(micros, round_up=round_up)


def _decimal_usd(micros: int) -> str:
    dollars, frac = divmod(max(0, micros), _PER)
    return f"{dollars}.{frac:06d}"


def reservation_micros(prices: PriceTable, model: str, body_bytes: int, max_tokens: int) -> int:
    """The worst-case cost of a request (see the module docstring), in micro-dollars."""
    entry, _, _ = prices.lookup(model)
    est_input = min(-(-max(0, body_bytes) // BYTES_PER_TOKEN), INPUT_TOKENS_CAP)
    rates: Rates = entry.rates
    if entry.long_rates is not None and est_input > entry.long_context_threshold:
        rates = entry.long_rates  # conservative: the beta that enables it is not checked here
    input_rate = max(rates.input, rates.cache_write_5m, rates.cache_write_1h)
    total = est_input * input_rate + max(0, max_tokens) * rates.output
    return -(-total // _PER)


def budget_check(
    budget: Budget,
    kind: str,
    ident: str,
    spend: Mapping[tuple[str, str, Period], tuple[int, int]],
    now_ms: int,
    tz: str,
) -> tuple[BudgetCheck, Window]:
    """The counter check of one budget of scope ``kind``/``ident`` (the spend seeds' key) for
    the current period, seeded from the ledger when the seed is for this very period."""
    window = current_window(budget.period, now_ms, tz)
    seed = spend.get((kind, ident, budget.period))
    seeded = seed[1] if seed is not None and seed[0] == window.start_ms else 0
    expires = window.end_ms if window.resets else 0
    return BudgetCheck(f"b:{window.id}", budget.amount_micros, seeded, expires), window


def _has_limits(limits: Limits, count_only: bool = False) -> bool:
    if count_only:
        return bool(limits.rpm or limits.rph or limits.max_parallel)
    return bool(limits.budgets or limits.rpm or limits.rph or limits.tpm or limits.max_parallel)


class Limiter:
    """The enforcement engine in front of the upstream call. One per data plane."""

    def __init__(
        self,
        counters: Counters,
        clock: Callable[[], float] = time.time,
        *,
        redis_failure: RedisFailure = "closed",
        lease_s: float = 1800.0,
        allow_tail: bool = True,
    ) -> None:
        self.counters = counters
        self.clock = clock
        self.redis_failure: RedisFailure = redis_failure
        self.lease_ms = int(lease_s * 1000)
        self.allow_tail = allow_tail
        # What every admission settles through (and the store's missed settlements, retried).
        self.settlements = Settlements(counters, clock)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def admit(
        self,
        principal: Principal,
        *,
        model: str,
        body_bytes: int,
        max_tokens: int,
        prices: PriceTable,
        request_id: str,
        redis_failure: RedisFailure | None = None,
        count_only: bool = False,
    ) -> Admission:
        """Reserve and record the request in every limit of its member (a key or a developer:
        counter scope ``k:<id>`` / ``d:<id>``, spend seeds "key" / "developer") and workspace,
        or raise the refusal (GatewayError 429, or 503 when the counters are unreachable and
        policy says so).

        ``redis_failure`` overrides the limiter's policy for this request (e.g. the workspace's
        own setting, once the snapshot carries one). ``count_only``: a count_tokens call, checked
        against rpm, rph and max_parallel only (see the module docstring)."""
        member, ws = principal.member, principal.workspace
        member_limited = _has_limits(member.limits, count_only)
        ws_limited = _has_limits(ws.limits, count_only)
        if not member_limited and not ws_limited:
            return Admission(request_id)
        now = self._now_ms()
        spend = principal.snapshot.spend
        checks: list[ScopeCheck] = []
        infos: list[ScopeInfo] = []
        scopes = (
            (member.kind, member.id, member.counter, member.limits, member_limited),
            ("workspace", ws.name, "w:" + ws.name, ws.limits, ws_limited),
        )
        for i, (kind, ident, counter, limits, limited) in enumerate(scopes):
            if not limited:
                continue
            budgets: list[BudgetCheck] = []
            windows: list[Window] = []
            for budget in () if count_only else limits.budgets:
                check, window = budget_check(budget, kind, ident, spend, now, ws.timezone)
                budgets.append(check)
                windows.append(window)
            checks.append(
                ScopeCheck(
                    counter,
                    limits.rpm,
                    limits.rph,
                    0 if count_only else limits.tpm,
                    limits.max_parallel,
                    tuple(budgets),
                )
            )
            if i == 0:  # the member: "key 'alice-laptop'" | "developer 'alice@example.com'"
                label = member.label
                infos.append(
                    ScopeInfo(label, f"{label} (workspace {ws.name})", kind, tuple(windows))
                )
            else:
                label = f"workspace '{ws.name}'"
                infos.append(ScopeInfo(label, label, kind, tuple(windows)))
        has_budget = any(c.budgets for c in checks)
        reserve = reservation_micros(prices, model, body_bytes, max_tokens) if has_budget else 0
        request = AdmitRequest(
            request_id,
            now,
            reserve,
            tuple(checks),
            self.lease_ms,
            self.allow_tail,
            ws.name,
        )
        try:
            verdict = await self.counters.admit(request)
        except CountersUnavailable as exc:
            if has_budget and (redis_failure or self.redis_failure) == "closed":
                log.warning("request %s refused: counters unavailable (%s)", request_id, exc)
                raise Unavailable(
                    503,
                    "The gateway cannot check budgets right now (its shared counter store is "
                    "unreachable); try again shortly. If this persists, tell your platform team.",
                    headers=((b"retry-after", str(UNAVAILABLE_RETRY_S).encode()),),
                ) from exc
            log.warning("request %s admitted unchecked: counters unavailable (%s)", request_id, exc)
            return Admission(request_id, reserve, unchecked=True)
        if verdict.refusal is not None:
            raise self._refusal(verdict.refusal, request, tuple(infos), now)
        scope_infos = tuple(infos)
        return Admission(
            request_id,
            reserve,
            verdict.ticket,
            scope_infos,
            verdict.usage,
            headers=_headers(verdict.ticket, verdict.usage, scope_infos),
            settlements=self.settlements,
        )

    @property
    def unfinished(self) -> int:
        """Settles and releases waiting for the counter store."""
        return self.settlements.unfinished

    async def aclose(self) -> None:
        """Stop retrying (what is still pending is left to the reservations' leases)."""
        await self.settlements.aclose()

    def _refusal(
        self,
        refusal: Refusal,
        request: AdmitRequest,
        infos: tuple[ScopeInfo, ...],
        now: int,
    ) -> GatewayError:
        info = infos[refusal.scope]
        kind = refusal.kind
        if kind is RefusalKind.BUDGET or kind is RefusalKind.BUDGET_HELD:
            window = info.windows[refusal.budget]
            what = f"Budget of {format_usd(refusal.limit)}{_per(window)} for {info.budget_label}"
            if kind is RefusalKind.BUDGET:
                headers: list[Header] = [(b"x-should-retry", b"false")]
                if window.resets:
                    seconds = max(1, -(-(window.end_ms - now) // 1000))
                    headers.insert(0, (b"retry-after", str(seconds).encode()))
                    tail = f"it resets at {window.end_text()}."
                else:
                    tail = "it does not reset; ask your platform team to raise it."
                spent = format_usd(refusal.used, round_up=True)
                return LimitError(429, f"{what} is spent ({spent}); {tail}", tuple(headers))
            spent = format_usd(refusal.used, round_up=True)
            held = format_usd(refusal.reserved, round_up=True)
            return LimitError(
                429,
                f"{what} is almost spent ({spent} spent, {held} held by requests in flight); "
                f"retry in {HELD_RETRY_S} s.",
                ((b"retry-after", str(HELD_RETRY_S).encode()),),
            )
        seconds = max(1, -(-refusal.retry_after_ms // 1000))
        if kind is RefusalKind.PARALLEL:
            message = (
                f"Limit of {refusal.limit:,} parallel requests for {info.label} reached; "
                f"retry in {seconds} s."
            )
        else:
            unit = {
                RefusalKind.RPM: "requests per minute",
                RefusalKind.RPH: "requests per hour",
                RefusalKind.TPM: "tokens per minute",
            }[kind]
            message = (
                f"Rate limit of {refusal.limit:,} {unit} for {info.label} reached; "
                f"retry in {seconds} s."
            )
        return LimitError(429, message, ((b"retry-after", str(seconds).encode()),))


def _headers(
    ticket: Ticket | None, usages: tuple[ScopeUsage, ...], infos: tuple[ScopeInfo, ...]
) -> tuple[Header, ...]:
    """The gateway's own remaining requests/tokens/budget, tightest over key and workspace."""
    if ticket is None:
        return ()
    out: list[Header] = []
    now = ticket.request.now_ms
    # requests: (remaining, limit, reset_ms)
    best_req: tuple[int, int, int] | None = None
    best_tok: tuple[int, int, int] | None = None
    best_budget: tuple[int, int, int, str] | None = None
    for sc, usage, info in zip(ticket.request.scopes, usages, infos, strict=True):
        for limit, used, oldest, span in (
            (sc.rpm, usage.requests_minute, usage.oldest_minute_ms, MINUTE_MS),
            (sc.rph, usage.requests_hour, usage.oldest_hour_ms, HOUR_MS),
        ):
            if limit > 0:
                cand = (max(0, limit - used), limit, (oldest or now) + span)
                if best_req is None or cand[0] < best_req[0]:
                    best_req = cand
        if sc.tpm > 0:
            cand = (max(0, sc.tpm - usage.tokens_minute), sc.tpm, now + MINUTE_MS)
            if best_tok is None or cand[0] < best_tok[0]:
                best_tok = cand
        for bc, bu, window in zip(sc.budgets, usage.budgets, info.windows, strict=True):
            remaining = max(0, bc.limit_micros - bu.spent)
            label = f"{info.kind}/{window.period.value}"
            if best_budget is None or remaining < best_budget[0]:
                best_budget = (
                    remaining,
                    bc.limit_micros,
                    window.end_ms if window.resets else 0,
                    label,
                )
    if best_req is not None:
        out += [
            (b"x-tollgate-ratelimit-requests-limit", str(best_req[1]).encode()),
            (b"x-tollgate-ratelimit-requests-remaining", str(best_req[0]).encode()),
            (b"x-tollgate-ratelimit-requests-reset", format_instant(best_req[2]).encode()),
        ]
    if best_tok is not None:
        out += [
            (b"x-tollgate-ratelimit-tokens-limit", str(best_tok[1]).encode()),
            (b"x-tollgate-ratelimit-tokens-remaining", str(best_tok[0]).encode()),
            (b"x-tollgate-ratelimit-tokens-reset", format_instant(best_tok[2]).encode()),
        ]
    if best_budget is not None:
        out += [
            (b"x-tollgate-budget-limit-usd", _decimal_usd(best_budget[1]).encode()),
            (b"x-tollgate-budget-remaining-usd", _decimal_usd(best_budget[0]).encode()),
            (b"x-tollgate-budget-scope", best_budget[3].encode()),
        ]
        if best_budget[2]:
            out.append((b"x-tollgate-budget-reset", format_instant(best_budget[2]).encode()))
    return tuple(out)


def _per(window: Window) -> str:
    word = _PERIOD_WORD.get(window.period)
    return f"/{word}" if word else " (lifetime)"
