"""Read configuration resources from the database, all of them or only the changed ones.

A resource is one message a data plane receives, identified by ``(kind, name)``:

=====================  ======================  ==========================================
kind                   name                    message
=====================  ======================  ==========================================
workspace              workspace name          ``gwapi.v1.Workspace`` (snapshot form)
key                    key id                  ``SnapshotKey``
developer              developer id            ``SnapshotDeveloper`` (effective values)
provider               provider name           ``gwapi.v1.Provider``
secret                 provider name           ``ProviderSecret`` (decrypted)
route                  route name              ``gwapi.v1.Route``
price                  model prefix            ``gwapi.v1.Price``
signing_key            kid                     ``SigningKey`` (decrypted, live ones)
telemetry_destination  destination name        ``TelemetryDestinationConfig``
sso                    "sso"                   ``SsoInfo`` (absent without SSO)
=====================  ======================  ==========================================

:meth:`Reader.read` takes what changed (:mod:`controlplane.store.changes` rows: kind → names,
``None`` = the whole kind) and returns a :class:`Update`: for the big kinds (workspaces, keys,
developers) the named resources (``None`` = it no longer exists); the small kinds (providers,
secrets, routes, prices, signing keys, destinations, sso) are read whole whenever one of them
changed. Dependencies are followed here: a workspace's developers (effective limits and target),
every developer when the SSO config or the set of providers changes, secrets with providers,
signing keys with the SSO config. Messages are exactly those :func:`builder.read_snapshot`
produces, so a table kept up to date with updates equals a full read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from google.protobuf.message import Message
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
from controlplane.store.changes import ALL
from controlplane.store.models.config import (
    PriceRow,
    ProviderRow,
    RouteRow,
    VirtualKeyRow,
    WorkspaceRow,
)
from controlplane.store.models.signin import DeveloperRow, SsoConfigRow
from controlplane.usage.spend import IN_CHUNK
from gwapi.v1 import discovery_pb2 as dpb
from gwcommon.resource_kinds import BIG_KINDS, CONFIG_KINDS

Wanted = dict[str, set[str] | None]  # kind -> names (None: all of the kind)


@dataclass
class Update:
    """What a read found. ``whole[kind]`` replaces the kind entirely; ``named[kind][name]`` is
    the resource, or None when it no longer exists. ``problems`` are secrets that could not be
    decrypted (kind-wide for the small kinds) and developers without a target, by resource."""

    whole: dict[str, dict[str, Message]] = field(default_factory=dict)
    named: dict[str, dict[str, Message | None]] = field(default_factory=dict)
    warnings: dict[tuple[str, str], str] = field(default_factory=dict)
    notices: dict[tuple[str, str], str] = field(default_factory=dict)
    warned_kinds: set[str] = field(default_factory=set)  # kinds whose warnings were recomputed
    noticed: set[tuple[str, str]] = field(default_factory=set)  # developers re-read


def from_changes(rows: Iterable[tuple[str, str]]) -> Wanted:
    wanted: Wanted = {}
    for kind, name in rows:
        if name == ALL or kind not in BIG_KINDS:
            wanted[kind] = None
        elif kind not in wanted or wanted[kind] is not None:
            names = wanted.setdefault(kind, set())
            assert names is not None
            names.add(name)
    return wanted


def everything() -> Wanted:
    return {kind: None for kind in CONFIG_KINDS}


def _chunks(names: set[str]) -> Iterable[list[str]]:
    ordered = sorted(names)
    for start in range(0, len(ordered), IN_CHUNK):
        yield ordered[start : start + IN_CHUNK]


class Reader:
    """Reads resources with ``master`` to decrypt secrets."""

    def __init__(self, master: MasterKey | None) -> None:
        self.master = master

    def read(
        self, s: Session, wanted: Wanted, now_ms: int, provider_names: frozenset[str] | None
    ) -> Update:
        """``provider_names``: the providers the table holds now (None: unknown, first read);
        when the set read differs, every developer is read again (the "only provider" target)."""
        up = Update()
        wanted = {k: (None if v is None else set(v)) for k, v in wanted.items()}
        sso = sso_config.row(s)
        if "provider" in wanted or "secret" in wanted:
            providers = self._providers(s, up)
            if provider_names is None or frozenset(providers) != provider_names:
                wanted["developer"] = None
        if "sso" in wanted:
            wanted["developer"] = None
            wanted["signing_key"] = None
            up.whole["sso"] = (
                {"sso": dpb.SsoInfo(enabled=True, issuer=sso.issuer)} if sso is not None else {}
            )
        if "workspace" in wanted:
            self._workspaces(s, wanted, up)
        if "key" in wanted:
            self._keys(s, wanted["key"], up)
        if "route" in wanted:
            up.whole["route"] = {
                r.name: route_to_pb(r)
                for r in s.exec(select(RouteRow).order_by(col(RouteRow.name)))
            }
        if "price" in wanted:
            up.whole["price"] = {
                p.model_prefix: price_to_pb(p)
                for p in s.exec(select(PriceRow).order_by(col(PriceRow.model_prefix)))
            }
        if "telemetry_destination" in wanted:
            warnings: list[str] = []
            entries = telemetry_destinations.snapshot_entries(s, self.master, warnings)
            up.whole["telemetry_destination"] = {e.name: e for e in entries}
            up.warned_kinds.add("telemetry_destination")
            for i, text in enumerate(warnings):
                up.warnings[("telemetry_destination", str(i))] = text
        if "signing_key" in wanted:
            self._signing_keys(s, sso, now_ms, up)
        if "developer" in wanted:
            self._developers(s, sso, wanted["developer"], up)
        return up

    def _providers(self, s: Session, up: Update) -> dict[str, Message]:
        providers: dict[str, Message] = {}
        secrets: dict[str, Message] = {}
        up.warned_kinds.add("secret")
        for prov in s.exec(select(ProviderRow).order_by(col(ProviderRow.name))):
            providers[prov.name] = provider_to_pb(prov)
            if not prov.secret_ciphertext:
                continue
            try:
                api_key = require(self.master).decrypt(prov.name, prov.secret_ciphertext)
            except FailedPrecondition as exc:
                up.warnings[("secret", prov.name)] = f"provider {prov.name!r}: {exc.message}"
                continue
            secrets[prov.name] = dpb.ProviderSecret(
                provider=prov.name, api_key=api_key, rotated_at_ms=prov.secret_rotated_at_ms
            )
        up.whole["provider"] = providers
        up.whole["secret"] = secrets
        return providers

    def _workspaces(self, s: Session, wanted: Wanted, up: Update) -> None:
        names = wanted["workspace"]
        if names is None:
            up.whole["workspace"] = {
                w.name: workspace_to_snapshot_pb(w) for w in s.exec(select(WorkspaceRow))
            }
            wanted["developer"] = None
            return
        found: dict[str, Message | None] = dict.fromkeys(names)
        dev_ids: set[str] = set()
        for chunk in _chunks(names):
            for w in s.exec(select(WorkspaceRow).where(col(WorkspaceRow.name).in_(chunk))):
                found[w.name] = workspace_to_snapshot_pb(w)
            dev_ids.update(
                s.exec(select(DeveloperRow.id).where(col(DeveloperRow.workspace).in_(chunk)))
            )
        up.named["workspace"] = found
        if dev_ids and wanted.get("developer", set()) is not None:
            devs = wanted.setdefault("developer", set())
            assert devs is not None
            devs |= dev_ids

    def _keys(self, s: Session, ids: set[str] | None, up: Update) -> None:
        if ids is None:
            up.whole["key"] = {k.id: key_to_snapshot_pb(k) for k in s.exec(select(VirtualKeyRow))}
            return
        found: dict[str, Message | None] = dict.fromkeys(ids)
        for chunk in _chunks(ids):
            for k in s.exec(select(VirtualKeyRow).where(col(VirtualKeyRow.id).in_(chunk))):
                found[k.id] = key_to_snapshot_pb(k)
        up.named["key"] = found

    def _signing_keys(self, s: Session, sso: SsoConfigRow | None, now_ms: int, up: Update) -> None:
        keys: dict[str, Message] = {}
        up.warned_kinds.add("signing_key")
        if sso is not None:
            for key in signing_keys.live(s, now_ms, sso_config.ttls_of(sso).access_token_s):
                try:
                    secret = signing_keys.decrypt(self.master, key)
                except FailedPrecondition as exc:
                    up.warnings[("signing_key", key.kid)] = exc.message
                    continue
                keys[key.kid] = dpb.SigningKey(
                    kid=key.kid,
                    key=secret,
                    current=key.retired_at_ms == 0,
                    created_at_ms=key.created_at_ms,
                )
        up.whole["signing_key"] = keys

    def _developers(
        self, s: Session, sso: SsoConfigRow | None, ids: set[str] | None, up: Update
    ) -> None:
        if sso is None:  # no sign-in: no developer is published
            up.whole["developer"] = {}
            up.noticed.add(("developer", ALL))
            return
        names = sorted(s.exec(select(ProviderRow.name)).all())
        only = names[0] if len(names) == 1 else ""
        query = select(DeveloperRow)
        if ids is not None:
            if not ids:
                return
            rows: list[DeveloperRow] = []
            for chunk in _chunks(ids):
                rows += s.exec(query.where(col(DeveloperRow.id).in_(chunk))).all()
        else:
            rows = list(s.exec(query))
            up.noticed.add(("developer", ALL))
        spaces = {
            w.name: w
            for chunk in _chunks({r.workspace for r in rows})
            for w in s.exec(select(WorkspaceRow).where(col(WorkspaceRow.name).in_(chunk)))
        }
        found: dict[str, Message | None] = dict.fromkeys(ids or ())
        for dev in rows:
            up.noticed.add(("developer", dev.id))
            ws = spaces.get(dev.workspace)
            if ws is None:
                found[dev.id] = None  # its tokens are refused until its next sign-in maps it
                continue
            if ws.member_provider or ws.member_route:
                provider, route = ws.member_provider, ws.member_route
            elif sso.default_provider or sso.default_route:
                provider, route = sso.default_provider, sso.default_route
            else:
                provider, route = only, ""
            if not provider and not route and not dev.disabled_at_ms:
                up.notices[("developer", dev.id)] = (
                    f"developer {dev.id} ({dev.email}): no provider for signed-in developers in "
                    f"workspace {ws.name!r}: set its member_provider or member_route, or the SSO "
                    "default target (gwctl sso set --default-provider …)"
                )
            found[dev.id] = developer_to_snapshot_pb(dev, ws, provider, route)
        if ids is None:
            up.whole["developer"] = {k: v for k, v in found.items() if v is not None}
        else:
            up.named["developer"] = found
