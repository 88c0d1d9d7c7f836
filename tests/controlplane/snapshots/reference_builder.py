"""A whole snapshot in one full read of the database: the test oracle for the incremental
resource table (controlplane/snapshots/), which replaced it on the control plane.

Contract:

* Every repeated field is in a deterministic order (workspaces, providers, routes by name; keys
  by id; prices by model prefix; budgets by period; ``retry_on`` sorted). Route targets and key
  model patterns keep their stored order: it is meaningful (fallback order, first match).
* ``version`` = first 16 hex of SHA-256 of the deterministic serialisation with ``version`` and
  ``built_at_ms`` cleared, so identical content always yields the identical version.
* :func:`validate` lists everything that would make a data plane misbehave (a key whose
  workspace, provider or route is missing, a route target that does not exist…).
  :func:`build` raises :class:`InvalidSnapshot` rather than return such a snapshot.
* Revoked keys are included with ``revoked=true``.
* Keys outside their workspace's access controls (left there by a narrowing) are not a problem
  here: data planes refuse them per request (403), which says why.
* Workspaces carry ``timezone`` and ``redis_failure`` (never ``alert_webhook``: only the control
  plane posts alerts).
* ``spend`` seeds the data planes' budget counters: one entry per budget of every workspace and
  every non-revoked key that has budgets, with the ledger's spend in the budget's period current
  at ``now_ms`` (:mod:`controlplane.usage.spend`, periods in the workspace's time zone; lifetime
  = all time, ``period_start_ms`` 0), zero spend included, sorted by (scope, id, period). The
  content hash covers it, so new spend or a period rollover yields a new version.
* ``secrets`` holds each provider's stored secret, decrypted with the master key, sorted by
  provider (the content hash covers them, so a rotation yields a new version). A secret that
  cannot be decrypted (no master key, another master key, damaged) is left out and described in
  ``warnings``: its provider answers "credentials not received" on the data planes while every
  other change keeps flowing (a revocation must never wait for a key problem to be fixed).
* Sign-in (only when SSO is configured; otherwise ``sso``, ``developers`` and
  ``signing_keys`` are empty, so no access token verifies anywhere): ``sso`` (enabled, issuer);
  ``developers`` by id, disabled ones included (data planes say "disabled" rather than
  "unknown"), each with its effective limits (own override, else the workspace's
  ``member_limits``) and effective target (the workspace's member target, else the SSO default,
  else the only provider when exactly one exists). A developer whose workspace no longer exists
  is left out (its tokens are refused; it is mapped again at its next sign-in). A developer
  without a usable target is published with an empty target (its requests get 503 on the data
  plane) and described in ``notices``: it is not a reason to withhold the whole snapshot.
  ``signing_keys`` are the live keys (:func:`controlplane.signin.signing_keys.live`) decrypted
  with the master key, by kid; one that cannot be decrypted is left out and described in
  ``warnings`` like a provider secret. Developers with budgets get spend seeds (scope
  ``developer``), computed like a key's.
"""

from __future__ import annotations

import hashlib

from sqlmodel import Session, col, select

from controlplane.catalog import telemetry_destinations
from controlplane.catalog.convert import (
    developer_to_snapshot_pb,
    key_to_snapshot_pb,
    price_to_pb,
    provider_to_pb,
    route_to_pb,
    workspace_to_snapshot_pb,
)
from controlplane.domain.errors import FailedPrecondition
from controlplane.secrets import MasterKey, require
from controlplane.signin import config as sso_config
from controlplane.signin import signing_keys
from controlplane.store.models.config import (
    PriceRow,
    ProviderRow,
    RouteRow,
    VirtualKeyRow,
    WorkspaceRow,
)
from controlplane.store.models.signin import DeveloperRow, SsoConfigRow
from controlplane.usage.spend import (
    Scope,
    current_spend,
    developer_scope,
    key_scope,
    seed_pb,
    workspace_scope,
)
from gwapi.v1 import discovery_pb2 as dpb

VERSION_HEX_CHARS = 16


class InvalidSnapshot(Exception):
    """The database content would produce a snapshot data planes cannot trust."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def content_version(snapshot: dpb.Snapshot) -> str:
    """The content hash of ``snapshot`` (its own ``version``/``built_at_ms`` are ignored)."""
    clean = dpb.Snapshot()
    clean.CopyFrom(snapshot)
    clean.version = ""
    clean.built_at_ms = 0
    digest = hashlib.sha256(clean.SerializeToString(deterministic=True)).hexdigest()
    return digest[:VERSION_HEX_CHARS]


def _signin(
    s: Session,
    snap: dpb.Snapshot,
    sso: SsoConfigRow,
    spaces: dict[str, WorkspaceRow],
    now_ms: int,
    master: MasterKey | None,
    warnings: list[str] | None,
    notices: list[str] | None,
) -> list[Scope]:
    """Fill the sign-in part of ``snap``; returns the developers' budget scopes."""
    snap.sso.CopyFrom(dpb.SsoInfo(enabled=True, issuer=sso.issuer))
    for key in signing_keys.live(s, now_ms, sso_config.ttls_of(sso).access_token_s):
        try:
            secret = signing_keys.decrypt(master, key)
        except FailedPrecondition as exc:
            if warnings is not None:
                warnings.append(exc.message)
            continue
        current = key.retired_at_ms == 0
        snap.signing_keys.append(
            dpb.SigningKey(
                kid=key.kid, key=secret, current=current, created_at_ms=key.created_at_ms
            )
        )
    providers = [p.name for p in snap.providers]
    only = providers[0] if len(providers) == 1 else ""
    scopes: list[Scope] = []
    for dev in s.exec(select(DeveloperRow).order_by(col(DeveloperRow.id))):
        ws = spaces.get(dev.workspace)
        if ws is None:
            continue
        if ws.member_provider or ws.member_route:
            provider, route = ws.member_provider, ws.member_route
        elif sso.default_provider or sso.default_route:
            provider, route = sso.default_provider, sso.default_route
        else:
            provider, route = only, ""
        if not provider and not route and notices is not None and not dev.disabled_at_ms:
            notices.append(
                f"developer {dev.id} ({dev.email}): no provider for signed-in developers in "
                f"workspace {ws.name!r}: set its member_provider or member_route, or the SSO "
                "default target (gwctl sso set --default-provider …)"
            )
        snap.developers.append(developer_to_snapshot_pb(dev, ws, provider, route))
        if not dev.disabled_at_ms:
            scopes.append(developer_scope(dev, ws))
    return scopes


def read_snapshot(
    s: Session,
    now_ms: int = 0,
    master: MasterKey | None = None,
    warnings: list[str] | None = None,
    notices: list[str] | None = None,
) -> dpb.Snapshot:
    """Read every table into an unversioned snapshot (``version``/``built_at_ms`` empty), with
    spend seeds for the periods current at ``now_ms`` and the secrets ``master`` decrypts;
    secrets it cannot decrypt are described in ``warnings``, developers without a target in
    ``notices``."""
    snap = dpb.Snapshot()
    zones: dict[str, str] = {}
    spaces: dict[str, WorkspaceRow] = {}
    scopes: list[Scope] = []
    for ws in s.exec(select(WorkspaceRow).order_by(col(WorkspaceRow.name))):
        snap.workspaces.append(workspace_to_snapshot_pb(ws))
        zones[ws.name] = ws.timezone
        spaces[ws.name] = ws
        scopes.append(workspace_scope(ws))
    for key in s.exec(select(VirtualKeyRow).order_by(col(VirtualKeyRow.id))):
        snap.keys.append(key_to_snapshot_pb(key))
        if not key.revoked_at_ms:
            scopes.append(key_scope(key, zones.get(key.workspace, "")))
    for prov in s.exec(select(ProviderRow).order_by(col(ProviderRow.name))):
        snap.providers.append(provider_to_pb(prov))
        if prov.secret_ciphertext:
            try:
                api_key = require(master).decrypt(prov.name, prov.secret_ciphertext)
            except FailedPrecondition as exc:
                if warnings is not None:
                    warnings.append(f"provider {prov.name!r}: {exc.message}")
                continue
            snap.secrets.append(
                dpb.ProviderSecret(
                    provider=prov.name, api_key=api_key, rotated_at_ms=prov.secret_rotated_at_ms
                )
            )
    for route in s.exec(select(RouteRow).order_by(col(RouteRow.name))):
        snap.routes.append(route_to_pb(route))
    for price in s.exec(select(PriceRow).order_by(col(PriceRow.model_prefix))):
        snap.prices.append(price_to_pb(price))
    sso = sso_config.row(s)
    if sso is not None:
        scopes += _signin(s, snap, sso, spaces, now_ms, master, warnings, notices)
    seeds = [seed_pb(sp) for sp in current_spend(s, [sc for sc in scopes if sc.budgets], now_ms)]
    seeds.sort(key=lambda e: (e.scope, e.id, e.period))
    snap.spend.extend(seeds)
    snap.telemetry_destinations.extend(telemetry_destinations.snapshot_entries(s, master, warnings))
    return snap


def validate(snap: dpb.Snapshot) -> list[str]:
    """Referential problems in ``snap``; empty when it is safe to publish."""
    problems: list[str] = []
    workspaces = {w.name for w in snap.workspaces}
    providers = {p.name for p in snap.providers}
    routes = {r.name for r in snap.routes}
    hashes: set[str] = set()
    for key in snap.keys:
        if key.workspace not in workspaces:
            problems.append(f"key {key.id}: workspace {key.workspace!r} does not exist")
        if len(key.secret_sha256) != 64 or key.secret_sha256 in hashes:
            problems.append(f"key {key.id}: missing or duplicate secret hash")
        hashes.add(key.secret_sha256)
        if key.revoked:
            continue  # a revoked key routes nowhere; its old target may be gone
        if bool(key.provider) == bool(key.route):
            problems.append(f"key {key.id}: needs exactly one of provider or route")
        elif key.provider and key.provider not in providers:
            problems.append(f"key {key.id}: provider {key.provider!r} does not exist")
        elif key.route and key.route not in routes:
            problems.append(f"key {key.id}: route {key.route!r} does not exist")
    for dev in snap.developers:
        if dev.workspace not in workspaces:
            problems.append(f"developer {dev.id}: workspace {dev.workspace!r} does not exist")
        # A missing target is not a problem for the whole snapshot (the builder leaves it empty
        # and warns; data planes answer 503 for that developer), a dangling one is.
        if dev.provider and dev.provider not in providers:
            problems.append(f"developer {dev.id}: provider {dev.provider!r} does not exist")
        if dev.route and dev.route not in routes:
            problems.append(f"developer {dev.id}: route {dev.route!r} does not exist")
    for route in snap.routes:
        if not route.targets:
            problems.append(f"route {route.name!r}: has no targets")
        for target in route.targets:
            if target.provider not in providers:
                problems.append(
                    f"route {route.name!r}: provider {target.provider!r} does not exist"
                )
    return problems


def build(
    s: Session,
    now_ms: int,
    master: MasterKey | None = None,
    warnings: list[str] | None = None,
    notices: list[str] | None = None,
) -> dpb.Snapshot:
    """Read, validate and version a snapshot. Raises :class:`InvalidSnapshot`."""
    snap = read_snapshot(s, now_ms, master, warnings, notices)
    problems = validate(snap)
    if problems:
        raise InvalidSnapshot(problems)
    snap.version = content_version(snap)
    snap.built_at_ms = now_ms
    return snap
