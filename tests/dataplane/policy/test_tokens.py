"""Access-token verification: every refusal, the checks that run on every request even for a
cached token, and the bounded cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import orjson
import pytest

from dataplane.config.members import Developer
from dataplane.config.snapshot import Snapshot
from dataplane.errors import GatewayError
from dataplane.policy.tokens import LEEWAY_S, TokenVerifier, looks_like_jwt
from gwapi.v1 import discovery_pb2
from tests.fakes.signin import DEVELOPER_ID, KID, SIGNING_KEY, mint, sso_snapshot

NOW = time.time()


def snap(**kw: Any) -> Snapshot:
    return Snapshot.from_proto(sso_snapshot("http://127.0.0.1:1", **kw))


def now_ms() -> int:
    return int(time.time() * 1000)


def refused(
    verifier: TokenVerifier, snapshot: Snapshot, token: str, status: int = 401
) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        verifier.resolve(snapshot, token, now_ms())
    assert info.value.status == status, info.value
    assert token not in info.value.message
    return info.value


def b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()


def test_a_valid_token_resolves_to_its_developer() -> None:
    developer = TokenVerifier().resolve(snap(), mint(), now_ms())
    assert isinstance(developer, Developer)
    assert developer.id == DEVELOPER_ID and developer.email == "alice@example.com"
    assert developer.workspace == "team-a" and developer.provider == "anthropic"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (mint(iat=NOW - 7200, ttl=3600), "expired"),
        (mint(kid="k-unknown"), "unknown_kid"),
        (mint(key=b"y" * 32), "bad_signature"),
        (mint(aud="someone-else"), "invalid_claims"),
        (mint(iss="https://idp.example.test"), "invalid_claims"),
        (mint(exp=None), "invalid_claims"),
        (mint(sub=None), "invalid_claims"),
        (mint(key=SIGNING_KEY * 2, algorithm="HS512"), "algorithm"),
        (mint(sub="dev_nobody", iat=NOW - 120), "unknown_developer"),
        ("eyJhbGciOiJIUzI1NiJ9.not-base64!.x", "malformed"),
    ],
)
def test_refusals(token: str, reason: str) -> None:
    reasons: list[str] = []
    err = refused(TokenVerifier(on_refuse=reasons.append), snap(), token)
    assert err.error_type == "authentication_error" and "/login" in err.message
    assert reasons == [reason]


def test_alg_none_and_rs256_are_refused_before_any_key_is_used() -> None:
    payload = b64({"iss": "tollgate", "aud": "tollgate", "sub": DEVELOPER_ID, "iat": int(NOW),
                   "exp": int(NOW) + 3600})  # fmt: skip
    none = f"{b64({'alg': 'none', 'kid': KID})}.{payload}."
    # An RS256 header, HMAC-signed with the key bytes: the classic algorithm-confusion forgery.
    signing_input = f"{b64({'alg': 'RS256', 'kid': KID})}.{payload}"
    mac = hmac.new(SIGNING_KEY, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    for token in (none, forged):
        reasons: list[str] = []
        refused(TokenVerifier(on_refuse=reasons.append), snap(), token)
        assert reasons == ["algorithm"], token


def test_expiry_has_30_seconds_of_leeway() -> None:
    now = time.time()
    token = mint(iat=now - 3600, ttl=3600 - LEEWAY_S + 5)  # expired 25 s ago
    assert TokenVerifier().resolve(snap(), token, now_ms()).id == DEVELOPER_ID
    late = mint(iat=now - 3600, ttl=3600 - LEEWAY_S - 5)  # 35 s ago
    refused(TokenVerifier(), snap(), late)


def test_a_cached_token_expires_too() -> None:
    verifier = TokenVerifier()
    now = int(time.time())
    token = mint(iat=now, ttl=60)
    verifier.resolve(snap(), token, now_ms())
    with pytest.raises(GatewayError) as info:
        verifier.resolve(snap(), token, (now + 60 + LEEWAY_S) * 1000)
    assert "expired" in info.value.message


def test_disabled_and_revoked_developers_are_refused_even_when_cached() -> None:
    verifier = TokenVerifier()
    now = time.time()
    token = mint(iat=now - 10)
    assert verifier.resolve(snap(), token, now_ms()).id == DEVELOPER_ID
    err = refused(verifier, snap(disabled=True), token)
    assert "revoked" in err.message and "alice@example.com" in err.message
    assert "disabled" in err.message
    # Re-enabled, but tokens issued before the disable stay dead.
    err = refused(verifier, snap(tokens_not_before_ms=int(now * 1000)), token)
    assert err.message == "Your sign-in was revoked; run /login again."
    fresh = mint(iat=now + 1)
    assert verifier.resolve(snap(tokens_not_before_ms=int(now * 1000)), fresh, now_ms())


def test_a_rotated_out_or_changed_key_refuses_cached_tokens() -> None:
    verifier = TokenVerifier()
    token = mint()
    verifier.resolve(snap(), token, now_ms())
    rotated = sso_snapshot("http://127.0.0.1:1", "s2", keys=False)
    rotated.signing_keys.append(discovery_pb2.SigningKey(kid="k2", key=b"z" * 32, current=True))
    reasons: list[str] = []
    verifier.on_refuse = reasons.append
    refused(verifier, Snapshot.from_proto(rotated), token)
    same_kid_other_key = sso_snapshot("http://127.0.0.1:1", "s3", keys=False)
    same_kid_other_key.signing_keys.append(discovery_pb2.SigningKey(kid=KID, key=b"z" * 32))
    refused(verifier, Snapshot.from_proto(same_kid_other_key), token)
    assert reasons == ["unknown_kid", "unknown_kid"]


def test_keys_not_received_is_a_503_with_retry_after() -> None:
    verifier = TokenVerifier()
    token = mint()
    err = refused(verifier, snap(keys=False), token, status=503)
    assert dict(err.headers)[b"retry-after"] == b"2"
    assert "sign-in keys" in err.message
    verifier.resolve(snap(), token, now_ms())  # cached now; the keys vanish again (restart)
    refused(verifier, snap(keys=False), token, status=503)


def test_sign_in_turned_off_refuses_tokens() -> None:
    err = refused(TokenVerifier(), snap(enabled=False), mint())
    assert "not enabled" in err.message


def test_the_hot_path_is_a_cache_hit(jwt_decodes: list[None]) -> None:
    verifier = TokenVerifier()
    token = mint()
    snapshot = snap()
    for _ in range(5):
        verifier.resolve(snapshot, token, now_ms())
    assert len(jwt_decodes) == 1


def test_the_cache_is_bounded_and_least_recently_used(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(max_entries=3)
    snapshot = snap()
    tokens = [mint(iat=NOW - i) for i in range(5)]
    for token in tokens:
        verifier.resolve(snapshot, token, now_ms())
    assert len(verifier) == 3
    verifier.resolve(snapshot, tokens[2], now_ms())  # touch: now the most recent
    verifier.resolve(snapshot, tokens[0], now_ms())  # evicts tokens[3]
    cached = list(verifier._cache)
    assert cached == [tokens[4], tokens[2], tokens[0]]
    # Failures are not cached.
    with pytest.raises(GatewayError):
        verifier.resolve(snapshot, mint(key=b"q" * 32), now_ms())
    assert len(verifier) == 3


def test_looks_like_jwt() -> None:
    assert looks_like_jwt(mint())
    for other in ("gw-abc", "sk-ant-api03-x", "eyJ.only-two", "a.b.c", ""):
        assert not looks_like_jwt(other)


def test_a_developer_the_snapshot_does_not_know_yet_is_asked_to_retry() -> None:
    """Signed in a moment ago: the token is newer than the snapshot, which lacks the developer
    (or still shows them disabled). 503 + retry-after, not 401 (which means: /login again)."""
    msg = sso_snapshot("http://127.0.0.1:1")
    msg.built_at_ms = int((time.time() - 5) * 1000)
    msg.developers[0].id = "dev_other"
    older = Snapshot.from_proto(msg)
    reasons: list[str] = []
    verifier = TokenVerifier(on_refuse=reasons.append)
    token = mint()
    err = refused(verifier, older, token, status=503)
    assert dict(err.headers)[b"retry-after"] == b"1" and "retry" in err.message
    # A minute on, or against a snapshot built after the token: really unknown.
    with pytest.raises(GatewayError) as info:
        verifier.resolve(older, token, now_ms() + 61_000)
    assert info.value.status == 401
    msg.built_at_ms = now_ms() + 1000
    refused(verifier, Snapshot.from_proto(msg), token)
    disabled = sso_snapshot("http://127.0.0.1:1", disabled=True)
    disabled.built_at_ms = int((time.time() - 5) * 1000)
    refused(verifier, Snapshot.from_proto(disabled), token, status=503)
    assert reasons == ["propagating", "unknown_developer", "unknown_developer", "propagating"]
