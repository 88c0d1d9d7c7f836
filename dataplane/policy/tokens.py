"""Access tokens of developers signed in with Claude Code: verified on the data plane, no I/O.

The control plane mints them (HS256 JWTs, claims ``iss``/``aud`` ``"tollgate"``, ``sub`` = the
developer id, ``sid``, ``iat``, ``exp``, header ``kid``) with a key that travels in the snapshot.
:class:`TokenVerifier` checks one:

* first use: PyJWT, HS256 only (``none``, RS256 and the rest are refused before any key is
  looked at), the ``kid``'s key from the snapshot, ``aud``/``iss``, ``exp`` with 30 s leeway;
  the verified claims are kept in a bounded LRU keyed by the token, so the next request with the
  same token costs a dict lookup instead of an HMAC and a JSON parse;
* every use (cached or not), against the *current* snapshot: the ``kid`` still carries the same
  key (rotated out = refused), ``exp`` not passed, the developer known, not disabled, and the
  token issued at or after the developer's ``tokens_not_before_ms`` (bumped on disable). A token
  newer than the snapshot for a developer it does not know yet (signed in a moment ago, the new
  snapshot on its way) is a 503 to retry, not a 401, for its first minute.

Refusals are 401 ``authentication_error`` telling the user to run ``/login`` again (Claude Code
then prompts a new sign-in); a data plane that has not received the keys yet (started from its
disk cache, which never holds them) answers 503 with ``retry-after`` instead.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from dataplane.config.members import Developer
from dataplane.config.snapshot import Snapshot
from dataplane.errors import GatewayError, Unauthenticated, Unavailable

AUDIENCE = ISSUER = "tollgate"
ALGORITHM = "HS256"
LEEWAY_S = 30
MAX_CACHED = 10_000
KEYS_RETRY_S = 2
# How long after its issue a token for a developer the snapshot does not know yet is answered
# 503 (retry) rather than 401 (sign in again): the snapshot carrying a new developer takes about
# a second to reach the data planes.
PROPAGATION_MS = 60_000


def looks_like_jwt(secret: str) -> bool:
    """A compact JWS: three dot-separated parts, the header a base64url JSON object."""
    return secret.startswith("eyJ") and secret.count(".") == 2


@dataclass(frozen=True, slots=True)
class _Verified:
    """What the signature vouched for; re-checked against each request's snapshot."""

    sub: str
    kid: str
    key: bytes  # the key it verified with: a kid whose key changed no longer vouches for it
    iat_ms: int
    exp_ms: int  # exp + leeway


def _refusal(message: str) -> GatewayError:
    return Unauthenticated(401, message)


_INVALID = "This sign-in token is not valid on this gateway; run /login again."
_ENDED = "Your sign-in has ended; run /login again."


class TokenVerifier:
    """Verifies bearer JWTs and resolves them to the snapshot's developer. One per data plane.

    ``on_refuse(reason)`` is told why each refusal happened (for metrics): ``malformed``,
    ``algorithm``, ``unknown_kid``, ``bad_signature``, ``expired``, ``invalid_claims``,
    ``unknown_developer``, ``disabled``, ``revoked``, ``sso_off``, ``keys_missing``,
    ``propagating``.
    """

    def __init__(
        self,
        max_entries: int = MAX_CACHED,
        on_refuse: Callable[[str], None] | None = None,
    ) -> None:
        self.max_entries = max_entries
        self.on_refuse = on_refuse
        self._cache: OrderedDict[str, _Verified] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cache)

    def resolve(self, snapshot: Snapshot, token: str, now_ms: int) -> Developer:
        """The developer the token names, or a 401/503 GatewayError."""
        try:
            return self._resolve(snapshot, token, now_ms)
        except _Refused as refused:
            if self.on_refuse is not None:
                self.on_refuse(refused.reason)
            raise refused.error from None

    def _resolve(self, snapshot: Snapshot, token: str, now_ms: int) -> Developer:
        if not snapshot.sso.enabled:
            raise _Refused(
                "sso_off",
                _refusal(
                    "Sign-in with Claude Code is not enabled on this gateway. Ask your platform "
                    "team, or use a virtual key (gw-…)."
                ),
            )
        cache = self._cache
        verified = cache.get(token)
        if verified is None:
            verified = self._verify(snapshot, token)
            cache[token] = verified
            if len(cache) > self.max_entries:
                cache.popitem(last=False)
        else:
            cache.move_to_end(token)
        signing = snapshot.signing_keys.get(verified.kid)
        if signing is None or signing.key != verified.key:
            self._no_key(snapshot)
        if now_ms >= verified.exp_ms:
            raise _Refused("expired", _refusal("Your sign-in has expired; run /login again."))
        developer = snapshot.developers.get(verified.sub)
        if developer is None or developer.disabled:
            self._maybe_propagating(snapshot, verified, now_ms)
        if developer is None:
            raise _Refused("unknown_developer", _refusal(_ENDED))
        if developer.disabled:
            raise _Refused(
                "disabled",
                _refusal(
                    f"Your sign-in was revoked: {developer.label} is disabled on this gateway. "
                    "Ask your platform team, then run /login again."
                ),
            )
        if verified.iat_ms < developer.tokens_not_before_ms:
            raise _Refused("revoked", _refusal("Your sign-in was revoked; run /login again."))
        return developer

    @staticmethod
    def _maybe_propagating(snapshot: Snapshot, verified: _Verified, now_ms: int) -> None:
        """A token minted after this snapshot was built, for a developer it does not know (or
        still shows disabled): the control plane created (or re-enabled) them a moment ago and
        the new snapshot is on its way. Claude Code fetches /managed/settings right after the
        sign-in; a 401 would send the developer straight back to /login, a 503 is retried."""
        if verified.iat_ms > snapshot.built_at_ms and now_ms - verified.iat_ms < PROPAGATION_MS:
            raise _Refused(
                "propagating",
                Unavailable(
                    503,
                    "Your sign-in is still reaching this gateway; retry in a second.",
                    headers=((b"retry-after", b"1"),),
                ),
            )

    def _no_key(self, snapshot: Snapshot) -> None:
        if snapshot.signing_keys_missing:
            raise _Refused(
                "keys_missing",
                Unavailable(
                    503,
                    "This gateway has not received its sign-in keys from the control plane yet "
                    "(it is starting, or cannot reach the control plane). Try again in a few "
                    "seconds.",
                    headers=((b"retry-after", str(KEYS_RETRY_S).encode()),),
                ),
            )
        raise _Refused(
            "unknown_kid",
            _refusal(
                "Your sign-in was issued with a key this gateway no longer accepts; "
                "run /login again."
            ),
        )

    def _verify(self, snapshot: Snapshot, token: str) -> _Verified:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _Refused("malformed", _refusal(_INVALID)) from None
        if header.get("alg") != ALGORITHM:
            raise _Refused("algorithm", _refusal(_INVALID))
        kid = header.get("kid")
        signing = snapshot.signing_keys.get(kid) if isinstance(kid, str) else None
        if signing is None:
            self._no_key(snapshot)
            raise AssertionError("unreachable")  # _no_key always raises
        try:
            claims = jwt.decode(
                token,
                signing.key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise _Refused(
                "expired", _refusal("Your sign-in has expired; run /login again.")
            ) from None
        except jwt.InvalidSignatureError:
            raise _Refused("bad_signature", _refusal(_INVALID)) from None
        except jwt.InvalidTokenError:
            raise _Refused("invalid_claims", _refusal(_INVALID)) from None
        sub, iat, exp = claims["sub"], claims["iat"], claims["exp"]
        if not isinstance(sub, str) or not sub:
            raise _Refused("invalid_claims", _refusal(_INVALID))
        if not isinstance(iat, int | float) or not isinstance(exp, int | float):
            raise _Refused("invalid_claims", _refusal(_INVALID))
        return _Verified(
            sub, signing.kid, signing.key, int(iat * 1000), int((exp + LEEWAY_S) * 1000)
        )


class _Refused(Exception):
    def __init__(self, reason: str, error: GatewayError) -> None:
        self.reason = reason
        self.error = error
