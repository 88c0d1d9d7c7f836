"""Master-key rotation for sign-in's secrets: the SSO client secret and the access-token signing
keys, re-encrypted from a previous master key to the current one at control-plane start (next
to the providers' secrets, :func:`controlplane.catalog.providers.reencrypt_secrets`).

Same rules as for provider secrets: only envelopes under a previous key are touched; each row is
rewritten only if it still holds the envelope that was read (compare-and-set), so a secret
another replica changed meanwhile is never overwritten; damaged ones are left as they are; a
second run finds nothing to do. One ``sso.reencrypt_secrets`` audit row (never a secret) when
anything was rewritten. In-flight PKCE verifiers (at most ten minutes old) are left alone: the
previous key still decrypts them while it is configured.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from controlplane import audit_log
from controlplane.catalog import sso as sso_catalog
from controlplane.domain.errors import FailedPrecondition
from controlplane.secrets import MasterKey
from controlplane.signin import config, signing_keys
from controlplane.store.models.signin import SigningKeyRow, SsoConfigRow


def _rewrite(
    s: Session, table: Any, key_col: Any, key: Any, column: str, old: str, new: str
) -> bool:
    result: Any = s.exec(
        update(table)
        .where(key_col == key, col(getattr(table, column)) == old)
        .values({column: new})
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)


def reencrypt(s: Session, master: MasterKey, now: int) -> int:
    """How many sign-in secrets were moved to the current master key."""
    if not master.previous_ids:
        return 0
    done = 0
    sso = config.row(s)
    if sso is not None and master.is_previous(sso.client_secret_ciphertext):
        old = sso.client_secret_ciphertext
        try:
            new = master.reencrypt(config.SECRET_BINDING, old)
        except FailedPrecondition:
            new = ""
        if new and _rewrite(
            s, SsoConfigRow, col(SsoConfigRow.id), sso.id, "client_secret_ciphertext", old, new
        ):
            done += 1
    for row in s.exec(select(SigningKeyRow).order_by(col(SigningKeyRow.kid))).all():
        old = row.key_ciphertext
        if not master.is_previous(old):
            continue
        try:
            new = master.reencrypt(signing_keys.binding(row.kid), old)
        except FailedPrecondition:
            continue
        if _rewrite(s, SigningKeyRow, col(SigningKeyRow.kid), row.kid, "key_ciphertext", old, new):
            done += 1
    if done:
        shown = sso_catalog.get(s)
        audit_log.record(
            s,
            now,
            action="sso.reencrypt_secrets",
            resource_kind="sso",
            resource="sso",
            before=shown,
            after=shown,
        )
    return done
