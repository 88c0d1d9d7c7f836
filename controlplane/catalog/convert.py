"""Conversions between database rows, domain values and ``gwapi.v1`` messages."""

from __future__ import annotations

import json
from dataclasses import fields as dataclass_fields
from typing import Any, Protocol

from controlplane.domain.budgets import Budget, Period
from controlplane.domain.errors import InvalidArgument
from controlplane.domain.limits import Limits, limits_from_json
from controlplane.domain.routing import RoutePolicy, Target
from controlplane.domain.workspaces import (
    DEFAULT_ALERT_FORMAT,
    DEFAULT_LOG_BODY_MAX_BYTES,
    DEFAULT_LOG_RETENTION_DAYS,
    DEFAULT_REDIS_FAILURE,
)
from controlplane.store.models.config import (
    PriceRow,
    ProviderRow,
    RouteRow,
    VirtualKeyRow,
    WorkspaceRow,
)
from controlplane.store.models.signin import DeveloperRow
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import discovery_pb2 as dpb
from gwapi.vocab import (
    KIND,
    LOG_BODIES,
    MODE,
    REDIS_FAILURE,
    OptionError,
    choices,
    fill_provider,
    fill_route,
    fill_workspace,
    options_to_settings,
    provider_options,
    settings_to_options,
    spell,
)

_PERIODS = frozenset(int(p) for p in Period)


def limits_from_pb(msg: pb.Limits, what: str = "limits") -> Limits:
    """Proto → domain. Range checks happen in ``validate_limits``; this only rejects a budget
    without a period, which the domain type cannot represent."""
    budgets = []
    for b in msg.budgets:
        if b.period not in _PERIODS:  # proto3 enums are open: 0, and also 5 or -1, arrive here
            raise InvalidArgument(
                f"{what}: every budget needs a period (day, week, month, lifetime), "
                + ("got none" if b.period == pb.PERIOD_UNSPECIFIED else f"got {b.period}")
            )
        budgets.append(Budget(amount_micros=b.amount_micros, period=Period(b.period)))
    return Limits(
        budgets=tuple(budgets),
        rpm=msg.rpm,
        rph=msg.rph,
        tpm=msg.tpm,
        max_parallel=msg.max_parallel,
    )


def limits_to_pb(limits: Limits) -> pb.Limits:
    """Budgets sorted by period, so snapshots serialise identically whatever the stored order."""
    return pb.Limits(
        budgets=[
            pb.Budget(amount_micros=b.amount_micros, period=pb.Period.ValueType(int(b.period)))
            for b in sorted(limits.budgets, key=lambda b: (b.period, b.amount_micros))
        ],
        rpm=limits.rpm,
        rph=limits.rph,
        tpm=limits.tpm,
        max_parallel=limits.max_parallel,
    )


# -- the vocabulary at the API edge: typed fields first, the deprecated text ones as a fallback --


def spelling(enum: Any, number: int, text: str, what: str) -> str:
    """The word a request gives for ``what``: the enum value's spelling, else ``text``.

    Both may be given (a response sent back) but must agree; an enum number this control plane
    does not know is refused, naming the known words.
    """
    word = spell(enum, number)
    if number and not word:
        raise InvalidArgument(f"unknown {what} {number}: use one of {', '.join(choices(enum))}")
    if word and text and text != word:
        raise InvalidArgument(f"{what} is given twice and the two disagree ({word!r}, {text!r})")
    return word or text


def provider_from_pb(msg: pb.Provider) -> tuple[str, dict[str, str]]:
    """The kind and options a request gives: ``provider_kind`` and the typed settings, else the
    deprecated text fields. Given in both forms, they must agree."""
    kind = spelling(KIND, msg.provider_kind, msg.kind, "provider kind")
    member = msg.WhichOneof("settings")
    if member is not None and kind and member != kind:
        raise InvalidArgument(f"{member} settings given for {kind!r} provider: give its kind's")
    kind = kind or member or ""
    options = provider_options(msg)
    if member is not None and msg.options:
        try:
            typed = options_to_settings(kind, dict(msg.options))
        except OptionError:
            typed = None
        text_form = settings_to_options(typed) if typed is not None else {}
        if text_form != options:
            raise InvalidArgument(
                "options are given twice (typed settings and the options map) and the two "
                "disagree: give one form"
            )
    return kind, options


def route_mode_from_pb(msg: pb.Route) -> str:
    return spelling(MODE, msg.route_mode, msg.mode, "route mode")


def redis_failure_from_pb(msg: pb.Workspace) -> str:
    return spelling(REDIS_FAILURE, msg.redis_failure_policy, msg.redis_failure, "redis_failure")


def log_bodies_from_pb(msg: pb.Workspace) -> str:
    return spelling(LOG_BODIES, msg.log_bodies_policy, msg.log_bodies, "log_bodies")


def workspace_to_pb(row: WorkspaceRow) -> pb.Workspace:
    msg = pb.Workspace(
        name=row.name,
        description=row.description,
        limits=limits_to_pb(limits_from_json(row.limits_json)),
        timezone=row.timezone,
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
        alert_webhook=row.alert_webhook,
        alert_format=row.alert_format or DEFAULT_ALERT_FORMAT,
        min_client_version=row.min_client_version or "",
        log_body_max_bytes=row.log_body_max_bytes or DEFAULT_LOG_BODY_MAX_BYTES,
        log_retention_days=row.log_retention_days or DEFAULT_LOG_RETENTION_DAYS,
        allowed_providers=json.loads(row.allowed_providers_json or "[]"),
        allowed_routes=json.loads(row.allowed_routes_json or "[]"),
        allowed_models=json.loads(row.allowed_models_json or "[]"),
        sso_groups=json.loads(row.sso_groups_json or "[]"),
        sso_priority=row.sso_priority,
        member_limits=limits_to_pb(limits_from_json(row.member_limits_json)),
        member_provider=row.member_provider,
        member_route=row.member_route,
        managed_settings_json=row.managed_settings_json,
        managed_settings_checksum=row.managed_settings_checksum,
        managed_settings_updated_at_ms=row.managed_settings_updated_at_ms,
    )
    return fill_workspace(msg, row.redis_failure or DEFAULT_REDIS_FAILURE, row.log_bodies or "none")


def workspace_to_snapshot_pb(row: WorkspaceRow) -> pb.Workspace:
    """What data planes need: no ``alert_webhook`` nor ``alert_format`` (only the control plane posts alerts, and a
    webhook URL often embeds a secret that has no business on data-plane disks), and no member
    target (each snapshot developer carries its effective target)."""
    msg = workspace_to_pb(row)
    msg.ClearField("alert_webhook")
    msg.ClearField("alert_format")
    msg.ClearField("member_provider")
    msg.ClearField("member_route")
    return msg


class DeveloperLimits(Protocol):
    """What :func:`effective_limits` reads of a developer (a ``DeveloperRow`` or a Core row)."""

    has_limits: bool
    limits_json: str


class MemberLimits(Protocol):
    member_limits_json: str


def effective_limits(row: DeveloperLimits, workspace: MemberLimits | None) -> Limits:
    """A developer's own limits when it has an override, else its workspace's member limits."""
    if row.has_limits:
        return limits_from_json(row.limits_json)
    return limits_from_json(workspace.member_limits_json) if workspace is not None else Limits()


def developer_to_pb(row: DeveloperRow, workspace: WorkspaceRow | None) -> pb.Developer:
    """Without ``budget_status`` and ``active_sessions`` (the catalog adds them)."""
    return pb.Developer(
        id=row.id,
        workspace=row.workspace,
        email=row.email,
        name=row.name,
        subject=row.subject,
        groups=json.loads(row.groups_json or "[]"),
        limits=limits_to_pb(limits_from_json(row.limits_json) if row.has_limits else Limits()),
        has_limits=row.has_limits,
        effective_limits=limits_to_pb(effective_limits(row, workspace)),
        created_at_ms=row.created_at_ms,
        last_sign_in_ms=row.last_sign_in_ms,
        disabled_at_ms=row.disabled_at_ms,
        updated_at_ms=row.updated_at_ms,
    )


def developer_to_snapshot_pb(
    row: DeveloperRow, workspace: WorkspaceRow, provider: str, route: str
) -> dpb.SnapshotDeveloper:
    return dpb.SnapshotDeveloper(
        id=row.id,
        workspace=row.workspace,
        email=row.email,
        name=row.name,
        limits=limits_to_pb(effective_limits(row, workspace)),
        provider=provider,
        route=route,
        disabled=row.disabled_at_ms > 0,
        tokens_not_before_ms=row.tokens_not_before_ms,
    )


def _key_fields(row: VirtualKeyRow) -> dict[str, Any]:
    """What the Admin API's and the snapshot's key have in common."""
    return {
        "id": row.id,
        "workspace": row.workspace,
        "name": row.name,
        "limits": limits_to_pb(limits_from_json(row.limits_json)),
        "provider": row.provider,
        "route": row.route,
        "models": json.loads(row.models_json or "[]"),
        "expires_at_ms": row.expires_at_ms,
    }


def key_to_pb(row: VirtualKeyRow) -> pb.VirtualKey:
    return pb.VirtualKey(
        **_key_fields(row),
        prefix=row.prefix,
        revoked_at_ms=row.revoked_at_ms,
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
    )


def key_to_snapshot_pb(row: VirtualKeyRow) -> dpb.SnapshotKey:
    return dpb.SnapshotKey(
        **_key_fields(row), secret_sha256=row.secret_sha256, revoked=row.revoked_at_ms > 0
    )


def provider_to_pb(row: ProviderRow) -> pb.Provider:
    msg = pb.Provider(
        name=row.name,
        base_url=row.base_url,
        api_key_env=row.api_key_env,
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
        # Never the secret itself: only whether one is stored and when it was last set.
        has_secret=bool(row.secret_ciphertext),
        secret_rotated_at_ms=row.secret_rotated_at_ms,
    )
    return fill_provider(msg, row.kind, json.loads(row.options_json or "{}"))


def targets_from_pb(targets: list[pb.RouteTarget]) -> tuple[Target, ...]:
    return tuple(Target(provider=t.provider, weight=t.weight, model=t.model) for t in targets)


def targets_to_json(targets: tuple[Target, ...]) -> str:
    return json.dumps(
        [{"provider": t.provider, "weight": t.weight, "model": t.model} for t in targets],
        separators=(",", ":"),
    )


def targets_from_json(text: str) -> tuple[Target, ...]:
    return tuple(
        Target(
            provider=str(t["provider"]), weight=int(t.get("weight", 0)), model=t.get("model", "")
        )
        for t in json.loads(text or "[]")
    )


# A route policy's fields that are the same number or flag in the row, the domain value and the
# message (mode, targets and retry_on each have their own form).
POLICY_SCALARS = tuple(
    f.name for f in dataclass_fields(RoutePolicy) if f.name not in ("mode", "targets", "retry_on")
)


def route_policy_from_row(row: RouteRow) -> RoutePolicy:
    return RoutePolicy(
        mode=row.mode,
        targets=targets_from_json(row.targets_json),
        retry_on=tuple(sorted(json.loads(row.retry_on_json or "[]"))),
        **{name: getattr(row, name) for name in POLICY_SCALARS},
    )


def route_to_pb(row: RouteRow) -> pb.Route:
    policy = route_policy_from_row(row)
    msg = pb.Route(
        name=row.name,
        targets=[
            pb.RouteTarget(provider=t.provider, weight=t.weight, model=t.model)
            for t in policy.targets
        ],
        retry_on=policy.retry_on,
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
        **{name: getattr(policy, name) for name in POLICY_SCALARS},
    )
    return fill_route(msg, policy.mode)


def price_to_pb(row: PriceRow) -> pb.Price:
    msg = pb.Price(
        model_prefix=row.model_prefix,
        family=row.family,
        family_default=row.family_default,
        rates=pb.PriceRates(
            input=row.input,
            output=row.output,
            cache_write_5m=row.cache_write_5m,
            cache_write_1h=row.cache_write_1h,
            cache_read=row.cache_read,
        ),
        web_search_per_1k=row.web_search_per_1k or 0,
        web_fetch_per_1k=row.web_fetch_per_1k or 0,
    )
    if row.long_context_threshold > 0:
        msg.long_context_threshold = row.long_context_threshold
        msg.long_context_beta = row.long_context_beta
        msg.long_rates.CopyFrom(
            pb.PriceRates(
                input=row.long_input,
                output=row.long_output,
                cache_write_5m=row.long_cache_write_5m,
                cache_write_1h=row.long_cache_write_1h,
                cache_read=row.long_cache_read,
            )
        )
    return msg
