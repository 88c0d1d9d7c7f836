"""``GET /v1/tollgate/whoami[?model=M]``: what this gateway knows about the CALLER, for ``gwctl
doctor`` (the developer whose Claude Code does not work, usually without an admin token).

Behind the auth middleware like ``/v1/messages``, so an unknown, revoked or expired credential
gets the same 401 saying which. The answer (JSON) is about the caller only:

* ``member``: a key (id, name, expiry, own model list) or a signed-in developer (id, email);
* ``workspace``: name, time zone, access controls (model globs, provider and route names),
  minimum Claude Code version;
* ``budgets``: each budget of the member and the workspace for the current period — limit,
  spent, reserved by requests in flight, reset instant — read from the limit counters without
  changing them (``source: counters``), or from the ledger's spend seeds in the snapshot when the
  shared counter store is unreachable (``source: ledger``); ``rate_limits`` as configured;
* ``target``: its provider or route; ``model``: whether a request for ``M`` would pass the access
  checks (else the exact refusal it would get);
* ``targets``: per provider the request could reach, in the route's order: kind, the model id it
  would send upstream (the adapter's own model map, an ARN's account id hidden) or its mapping
  refusal, a problem refusing every request (stored key not received, misconfigured), and its
  circuit breaker on this data plane;
* ``snapshot`` version and age, and which data plane answered.

Nothing about other members or workspaces, no secret, no base URL. Off the request path: only
this endpoint does this work (one counter read per scope with budgets).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import orjson

from dataplane.asgi import Receive, Scope, Send, send_error, send_response
from dataplane.clienttext import check_model
from dataplane.config.snapshot import Limits, VirtualKey
from dataplane.errors import GatewayError, new_request_id
from dataplane.policy.auth import PRINCIPAL, REQUEST_ID, Principal
from dataplane.policy.breaker import CircuitBreaker
from dataplane.policy.counters.base import BudgetUsage, CountersUnavailable
from dataplane.policy.limits import Limiter, budget_check
from dataplane.policy.periods import format_instant
from dataplane.policy.routing import Router

PATH = "/v1/tollgate/whoami"


class Whoami:
    """The endpoint; one per data plane (it reads its breakers and counters)."""

    def __init__(
        self,
        router: Router,
        breaker: CircuitBreaker,
        limiter: Limiter,
        dataplane_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.router = router
        self.breaker = breaker
        self.limiter = limiter
        self.dataplane_id = dataplane_id
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal: Principal = scope[PRINCIPAL]
        try:
            model = _model_param(scope)
            body = await self.describe(principal, model)
        except GatewayError as err:
            await send_error(send, err, scope.get(REQUEST_ID) or new_request_id())
            return
        await send_response(send, 200, orjson.dumps(body))

    async def describe(self, principal: Principal, model: str) -> dict[str, Any]:
        """The answer as a dict (see the module docstring)."""
        now_ms = int(self.clock() * 1000)
        snapshot, member, ws = principal.snapshot, principal.member, principal.workspace
        return {
            "dataplane_id": self.dataplane_id,
            "snapshot": {
                "version": snapshot.version,
                "built_at": format_instant(snapshot.built_at_ms) if snapshot.built_at_ms else None,
                "age_s": max(0, now_ms - snapshot.built_at_ms) // 1000
                if snapshot.built_at_ms
                else None,
            },
            "member": _member(principal),
            "workspace": {
                "name": ws.name,
                "timezone": ws.timezone or "UTC",
                "allowed_models": list(ws.allowed_models),
                "allowed_providers": list(ws.allowed_providers),
                "allowed_routes": list(ws.allowed_routes),
                "min_client_version": ws.min_client_version,
            },
            "budgets": await self._budgets(principal, now_ms),
            "rate_limits": [
                {"scope": scope, **_rates(limits)}
                for scope, limits in ((member.kind, member.limits), ("workspace", ws.limits))
                if limits.rpm or limits.rph or limits.tpm or limits.max_parallel
            ],
            "target": _target(principal),
            "model": _model_check(principal, model) if model else None,
            "targets": self._targets(principal, model),
        }

    async def _budgets(self, principal: Principal, now_ms: int) -> list[dict[str, Any]]:
        member, ws = principal.member, principal.workspace
        spend = principal.snapshot.spend
        out: list[dict[str, Any]] = []
        scopes = (
            (
                member.kind,
                member.id,
                member.counter,
                member.limits,
                f"{member.label} (workspace {ws.name})",  # as the limiter's refusals say it
            ),
            ("workspace", ws.name, "w:" + ws.name, ws.limits, f"workspace '{ws.name}'"),
        )
        for kind, ident, counter, limits, label in scopes:
            if not limits.budgets:
                continue
            pairs = [
                budget_check(b, kind, ident, spend, now_ms, ws.timezone) for b in limits.budgets
            ]
            checks = tuple(check for check, _ in pairs)
            source = "counters"
            try:
                usage = await self.limiter.counters.peek(ws.name, counter, checks)
            except CountersUnavailable:
                source = "ledger"
                usage = tuple(BudgetUsage(c.seed_micros, 0, 0) for c in checks)
            for (check, window), used in zip(pairs, usage, strict=True):
                out.append(
                    {
                        "scope": kind,
                        "label": label,
                        "period": window.period.value,
                        "limit_micros": check.limit_micros,
                        "spent_micros": used.spent,
                        "reserved_micros": used.reserved,
                        "remaining_micros": max(0, check.limit_micros - used.spent),
                        "resets_at": window.end_text() if window.resets else None,
                        "source": source,
                    }
                )
        return out

    def _targets(self, principal: Principal, model: str) -> list[dict[str, Any]]:
        """Every provider the member's requests may reach, in configuration order."""
        snapshot, member = principal.snapshot, principal.member
        route = snapshot.routes.get(member.route) if not member.provider else None
        overrides = {t.provider: t.model for t in route.targets} if route is not None else {}
        breaker = self.breaker
        out: list[dict[str, Any]] = []
        for name in self.router.candidates(principal):
            config = snapshot.providers.get(name)
            adapter = principal.runtime.adapters.get(name)
            sent = overrides.get(name) or model
            entry: dict[str, Any] = {
                "provider": name,
                "kind": config.kind if config is not None else "",
                "available": adapter is not None,
                "model": sent,
                "upstream_model": "",
                "model_error": "",
                "problem": "",
                "message": "",
                "breaker": breaker.state(name),
                "breaker_retry_s": round(breaker.cooldown_left(name), 1),
            }
            if adapter is None:
                entry["problem"] = "unavailable"
                entry["message"] = (
                    f"Provider '{name}' is not available on this data plane (its kind is not "
                    "one this data plane can serve). Ask your platform team."
                )
            elif sent:
                found = adapter.diagnose(sent)
                entry.update(
                    upstream_model=found.upstream_model,
                    model_error=found.model_error,
                    problem=found.problem,
                    message=found.message,
                )
            out.append(entry)
        return out


def _model_param(scope: Scope) -> str:
    """``?model=`` (URL-decoded), checked like a request's model; "" when absent."""
    query = scope.get("query_string", b"").decode("latin-1")
    values = parse_qs(query).get("model")
    return check_model(values[0]) if values else ""


def _member(principal: Principal) -> dict[str, Any]:
    member = principal.member
    if isinstance(member, VirtualKey):
        return {
            "kind": "key",
            "id": member.id,
            "name": member.name,
            "expires_at": format_instant(member.expires_at_ms) if member.expires_at_ms else None,
            "models": list(member.models),
        }
    return {
        "kind": member.kind,
        "id": member.id,
        "name": member.developer_email or member.id,
        "expires_at": None,
        "models": list(member.models),
    }


def _rates(limits: Limits) -> dict[str, int]:
    return {
        "rpm": limits.rpm,
        "rph": limits.rph,
        "tpm": limits.tpm,
        "max_parallel": limits.max_parallel,
    }


def _target(principal: Principal) -> dict[str, str]:
    member = principal.member
    if member.provider:
        return {"kind": "provider", "name": member.provider, "mode": ""}
    if member.route:
        route = principal.snapshot.routes.get(member.route)
        return {"kind": "route", "name": member.route, "mode": route.mode if route else ""}
    return {"kind": "none", "name": "", "mode": ""}


def _model_check(principal: Principal, model: str) -> dict[str, Any]:
    """Whether a request for ``model`` passes the access checks, else the refusal it gets."""
    try:
        principal.check_access(model)
    except GatewayError as err:
        return {"id": model, "allowed": False, "status": err.status, "message": err.message}
    return {"id": model, "allowed": True, "status": 200, "message": ""}
