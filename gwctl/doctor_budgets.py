"""``gwctl doctor``'s budget and rate-limit lines, from the data plane's ``whoami`` answer.

Per budget of the caller and its workspace: spent ≥ limit is FAIL (every request gets 429 until
the reset, worded like the data plane's own refusal), more than :data:`WARN_PERCENT` spent is WARN,
a budget whose rest is held by requests in flight is WARN; otherwise OK with what is left.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gwctl.doctor_env import Finding
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
