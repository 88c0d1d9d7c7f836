"""A strict fake OpenID Connect identity provider, served by Hypercorn on 127.0.0.1.

What it serves (issuer = its base URL, ``http://127.0.0.1:PORT``, accepted by the gateway
because it is loopback):

* ``GET /.well-known/openid-configuration`` — discovery (RS256 only, S256 PKCE, the configured
  client authentication methods, ``authorization_response_iss_parameter_supported``).
* ``GET /jwks`` — the public half of an RSA key generated once per test run.
* ``GET /authorize`` — stands in for the user's login page. It checks the request like a real
  provider would (``response_type=code``, the client id, a *registered* ``redirect_uri``, the
  scopes ``openid profile email offline_access``, ``state``, ``nonce``, a PKCE S256 challenge)
  and answers 302 to ``redirect_uri?code=…&state=…&iss=…`` for the identity the test chose with
  :meth:`FakeOidc.next_login` (or ``?error=…&state=…`` when the test chose a refusal). A bad
  request gets a 400 page, never a redirect.
* ``POST /token`` — the authorization-code grant. Strict: client authentication exactly as
  announced (HTTP Basic or form fields, not both, the right secret), the code known, unused and
  younger than ``code_ttl_s``, ``redirect_uri`` equal to the one of the authorization request,
  the PKCE verifier matching the challenge. It returns an ID token with ``iss``, ``sub``,
  ``aud``, ``exp``, ``iat``, ``nonce``, ``email``, ``email_verified``, ``name`` and the groups
  claim; :attr:`FakeOidc.id_token_fault` makes it return a broken one instead (see
  :data:`FAULTS`) for negative tests.

Every refusal is recorded in :attr:`FakeOidc.violations` (a correct gateway causes none);
a test fails if one was recorded during it (:mod:`tests.fakes.strict`). :meth:`FakeOidc.authorize` plays the
browser: it follows the gateway's authorization URL and returns the callback's query
parameters. Typical use::

    idp = FakeOidc(client_secret="s3cret")
    await idp.start()
    idp.register_redirect_uri("https://gw.example.test/oauth/callback")
    idp.next_login(Login(sub="u-1", email="alice@example.com", groups=["platform"]))
    callback = await idp.authorize(begin.authorization_url)   # {"code", "state", "iss"}
    ...
    await idp.stop()

This module is long because a strict identity provider must check every step of the flow it serves
(discovery, JWKS, authorize with PKCE, token with client authentication); a fake split by endpoint
would lose the state that ties a code to its verifier.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import secrets
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.server import LoopbackServer, read_body
from tests.fakes.strict import Strict

CLIENT_ID = "tollgate-gateway"
CLIENT_SECRET = "fake-oidc-client-secret-0123456789"
KID = "fake-oidc-key-1"
REQUIRED_SCOPES = ("openid", "profile", "email", "offline_access")
# id_token_fault values: what is wrong with the next ID tokens.
FAULTS = (
    "wrong_nonce",  # nonce of another sign-in
    "no_nonce",  # nonce claim missing
    "expired",  # exp an hour ago
    "wrong_aud",  # issued to another client
    "several_aud_no_azp",  # aud [client, other] without azp
    "wrong_azp",  # azp names another client
    "wrong_iss",  # another issuer
    "bad_signature",  # signed with another key under the same kid
    "unknown_kid",  # signed with a key the JWKS does not publish
    "alg_none",  # unsigned
    "hs256_public_key",  # HS256 with the public key as the secret (algorithm confusion)
    "no_id_token",  # the token response has no id_token
)


@functools.lru_cache(maxsize=2)
def rsa_key(which: int = 0) -> rsa.RSAPrivateKey:
    """RSA keys generated once per test run (``which`` 1 is the impostor's)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Login:
    """Who signs in at the next authorization request."""

    sub: str
    email: str = ""
    email_verified: Any = True  # True, False, "false", or None (claim left out)
    name: str = ""
    groups: Any = None  # list, space-separated string, or None (claim left out)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Refusal:
    error: str
    description: str = ""


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    login: Login
    issued: float
    used: bool = False


class FakeOidc(LoopbackServer, Strict):
    def __init__(
        self,
        *,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        auth_methods: tuple[str, ...] = ("client_secret_basic",),
        groups_claim: str = "groups",
        code_ttl_s: float = 60.0,
        iss_parameter: bool = True,
        id_token_ttl_s: int = 300,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.auth_methods = auth_methods
        self.groups_claim = groups_claim
        self.code_ttl_s = code_ttl_s
        self.iss_parameter = iss_parameter
        self.id_token_ttl_s = id_token_ttl_s
        self.redirect_uris: set[str] = set()
        self.logins: deque[Login | _Refusal] = deque()
        self.default_login: Login | None = None
        self.id_token_fault = ""
        self.violations: list[str] = []
        self.codes: dict[str, _Code] = {}
        self.requests: dict[str, int] = {"discovery": 0, "jwks": 0, "authorize": 0, "token": 0}
        self.last_authorize: dict[str, str] = {}

    # -- the test's controls -------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return self.base_url

    def register_redirect_uri(self, uri: str) -> None:
        self.redirect_uris.add(uri)

    def next_login(self, login: Login) -> None:
        """The identity the next authorization request signs in (queued; when the queue is
        empty, ``default_login`` is used)."""
        self.logins.append(login)

    def next_refusal(self, error: str = "access_denied", description: str = "") -> None:
        """The next authorization request is refused (the user cancelled, a policy said no)."""
        self.logins.append(_Refusal(error, description))

    async def authorize(self, url: str) -> dict[str, str]:
        """Play the browser: GET the authorization URL; return the query parameters of the
        redirect to the gateway's callback (raises if the provider did not redirect)."""
        async with httpx.AsyncClient(follow_redirects=False, timeout=10) as client:
            response = await client.get(url)
        assert response.status_code == 302, (response.status_code, response.text)
        location = response.headers["location"]
        target, _, query = location.partition("?")
        assert target in self.redirect_uris, location
        return {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}

    # -- HTTP -----------------------------------------------------------------------------------

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await read_body(receive)
        path, method = scope["path"], scope["method"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = {k: v[0] for k, v in urllib.parse.parse_qs(scope["query_string"].decode()).items()}
        if path == "/.well-known/openid-configuration" and method == "GET":
            self.requests["discovery"] += 1
            await self._json(send, 200, self.discovery())
        elif path == "/jwks" and method == "GET":
            self.requests["jwks"] += 1
            await self._json(send, 200, self.jwks())
        elif path == "/authorize" and method == "GET":
            self.requests["authorize"] += 1
            await self._authorize(send, query)
        elif path == "/token" and method == "POST":
            self.requests["token"] += 1
            status, answer = self._token(headers, body)
            await self._json(send, status, answer)
        else:
            self.violations.append(f"unexpected {method} {path}")
            await self._json(send, 404, {"error": "not_found"})

    async def _json(self, send: Any, status: int, doc: dict[str, Any]) -> None:
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": orjson.dumps(doc)})

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.base_url}/authorize",
            "token_endpoint": f"{self.base_url}/token",
            "jwks_uri": f"{self.base_url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": list(self.auth_methods),
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "scopes_supported": [*REQUIRED_SCOPES, "groups"],
            "authorization_response_iss_parameter_supported": self.iss_parameter,
        }

    def jwks(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key().public_key(), as_dict=True)
        return {"keys": [{**public, "kid": KID, "use": "sig", "alg": "RS256"}]}

    # -- /authorize -------------------------------------------------------------------------------

    def _check_authorize(self, q: dict[str, str]) -> str | None:
        if q.get("response_type") != "code":
            return f"authorize: response_type {q.get('response_type')!r}"
        if q.get("client_id") != self.client_id:
            return f"authorize: unknown client_id {q.get('client_id')!r}"
        if q.get("redirect_uri") not in self.redirect_uris:
            return f"authorize: unregistered redirect_uri {q.get('redirect_uri')!r}"
        scopes = set(q.get("scope", "").split())
        missing = [s for s in REQUIRED_SCOPES if s not in scopes]
        if missing:
            return f"authorize: scope lacks {missing}"
        if not q.get("state"):
            return "authorize: no state"
        if not q.get("nonce"):
            return "authorize: no nonce"
        if q.get("code_challenge_method") != "S256" or len(q.get("code_challenge", "")) != 43:
            return "authorize: no PKCE S256 challenge"
        return None

    async def _authorize(self, send: Any, q: dict[str, str]) -> None:
        self.last_authorize = dict(q)
        problem = self._check_authorize(q)
        if problem is not None:
            self.violations.append(problem)
            await self._json(send, 400, {"error": "invalid_request", "error_description": problem})
            return
        who = self.logins.popleft() if self.logins else self.default_login
        params: dict[str, str]
        if who is None:
            self.violations.append("authorize: the test set no login (next_login)")
            params = {"error": "login_required"}
        elif isinstance(who, _Refusal):
            params = {"error": who.error}
            if who.description:
                params["error_description"] = who.description
        else:
            code = secrets.token_urlsafe(24)
            self.codes[code] = _Code(
                q["client_id"], q["redirect_uri"], q["code_challenge"], q["nonce"], who, time.time()
            )
            params = {"code": code}
        params["state"] = q["state"]
        if self.iss_parameter:
            params["iss"] = self.issuer
        location = q["redirect_uri"] + "?" + urllib.parse.urlencode(params)
        await send(
            {
                "type": "http.response.start",
                "status": 302,
                "headers": [(b"location", location.encode())],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    # -- /token -----------------------------------------------------------------------------------

    def _client(self, headers: dict[str, str], form: dict[str, str]) -> str | None:
        """The authenticated client id, or None (a violation is recorded)."""
        basic = headers.get("authorization", "")
        posted = "client_secret" in form
        if basic and posted:
            self.violations.append("token: client authenticated twice (basic and post)")
            return None
        if basic:
            if "client_secret_basic" not in self.auth_methods:
                self.violations.append("token: client_secret_basic not announced")
                return None
            scheme, _, value = basic.partition(" ")
            try:
                raw = base64.b64decode(value).decode()
            except ValueError:
                raw = ""
            client_id, _, secret = raw.partition(":")
            client_id = urllib.parse.unquote_plus(client_id)
            secret = urllib.parse.unquote_plus(secret)
            if scheme.lower() != "basic":
                self.violations.append("token: authorization is not Basic")
                return None
        elif posted:
            if "client_secret_post" not in self.auth_methods:
                self.violations.append("token: client_secret_post not announced")
                return None
            client_id, secret = form.get("client_id", ""), form["client_secret"]
        else:
            self.violations.append("token: no client authentication")
            return None
        if client_id != self.client_id or not secrets.compare_digest(secret, self.client_secret):
            self.violations.append("token: wrong client credentials")
            return None
        return client_id

    def _token(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        ctype = headers.get("content-type", "").split(";")[0].strip()
        if ctype != "application/x-www-form-urlencoded":
            self.violations.append(f"token: content-type {ctype!r}")
            return 400, {"error": "invalid_request"}
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        client_id = self._client(headers, form)
        if client_id is None:
            return 401, {
                "error": "invalid_client",
                "error_description": "client authentication failed",
            }
        problem, grant = self._check_code(form, client_id)
        if problem is not None or grant is None:
            self.violations.append(problem or "token: no grant")
            return 400, {"error": "invalid_grant", "error_description": problem}
        answer: dict[str, Any] = {
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": secrets.token_urlsafe(24),
            "scope": " ".join(REQUIRED_SCOPES),
        }
        if self.id_token_fault != "no_id_token":
            answer["id_token"] = self.id_token(grant.login, grant.nonce)
        return 200, answer

    def _check_code(self, form: dict[str, str], client_id: str) -> tuple[str | None, _Code | None]:
        if form.get("grant_type") != "authorization_code":
            return f"token: grant_type {form.get('grant_type')!r}", None
        grant = self.codes.get(form.get("code", ""))
        if grant is None:
            return "token: unknown code", None
        if grant.used:
            return "token: code used twice", None
        grant.used = True
        if time.time() - grant.issued > self.code_ttl_s:
            return "token: code expired", None
        if grant.client_id != client_id:
            return "token: code issued to another client", None
        if form.get("redirect_uri") != grant.redirect_uri:
            return f"token: redirect_uri {form.get('redirect_uri')!r} differs", None
        verifier = form.get("code_verifier", "")
        if not 43 <= len(verifier) <= 128:
            return "token: PKCE code_verifier missing or malformed", None
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if challenge.rstrip(b"=").decode() != grant.challenge:
            return "token: PKCE verifier does not match the challenge", None
        return None, grant

    # -- ID tokens --------------------------------------------------------------------------------

    def claims(self, login: Login, nonce: str) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": login.sub,
            "aud": self.client_id,
            "iat": now,
            "exp": now + self.id_token_ttl_s,
            "auth_time": now,
            "nonce": nonce,
        }
        if login.email:
            claims["email"] = login.email
        if login.email_verified is not None:
            claims["email_verified"] = login.email_verified
        if login.name:
            claims["name"] = login.name
        if login.groups is not None:
            claims[self.groups_claim] = login.groups
        claims.update(login.extra)
        return claims

    def id_token(self, login: Login, nonce: str) -> str:
        claims = self.claims(login, nonce)
        fault = self.id_token_fault
        assert fault in ("", *FAULTS), fault
        if fault == "wrong_nonce":
            claims["nonce"] = "nonce-of-another-sign-in"
        elif fault == "no_nonce":
            del claims["nonce"]
        elif fault == "expired":
            claims["iat"], claims["exp"] = claims["iat"] - 7200, claims["iat"] - 3600
        elif fault == "wrong_aud":
            claims["aud"] = "another-client"
        elif fault == "several_aud_no_azp":
            claims["aud"] = [self.client_id, "another-client"]
        elif fault == "wrong_azp":
            claims["azp"] = "another-client"
        elif fault == "wrong_iss":
            claims["iss"] = self.issuer + "/other-tenant"
        key: Any = rsa_key()
        kid, alg = KID, "RS256"
        if fault == "bad_signature":
            key = rsa_key(1)
        elif fault == "unknown_kid":
            key, kid = rsa_key(1), "rotated-away"
        elif fault == "alg_none":
            # alg "none" signs with no key at all; PyJWT's types ask for one anyway.
            return jwt.encode(claims, None, algorithm="none", headers={"kid": KID})  # type: ignore[arg-type]
        elif fault == "hs256_public_key":
            pem = (
                rsa_key()
                .public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
            header = {"alg": "HS256", "typ": "JWT", "kid": KID}
            return _hs256(header, claims, pem)
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 token signed by hand (PyJWT refuses a PEM public key as an HMAC secret, which is
    exactly the confusion this token tries)."""
    import hmac

    signing_input = _b64(orjson.dumps(header)) + "." + _b64(orjson.dumps(claims))
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)
