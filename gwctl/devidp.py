"""``gwctl dev-idp serve`` — a small OpenID Connect identity provider for trying sign-in on one machine.

**For development only.** Anyone who can reach it signs in as whoever they type: it exists so
that a newcomer can watch the whole "Sign in with Claude Code" flow (``/login`` → browser → IdP →
back to Claude Code) on a laptop, without a company identity provider. ``gwctl up --dev-idp``
starts it and points the gateway's SSO at it. It listens on loopback only, and every page it
serves says what it is.

What it implements (enough for a standards-following relying party, strictly):

* discovery (``/.well-known/openid-configuration``) and ``/jwks`` (an RS256 key made at start;
  tokens do not survive a restart, which is fine for a development IdP);
* ``/authorize`` (authorization code flow): a page where you type the identity (email, name,
  groups) to sign in as; requires ``response_type=code``, the registered client id, a loopback
  ``redirect_uri`` ending in ``/oauth/callback``, ``state``, ``nonce`` and a PKCE S256
  challenge; sends the browser back with ``code``, ``state`` and ``iss``;
* ``/token``: the authorization-code grant only; checks the client secret (basic or post), that
  the code is unused and fresh (60 s), the ``redirect_uri`` and the PKCE verifier; answers an ID
  token (RS256, ``iss``, ``aud``, ``nonce``, ``exp``, ``email``, ``email_verified``, ``name``,
  ``groups``) and an opaque access token. Errors are RFC 6749 JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import html
import ipaddress
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import unquote_plus, urlencode, urlsplit

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gwcommon.hosts import is_loopback_host
from gwctl.cli import CommandError, Subparsers

log = logging.getLogger("tollgate.devidp")

CODE_TTL_S = 60
ID_TOKEN_TTL_S = 600
BANNER = "Tollgate development identity provider — for trying sign-in locally, NOT for production"


@dataclass(frozen=True)
class Identity:
    email: str
    name: str
    groups: tuple[str, ...]

    @property
    def subject(self) -> str:
        """A stable subject per email (the same person signs in as the same ``sub``)."""
        return "dev-" + hashlib.sha256(self.email.lower().encode()).hexdigest()[:20]


@dataclass(frozen=True)
class _Code:
    client_id: str
    redirect_uri: str
    nonce: str
    challenge: str
    identity: Identity
    expires: float


@dataclass
class DevIdp:
    """The provider's state: one client, its signing key, outstanding authorization codes."""

    client_id: str
    client_secret: str
    default_groups: tuple[str, ...] = ("developers",)
    issuer: str = ""  # set once the port is known
    _key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    _kid: str = field(default_factory=lambda: secrets.token_hex(8))
    _codes: dict[str, _Code] = field(default_factory=dict)

    # -- documents ------------------------------------------------------------------------------

    def discovery(self) -> dict[str, object]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": ["sub", "email", "email_verified", "name", "groups"],
        }

    def jwks(self) -> dict[str, object]:
        key = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        key.update(kid=self._kid, use="sig", alg="RS256")
        return {"keys": [key]}

    # -- the authorization endpoint ------------------------------------------------------------

    def check_authorize(self, q: dict[str, str]) -> str | None:
        """Why an authorization request is refused (shown on the page), or None."""
        if q.get("client_id") != self.client_id:
            return f"unknown client_id {q.get('client_id', '')!r}"
        if not _loopback_callback(q.get("redirect_uri", "")):
            return "redirect_uri must be a loopback URL ending in /oauth/callback"
        if q.get("response_type") != "code":
            return "only response_type=code is supported"
        if "openid" not in q.get("scope", "").split():
            return "the openid scope is required"
        for name in ("state", "nonce", "code_challenge"):
            if not q.get(name):
                return f"{name} is required"
        if q.get("code_challenge_method") != "S256":
            return "PKCE with code_challenge_method=S256 is required"
        return None

    def issue_code(self, q: dict[str, str], identity: Identity) -> str:
        now = time.monotonic()
        for stale in [c for c, v in self._codes.items() if v.expires < now]:
            del self._codes[stale]
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Code(
            q["client_id"], q["redirect_uri"], q["nonce"], q["code_challenge"], identity,
            now + CODE_TTL_S,
        )  # fmt: skip
        return code

    # -- the token endpoint --------------------------------------------------------------------

    def exchange(
        self, form: dict[str, str], basic: tuple[str, str] | None
    ) -> tuple[int, dict[str, object]]:
        """The token endpoint's answer: (status, JSON body)."""
        client_id, secret = basic if basic else (form.get("client_id", ""), "")
        if not basic:
            secret = form.get("client_secret", "")
        if client_id != self.client_id or not secrets.compare_digest(
            secret.encode(), self.client_secret.encode()
        ):
            return 401, _error("invalid_client", "unknown client or wrong client secret")
        if form.get("grant_type") != "authorization_code":
            return 400, _error("unsupported_grant_type", "only authorization_code")
        entry = self._codes.pop(form.get("code", ""), None)  # single use, even when refused
        if entry is None or entry.expires < time.monotonic():
            return 400, _error("invalid_grant", "unknown, used or expired code")
        if entry.client_id != client_id or form.get("redirect_uri") != entry.redirect_uri:
            return 400, _error("invalid_grant", "redirect_uri does not match the authorization")
        verifier = form.get("code_verifier", "")
        if not verifier or _s256(verifier) != entry.challenge:
            return 400, _error("invalid_grant", "PKCE verifier does not match the challenge")
        now = int(time.time())
        who = entry.identity
        claims = {
            "iss": self.issuer,
            "aud": client_id,
            "sub": who.subject,
            "iat": now,
            "exp": now + ID_TOKEN_TTL_S,
            "nonce": entry.nonce,
            "email": who.email,
            "email_verified": True,
            "name": who.name,
            "groups": list(who.groups),
        }
        id_token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid})
        return 200, {
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": ID_TOKEN_TTL_S,
            "id_token": id_token,
        }


def _error(code: str, description: str) -> dict[str, object]:
    return {"error": code, "error_description": description}


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _loopback_callback(uri: str) -> bool:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.path.endswith("/oauth/callback"):
        return False
    return is_loopback_host(parts.hostname or "")


def _page(title: str, body: str) -> web.Response:
    text = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        "<body style='font-family:sans-serif;max-width:40em;margin:2em auto'>"
        f"<p style='background:#fde68a;padding:.5em'><b>{html.escape(BANNER)}</b></p>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(
        text=text,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "form-action 'self'; frame-ancestors 'none'",
        },
    )


def build_app(idp: DevIdp) -> web.Application:
    async def discovery(_: web.Request) -> web.Response:
        return web.json_response(idp.discovery())

    async def jwks(_: web.Request) -> web.Response:
        return web.json_response(idp.jwks())

    async def authorize_form(request: web.Request) -> web.Response:
        q = dict(request.query)
        problem = idp.check_authorize(q)
        if problem is not None:
            return _page("Cannot sign in", f"<p>{html.escape(problem)}</p>")
        hidden = "".join(
            f"<input type=hidden name='{html.escape(k)}' value='{html.escape(v)}'>"
            for k, v in q.items()
        )
        groups = ", ".join(idp.default_groups)
        body = (
            "<p>Sign in as anyone: this IdP believes what you type.</p>"
            f"<form method=post action='/authorize'>{hidden}"
            "<p><label>Email <input name=email value='dev@example.com' required></label>"
            "<p><label>Name <input name=name value='Dev Eloper'></label>"
            f"<p><label>Groups (comma-separated) <input name=groups value='{html.escape(groups)}'>"
            "</label><p><button type=submit>Sign in</button></form>"
        )
        return _page("Sign in", body)

    async def authorize_submit(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        problem = idp.check_authorize(form)
        email = form.get("email", "").strip()
        if problem is None and "@" not in email:
            problem = "type an email address"
        if problem is not None:
            return _page("Cannot sign in", f"<p>{html.escape(problem)}</p>")
        groups = tuple(g.strip() for g in form.get("groups", "").split(",") if g.strip())
        identity = Identity(email, form.get("name", "").strip() or email, groups)
        code = idp.issue_code(form, identity)
        location = (
            form["redirect_uri"]
            + "?"
            + urlencode({"code": code, "state": form["state"], "iss": idp.issuer})
        )
        raise web.HTTPFound(location)

    async def token(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        status, body = idp.exchange(form, _basic_auth(request.headers.get("Authorization", "")))
        return web.json_response(
            body, status=status, headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
        )

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks", jwks)
    app.router.add_get("/authorize", authorize_form)
    app.router.add_post("/authorize", authorize_submit)
    app.router.add_post("/token", token)
    return app


def _basic_auth(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    # RFC 6749 §2.3.1: the id and secret are form-urlencoded before the base64.
    return unquote_plus(user), unquote_plus(password)


async def serve(idp: DevIdp, host: str, port: int, ready: asyncio.Event | None = None) -> None:
    """Serve until cancelled; ``idp.issuer`` is set to the bound address first."""
    if not ipaddress.ip_address(host).is_loopback:
        raise CommandError("the development IdP listens on loopback only (127.0.0.1 or ::1)")
    runner = web.AppRunner(build_app(idp), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    idp.issuer = f"http://{host}:{bound}"
    log.warning("%s: issuer %s", BANNER, idp.issuer)
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def register(subparsers: Subparsers) -> None:
    group = subparsers.add_parser(
        "dev-idp",
        help="a development-only OIDC identity provider, for trying sign-in locally",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    ).add_subparsers(dest="action", metavar="ACTION", required=True)
    p = group.add_parser("serve", help="run it (loopback only; gwctl up --dev-idp starts it)")
    p.add_argument("--listen", default="127.0.0.1:9180", help="loopback host:port")
    p.add_argument("--client-id", default="tollgate")
    p.add_argument(
        "--client-secret-file",
        required=True,
        metavar="PATH",
        help="file holding the client secret (the gateway's SSO is set with the same)",
    )
    p.add_argument("--groups", default="developers", help="groups offered by default")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    host, _, port = args.listen.rpartition(":")
    try:
        with open(args.client_secret_file) as f:
            secret = f.read().strip()
    except OSError as exc:
        raise CommandError(f"cannot read {args.client_secret_file}: {exc.strerror}") from None
    if not secret:
        raise CommandError(f"{args.client_secret_file} is empty")
    groups = tuple(g.strip() for g in args.groups.split(",") if g.strip())
    idp = DevIdp(args.client_id, secret, groups)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(serve(idp, host.strip("[]") or "127.0.0.1", int(port)))
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.listen}: {exc.strerror}") from None
    return 0
