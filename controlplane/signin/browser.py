"""The browser step of a device sign-in: send the browser to the identity provider
(:func:`begin`), and turn its answer into an approved or denied device grant (:func:`complete`).

Contract of :func:`begin`: the user code (as typed) must name a pending, unexpired grant;
otherwise ``error`` says so (``invalid_code`` / ``expired_code`` / ``not_configured``) and the
data plane shows its form again. On success the grant stores the SHA-256 of a fresh ``state``
and of a browser-binding secret, the ``nonce`` and the PKCE verifier (encrypted under the master
key, bound to the grant); the response carries the authorization URL and the binding secret
(the data plane sets it as a cookie). Beginning again (a reload) replaces the previous attempt.

Contract of :func:`complete`: the callback's ``state`` names the grant; the cookie's secret must
be the one of the browser that began (else the grant is denied: ``other_browser``); the IdP's
``error`` denies the grant (``idp_error``); otherwise the grant is claimed (one callback only),
the code is exchanged, the ID token validated, the identity admitted and mapped to a workspace
(:mod:`controlplane.signin.admission`), the developer created or updated and the grant approved,
with a ``developer.sign_in`` audit row. Every refusal denies the grant with the same readable
message the result page shows (Claude Code receives it with ``access_denied``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from controlplane.catalog import developers
from controlplane.domain.errors import Unavailable
from controlplane.signin import admission, config, grants, oidc, refusals, signing_keys
from controlplane.signin.codes import normalise_user_code
from controlplane.signin.discovery import OidcUnavailable
from controlplane.signin.refusals import SignInRefused
from controlplane.store.models.config import WorkspaceRow
from gwapi.v1 import signin_pb2 as spb

if TYPE_CHECKING:
    from controlplane.signin.engine import SignIn

log = logging.getLogger(__name__)

CALLBACK_PATH = "/oauth/callback"


def _verifier_binding(grant_key: str) -> str:
    return f"pkce:{grant_key}"


def _page_error(error: str, message: str) -> spb.BeginBrowserResponse:
    return spb.BeginBrowserResponse(
        error=spb.OAuthError(error=error, error_description=message, http_status=400)
    )


async def begin(engine: SignIn, req: spb.BeginBrowserRequest) -> spb.BeginBrowserResponse:
    public_url = grants.validate_public_url(req.public_url)
    code = normalise_user_code(req.user_code)
    if code is None:
        return _page_error(
            "invalid_code",
            "That is not a sign-in code: type the 8 letters Claude Code shows (like WDJB-MJHT).",
        )
    now = engine.clock()
    settings = await engine.store.db.read(lambda s: config.load(s, engine.master))
    if settings is None:
        return _page_error("not_configured", config.NOT_CONFIGURED)
    grant = await engine.store.db.read(lambda s: grants.find_by_user_code(s, code, now))
    if grant is None:
        return _page_error(
            "invalid_code",
            "No sign-in is waiting for this code. Check it against the code Claude Code shows, "
            "or run /login again.",
        )
    if now >= grant.expires_at_ms:
        return _page_error(
            "expired_code", "This code has expired. Run /login in Claude Code again for a new one."
        )
    if grant.status != "pending":
        return _page_error(
            "invalid_code",
            "This code was already used. Run /login in Claude Code again for a new one.",
        )
    try:
        metadata = await engine.directory.metadata(settings.issuer)
        oidc.auth_method(metadata)  # refuse now rather than after the person signed in
    except OidcUnavailable as exc:
        log.warning("sign-in: identity provider unusable: %s", exc)
        raise Unavailable(f"the identity provider cannot be used right now: {exc}") from None
    step = grants.new_browser_step()
    master = signing_keys.require_master(engine.master)
    ciphertext = master.encrypt(_verifier_binding(grant.device_code_sha256), step.code_verifier)
    url = oidc.authorization_url(
        metadata,
        client_id=settings.client_id,
        redirect_uri=public_url + CALLBACK_PATH,
        extra_scopes=settings.scopes,
        state=step.state,
        nonce=step.nonce,
        code_verifier=step.code_verifier,
    )
    key = grant.device_code_sha256
    stored = await engine.store.change(
        lambda s, _now: grants.store_browser_step(s, key, step, ciphertext, public_url, now)
    )
    if not stored:
        return _page_error(
            "invalid_code",
            "This code was already used. Run /login in Claude Code again for a new one.",
        )
    return spb.BeginBrowserResponse(
        authorization_url=url,
        browser_secret=step.browser_secret,
        max_age_s=max(1, (grant.expires_at_ms - now) // 1000),
    )


@dataclass(frozen=True)
class _Claim:
    key: str
    nonce: str
    verifier_ciphertext: str
    public_url: str


def _refuse(s: Session, key: str, refusal: SignInRefused, *expected: str) -> SignInRefused:
    grants.deny(s, key, refusal.message, expected or ("pending", "completing"))
    return refusal


def _claim(s: Session, req: spb.CompleteBrowserRequest, now: int) -> _Claim | SignInRefused:
    """Returns (rather than raises) refusals, so that a denial is committed."""
    row = grants.find_by_state(s, req.state)
    if row is None or row.status == "denied":
        return refusals.expired()
    if row.status != "pending":
        return refusals.already_complete()
    if now >= row.expires_at_ms:
        return refusals.expired()
    key = row.device_code_sha256
    if not grants.browser_matches(row, req.browser_secret):
        return _refuse(s, key, refusals.other_browser(), "pending")
    if req.error:
        return _refuse(s, key, refusals.idp_refused(req.error, req.error_description), "pending")
    if not req.code:
        refusal = refusals.idp_refused("invalid_request", "no authorization code in the answer")
        return _refuse(s, key, refusal, "pending")
    if not grants.claim(s, row):
        return refusals.already_complete()
    return _Claim(key, row.nonce, row.pkce_verifier_ciphertext, row.public_url)


class _Abort(Exception):
    """Raised inside a transaction to roll it back and answer ``refusal``."""

    def __init__(self, refusal: SignInRefused) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclass(frozen=True)
class _Verified:
    identity: admission.Identity
    groups_claim: str


def _groups(text: str) -> tuple[str, ...]:
    value = json.loads(text or "[]")
    return tuple(g for g in value if isinstance(g, str)) if isinstance(value, list) else ()


def _finish(
    s: Session, key: str, verified: _Verified, now: int, peer: str
) -> spb.CompleteBrowserResponse | SignInRefused:
    identity = verified.identity
    spaces = [
        admission.WorkspaceGroups(w.name, _groups(w.sso_groups_json), w.sso_priority)
        for w in s.exec(select(WorkspaceRow)).all()
    ]
    workspace = admission.choose_workspace(identity.groups, spaces)
    if workspace is None:
        refusal = refusals.no_workspace(identity.email, identity.groups, verified.groups_claim)
        return _refuse(s, key, refusal, "completing")
    existing = developers.by_identity(s, identity.issuer, identity.subject)
    if existing is not None and existing.disabled_at_ms:
        return _refuse(s, key, refusals.disabled(identity.email), "completing")
    dev = developers.record_sign_in(s, identity, workspace, now, peer[:64])
    if not grants.approve(s, key, dev.id):
        raise _Abort(refusals.expired())  # the grant vanished meanwhile (sign-in turned off)
    return spb.CompleteBrowserResponse(
        ok=True, developer_email=dev.email, developer_name=dev.name, workspace=dev.workspace
    )


async def _verified_identity(
    engine: SignIn, claim: _Claim, req: spb.CompleteBrowserRequest
) -> _Verified:
    settings = await engine.store.db.read(lambda s: config.load(s, engine.master))
    if settings is None:
        raise refusals.internal("sign-in was turned off meanwhile")
    metadata = await engine.directory.metadata(settings.issuer)
    if (req.iss and req.iss != settings.issuer) or (
        metadata.iss_parameter_supported and not req.iss
    ):
        raise refusals.wrong_issuer()
    master = signing_keys.require_master(engine.master)
    verifier = master.decrypt(_verifier_binding(claim.key), claim.verifier_ciphertext)
    id_token = await oidc.exchange_code(
        metadata,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        redirect_uri=claim.public_url + CALLBACK_PATH,
        code=req.code,
        code_verifier=verifier,
        timeout_s=engine.idp_timeout_s,
    )
    claims = await oidc.validate_id_token(
        engine.directory, metadata, id_token, client_id=settings.client_id, nonce=claim.nonce
    )
    identity = admission.identity_of(claims, settings.issuer, settings.groups_claim)
    admission.admit(identity, claims, settings.allowed_email_domains)
    if not identity.groups and settings.groups_claim not in claims:
        log.info(
            "sign-in: the ID token of %s carries no %r claim", identity.email, settings.groups_claim
        )
    return _Verified(identity, settings.groups_claim)


def _response(refusal: SignInRefused) -> spb.CompleteBrowserResponse:
    return spb.CompleteBrowserResponse(
        ok=False, reason=refusal.reason, title=refusal.title, message=refusal.message
    )


async def complete(engine: SignIn, req: spb.CompleteBrowserRequest) -> spb.CompleteBrowserResponse:
    now = engine.clock()
    claimed = await engine.store.change(lambda s, _now: _claim(s, req, now))
    if isinstance(claimed, SignInRefused):
        return _response(claimed)
    try:
        verified = await _verified_identity(engine, claimed, req)
        try:
            outcome = await _finish_once(engine, claimed.key, verified, req.client_ip)
        except IntegrityError:  # a concurrent first sign-in of the same identity: it exists now
            outcome = await _finish_once(engine, claimed.key, verified, req.client_ip)
    except _Abort as abort:
        return _response(abort.refusal)
    except SignInRefused as refused:
        await _deny(engine, claimed.key, refused)
        return _response(refused)
    except OidcUnavailable as exc:
        log.warning("sign-in: identity provider unusable: %s", exc)
        unusable = refusals.internal(str(exc))
        await _deny(engine, claimed.key, unusable)
        return _response(unusable)
    except Exception:
        log.exception("sign-in: completing a browser sign-in failed")
        failed = refusals.internal("an unexpected error (see the control plane's log)")
        await _deny(engine, claimed.key, failed)
        return _response(failed)
    if isinstance(outcome, SignInRefused):
        log.info("sign-in refused (%s): %s", outcome.reason, outcome.message)
        return _response(outcome)
    log.info("developer %s signed in (workspace %s)", outcome.developer_email, outcome.workspace)
    return outcome


async def _finish_once(
    engine: SignIn, key: str, verified: _Verified, peer: str
) -> spb.CompleteBrowserResponse | SignInRefused:
    now = engine.clock()
    return await engine.store.mutate(lambda s, _now: _finish(s, key, verified, now, peer))


async def _deny(engine: SignIn, key: str, refusal: SignInRefused) -> None:
    await engine.store.change(lambda s, _now: grants.deny(s, key, refusal.message, ("completing",)))
