"""``gwctl doctor``'s budget, rate-limit and provider lines, from the data plane's ``whoami``.

Per budget of the caller and its workspace: spent ≥ limit is FAIL (every request gets 429 until
the reset, worded like the data plane's own refusal), more than :data:`WARN_PERCENT` spent is WARN,
a budget whose rest is held by requests in flight is WARN; otherwise OK with what is left.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gwctl.doctor_env import Finding
from gwctl.doctor_net import ASK
from gwctl.output import format_dollars

WARN_PERCENT = 80
_PER = {"day": "/day", "week": "/week", "month": "/month", "lifetime": " (lifetime)"}


def budget_findings(whoami: dict[str, Any]) -> Iterator[Finding]:
    budgets = [b for b in whoami.get("budgets") or [] if isinstance(b, dict)]
    if not budgets:
        member = (whoami.get("member") or {}).get("name")
        yield Finding("budget", "OK", f"no budget on '{member}' or its workspace")
        return
    for b in budgets:
        yield _budget(whoami, b)


def _budget(whoami: dict[str, Any], b: dict[str, Any]) -> Finding:
    limit, spent = int(b.get("limit_micros") or 0), int(b.get("spent_micros") or 0)
    reserved = int(b.get("reserved_micros") or 0)
    label = f"Budget of {format_dollars(limit)}{_PER.get(str(b.get('period')), '')} for {b.get('label')}"
    reset = b.get("resets_at")
    when = f"it resets at {reset}" if reset else "it does not reset"
    ledger = (
        " (from the ledger: the counter store is unreachable)"
        if b.get("source") == "ledger"
        else ""
    )
    if spent >= limit:
        return Finding(
            "budget",
            "FAIL",
            f"{label} is spent ({format_dollars(spent)}); {when}{ledger}",
            _raise(whoami, b) + (", or wait for the reset" if reset else ""),
        )
    percent = spent * 100 // limit if limit else 0
    left = f"{format_dollars(spent)} spent ({percent} %), {format_dollars(limit - spent)} left; {when}{ledger}"
    if spent + reserved >= limit:
        return Finding(
            "budget",
            "WARN",
            f"{label}: {left}, and requests in flight hold the rest",
            "retry in a few seconds; " + _raise(whoami, b),
        )
    if percent >= WARN_PERCENT:
        return Finding("budget", "WARN", f"{label}: {left}", "nearly spent: " + _raise(whoami, b))
    return Finding("budget", "OK", f"{label}: {left}")


def _raise(whoami: dict[str, Any], b: dict[str, Any]) -> str:
    """How the platform team would raise this budget."""
    member = whoami.get("member") or {}
    scope = b.get("scope")
    if scope == "workspace":
        command = (
            f"gwctl workspaces update {(whoami.get('workspace') or {}).get('name')} --budget …"
        )
    elif scope == "developer":
        command = f"gwctl developers update {member.get('name')} --budget …"
    else:
        command = f"gwctl keys update {member.get('id')} --budget …"
    return f"ask your platform team to raise it ({command})"


def limits_finding(whoami: dict[str, Any]) -> Finding:
    parts = []
    for scope in whoami.get("rate_limits") or []:
        if not isinstance(scope, dict):
            continue
        values = [
            f"{name.replace('_', ' ')} {scope[name]:,}"
            for name in ("rpm", "rph", "tpm", "max_parallel")
            if scope.get(name)
        ]
        parts.append(f"{scope.get('scope')}: {', '.join(values)}")
    return Finding("limits", "OK", "; ".join(parts) if parts else "no rate limit")


def provider_findings(whoami: dict[str, Any], model: str) -> Iterator[Finding]:
    """One line for the providers the model would go to: FAIL when none can serve it (a problem,
    a model it cannot map, its circuit breaker open), WARN when only some can."""
    targets = [t for t in whoami.get("targets") or [] if isinstance(t, dict)]
    if not targets:
        return  # no target at all: the model check said so
    route = whoami.get("target") or {}
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for t in targets:
        (bad if _target_problem(t) else good).append(t)
    lines = [_describe_target(t) for t in targets]
    detail = "; ".join(lines)
    if route.get("kind") == "route":
        detail = f"route '{route.get('name')}' ({route.get('mode')}): {detail}"
    if not bad:
        yield Finding("provider", "OK", detail)
        return
    yield Finding(
        "provider",
        "WARN" if good else "FAIL",
        detail,
        _target_fix(bad[0], model, bool(good)),
    )


def _target_problem(t: dict[str, Any]) -> str:
    if t.get("problem"):
        return str(t.get("message") or t.get("problem"))
    if t.get("model_error"):
        return str(t["model_error"])
    if t.get("breaker") == "open":
        return "open"
    return ""


def _describe_target(t: dict[str, Any]) -> str:
    name = f"'{t.get('provider')}' ({t.get('kind')})"
    if t.get("problem"):
        return f"{name}: {t.get('message')}"
    if t.get("model_error"):
        return f"{name}: {t.get('model_error')}"
    text = f"{name}: {t.get('model')} → {t.get('upstream_model')}"
    breaker = t.get("breaker")
    if breaker == "open":
        text += f", circuit breaker OPEN (failing; next try in {t.get('breaker_retry_s')} s)"
    elif breaker == "half_open":
        text += ", circuit breaker half-open (recovering)"
    else:
        text += ", breaker closed"
    return text


def _target_fix(t: dict[str, Any], model: str, others: bool) -> str:
    lead = "your requests go to the other targets meanwhile; " if others else ""
    if t.get("problem") == "secret_not_received":
        return (
            lead
            + f"{ASK}: the data plane has not received the provider's key from the control plane (gwctl dataplanes list)"
        )
    if t.get("problem"):
        return lead + f"{ASK} to fix provider '{t.get('provider')}'"
    if t.get("model_error"):
        return lead + (
            f"pick a model provider '{t.get('provider')}' serves with /model, or ask "
            f"your platform team to map {model} (gwctl providers update "
            f"{t.get('provider')} --model-map {model}=…)"
        )
    return lead + (
        "the provider is failing right now; retry later, and if it persists tell your "
        "platform team (gwctl logs tail --status 5xx)"
    )
