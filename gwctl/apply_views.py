"""How ``gwctl apply`` shows an object field by field: one text per field, and their diff.

The same view is built from the file's object and from the control plane's, so the plan compares
like with like and prints what it compares. Fields at their default are left out of a new
object's listing (:func:`created_fields`).
"""

from gwapi.v1 import common_pb2
from gwctl import output as out
from gwctl import parse
from gwctl.config_model import KeySpec, settings_checksum


def _show(value: object) -> str:
    if value == "" or value is None:
        return '""'
    return str(value)


def _limits_view(limits: common_pb2.Limits, prefix: str = "limits") -> dict[str, str]:
    return {
        f"{prefix}.budgets": out.format_budgets(limits),
        f"{prefix}.rpm": out.format_limit(limits.rpm),
        f"{prefix}.rph": out.format_limit(limits.rph),
        f"{prefix}.tpm": out.format_limit(limits.tpm),
        f"{prefix}.max_parallel": out.format_limit(limits.max_parallel),
    }


def _settings_view(ws: common_pb2.Workspace) -> str:
    """``sha256 1a2b3c4d5e6f7a8b… (123 bytes)``: the file's policy is canonical already, so its
    checksum is the one the control plane will store."""
    if not ws.managed_settings_json:
        return "-"
    checksum = ws.managed_settings_checksum or settings_checksum(ws.managed_settings_json)
    return f"sha256 {checksum[:16]}… ({len(ws.managed_settings_json.encode('utf-8'))} bytes)"


def _member_target(ws: common_pb2.Workspace) -> str:
    if ws.member_route:
        return f"route:{ws.member_route}"
    return f"provider:{ws.member_provider}" if ws.member_provider else "default"


def workspace_view(ws: common_pb2.Workspace) -> dict[str, str]:
    return {
        "description": _show(ws.description),
        "timezone": ws.timezone or "UTC",
        "redis_failure": ws.redis_failure or "closed",
        "alert_webhook": _show(ws.alert_webhook),
        "alert_format": ws.alert_format or "generic",
        **_limits_view(ws.limits),
        "allowed_providers": ", ".join(ws.allowed_providers) or "any",
        "allowed_routes": ", ".join(ws.allowed_routes) or "any",
        "allowed_models": ", ".join(ws.allowed_models) or "any",
        "sso_groups": ", ".join(ws.sso_groups) or "-",
        "sso_priority": str(ws.sso_priority) if ws.sso_priority else "default",
        **_limits_view(ws.member_limits, "member_limits"),
        "member_target": _member_target(ws),
        "managed_settings": _settings_view(ws),
    }


def provider_view(p: common_pb2.Provider) -> dict[str, str]:
    view = {"kind": p.kind, "base_url": _show(p.base_url), "api_key_env": _show(p.api_key_env)}
    view.update({f"options.{k}": v for k, v in sorted(p.options.items())})
    return view


def _target_text(t: common_pb2.RouteTarget) -> str:
    text = t.provider
    if (t.weight or 1) != 1:
        text += f"×{t.weight}"
    return f"{text} ({t.model})" if t.model else text


def route_view(r: common_pb2.Route) -> dict[str, str]:
    joiner = ", " if r.mode == "loadbalance" else " → "
    return {
        "mode": r.mode or "fallback",
        "targets": joiner.join(_target_text(t) for t in r.targets) or '""',
        "retries": str(r.retries),
        "retry_on": ",".join(str(s) for s in sorted(r.retry_on)) or "default",
        "timeout_connect": parse.format_seconds_ms(r.timeout_connect_ms),
        "timeout_first_byte": parse.format_seconds_ms(r.timeout_first_byte_ms),
        "timeout_idle": parse.format_seconds_ms(r.timeout_idle_ms),
        "cache_ttl": f"{r.cache_ttl_s}s" if r.cache_ttl_s else "off",
        "cache_sampled": str(r.cache_sampled).lower(),
        "breaker_failures": str(r.breaker_failures) if r.breaker_failures else "default",
        "breaker_cooldown": f"{r.breaker_cooldown_s}s" if r.breaker_cooldown_s else "default",
    }


def _key_target(provider: str, route: str) -> str:
    return f"route:{route}" if route else f"provider:{provider}"


def key_view_spec(k: KeySpec) -> dict[str, str]:
    return {
        "target": _key_target(k.provider, k.route),
        "models": ", ".join(k.models) or "all",
        **_limits_view(k.limits),
    }


def key_view(k: common_pb2.VirtualKey) -> dict[str, str]:
    return {
        "target": _key_target(k.provider, k.route),
        "models": ", ".join(k.models) or "all",
        **_limits_view(k.limits),
    }


def diff(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, str, str]]:
    names = list(after) + [n for n in before if n not in after]
    return [
        (n, before.get(n, "(none)"), after.get(n, "(none)"))
        for n in names
        if before.get(n) != after.get(n)
    ]


_DEFAULTS = {'""', "default", "off", "false", "no limit", "-", "all", "any", "UTC", "closed", "0",
             "generic"}  # fmt: skip


def created_fields(view: dict[str, str]) -> list[tuple[str, str, str]]:
    """The settings worth showing for a new object: those not at their default."""
    return [(n, "", v) for n, v in view.items() if v not in _DEFAULTS or n in ("kind", "target")]
