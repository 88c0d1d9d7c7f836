"""Access-token signing keys (HS256): 32 random bytes each, encrypted under the master key
(bound to ``signing-key:<kid>``), rotatable.

Contract:

* The *current* key is the newest one that is not retired; it signs every new access token.
  :func:`ensure_current` creates one when there is none (first SetSso); :func:`rotate` retires
  the current key and creates a new one.
* A retired key keeps verifying the tokens it signed until they have expired: it stays in
  snapshots for one access-token lifetime plus :data:`RETIRED_MARGIN_MS` (clock skew) after its
  retirement (:func:`live`), then :func:`purge` deletes it.
* Without a master key nothing can be created (FAILED_PRECONDITION saying how to configure
  one); a key that cannot be decrypted is reported by the caller (the snapshot builder leaves
  it out and warns, like a provider secret).
"""

from __future__ import annotations

import base64
import os
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col, select

from controlplane.domain.errors import FailedPrecondition
from controlplane.secrets import HOW_TO_SET, MasterKey
from controlplane.signin.codes import new_kid
from controlplane.store.models.signin import SigningKeyRow

KEY_BYTES = 32
RETIRED_MARGIN_MS = 5 * 60_000


def binding(kid: str) -> str:
    return f"signing-key:{kid}"


def require_master(master: MasterKey | None) -> MasterKey:
    if master is None:
        raise FailedPrecondition(
            "this control plane has no master key, so it cannot keep sign-in secrets (the SSO "
            "client secret and the access-token signing keys): " + HOW_TO_SET
        )
    return master


def current(s: Session) -> SigningKeyRow | None:
    return s.exec(
        select(SigningKeyRow)
        .where(SigningKeyRow.retired_at_ms == 0)
        .order_by(col(SigningKeyRow.created_at_ms).desc(), col(SigningKeyRow.kid))
        .limit(1)
    ).first()


def create(s: Session, master: MasterKey | None, now: int) -> SigningKeyRow:
    master = require_master(master)
    kid = new_kid()
    secret = base64.b64encode(os.urandom(KEY_BYTES)).decode()
    row = SigningKeyRow(
        kid=kid, key_ciphertext=master.encrypt(binding(kid), secret), created_at_ms=now
    )
    s.add(row)
    s.flush()
    return row


def ensure_current(s: Session, master: MasterKey | None, now: int) -> SigningKeyRow:
    found = current(s)
    return found if found is not None else create(s, master, now)


def rotate(s: Session, master: MasterKey | None, now: int) -> SigningKeyRow:
    require_master(master)
    for row in s.exec(select(SigningKeyRow).where(SigningKeyRow.retired_at_ms == 0)).all():
        row.retired_at_ms = now
        s.add(row)
    return create(s, master, now)


def live(s: Session, now: int, access_ttl_s: int) -> list[SigningKeyRow]:
    """The current key and the retired keys that may still have valid tokens, by kid."""
    cutoff = now - access_ttl_s * 1000 - RETIRED_MARGIN_MS
    rows = s.exec(
        select(SigningKeyRow)
        .where(
            (col(SigningKeyRow.retired_at_ms) == 0) | (col(SigningKeyRow.retired_at_ms) > cutoff)
        )
        .order_by(col(SigningKeyRow.kid))
    ).all()
    return list(rows)


def decrypt(master: MasterKey | None, row: SigningKeyRow) -> bytes:
    """The key's 32 bytes; FAILED_PRECONDITION (readable) when it cannot be decrypted."""
    if master is None:
        raise FailedPrecondition(
            f"signing key {row.kid}: this control plane has no master key to decrypt it; start "
            "it with the master key sign-in was configured with"
        )
    try:
        return base64.b64decode(master.decrypt(binding(row.kid), row.key_ciphertext))
    except FailedPrecondition:
        raise FailedPrecondition(
            f"signing key {row.kid} cannot be decrypted with master key {master.key_id} (another "
            "master key, or damaged): start the control plane with the right master key, or run "
            "gwctl sso rotate-signing-key"
        ) from None


def purge(s: Session, now: int, access_ttl_s: int) -> int:
    """Delete retired keys no token signed with can still be valid; returns how many."""
    cutoff = now - access_ttl_s * 1000 - RETIRED_MARGIN_MS
    result: Any = s.exec(
        delete(SigningKeyRow).where(
            col(SigningKeyRow.retired_at_ms) > 0, col(SigningKeyRow.retired_at_ms) <= cutoff
        )
    )
    return int(result.rowcount or 0)


def delete_all(s: Session) -> None:
    s.exec(delete(SigningKeyRow))
