"""What the control plane knows about the company's OIDC identity provider: its discovery
document (``/.well-known/openid-configuration``) and its signing keys (JWKS), fetched with httpx
and cached per issuer.

Contract:

* :meth:`OidcDirectory.metadata` returns the provider's metadata, fetched at most once per
  ``ttl_s`` (default one hour). The document must name the configured issuer exactly (OpenID
  Connect Discovery §4.3), and its endpoints must be ``https`` (``http`` only on a loopback
  host, for development); otherwise :class:`OidcUnavailable` says what is wrong.
* :meth:`OidcDirectory.jwk` returns the JWKS entry for a key id, usable for one of the
  asymmetric algorithms :data:`ASYMMETRIC_ALGS` (``oct`` keys and keys not meant for signatures
  are ignored: an ID token is never checked with a symmetric or a "none" algorithm). An unknown
  key id makes it fetch the JWKS again (the provider rotated its keys), at most once per
  ``refetch_min_s`` per issuer, so a flood of tokens with made-up key ids cannot make the
  control plane hammer the provider. At most :data:`MAX_KEYS` keys and :data:`MAX_DOCUMENT_BYTES`
  per document are read.
* Every HTTP exchange has a timeout; redirects are not followed. Errors never carry secrets.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from gwcommon.hosts import is_loopback_host

ASYMMETRIC_ALGS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_KEYS = 64
DEFAULT_TIMEOUT_S = 10.0


class OidcUnavailable(Exception):
    """The identity provider could not be used (unreachable, or a bad document); the message is
    safe to show to an operator and to log."""


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    signing_algs: tuple[str, ...]  # announced and acceptable (asymmetric only)
    token_auth_methods: tuple[str, ...]
    iss_parameter_supported: bool


@dataclass
class _Entry:
    metadata: ProviderMetadata
    fetched: float
    keys: dict[str, dict[str, Any]]
    keys_fetched: float = float("-inf")


def _endpoint(doc: dict[str, Any], name: str, issuer: str) -> str:
    url = doc.get(name)
    if not isinstance(url, str) or not url:
        raise OidcUnavailable(f"the discovery document of {issuer} has no {name}")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise OidcUnavailable(f"the discovery document of {issuer}: {name} is not a URL") from None
    host = parts.hostname or ""
    if not host or not (
        parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(host))
    ):
        raise OidcUnavailable(
            f"the discovery document of {issuer}: {name} must be an https URL, got {url[:200]!r}"
        )
    return url


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def parse_metadata(doc: Any, issuer: str) -> ProviderMetadata:
    """The metadata of a discovery document fetched for ``issuer``; raises
    :class:`OidcUnavailable` when the document cannot be trusted or used."""
    if not isinstance(doc, dict):
        raise OidcUnavailable(f"the discovery document of {issuer} is not a JSON object")
    if doc.get("issuer") != issuer:
        raise OidcUnavailable(
            f"the discovery document of {issuer} names issuer {str(doc.get('issuer'))[:200]!r}: "
            "configure exactly the issuer your identity provider announces (gwctl sso set "
            "--issuer …; a trailing slash counts)"
        )
    announced = _strings(doc.get("id_token_signing_alg_values_supported")) or ("RS256",)
    algs = tuple(a for a in announced if a in ASYMMETRIC_ALGS)
    if not algs:
        raise OidcUnavailable(
            f"{issuer} signs ID tokens only with {', '.join(announced)[:200]}; the gateway accepts "
            f"{', '.join(ASYMMETRIC_ALGS)}"
        )
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=_endpoint(doc, "authorization_endpoint", issuer),
        token_endpoint=_endpoint(doc, "token_endpoint", issuer),
        jwks_uri=_endpoint(doc, "jwks_uri", issuer),
        signing_algs=algs,
        # OpenID Connect Discovery: "If omitted, the default is client_secret_basic".
        token_auth_methods=_strings(doc.get("token_endpoint_auth_methods_supported"))
        or ("client_secret_basic",),
        iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported") is True,
    )


def parse_jwks(doc: Any) -> dict[str, dict[str, Any]]:
    """Signature keys of a JWKS by ``kid`` (keys without a kid under ``""``), bounded."""
    keys: dict[str, dict[str, Any]] = {}
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise OidcUnavailable('the identity provider\'s JWKS document has no "keys" list')
    for jwk in entries[: MAX_KEYS * 4]:
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC", "OKP"):
            continue  # "oct" (symmetric) keys are never used to check an ID token
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", "RS256") not in ASYMMETRIC_ALGS:
            continue
        kid = jwk.get("kid", "")
        keys.setdefault(kid if isinstance(kid, str) else "", jwk)
        if len(keys) >= MAX_KEYS:
            break
    return keys


class OidcDirectory:
    """Per-issuer cache of discovery documents and signing keys."""

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        ttl_s: float = 3600.0,
        refetch_min_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self.refetch_min_s = refetch_min_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._http: httpx.AsyncClient | None = None
        self.fetches = 0  # documents fetched (discovery + JWKS), for tests and metrics

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=self.timeout_s, follow_redirects=False, trust_env=False
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def forget(self, issuer: str = "") -> None:
        """Drop the cache of ``issuer`` (every issuer when ``""``): after an SSO change."""
        if issuer:
            self._entries.pop(issuer, None)
        else:
            self._entries.clear()

    async def _get_json(self, url: str, what: str) -> Any:
        self.fetches += 1
        try:
            async with self._client().stream(
                "GET", url, headers={"accept": "application/json"}
            ) as response:
                if response.status_code != 200:
                    raise OidcUnavailable(
                        f"{what} at {url[:200]} answered HTTP {response.status_code}"
                    )
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise OidcUnavailable(f"{what} at {url[:200]} is larger than 1 MiB")
        except httpx.TimeoutException:
            raise OidcUnavailable(
                f"{what} at {url[:200]} did not answer within {self.timeout_s:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise OidcUnavailable(
                f"cannot fetch {what} at {url[:200]}: {type(exc).__name__}"
            ) from None
        try:
            return json.loads(body)
        except ValueError:
            raise OidcUnavailable(f"{what} at {url[:200]} is not JSON") from None

    def _lock(self, issuer: str) -> asyncio.Lock:
        lock = self._locks.get(issuer)
        if lock is None:
            if len(self._locks) > 16:  # issuers change rarely; never grow without bound
                self._locks.clear()
            lock = self._locks[issuer] = asyncio.Lock()
        return lock

    async def _entry(self, issuer: str) -> _Entry:
        entry = self._entries.get(issuer)
        if entry is not None and self._clock() - entry.fetched < self.ttl_s:
            return entry
        async with self._lock(issuer):
            entry = self._entries.get(issuer)
            if entry is not None and self._clock() - entry.fetched < self.ttl_s:
                return entry
            url = issuer.rstrip("/") + "/.well-known/openid-configuration"
            metadata = parse_metadata(await self._get_json(url, "the discovery document"), issuer)
            keys = entry.keys if entry is not None else {}
            fetched = entry.keys_fetched if entry is not None else float("-inf")
            if len(self._entries) > 16:
                self._entries.clear()
            entry = self._entries[issuer] = _Entry(metadata, self._clock(), keys, fetched)
            return entry

    async def metadata(self, issuer: str) -> ProviderMetadata:
        return (await self._entry(issuer)).metadata

    async def jwk(self, issuer: str, kid: str) -> dict[str, Any] | None:
        """The JWKS entry for ``kid`` (``""``: the token names none, which only works when the
        provider publishes a single key), or ``None`` when the provider has no such key."""
        entry = await self._entry(issuer)
        found = self._find(entry, kid)
        if found is not None and self._clock() - entry.keys_fetched < self.ttl_s:
            return found
        async with self._lock(issuer):
            found = self._find(entry, kid)
            stale = self._clock() - entry.keys_fetched >= self.ttl_s
            if found is not None and not stale:
                return found
            if not stale and self._clock() - entry.keys_fetched < self.refetch_min_s:
                return None  # fetched moments ago: an unknown kid stays unknown for now
            doc = await self._get_json(entry.metadata.jwks_uri, "the JWKS document")
            entry.keys = parse_jwks(doc)
            entry.keys_fetched = self._clock()
            return self._find(entry, kid)

    @staticmethod
    def _find(entry: _Entry, kid: str) -> dict[str, Any] | None:
        if kid:
            return entry.keys.get(kid)
        return next(iter(entry.keys.values())) if len(entry.keys) == 1 else None
