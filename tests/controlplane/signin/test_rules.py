"""The sign-in rules below the gRPC layer: user codes, the discovery document's checks, the
JWKS cache (bounded refetch on an unknown key id), admission and workspace choice, and what
happens when the identity provider is unreachable."""

from __future__ import annotations

import re
from typing import Any

import pytest

from controlplane.signin import admission, codes
from controlplane.signin.discovery import OidcDirectory, OidcUnavailable, parse_jwks, parse_metadata
from controlplane.signin.refusals import SignInRefused
from tests.controlplane.signin.conftest import ALICE, Flow
from tests.fakes.oidc import KID, FakeOidc


def test_user_codes() -> None:
    for _ in range(200):
        code = codes.new_user_code()
        assert len(code) == 8 and set(code) <= set(codes.USER_CODE_ALPHABET)
        assert codes.normalise_user_code(codes.format_user_code(code).lower()) == code
    assert codes.normalise_user_code("wdjb mjht") == "WDJBMJHT"
    for bad in ("WDJB-MJH", "WDJB-MJHTX", "AEIO-UBCD", "WDJB_MJHT", "1234-5678", "x" * 100):
        assert codes.normalise_user_code(bad) is None, bad


def doc(issuer: str = "https://idp.example.com", **extra: Any) -> dict[str, Any]:
    base = {
        "issuer": issuer,
        "authorization_endpoint": issuer + "/authorize",
        "token_endpoint": issuer + "/token",
        "jwks_uri": issuer + "/jwks",
    }
    base.update(extra)
    return base


def test_discovery_document_checks() -> None:
    meta = parse_metadata(doc(), "https://idp.example.com")
    assert meta.signing_algs == ("RS256",) and meta.token_auth_methods == ("client_secret_basic",)
    problems = {
        "names issuer": doc(issuer="https://other.example.com"),
        "has no token_endpoint": {k: v for k, v in doc().items() if k != "token_endpoint"},
        "must be an https URL": doc(jwks_uri="http://idp.example.com/jwks"),
        "signs ID tokens only with HS256": doc(
            id_token_signing_alg_values_supported=["HS256", "none"]
        ),
    }
    for words, document in problems.items():
        with pytest.raises(OidcUnavailable, match=words):
            parse_metadata(document, "https://idp.example.com")
    mixed = parse_metadata(
        doc(id_token_signing_alg_values_supported=["none", "HS256", "ES256"]),
        "https://idp.example.com",
    )
    assert mixed.signing_algs == ("ES256",)


def test_jwks_keeps_only_signature_keys() -> None:
    keys = parse_jwks(
        {
            "keys": [
                {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
                {"kty": "RSA", "kid": "enc", "use": "enc", "n": "x", "e": "AQAB"},
                {"kty": "RSA", "kid": "hs", "alg": "HS256", "n": "x", "e": "AQAB"},
                {"kty": "RSA", "kid": "good", "n": "x", "e": "AQAB"},
                *({"kty": "EC", "kid": f"k{i}"} for i in range(200)),
            ]
        }
    )
    assert "good" in keys and not {"sym", "enc", "hs"} & set(keys) and len(keys) == 64


class Monotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_jwks_is_cached_and_refetched_on_an_unknown_kid_at_most_every_10_s() -> None:
    idp = FakeOidc()
    await idp.start()
    clock = Monotonic()
    directory = OidcDirectory(clock=clock)
    try:
        assert (await directory.jwk(idp.issuer, KID)) is not None
        assert idp.requests == {"discovery": 1, "jwks": 1, "authorize": 0, "token": 0}
        for _ in range(3):
            assert (await directory.jwk(idp.issuer, KID)) is not None
        assert idp.requests["jwks"] == 1  # cached
        for _ in range(5):  # made-up key ids: one refetch, then nothing for 10 s
            clock.t += 1
            assert (await directory.jwk(idp.issuer, "made-up")) is None
        assert idp.requests["jwks"] == 1
        clock.t += 10
        assert (await directory.jwk(idp.issuer, "made-up")) is None
        assert idp.requests["jwks"] == 2
        clock.t += 3600  # stale after an hour: fetched again even for a known key
        assert (await directory.jwk(idp.issuer, KID)) is not None
        assert idp.requests == {"discovery": 2, "jwks": 3, "authorize": 0, "token": 0}
    finally:
        await directory.close()
        await idp.stop()


async def test_unreachable_provider_is_a_readable_error() -> None:
    directory = OidcDirectory(timeout_s=2)
    try:
        with pytest.raises(
            OidcUnavailable,
            match=re.escape("cannot fetch the discovery document at http://127.0.0.1:9/"),
        ):
            await directory.metadata("http://127.0.0.1:9")
    finally:
        await directory.close()


def test_groups_and_workspace_choice() -> None:
    assert admission.groups_of({"groups": ["a", "b", "a", 3, ""]}, "groups") == ("a", "b")
    assert admission.groups_of({"groups": "a  b"}, "groups") == ("a", "b")
    assert admission.groups_of({"groups": {"a": 1}}, "groups") == ()
    assert len(admission.groups_of({"groups": [f"g{i}" for i in range(5000)]}, "groups")) == 1000
    spaces = [
        admission.WorkspaceGroups("b", ("dev",), 0),
        admission.WorkspaceGroups("a", ("dev",), 0),
        admission.WorkspaceGroups("c", ("dev",), 99),
        admission.WorkspaceGroups("any", ("*",), 200),
    ]
    assert admission.choose_workspace(["dev"], spaces) == "c"  # 99 beats the default 100
    assert admission.choose_workspace(["Dev"], spaces) == "any"  # exact names, case included
    assert admission.choose_workspace([], spaces[:3]) is None


def test_identity_and_admission() -> None:
    claims = {"sub": "s", "email": " Alice@Example.COM ", "given_name": "Al", "family_name": "Ice"}
    who = admission.identity_of(claims, "https://idp", "groups")
    assert (who.email, who.name, who.groups) == ("alice@example.com", "Al Ice", ())
    admission.admit(who, claims, ["example.com"])
    with pytest.raises(SignInRefused) as refused:
        admission.admit(who, claims, ["example.org"])
    assert refused.value.reason == "domain_not_allowed"
    with pytest.raises(SignInRefused):
        admission.admit(who, {**claims, "email_verified": "False"}, [])
    with pytest.raises(SignInRefused) as refused:
        admission.identity_of({"sub": "s", "email": "not-an-address"}, "https://idp", "groups")
    assert refused.value.reason == "invalid_id_token"


async def test_identity_provider_down_during_the_callback(flow: Flow) -> None:
    begun = await flow.started()
    flow.idp.next_login(ALICE)
    callback = await flow.idp.authorize(begun.begin.authorization_url)
    flow.idp.codes.clear()
    await flow.idp.stop()
    flow.idp.port = 9  # nothing listens there
    done = await flow.complete(begun.begin, callback)
    assert (done.ok, done.reason) == (False, "internal"), done
    assert "could not be used" in done.message or "cannot fetch" in done.message
    assert (await flow.poll(begun.start.device_code)).error.error == "access_denied"
