"""Access tokens and refresh tokens of signed-in developers.

Access token: a JWT signed with HS256 (PyJWT) under the current signing key, header ``kid``,
claims ``iss="tollgate"``, ``aud="tollgate"``, ``sub`` = developer id, ``sid`` = refresh-token
family (the sign-in session), ``iat``, ``exp`` (seconds). Its lifetime is the configured
access-token TTL, cut so it never outlives its session.

Refresh tokens: 32 random bytes base64url; only the SHA-256 is stored. A sign-in starts a
*family* (``fam_…``) that ends at ``family_expires_at_ms`` (the absolute session lifetime); each
token also expires when unused for the idle TTL. :func:`redeem` is single use and atomic
(compare-and-set on ``used_at_ms``). A token presented again more than ``REUSE_GRACE_MS`` after
its first use is *reuse* (a stolen copy, or a replay): the whole family is revoked and the caller
answers ``invalid_grant``; the caller logs and audits it. Within the grace period a second
redemption gets the next token of the same family too: two Claude Code processes of one laptop
share one credentials file and may refresh together (the reuse interval of OAuth 2.0 Security
BCP §4.14.2 and of common IdPs; the price is that a thief using a copy within those seconds of
the real use is not caught by that use).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from controlplane.domain.sso import Ttls
from controlplane.signin.codes import MAX_SECRET_CHARS, digest, new_family_id, random_secret
from controlplane.store.models.signin import RefreshTokenRow

ISSUER = "tollgate"
AUDIENCE = "tollgate"
ALGORITHM = "HS256"
IN_CHUNK = 500
REUSE_GRACE_MS = 30_000


def mint_access_token(
    key: bytes, kid: str, developer_id: str, family_id: str, now_ms: int, ttl_s: int
) -> tuple[str, int]:
    """``(token, expires_in seconds)``."""
    iat = now_ms // 1000
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": developer_id,
        "sid": family_id,
        "iat": iat,
        "exp": iat + ttl_s,
    }
    token = jwt.encode(payload, key, algorithm=ALGORITHM, headers={"kid": kid})
    return token, ttl_s


@dataclass(frozen=True, slots=True)
class Issued:
    refresh_token: str  # the secret: returned once, never stored
    family_id: str
    family_expires_at_ms: int

    def __repr__(self) -> str:
        return f"Issued(family_id={self.family_id!r})"

    def access_ttl_s(self, ttls: Ttls, now_ms: int) -> int:
        """The access-token lifetime: the TTL, but never beyond the session's end."""
        left = (self.family_expires_at_ms - now_ms) // 1000
        return max(1, min(ttls.access_token_s, left))


def _issue(
    s: Session, developer_id: str, family_id: str, family_end: int, now: int, ttls: Ttls
) -> Issued:
    secret = random_secret()
    s.add(
        RefreshTokenRow(
            token_sha256=digest(secret),
            family_id=family_id,
            developer_id=developer_id,
            created_at_ms=now,
            expires_at_ms=min(now + ttls.refresh_idle_s * 1000, family_end),
            family_expires_at_ms=family_end,
        )
    )
    s.flush()
    return Issued(secret, family_id, family_end)


def start_family(s: Session, developer_id: str, now: int, ttls: Ttls) -> Issued:
    """A new session's first refresh token."""
    return _issue(s, developer_id, new_family_id(), now + ttls.session_max_s * 1000, now, ttls)


class Outcome(enum.Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    REUSED = "reused"


@dataclass(frozen=True, slots=True)
class Redeemed:
    outcome: Outcome
    developer_id: str = ""
    family_id: str = ""
    family_expires_at_ms: int = 0
    revoked: int = 0  # REUSED: how many tokens of the family were revoked


def redeem(s: Session, token: str, now: int) -> Redeemed:
    """Use ``token`` once. ``ROTATED`` means the caller must issue the next token of the family
    (:func:`next_token`) in the same transaction; any other outcome is a refusal."""
    if not token or len(token) > MAX_SECRET_CHARS:
        return Redeemed(Outcome.UNKNOWN)
    key = digest(token)
    row = s.get(RefreshTokenRow, key)
    if row is None:
        return Redeemed(Outcome.UNKNOWN)
    found = Redeemed(Outcome.UNKNOWN, row.developer_id, row.family_id, row.family_expires_at_ms)
    if row.revoked_at_ms:
        return _with(found, Outcome.REVOKED)
    if row.used_at_ms:
        if now - row.used_at_ms <= REUSE_GRACE_MS and now < row.family_expires_at_ms:
            return _with(found, Outcome.ROTATED)  # the same laptop refreshing twice at once
        return _with(found, Outcome.REUSED, revoke_family(s, row.family_id, now))
    if now >= row.expires_at_ms or now >= row.family_expires_at_ms:
        return _with(found, Outcome.EXPIRED)
    claimed: Any = s.exec(
        update(RefreshTokenRow)
        .where(
            col(RefreshTokenRow.token_sha256) == key,
            col(RefreshTokenRow.used_at_ms) == 0,
            col(RefreshTokenRow.revoked_at_ms) == 0,
        )
        .values(used_at_ms=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # a concurrent redemption won just now: within the grace period
        s.refresh(row)
        if row.revoked_at_ms:
            return _with(found, Outcome.REVOKED)
    return _with(found, Outcome.ROTATED)


def _with(found: Redeemed, outcome: Outcome, revoked: int = 0) -> Redeemed:
    return Redeemed(
        outcome, found.developer_id, found.family_id, found.family_expires_at_ms, revoked
    )


def next_token(s: Session, redeemed: Redeemed, now: int, ttls: Ttls) -> Issued:
    return _issue(
        s, redeemed.developer_id, redeemed.family_id, redeemed.family_expires_at_ms, now, ttls
    )


def revoke_family(s: Session, family_id: str, now: int) -> int:
    result: Any = s.exec(
        update(RefreshTokenRow)
        .where(col(RefreshTokenRow.family_id) == family_id, col(RefreshTokenRow.revoked_at_ms) == 0)
        .values(revoked_at_ms=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def revoke_developer(s: Session, developer_id: str, now: int) -> int:
    """Revoke every refresh token of a developer; returns how many were still unrevoked."""
    result: Any = s.exec(
        update(RefreshTokenRow)
        .where(
            col(RefreshTokenRow.developer_id) == developer_id,
            col(RefreshTokenRow.revoked_at_ms) == 0,
        )
        .values(revoked_at_ms=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def revoke_all(s: Session, now: int) -> int:
    result: Any = s.exec(
        update(RefreshTokenRow)
        .where(col(RefreshTokenRow.revoked_at_ms) == 0)
        .values(revoked_at_ms=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def active_sessions(s: Session, developer_ids: Iterable[str], now: int) -> dict[str, int]:
    """Usable refresh-token families per developer (an unused, unrevoked, unexpired token)."""
    ids = sorted(set(developer_ids))
    counts: Counter[str] = Counter()
    for start in range(0, len(ids), IN_CHUNK):
        rows = s.exec(
            select(RefreshTokenRow.developer_id, RefreshTokenRow.family_id).where(
                col(RefreshTokenRow.developer_id).in_(ids[start : start + IN_CHUNK]),
                col(RefreshTokenRow.used_at_ms) == 0,
                col(RefreshTokenRow.revoked_at_ms) == 0,
                col(RefreshTokenRow.expires_at_ms) > now,
                col(RefreshTokenRow.family_expires_at_ms) > now,
            )
        ).all()
        for developer_id, _family in set(rows):
            counts[developer_id] += 1
    return dict(counts)


def purge(s: Session, now: int) -> int:
    """Delete refresh tokens that can no longer matter: idle-expired tokens (presenting one
    again is refused as unknown, the same answer) and whole families past their end."""
    result: Any = s.exec(
        delete(RefreshTokenRow).where(
            (col(RefreshTokenRow.expires_at_ms) < now)
            | (col(RefreshTokenRow.family_expires_at_ms) < now)
        )
    )
    return int(result.rowcount or 0)
