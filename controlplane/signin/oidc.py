"""The OIDC authorization-code flow against the company's identity provider: the authorization
URL (Authlib), the code exchange (Authlib's ``AsyncOAuth2Client`` over httpx) and the ID token's
validation (PyJWT with the provider's JWKS).

Contract:

* :func:`authorization_url`: ``response_type=code``, ``client_id``, ``redirect_uri``, ``scope``
  (``openid profile email offline_access`` + the configured extra scopes), ``state``, ``nonce``
  and the PKCE S256 challenge of ``code_verifier``.
* :func:`exchange_code` posts the code with the PKCE verifier and the same ``redirect_uri``,
  authenticating with the client secret as the provider announces
  (``client_secret_basic`` preferred, else ``client_secret_post``), with a timeout, and returns
  the ``id_token``. The provider's refusal is :class:`SignInRefused` (``idp_error``).
* :func:`validate_id_token`: the signature with the provider's key for the token's ``kid``,
  under an algorithm the provider announces (asymmetric only: never ``none``, never ``HS*``);
  ``iss`` equal to the configured issuer; ``aud`` containing the client id and, with several
  audiences, ``azp`` equal to it (an ``azp`` present must always equal it); ``exp`` and ``iat``
  with 60 s of leeway; ``sub`` present; then ``nonce`` equal to the one sent. Every failure is
  :class:`SignInRefused` with reason ``invalid_id_token`` and a sentence saying which check.
"""

from __future__ import annotations

import hmac
import warnings
from collections.abc import Mapping
from typing import Any

import httpx
import jwt
from authlib.integrations.base_client import OAuthError
from authlib.oauth2.client import OAuth2Client

from controlplane.domain.sso import DEFAULT_SCOPES
from controlplane.signin.discovery import OidcDirectory, OidcUnavailable, ProviderMetadata
from controlplane.signin.refusals import SignInRefused, idp_refused, invalid_id_token

LEEWAY_S = 60
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
MAX_ID_TOKEN_CHARS = 64 * 1024


def _async_client_class() -> Any:
    """Authlib's ``AsyncOAuth2Client``. Authlib 1.9 warns on import that it falls back to the
    ``httpx`` package (it prefers ``httpx2``); httpx is what this project uses everywhere, so the
    fallback is intended and the warning is silenced here, once."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The httpx module is deprecated")
        from authlib.integrations.httpx_client import AsyncOAuth2Client

    return AsyncOAuth2Client


def scopes(extra: tuple[str, ...]) -> str:
    return " ".join((*DEFAULT_SCOPES, *(s for s in extra if s not in DEFAULT_SCOPES)))


def auth_method(metadata: ProviderMetadata) -> str:
    """How to authenticate at the token endpoint; :class:`OidcUnavailable` when the provider
    supports neither way of sending a client secret."""
    for method in AUTH_METHODS:
        if method in metadata.token_auth_methods:
            return method
    raise OidcUnavailable(
        f"{metadata.issuer} accepts client authentication by "
        f"{', '.join(metadata.token_auth_methods)[:200]} only; the gateway sends its client "
        "secret by client_secret_basic or client_secret_post"
    )


def authorization_url(
    metadata: ProviderMetadata,
    *,
    client_id: str,
    redirect_uri: str,
    extra_scopes: tuple[str, ...],
    state: str,
    nonce: str,
    code_verifier: str,
) -> str:
    # Only builds a URL: the base client needs no HTTP session for that.
    client = OAuth2Client(
        None,
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=scopes(extra_scopes),
        code_challenge_method="S256",
    )
    url, _ = client.create_authorization_url(
        metadata.authorization_endpoint, state=state, code_verifier=code_verifier, nonce=nonce
    )
    return str(url)


async def exchange_code(
    metadata: ProviderMetadata,
    *,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    code: str,
    code_verifier: str,
    timeout_s: float,
) -> str:
    """The ID token the provider returns for ``code``."""
    method = auth_method(metadata)
    try:
        async with _async_client_class()(
            client_id=client_id,
            client_secret=client_secret,
            token_endpoint_auth_method=method,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=timeout_s,
            follow_redirects=False,
            trust_env=False,
        ) as client:
            token = await client.fetch_token(
                metadata.token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
                redirect_uri=redirect_uri,
            )
    except OAuthError as exc:
        raise idp_refused(
            str(getattr(exc, "error", "") or "error"), str(getattr(exc, "description", "") or "")
        ) from None
    except httpx.TimeoutException:
        raise OidcUnavailable(
            f"the identity provider's token endpoint did not answer within {timeout_s:g} s"
        ) from None
    except httpx.HTTPStatusError as exc:
        raise OidcUnavailable(
            f"the identity provider's token endpoint answered HTTP {exc.response.status_code}"
        ) from None
    except (httpx.HTTPError, ValueError) as exc:
        raise OidcUnavailable(
            f"the identity provider's token endpoint could not be used: {type(exc).__name__}"
        ) from None
    id_token = token.get("id_token") if isinstance(token, Mapping) else None
    if not isinstance(id_token, str) or not id_token:
        raise invalid_id_token(
            "the identity provider returned no ID token (is the openid scope allowed for this "
            "client?)"
        )
    return id_token


def _reason(exc: jwt.PyJWTError, issuer: str) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the ID token has expired (check that the clocks of the gateway and the identity provider are right)"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the ID token was issued in the future (check the clocks)"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the ID token was issued for another application (its audience is not this gateway's client_id)"
    if isinstance(exc, jwt.InvalidIssuerError):
        return f"the ID token was not issued by {issuer}"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the ID token's signature does not match the identity provider's keys"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the ID token lacks the {exc.claim!r} claim"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "the ID token is signed with an algorithm the identity provider does not announce"
    return f"the ID token is malformed ({type(exc).__name__})"


async def validate_id_token(
    directory: OidcDirectory,
    metadata: ProviderMetadata,
    id_token: str,
    *,
    client_id: str,
    nonce: str,
) -> dict[str, Any]:
    """The verified claims of ``id_token``; :class:`SignInRefused` otherwise (see the module)."""
    if len(id_token) > MAX_ID_TOKEN_CHARS:
        raise invalid_id_token("the ID token is too large")
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError:
        raise invalid_id_token("the ID token is not a JWT") from None
    alg, kid = header.get("alg"), header.get("kid") or ""
    if alg not in metadata.signing_algs:
        raise invalid_id_token(
            f"the ID token is signed with {str(alg)[:20]!r}; the identity provider announces "
            f"{', '.join(metadata.signing_algs)}"
        )
    if not isinstance(kid, str):
        raise invalid_id_token("the ID token's key id is not a string")
    found = await directory.jwk(metadata.issuer, kid)
    if found is None:
        raise invalid_id_token(
            "the ID token is signed with a key the identity provider does not publish"
        )
    if "alg" in found and found["alg"] != alg:
        raise invalid_id_token("the ID token's algorithm does not match its key")
    try:
        key = jwt.PyJWK(found, algorithm=alg)
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key=key,
            algorithms=[alg],
            audience=client_id,
            issuer=metadata.issuer,
            leeway=LEEWAY_S,
            options={"require": ["iss", "aud", "exp", "iat", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise invalid_id_token(_reason(exc, metadata.issuer)) from None
    aud = claims.get("aud")
    several = isinstance(aud, list) and len(aud) > 1
    azp = claims.get("azp")
    if (several or azp is not None) and azp != client_id:
        raise invalid_id_token(
            "the ID token was issued to another application (azp is not this gateway's client_id)"
        )
    sent = claims.get("nonce")
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
        raise invalid_id_token(
            "the ID token does not belong to this sign-in (nonce mismatch); start again"
        )
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 255:
        raise invalid_id_token(
            "the ID token's subject (sub) is missing or longer than 255 characters"
        )
    return claims


__all__ = [
    "SignInRefused",
    "authorization_url",
    "exchange_code",
    "scopes",
    "validate_id_token",
]
