"""Sign-in with Claude Code on the control plane: every step of the ``SignIn`` service.

:class:`SignIn` holds what the steps share: the database (through the app state's
``change``/``mutate``, so audit rows reach ``TailAudit`` and a new developer reaches data planes
before the CLI's next poll), the master key, the identity provider's cached metadata and keys
(:class:`~controlplane.signin.discovery.OidcDirectory`) and a clock (``clock``: milliseconds;
tests replace it to expire grants and tokens without waiting).

OAuth outcomes are *answers* (``OAuthError`` in the response, with the HTTP status the data
plane sends); only real failures are exceptions (mapped to gRPC statuses: no master key, no
signing key, the database or the identity provider unavailable…). The browser steps are in
:mod:`controlplane.signin.browser`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlmodel import Session

from controlplane import audit_log
from controlplane.catalog.common import now_ms
from controlplane.catalog.convert import developer_to_pb
from controlplane.domain.errors import FailedPrecondition
from controlplane.domain.sso import Ttls
from controlplane.secrets import MasterKey
from controlplane.signin import browser, config, grants, signing_keys, tokens
from controlplane.signin.codes import format_user_code
from controlplane.signin.discovery import OidcDirectory
from controlplane.store.db import Database
from controlplane.store.models.config import WorkspaceRow
from controlplane.store.models.signin import DeveloperRow
from gwapi.v1 import signin_pb2 as spb

log = logging.getLogger(__name__)
T = TypeVar("T")

PURGE_INTERVAL_S = 300.0
_AGAIN = "run /login in Claude Code again"


class Store(Protocol):
    """What the engine needs of :class:`controlplane.services.state.AppState`."""

    db: Database

    async def change(self, fn: Callable[[Session, int], T]) -> T: ...

    async def mutate(self, fn: Callable[[Session, int], T]) -> T: ...


def oauth_error(error: str, description: str, status: int = 400) -> spb.OAuthError:
    return spb.OAuthError(error=error, error_description=description, http_status=status)


class SignIn:
    def __init__(
        self,
        store: Store,
        master: MasterKey | None,
        *,
        directory: OidcDirectory | None = None,
        clock: Callable[[], int] = now_ms,
        idp_timeout_s: float = 10.0,
    ) -> None:
        self.store = store
        self.master = master
        self.directory = directory or OidcDirectory(timeout_s=idp_timeout_s)
        self.clock = clock
        self.idp_timeout_s = idp_timeout_s

    async def close(self) -> None:
        await self.directory.close()

    # -- device authorization (RFC 8628) -----------------------------------------------------

    async def start_device(self, req: spb.StartDeviceRequest) -> spb.StartDeviceResponse:
        public_url = grants.validate_public_url(req.public_url)
        now = self.clock()

        def work(s: Session, _now: int) -> spb.StartDeviceResponse:
            if config.row(s) is None:
                return spb.StartDeviceResponse(
                    error=oauth_error("access_denied", config.NOT_CONFIGURED)
                )
            started = grants.start(s, public_url, req.client_ip, now)
            return spb.StartDeviceResponse(
                device_code=started.device_code,
                user_code=format_user_code(started.user_code),
                expires_in=grants.EXPIRES_IN_S,
                interval=grants.INTERVAL_S,
            )

        return await self.store.change(work)

    async def poll_device(self, req: spb.PollDeviceRequest) -> spb.TokenResponse:
        now = self.clock()

        def work(s: Session, _now: int) -> spb.TokenResponse:
            polled = grants.poll(s, req.device_code, now)
            if polled.outcome is grants.Poll.PENDING:
                return _error("authorization_pending", "waiting for you to sign in in the browser")
            if polled.outcome is grants.Poll.SLOW_DOWN:
                return _error("slow_down", "polling too fast: wait 5 more seconds between polls")
            if polled.outcome is grants.Poll.EXPIRED:
                return _error(
                    "expired_token", f"this sign-in code has expired or was already used: {_AGAIN}"
                )
            if polled.outcome is grants.Poll.DENIED:
                return _error("access_denied", polled.denial or "the sign-in was refused")
            row = config.row(s)
            problem = _developer_problem(s, polled.developer_id)
            if row is None or problem:
                return _error("access_denied", problem or config.NOT_CONFIGURED)
            return self._issue(s, polled.developer_id, now, config.ttls_of(row), None)

        return await self.store.change(work)

    # -- refresh -------------------------------------------------------------------------------

    async def refresh(self, req: spb.RefreshRequest) -> spb.TokenResponse:
        now = self.clock()
        reused: list[tokens.Redeemed] = []

        def work(s: Session, _now: int) -> spb.TokenResponse:
            redeemed = tokens.redeem(s, req.refresh_token, now)
            if redeemed.outcome is tokens.Outcome.REUSED:
                reused.append(redeemed)
                _audit_reuse(s, redeemed, now, req.client_ip)
                return _invalid_grant(
                    "this refresh token was already used, so every token of this sign-in has been "
                    f"revoked to protect your account: {_AGAIN}"
                )
            if redeemed.outcome is not tokens.Outcome.ROTATED:
                return _invalid_grant(f"the refresh token is unknown, expired or revoked: {_AGAIN}")
            row = config.row(s)
            problem = _developer_problem(s, redeemed.developer_id)
            if row is None or problem:
                tokens.revoke_family(s, redeemed.family_id, now)
                return _invalid_grant(problem or config.NOT_CONFIGURED)
            return self._issue(s, redeemed.developer_id, now, config.ttls_of(row), redeemed)

        response = await self.store.change(work)
        for r in reused:
            log.warning(
                "refresh token of developer %s presented again (from %s): session %s revoked "
                "(%d token(s))",
                r.developer_id,
                req.client_ip or "?",
                r.family_id,
                r.revoked,
            )
        return response

    def _issue(
        self,
        s: Session,
        developer_id: str,
        now: int,
        ttls: Ttls,
        redeemed: tokens.Redeemed | None,
    ) -> spb.TokenResponse:
        """Access token + the next refresh token (a new family when ``redeemed`` is None)."""
        key_row = signing_keys.current(s)
        if key_row is None:
            raise FailedPrecondition(
                "sign-in has no access-token signing key: run gwctl sso rotate-signing-key"
            )
        key = signing_keys.decrypt(self.master, key_row)
        if redeemed is None:
            issued = tokens.start_family(s, developer_id, now, ttls)
        else:
            issued = tokens.next_token(s, redeemed, now, ttls)
        ttl = issued.access_ttl_s(ttls, now)
        access, _ = tokens.mint_access_token(
            key, key_row.kid, developer_id, issued.family_id, now, ttl
        )
        return spb.TokenResponse(
            access_token=access,
            token_type="Bearer",
            expires_in=ttl,
            refresh_token=issued.refresh_token,
        )

    # -- the browser step ------------------------------------------------------------------------

    async def begin_browser(self, req: spb.BeginBrowserRequest) -> spb.BeginBrowserResponse:
        return await browser.begin(self, req)

    async def complete_browser(
        self, req: spb.CompleteBrowserRequest
    ) -> spb.CompleteBrowserResponse:
        return await browser.complete(self, req)

    # -- housekeeping ----------------------------------------------------------------------------

    def purge(self, s: Session, now: int) -> dict[str, int]:
        """Delete what can no longer matter: grants an hour after they expired, refresh tokens
        that expired, signing keys retired longer than one access-token lifetime ago."""
        row = config.row(s)
        done = {"device grants": grants.purge(s, now), "refresh tokens": tokens.purge(s, now)}
        if row is not None:
            done["signing keys"] = signing_keys.purge(s, now, config.ttls_of(row).access_token_s)
        return done

    async def purge_forever(self, interval_s: float = PURGE_INTERVAL_S) -> None:
        while True:
            try:
                done = await self.store.db.run(functools.partial(self.purge, now=self.clock()))
                if any(done.values()):
                    log.info(
                        "sign-in housekeeping deleted %s",
                        ", ".join(f"{n} {what}" for what, n in done.items() if n),
                    )
            except Exception:
                log.exception("sign-in housekeeping failed; will retry")
            await asyncio.sleep(interval_s)


def _error(error: str, description: str, status: int = 400) -> spb.TokenResponse:
    return spb.TokenResponse(error=oauth_error(error, description, status))


def _invalid_grant(description: str) -> spb.TokenResponse:
    return _error("invalid_grant", description, 401)


def _developer_problem(s: Session, developer_id: str) -> str:
    """Why tokens cannot be issued to this developer ("" when they can)."""
    dev = s.get(DeveloperRow, developer_id)
    if dev is None:
        return f"this developer no longer exists: {_AGAIN}"
    if dev.disabled_at_ms:
        return "your access to this gateway has been disabled: ask your platform team"
    if s.get(WorkspaceRow, dev.workspace) is None:
        return f"your workspace {dev.workspace!r} was removed: {_AGAIN}"
    return ""


def _audit_reuse(s: Session, redeemed: tokens.Redeemed, now: int, client_ip: str) -> None:
    dev = s.get(DeveloperRow, redeemed.developer_id)
    if dev is None:
        return
    shown: Any = developer_to_pb(dev, s.get(WorkspaceRow, dev.workspace))
    audit_log.record(
        s,
        now,
        action="developer.refresh_token_reuse",
        resource_kind="developer",
        resource=dev.id,
        workspace=dev.workspace,
        before=shown,
        after=shown,
        actor=audit_log.Actor(
            id="dataplane",
            name=f"a client presenting a used refresh token of session {redeemed.family_id}",
            role="dataplane",
            peer=client_ip[:64],
        ),
    )
