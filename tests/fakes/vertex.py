"""A strict fake of Google Vertex AI for Claude: an OAuth token endpoint and the aiplatform API.

One Hypercorn server on 127.0.0.1 serves both parts:

* ``POST /token`` — Google's OAuth 2.0 JWT-bearer grant. It verifies the assertion's RS256
  signature against the test service account's public key and checks ``iss`` (the client
  email), ``aud`` (Google's token endpoint, which google-auth always signs, or this endpoint's
  URL), ``scope`` (must include cloud-platform) and ``exp``/``iat``. It issues opaque random
  tokens with a configurable ``expires_in`` and counts issuances. Refusals are OAuth-shaped
  (``{"error": "invalid_grant", …}``) and recorded in ``violations``.
* ``POST /v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:{verb}`` —
  requires ``Authorization: Bearer`` with a token this fake issued and that has not expired
  (else a Google-style 401 UNAUTHENTICATED), the configured project, ``streamRawPredict`` exactly
  when the body streams, a body with ``anthropic_version == "vertex-2023-10-16"`` and without
  ``model`` (count-tokens: with a Vertex ``model``), and no leaked virtual key. It answers with
  Anthropic SSE / JSON, scripted answers (:func:`google_error` for front-end errors, array-wrapped
  or not), or ``{"input_tokens": N}`` for count-tokens.

:func:`write_service_account` writes a throwaway service-account key file whose ``token_uri``
points at the fake; the RSA key is generated once per test session (keygen is slow).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes.anthropic import FakeAnthropic, Received, Scripted, message_body, stream_frames
from tests.fakes.server import read_body

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
VERTEX_VERSION = "vertex-2023-10-16"
PROJECT = "tollgate-test"
CLIENT_EMAIL = "tollgate-dp@tollgate-test.iam.gserviceaccount.com"
KEY_ID = "0123456789abcdef0123456789abcdef01234567"
# Betas the fake Vertex refuses like the real one does (WIRE.md: Vertex 400s unknown betas).
REJECTED_BETAS = frozenset({"effort-2025-11-24", "adaptive-thinking-2026-01-28"})

_DATED = re.compile(r"-\d{8}$")  # an Anthropic dated id: Vertex writes name@date
_PATH = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/publishers/anthropic/"
    r"models/(?P<model>[^/:]+):(?P<verb>rawPredict|streamRawPredict)$"
)


@functools.cache
def private_key(label: str = "default") -> rsa.RSAPrivateKey:
    """An RSA key per label, generated once per session."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(label: str = "default") -> str:
    return (
        private_key(label)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def write_service_account(
    directory: Path,
    token_uri: str,
    *,
    key_label: str = "default",
    client_email: str = CLIENT_EMAIL,
    project: str = PROJECT,
) -> Path:
    """A service-account key file like the ones Google Cloud hands out, for the fake."""
    path = directory / f"sa-{key_label}.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": project,
                "private_key_id": KEY_ID,
                "private_key": private_pem(key_label),
                "client_email": client_email,
                "client_id": "100000000000000000001",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": token_uri,
                "universe_domain": "googleapis.com",
            }
        )
    )
    return path


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_jwt(payload: dict[str, Any], key_label: str = "default", alg: str = "RS256") -> str:
    """A JWT signed with a test key (for probing the token endpoint directly)."""
    header = {"alg": alg, "typ": "JWT", "kid": KEY_ID}
    signing_input = f"{_b64url(orjson.dumps(header))}.{_b64url(orjson.dumps(payload))}"
    signature = private_key(key_label).sign(
        signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return f"{signing_input}.{_b64url(signature)}"


def google_error(code: int, status: str, message: str, wrapped: bool = False) -> Scripted:
    """A Google front-end error, optionally wrapped in a JSON array as Vertex sometimes does."""
    err: Any = {"error": {"code": code, "message": message, "status": status}}
    if wrapped:
        err = [err]
    return Scripted(
        status=code,
        headers=[(b"content-type", b"application/json; charset=UTF-8")],
        frames=[orjson.dumps(err)],
    )


class FakeVertex(FakeAnthropic):
    """See the module docstring. ``requests`` holds aiplatform calls only; ``token_requests``
    the token-endpoint calls; ``issued`` maps each issued token to its expiry (epoch seconds)."""

    def __init__(
        self,
        project: str = PROJECT,
        client_email: str = CLIENT_EMAIL,
        key_label: str = "default",
        expires_in: int = 3600,
        text: str = "Hello from the fake Vertex.",
    ) -> None:
        super().__init__(api_key="", text=text)
        self.project = project
        self.client_email = client_email
        self.public_key = private_key(key_label).public_key()
        self.expires_in = expires_in
        self.issued: dict[str, float] = {}
        self.token_requests: list[Received] = []
        self.token_failure: tuple[int, dict[str, Any]] | None = None
        self.token_gate: asyncio.Event | None = None  # set: the token endpoint answers
        self.rejected_betas = REJECTED_BETAS
        self.on_request: Callable[[Received], Scripted | None] | None = None

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    @property
    def api_base(self) -> str:
        """What a provider's ``base_url`` is set to (ANTHROPIC_VERTEX_BASE_URL convention)."""
        return f"{self.base_url}/v1"

    @property
    def issuances(self) -> int:
        return len(self.issued)

    def revoke_all(self) -> None:
        self.issued.clear()

    # -- the ASGI app ------------------------------------------------------------------------

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await super().app(scope, receive, send)
            return
        body = await read_body(receive)
        req = Received(
            scope["method"], scope["path"], scope["query_string"], list(scope["headers"]), body
        )
        if req.path == "/token":
            self.token_requests.append(req)
            if self.token_gate is not None:
                await self.token_gate.wait()
            status, answer = self._token(req)
            await self._send_json(send, status, orjson.dumps(answer))
            return
        self.requests.append(req)
        problem = self._check(req)
        if problem is not None:
            status, google_status, message = problem
            self.violations.append(message)
            err = {"error": {"code": status, "message": message, "status": google_status}}
            await self._send_json(send, status, orjson.dumps(err))
            return
        await self._answer(send, req)

    async def _send_json(self, send: Any, status: int, body: bytes) -> None:
        headers = [(b"content-type", b"application/json; charset=UTF-8")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # -- OAuth token endpoint ----------------------------------------------------------------

    def _token(self, req: Received) -> tuple[int, dict[str, Any]]:
        if self.token_failure is not None:
            return self.token_failure
        problem = self._check_grant(req)
        if problem is not None:
            self.violations.append(problem)
            return 400, {"error": "invalid_grant", "error_description": problem}
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        self.issued[token] = time.time() + self.expires_in
        return 200, {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}

    def _check_grant(self, req: Received) -> str | None:
        if req.method != "POST":
            return f"token endpoint: unexpected {req.method}"
        ctype = (req.header("content-type") or "").split(";")[0]
        if ctype != "application/x-www-form-urlencoded":
            return f"token endpoint: content-type {ctype!r}"
        form = urllib.parse.parse_qs(req.body.decode("latin-1"))
        if form.get("grant_type") != [JWT_GRANT]:
            return "token endpoint: grant_type must be jwt-bearer"
        assertion = (form.get("assertion") or [""])[0]
        parts = assertion.split(".")
        if len(parts) != 3:
            return "token endpoint: assertion is not a JWT"
        try:
            header = orjson.loads(_unb64url(parts[0]))
            claims = orjson.loads(_unb64url(parts[1]))
            signature = _unb64url(parts[2])
        except (ValueError, orjson.JSONDecodeError):
            return "token endpoint: malformed JWT"
        if header.get("alg") != "RS256":
            return f"token endpoint: JWT alg {header.get('alg')!r}"
        try:
            self.public_key.verify(
                signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return "token endpoint: invalid JWT signature"
        now = time.time()
        if claims.get("iss") != self.client_email:
            return f"token endpoint: iss {claims.get('iss')!r}"
        if claims.get("aud") not in (GOOGLE_TOKEN_URL, self.token_uri):
            return f"token endpoint: aud {claims.get('aud')!r}"
        if SCOPE not in str(claims.get("scope", "")).split():
            return f"token endpoint: scope {claims.get('scope')!r} lacks cloud-platform"
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int) or exp <= now:
            return "token endpoint: JWT expired"
        if not isinstance(iat, int) or iat > now + 60 or exp - iat > 3600:
            return "token endpoint: bad iat/exp"
        return None

    # -- aiplatform API ----------------------------------------------------------------------

    def _check(self, req: Received) -> tuple[int, str, str] | None:
        auth = req.header("authorization") or ""
        for name, value in req.headers:
            if value.startswith((b"gw-", b"Bearer gw-")) or name.lower() == b"x-api-key":
                return 401, "UNAUTHENTICATED", "a virtual key or API key reached Vertex"
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        expiry = self.issued.get(token)
        if expiry is None or expiry <= time.time():
            return (
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential.",
            )
        match = _PATH.match(req.path)
        if req.method != "POST" or match is None:
            return 404, "NOT_FOUND", f"unexpected {req.method} {req.path}"
        if match["project"] != self.project:
            return 403, "PERMISSION_DENIED", f"Permission denied on project {match['project']}"
        if (req.header("content-type") or "").split(";")[0] != "application/json":
            return 400, "INVALID_ARGUMENT", "content-type must be application/json"
        try:
            obj = orjson.loads(req.body)
        except orjson.JSONDecodeError:
            return 400, "INVALID_ARGUMENT", "body is not JSON"
        if not isinstance(obj, dict) or "messages" not in obj:
            return 400, "INVALID_ARGUMENT", "body is not a Messages request"
        if obj.get("anthropic_version") != VERTEX_VERSION:
            return 400, "INVALID_ARGUMENT", "anthropic_version must be vertex-2023-10-16"
        betas = {b.strip() for b in (req.header("anthropic-beta") or "").split(",") if b.strip()}
        if betas & self.rejected_betas:
            return 400, "INVALID_ARGUMENT", f"Unexpected anthropic-beta values {sorted(betas)}"
        if match["model"] == "count-tokens":
            model = obj.get("model")
            if match["verb"] != "rawPredict":
                return 400, "INVALID_ARGUMENT", "count-tokens is only served by rawPredict"
            if (
                not isinstance(model, str)
                or not model.startswith("claude-")
                or _DATED.search(model)
            ):
                return (
                    400,
                    "INVALID_ARGUMENT",
                    f"count-tokens needs a Vertex model id, not {model!r}",
                )
            return None
        if "model" in obj:
            return 400, "INVALID_ARGUMENT", "model must not be in the body (it is in the URL)"
        if not isinstance(obj.get("max_tokens"), int):
            return 400, "INVALID_ARGUMENT", "max_tokens: Field required"
        if (match["verb"] == "streamRawPredict") != (obj.get("stream") is True):
            return 400, "INVALID_ARGUMENT", f"{match['verb']} with stream={obj.get('stream')}"
        return None

    def default_answer(self, req: Received) -> Scripted:
        match = _PATH.match(req.path)
        assert match is not None
        obj = orjson.loads(req.body)
        if match["model"] == "count-tokens":
            return Scripted(
                headers=[(b"content-type", b"application/json")],
                frames=[orjson.dumps({"input_tokens": len(req.body) // 4})],
            )
        model = match["model"]
        if obj.get("stream"):
            words = [w + " " for w in self.text.split()]
            return Scripted(
                headers=[(b"content-type", b"text/event-stream; charset=utf-8")],
                frames=stream_frames(model, words, msg_id="msg_vrtx_fake01"),
            )
        return Scripted(
            headers=[(b"content-type", b"application/json")],
            frames=[message_body(model, self.text)],
        )


__all__ = [
    "CLIENT_EMAIL",
    "GOOGLE_TOKEN_URL",
    "PROJECT",
    "FakeVertex",
    "google_error",
    "private_key",
    "sign_jwt",
    "write_service_account",
]
