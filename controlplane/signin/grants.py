"""RFC 8628 device grants in ``device_grant`` rows: what each poll answers, and the browser
step's bookkeeping. Every function runs inside the caller's transaction.

Lifecycle (``status``): ``pending`` → (BeginBrowser: the browser step's state, nonce, PKCE
verifier and browser binding are stored; may happen again, the last one wins) → ``completing``
(CompleteBrowser claimed the state; one callback only) → ``approved`` (``developer_id`` set) or
``denied`` (``denial`` says why) → ``consumed`` (the poll that received the tokens). Every
status change is a compare-and-set on the expected status, so two data planes racing on the same
grant cannot both win.

Polls (:func:`poll`):

* unknown, expired or consumed → ``expired_token``;
* faster than the grant's interval (less :data:`POLL_SLACK_MS` for network jitter) →
  ``slow_down``, and the interval grows by 5 s (at most :data:`MAX_INTERVAL_S`);
* pending / completing → ``authorization_pending``;
* denied → ``access_denied`` once; the grant is then deleted (a further poll: ``expired_token``);
* approved → consumed here, atomically; the caller mints the tokens in the same transaction.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from controlplane.domain.errors import InvalidArgument
from controlplane.signin.codes import (
    MAX_SECRET_CHARS,
    digest,
    new_user_code,
    random_secret,
    same_digest,
)
from controlplane.store.models.signin import DeviceGrantRow

EXPIRES_IN_S = 600
INTERVAL_S = 5
SLOW_DOWN_STEP_S = 5
MAX_INTERVAL_S = 60
POLL_SLACK_MS = 500
KEEP_EXPIRED_MS = 3600_000  # expired grants are deleted an hour after they expired
MAX_PUBLIC_URL_CHARS = 2048


def validate_public_url(url: str) -> str:
    """The data plane's public URL without a trailing slash; INVALID_ARGUMENT otherwise (a
    data-plane bug, not a user's mistake)."""
    clean = url.strip().rstrip("/")
    try:
        parts = urlsplit(clean)
    except ValueError:
        parts = urlsplit("")
    if (
        len(clean) > MAX_PUBLIC_URL_CHARS
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
    ):
        raise InvalidArgument(
            f"public_url {clean[:100]!r} is not an http(s) base URL: start the data plane with "
            "--public-url https://gateway.example.com"
        )
    return clean


@dataclass(frozen=True, slots=True)
class Started:
    device_code: str
    user_code: str  # normalised (no dash)

    def __repr__(self) -> str:
        return f"Started(user_code={self.user_code!r})"


def start(s: Session, public_url: str, client_ip: str, now: int) -> Started:
    device_code = random_secret()
    for _ in range(10):  # 20^8 codes: a clash with a live grant is rare; retry it anyway
        user_code = new_user_code()
        clash = s.exec(
            select(DeviceGrantRow.device_code_sha256).where(
                DeviceGrantRow.user_code == user_code, col(DeviceGrantRow.expires_at_ms) > now
            )
        ).first()
        if clash is None:
            break
    s.add(
        DeviceGrantRow(
            device_code_sha256=digest(device_code),
            user_code=user_code,
            status="pending",
            created_at_ms=now,
            expires_at_ms=now + EXPIRES_IN_S * 1000,
            interval_s=INTERVAL_S,
            public_url=public_url[:MAX_PUBLIC_URL_CHARS],
            client_ip=client_ip[:64],
        )
    )
    s.flush()
    return Started(device_code, user_code)


class Poll(enum.Enum):
    PENDING = "authorization_pending"
    SLOW_DOWN = "slow_down"
    DENIED = "access_denied"
    EXPIRED = "expired_token"
    APPROVED = "approved"


@dataclass(frozen=True, slots=True)
class Polled:
    outcome: Poll
    developer_id: str = ""
    denial: str = ""


def _set_status(s: Session, key: str, expected: str, **values: Any) -> bool:
    result: Any = s.exec(
        update(DeviceGrantRow)
        .where(
            col(DeviceGrantRow.device_code_sha256) == key, col(DeviceGrantRow.status) == expected
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)


def poll(s: Session, device_code: str, now: int) -> Polled:
    if not device_code or len(device_code) > MAX_SECRET_CHARS:
        return Polled(Poll.EXPIRED)
    key = digest(device_code)
    row = s.get(DeviceGrantRow, key)
    if row is None or now >= row.expires_at_ms or row.status == "consumed":
        return Polled(Poll.EXPIRED)
    if row.status == "denied":
        s.exec(delete(DeviceGrantRow).where(col(DeviceGrantRow.device_code_sha256) == key))
        return Polled(Poll.DENIED, denial=row.denial)
    if row.status == "approved":
        if not _set_status(s, key, "approved", status="consumed", last_poll_ms=now):
            return Polled(Poll.EXPIRED)  # a concurrent poll received the tokens
        return Polled(Poll.APPROVED, developer_id=row.developer_id)
    too_fast = (
        row.last_poll_ms > 0 and now - row.last_poll_ms < row.interval_s * 1000 - POLL_SLACK_MS
    )
    row.last_poll_ms = now
    if too_fast:
        row.interval_s = min(row.interval_s + SLOW_DOWN_STEP_S, MAX_INTERVAL_S)
    s.add(row)
    return Polled(Poll.SLOW_DOWN if too_fast else Poll.PENDING)


def find_by_user_code(s: Session, user_code: str, now: int) -> DeviceGrantRow | None:
    """The grant a person's code names: the live one if any, else the newest (to say
    "expired"/"already used" rather than "unknown")."""
    rows = s.exec(
        select(DeviceGrantRow)
        .where(DeviceGrantRow.user_code == user_code)
        .order_by(col(DeviceGrantRow.created_at_ms).desc())
    ).all()
    live = [r for r in rows if now < r.expires_at_ms]
    found = live or list(rows)
    return found[0] if found else None


@dataclass(frozen=True, slots=True)
class BrowserStep:
    """What BeginBrowser stores; ``state`` and ``browser_secret`` leave the control plane (to
    the IdP and the browser's cookie), only their digests are kept."""

    state: str
    nonce: str
    code_verifier: str
    browser_secret: str

    def __repr__(self) -> str:
        return "BrowserStep(…)"


def new_browser_step() -> BrowserStep:
    return BrowserStep(random_secret(), random_secret(), random_secret(), random_secret())


def store_browser_step(
    s: Session,
    row_key: str,
    step: BrowserStep,
    verifier_ciphertext: str,
    public_url: str,
    now: int,
) -> bool:
    """Record the browser step on a still-pending grant (``public_url``: where the browser is,
    so the redirect URI of the code exchange is the one the IdP saw); False when it is no
    longer pending."""
    return _set_status(
        s,
        row_key,
        "pending",
        public_url=public_url[:MAX_PUBLIC_URL_CHARS],
        state_sha256=digest(step.state),
        nonce=step.nonce,
        pkce_verifier_ciphertext=verifier_ciphertext,
        browser_secret_sha256=digest(step.browser_secret),
        browser_started_at_ms=now,
    )


def find_by_state(s: Session, state: str) -> DeviceGrantRow | None:
    if not state or len(state) > MAX_SECRET_CHARS:
        return None
    return s.exec(
        select(DeviceGrantRow).where(DeviceGrantRow.state_sha256 == digest(state))
    ).first()


def browser_matches(row: DeviceGrantRow, browser_secret: str) -> bool:
    return bool(browser_secret) and same_digest(browser_secret, row.browser_secret_sha256)


def claim(s: Session, row: DeviceGrantRow) -> bool:
    """pending → completing (one callback wins)."""
    return _set_status(s, row.device_code_sha256, "pending", status="completing")


def approve(s: Session, key: str, developer_id: str) -> bool:
    return _set_status(
        s,
        key,
        "completing",
        status="approved",
        developer_id=developer_id,
        pkce_verifier_ciphertext="",
    )


def deny(
    s: Session, key: str, denial: str, expected: tuple[str, ...] = ("pending", "completing")
) -> bool:
    for status in expected:
        if _set_status(s, key, status, status="denied", denial=denial, pkce_verifier_ciphertext=""):
            return True
    return False


def purge(s: Session, now: int) -> int:
    result: Any = s.exec(
        delete(DeviceGrantRow).where(col(DeviceGrantRow.expires_at_ms) < now - KEEP_EXPIRED_MS)
    )
    return int(result.rowcount or 0)
