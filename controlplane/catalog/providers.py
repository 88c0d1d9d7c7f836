"""Providers: an upstream API (kind + root URL) and the env var holding its credential.

Updates take a FieldMask over ``base_url``, ``api_key_env`` and ``options`` (the whole map,
replaced) or ``options.<name>`` (that one option: set from the message, or removed when the
message does not carry it), so a client can change one option without reading the others first.
Every rule is checked on the provider as it would be after the update.

A provider may also hold a secret stored encrypted under the master key (``create`` with
``api_key``, :func:`rotate_secret`, ``update`` with ``api_key``); it is never returned, only
``has_secret`` and ``secret_rotated_at_ms``. The secret is bound to where it is sent: an
``update`` that changes the base URL of a provider with a stored secret is refused unless it
brings the secret again or says ``keep_secret`` (an edit must not send the key to another host). Data planes receive it decrypted in the snapshot (see
:mod:`controlplane.secrets`). :func:`reencrypt_secrets` moves stored secrets from a previous
master key to the current one (master-key rotation, run once at control-plane start).
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from controlplane.catalog import allowlists, keys, members
from controlplane.catalog.common import (
    audit_change,
    describe,
    get_named,
    reencrypt_column,
    resolve_mask,
)
from controlplane.catalog.convert import provider_from_pb, provider_to_pb, targets_from_json
from controlplane.domain import providers as rules
from controlplane.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    shown,
)
from controlplane.domain.names import validate_slug
from controlplane.secrets import MasterKey, require, validate_secret
from controlplane.store.models.config import ProviderRow, RouteRow
from controlplane.store.models.signin import SsoConfigRow
from gwapi.v1 import common_pb2 as pb

UPDATE_PATHS = ("base_url", "api_key_env", "options")


def get_row(s: Session, name: str) -> ProviderRow:
    return get_named(s, ProviderRow, "provider", name)


def create(
    s: Session, msg: pb.Provider, now: int, api_key: str = "", master: MasterKey | None = None
) -> pb.Provider:
    """Create a provider; a non-empty ``api_key`` is stored encrypted under ``master``."""
    name = validate_slug(msg.name, "provider name")
    kind, given = provider_from_pb(msg)
    kind = rules.validate_kind(kind)
    settings = rules.validate_provider(kind, msg.base_url, msg.api_key_env, given)
    ciphertext = ""
    if api_key:
        secret = validate_secret(kind, name, api_key, settings.options)
        ciphertext = require(master).encrypt(name, secret)
    row = ProviderRow(
        name=name,
        kind=kind,
        base_url=settings.base_url,
        api_key_env=settings.api_key_env,
        options_json=json.dumps(settings.options, sort_keys=True),
        created_at_ms=now,
        updated_at_ms=now,
        secret_ciphertext=ciphertext,
        secret_rotated_at_ms=now if ciphertext else 0,
    )
    if s.get(ProviderRow, name) is not None:
        raise AlreadyExists(f"provider {name!r} already exists")
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        raise AlreadyExists(f"provider {name!r} already exists") from None
    created = provider_to_pb(row)
    _audit(s, now, "provider.create", None, created)  # has_secret only, never the api_key
    return created


def get(s: Session, name: str) -> pb.Provider:
    return provider_to_pb(get_row(s, name))


def list_all(s: Session) -> list[pb.Provider]:
    rows = s.exec(select(ProviderRow).order_by(col(ProviderRow.name))).all()
    return [provider_to_pb(r) for r in rows]


def update(
    s: Session,
    msg: pb.Provider,
    mask: FieldMask,
    now: int,
    *,
    api_key: str = "",
    keep_secret: bool = False,
    master: MasterKey | None = None,
) -> pb.Provider:
    """Apply the masked settings; a non-empty ``api_key`` is stored (encrypted under ``master``)
    in the same change. :class:`FailedPrecondition` when the base URL of a provider with a stored
    secret changes without ``api_key`` or ``keep_secret``."""
    row = get_row(s, msg.name)
    before = provider_to_pb(row)
    _, given = provider_from_pb(msg)
    member = msg.WhichOneof("settings")
    if "kind" in mask.paths or "provider_kind" in mask.paths or member not in (None, row.kind):
        raise InvalidArgument("a provider's kind cannot change; create a new provider instead")
    option_paths = [p for p in dict.fromkeys(mask.paths) if p.startswith("options.")]
    other = [p for p in mask.paths if not p.startswith("options.")]
    paths = (
        resolve_mask(FieldMask(paths=other), msg, UPDATE_PATHS, "a provider")
        if other or not option_paths
        else []
    )
    current: dict[str, str] = json.loads(row.options_json or "{}")
    options = dict(given) if "options" in paths else dict(current)
    if "options" not in paths:
        for path in option_paths:
            key = path.removeprefix("options.")
            if key in given:
                options[key] = given[key]
            elif key in current or key in rules.known_options(row.kind):
                options.pop(key, None)
            else:
                raise InvalidArgument(
                    f"unknown update_mask path {shown(path)}: {row.kind} providers have the options "
                    f"{', '.join(rules.known_options(row.kind))}"
                )
    settings = rules.validate_provider(
        row.kind,
        msg.base_url if "base_url" in paths else row.base_url,
        msg.api_key_env if "api_key_env" in paths else row.api_key_env,
        options,
    )
    if row.secret_ciphertext and settings.options.get("auth") == "passthrough":
        raise InvalidArgument(
            f"provider {row.name!r} has a stored API key; auth=passthrough sends each client's "
            f"own login instead: remove the key first (gwctl providers rotate {row.name} "
            "--remove-secret --yes)"
        )
    if api_key:
        _store_secret(row, api_key, settings.options, master, now)
    elif row.secret_ciphertext and settings.base_url != row.base_url and not keep_secret:
        raise FailedPrecondition(
            f"provider {row.name!r} has a stored key; changing its base URL "
            f"({_url_text(row.base_url)} → {_url_text(settings.base_url)}) would send that key "
            "to the new host: re-enter the key with --api-key-stdin, or pass --keep-secret to "
            "send the stored key there"
        )
    row.base_url = settings.base_url
    row.api_key_env = settings.api_key_env
    row.options_json = json.dumps(settings.options, sort_keys=True)
    return _saved(s, row, before, "provider.update", now)


def _store_secret(
    row: ProviderRow, api_key: str, options: dict[str, str], master: MasterKey | None, now: int
) -> None:
    """Validate ``api_key`` for the provider and store it encrypted under ``master``."""
    secret = validate_secret(row.kind, row.name, api_key, options)
    row.secret_ciphertext = require(master).encrypt(row.name, secret)
    row.secret_rotated_at_ms = now


def _saved(s: Session, row: ProviderRow, before: pb.Provider, action: str, now: int) -> pb.Provider:
    """Write a changed ``row`` and audit ``action``; returns the provider as it is now."""
    row.updated_at_ms = now
    s.add(row)
    s.flush()
    after = provider_to_pb(row)
    _audit(s, now, action, before, after)
    return after


def _url_text(url: str) -> str:
    return shown(url) if url else "the default for its region"


def rotate_secret(
    s: Session, name: str, api_key: str, now: int, master: MasterKey | None
) -> pb.Provider:
    """Store a new secret for ``name`` ("" removes the stored one); returns the provider. The
    audit row shows ``has_secret``/``secret_rotated_at_ms`` before and after, never the key."""
    row = get_row(s, name)
    before = provider_to_pb(row)
    if api_key:
        _store_secret(row, api_key, json.loads(row.options_json or "{}"), master, now)
    elif not row.secret_ciphertext:
        raise FailedPrecondition(f"provider {name!r} has no stored secret to remove")
    else:
        row.secret_ciphertext = ""
        row.secret_rotated_at_ms = 0
    return _saved(s, row, before, "provider.rotate_secret", now)


def reencrypt_secrets(s: Session, master: MasterKey, now: int) -> list[str]:
    """Re-encrypt under ``master``'s current key every stored secret that is under one of its
    previous keys; returns the names of the providers whose secret was rewritten.

    One audit row per provider (``provider.reencrypt_secret``; has_secret and
    ``secret_rotated_at_ms`` stay as they are, since the upstream credential did not change).
    Secrets under an unknown key, or damaged, are left alone (the snapshot leaves them out and
    says why).
    Each row is rewritten only if it still holds the envelope that was read, so a secret another
    replica rotated meanwhile is never overwritten with the old one. Running it again finds
    nothing to do.
    """
    return reencrypt_column(
        s,
        master,
        now,
        ProviderRow.secret_ciphertext,
        bound=lambda name: name,
        shown=provider_to_pb,
        action="provider.reencrypt_secret",
        kind="provider",
    )


def routes_using(s: Session, provider: str) -> list[str]:
    rows = s.exec(select(RouteRow).order_by(col(RouteRow.name))).all()
    return [
        r.name
        for r in rows
        if any(t.provider == provider for t in targets_from_json(r.targets_json))
    ]


def sso_default_target(s: Session) -> tuple[str, str] | None:
    """``("provider", name)`` or ``("route", name)``: sign-in's default target, if any."""
    row = s.get(SsoConfigRow, 1)
    if row is None:
        return None
    if row.default_provider:
        return ("provider", row.default_provider)
    return ("route", row.default_route) if row.default_route else None


def users_of(s: Session, kind: str, name: str) -> list[str]:
    """What still uses the provider or route (``kind``) ``name``: active keys targeting it, the
    routes listing a provider, workspaces allowing it or sending their members to it, and
    sign-in's default target."""
    by = {kind: name}
    users = [f"key {k}" for k in keys.active_users(s, **by)]
    if kind == "provider":
        users += [f"route {r!r}" for r in routes_using(s, name)]
    users += [f"workspace {w!r} (allowed_{kind}s)" for w in allowlists.workspaces_allowing(s, **by)]
    users += [f"workspace {w!r} (member_{kind})" for w in members.workspaces_targeting(s, **by)]
    if sso_default_target(s) == (kind, name):
        users.append(f"sign-in (the SSO default_{kind})")
    return users


def delete_unused(s: Session, now: int, kind: str, row: Any, shown: Any, advice: str) -> None:
    """Delete the provider or route ``row`` unless something uses it (:func:`users_of`):
    then :class:`FailedPrecondition` naming the users, and ``advice``."""
    users = users_of(s, kind, row.name)
    if users:
        raise FailedPrecondition(
            f"{kind} {row.name!r} is still used by {describe(users)}; {advice}"
        )
    before = shown(row)
    s.delete(row)
    s.flush()
    audit_change(s, now, f"{kind}.delete", kind, before, None)


def delete_provider(s: Session, name: str, now: int) -> None:
    """Refused while active keys target it directly, any route lists it, or any workspace's
    ``allowed_providers`` names it."""
    delete_unused(
        s,
        now,
        "provider",
        get_row(s, name),
        provider_to_pb,
        "point them elsewhere or delete them, and take the provider out of those workspaces' "
        "allowed_providers, first",
    )


def _audit(
    s: Session, now: int, action: str, before: pb.Provider | None, after: pb.Provider | None
) -> None:
    audit_change(s, now, action, "provider", before, after)
