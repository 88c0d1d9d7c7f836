"""The SSO (OIDC) configuration of sign-in with Claude Code, as the Admin API manages it.

Contract:

* :func:`get` returns the configuration with ``configured=false`` (and nothing else) when sign-in
  is off. The client secret is never returned: only ``has_client_secret``.
* :func:`set_sso` applies ``update_mask`` (paths in :data:`UPDATE_PATHS`; no mask = the whole
  configuration, every field taken from the message) and checks the result: issuer, client id
  and client secret are required (an empty ``client_secret`` keeps the stored one, unless the
  mask names ``client_secret``), lifetimes within range, a default target that exists (provider
  or route, not both). It needs a master key (FAILED_PRECONDITION otherwise): the client secret
  is stored encrypted under it, and the first configuration creates the access-token signing
  key. Audited as ``sso.set`` (before/after without any secret).
* :func:`delete` turns sign-in off: the configuration and every signing key are deleted (access
  tokens stop verifying at once), every refresh token is revoked and pending device grants are
  dropped. Developers stay (their id, identity and spend). Audited as ``sso.delete``.
* :func:`rotate_signing_key`: a new current key (see :mod:`controlplane.signin.signing_keys`).
"""

from __future__ import annotations

import json

from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import delete as sql_delete
from sqlmodel import Session

from controlplane import audit_log
from controlplane.catalog import keys as key_catalog
from controlplane.catalog.common import updated_target
from controlplane.domain.errors import FailedPrecondition, InvalidArgument, NotFound, shown
from controlplane.domain.sso import (
    DEFAULT_GROUPS_CLAIM,
    effective_ttls,
    validate_client_id,
    validate_client_secret,
    validate_email_domains,
    validate_groups_claim,
    validate_issuer,
    validate_scopes,
)
from controlplane.secrets import MasterKey
from controlplane.signin import config, signing_keys, tokens
from controlplane.store.models.signin import DeviceGrantRow, SsoConfigRow
from gwapi.v1 import admin_pb2 as apb

UPDATE_PATHS = (
    "issuer",
    "client_id",
    "client_secret",
    "scopes",
    "groups_claim",
    "allowed_email_domains",
    "access_token_ttl_s",
    "refresh_idle_ttl_s",
    "session_max_ttl_s",
    "default_provider",
    "default_route",
)


def to_pb(s: Session, row: SsoConfigRow | None) -> apb.SsoConfig:
    if row is None:
        return apb.SsoConfig(configured=False)
    key = signing_keys.current(s)
    return apb.SsoConfig(
        issuer=row.issuer,
        client_id=row.client_id,
        has_client_secret=bool(row.client_secret_ciphertext),
        scopes=json.loads(row.scopes_json or "[]"),
        groups_claim=row.groups_claim or DEFAULT_GROUPS_CLAIM,
        allowed_email_domains=json.loads(row.allowed_email_domains_json or "[]"),
        access_token_ttl_s=row.access_token_ttl_s,
        refresh_idle_ttl_s=row.refresh_idle_ttl_s,
        session_max_ttl_s=row.session_max_ttl_s,
        default_provider=row.default_provider,
        default_route=row.default_route,
        updated_at_ms=row.updated_at_ms,
        signing_key_id=key.kid if key is not None else "",
        signing_key_created_at_ms=key.created_at_ms if key is not None else 0,
        configured=True,
    )


def get(s: Session) -> apb.SsoConfig:
    return to_pb(s, config.row(s))


def _paths(mask: FieldMask) -> list[str]:
    paths = list(dict.fromkeys(mask.paths))
    unknown = [p for p in paths if p not in UPDATE_PATHS]
    if unknown:
        raise InvalidArgument(
            f"unknown update_mask path {shown(unknown[0])} for the SSO configuration: use "
            f"{', '.join(UPDATE_PATHS)}"
        )
    return paths or list(UPDATE_PATHS)


def _default_target(s: Session, row: SsoConfigRow, msg: apb.SsoConfig, paths: list[str]) -> None:
    target = updated_target(
        paths,
        "default_",
        (msg.default_provider, msg.default_route),
        (row.default_provider, row.default_route),
    )
    if target is None:
        return
    provider, route = target
    if provider and route:
        raise InvalidArgument("set default_provider or default_route, not both")
    if provider or route:
        key_catalog.check_target(s, provider, route)
    row.default_provider, row.default_route = provider, route


def set_sso(
    s: Session, req: apb.SetSsoRequest, now: int, master: MasterKey | None
) -> apb.SsoConfig:
    master = signing_keys.require_master(master)
    paths = _paths(req.update_mask)
    existing = config.row(s)
    before = to_pb(s, existing) if existing is not None else None
    row = existing if existing is not None else SsoConfigRow(id=config.ROW_ID)
    msg = req.sso
    if "issuer" in paths:
        row.issuer = validate_issuer(msg.issuer)
    if "client_id" in paths:
        row.client_id = validate_client_id(msg.client_id)
    if req.client_secret or "client_secret" in req.update_mask.paths:
        secret = validate_client_secret(req.client_secret)  # never echoed
        row.client_secret_ciphertext = master.encrypt(config.SECRET_BINDING, secret)
    if "scopes" in paths:
        row.scopes_json = json.dumps(list(validate_scopes(msg.scopes)))
    if "groups_claim" in paths:
        row.groups_claim = validate_groups_claim(msg.groups_claim)
    if "allowed_email_domains" in paths:
        row.allowed_email_domains_json = json.dumps(
            list(validate_email_domains(msg.allowed_email_domains))
        )
    if "access_token_ttl_s" in paths:
        row.access_token_ttl_s = msg.access_token_ttl_s
    if "refresh_idle_ttl_s" in paths:
        row.refresh_idle_ttl_s = msg.refresh_idle_ttl_s
    if "session_max_ttl_s" in paths:
        row.session_max_ttl_s = msg.session_max_ttl_s
    effective_ttls(row.access_token_ttl_s, row.refresh_idle_ttl_s, row.session_max_ttl_s)
    _default_target(s, row, msg, paths)
    missing = [
        name
        for name, value in (
            ("issuer", row.issuer),
            ("client_id", row.client_id),
            ("client_secret", row.client_secret_ciphertext),
        )
        if not value
    ]
    if missing:
        raise InvalidArgument(
            f"sign-in needs {', '.join(missing)}: the first configuration must carry the issuer, "
            "the client id and the client secret your identity provider issued for the gateway"
        )
    row.updated_at_ms = now
    s.add(row)
    s.flush()
    signing_keys.ensure_current(s, master, now)
    after = to_pb(s, row)
    _audit(s, now, "sso.set", before, after)
    return after


def delete(s: Session, now: int) -> None:
    row = config.row(s)
    if row is None:
        raise NotFound("sign-in with Claude Code is not configured")
    before = to_pb(s, row)
    s.delete(row)
    signing_keys.delete_all(s)
    tokens.revoke_all(s, now)
    s.exec(sql_delete(DeviceGrantRow))
    s.flush()
    _audit(s, now, "sso.delete", before, None)


def rotate_signing_key(s: Session, now: int, master: MasterKey | None) -> apb.SsoConfig:
    row = config.row(s)
    if row is None:
        raise FailedPrecondition(
            "sign-in with Claude Code is not configured, so there is no signing key to rotate"
        )
    before = to_pb(s, row)
    signing_keys.rotate(s, master, now)
    after = to_pb(s, row)
    _audit(s, now, "sso.rotate_signing_key", before, after)
    return after


def _audit(
    s: Session, now: int, action: str, before: apb.SsoConfig | None, after: apb.SsoConfig | None
) -> None:
    audit_log.record(
        s, now, action=action, resource_kind="sso", resource="sso", before=before, after=after
    )
