"""gwctl dev-idp: a development OIDC provider that still follows the protocol strictly."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from gwctl.devidp import BANNER, DevIdp, serve

REDIRECT = "http://127.0.0.1:8080/oauth/callback"


@pytest.fixture
async def idp() -> AsyncIterator[DevIdp]:
    provider = DevIdp("tollgate", "s3cret", ("developers",))
    ready = asyncio.Event()
    task = asyncio.create_task(serve(provider, "127.0.0.1", 0, ready))
    await asyncio.wait_for(ready.wait(), 5)
    yield provider
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _auth_params(challenge: str, **over: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": "tollgate",
        "redirect_uri": REDIRECT,
        "scope": "openid profile email offline_access",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(over)
    return params


async def _sign_in(http: httpx.AsyncClient, idp: DevIdp, challenge: str, **over: str) -> str:
    params = _auth_params(challenge, **over)
    page = await http.get(f"{idp.issuer}/authorize", params=params)
    assert page.status_code == 200 and BANNER in page.text and "<form" in page.text
    form = {**params, "email": "alice@example.com", "name": "Alice", "groups": "eng, oncall"}
    r = await http.post(f"{idp.issuer}/authorize", data=form)
    assert r.status_code == 302
    back = urlsplit(r.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == params["redirect_uri"]
    q = parse_qs(back.query)
    assert q["state"] == [params["state"]] and q["iss"] == [idp.issuer]
    return q["code"][0]


async def _token_form(http: httpx.AsyncClient, idp: DevIdp) -> dict[str, str]:
    """Signs alice in with a fresh PKCE pair: the form that exchanges her code for tokens."""
    verifier, challenge = _pkce()
    code = await _sign_in(http, idp, challenge)
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }


async def test_code_flow_with_pkce_yields_a_verifiable_id_token(idp: DevIdp) -> None:
    async with httpx.AsyncClient() as http:
        disco = (await http.get(f"{idp.issuer}/.well-known/openid-configuration")).json()
        assert disco["issuer"] == idp.issuer and disco["code_challenge_methods_supported"] == [
            "S256"
        ]
        r = await http.post(
            disco["token_endpoint"], data=await _token_form(http, idp), auth=("tollgate", "s3cret")
        )
        assert r.status_code == 200, r.text
        keys = jwt.PyJWKSet.from_dict((await http.get(disco["jwks_uri"])).json())
        token = r.json()["id_token"]
        kid = jwt.get_unverified_header(token)["kid"]
        claims = jwt.decode(
            token, keys[kid].key, algorithms=["RS256"], audience="tollgate", issuer=idp.issuer
        )
        assert claims["nonce"] == "n-1" and claims["email"] == "alice@example.com"
        assert claims["groups"] == ["eng", "oncall"] and claims["email_verified"] is True
        # The same person gets the same subject every time.
        r2 = await http.post(
            disco["token_endpoint"],
            data={
                **await _token_form(http, idp),
                "client_id": "tollgate",
                "client_secret": "s3cret",
            },
        )
        assert (
            jwt.decode(r2.json()["id_token"], options={"verify_signature": False})["sub"]
            == claims["sub"]
        )


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_verifier": "wrong-verifier"}, "invalid_grant"),
        ({"redirect_uri": "http://127.0.0.1:9999/oauth/callback"}, "invalid_grant"),
        ({"grant_type": "refresh_token"}, "unsupported_grant_type"),
    ],
)
async def test_token_endpoint_refuses_what_does_not_match(
    idp: DevIdp, change: dict[str, str], error: str
) -> None:
    async with httpx.AsyncClient() as http:
        signed_in = await _token_form(http, idp)
        verifier = signed_in["code_verifier"]
        form = {**signed_in, **change}
        r = await http.post(f"{idp.issuer}/token", data=form, auth=("tollgate", "s3cret"))
        assert r.status_code == 400 and r.json()["error"] == error
        # A refused exchange of the code used it up (the grant type is checked before it).
        form.update(code_verifier=verifier, redirect_uri=REDIRECT, grant_type="authorization_code")
        again = await http.post(f"{idp.issuer}/token", data=form, auth=("tollgate", "s3cret"))
        if error == "invalid_grant":
            assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        else:
            assert again.status_code == 200


async def test_wrong_client_secret_and_code_reuse_are_refused(idp: DevIdp) -> None:
    async with httpx.AsyncClient() as http:
        form = await _token_form(http, idp)
        bad = await http.post(f"{idp.issuer}/token", data=form, auth=("tollgate", "nope"))
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
        ok = await http.post(f"{idp.issuer}/token", data=form, auth=("tollgate", "s3cret"))
        assert ok.status_code == 200
        reuse = await http.post(f"{idp.issuer}/token", data=form, auth=("tollgate", "s3cret"))
        assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "change",
    [
        {"client_id": "someone-else"},
        {"redirect_uri": "https://evil.example.com/oauth/callback"},
        {"code_challenge_method": "plain"},
        {"nonce": ""},
        {"scope": "profile"},
    ],
)
async def test_authorize_refuses_a_malformed_request(idp: DevIdp, change: dict[str, str]) -> None:
    _, challenge = _pkce()
    async with httpx.AsyncClient() as http:
        params = _auth_params(challenge, **change)
        page = await http.get(f"{idp.issuer}/authorize", params=params)
        assert page.status_code == 200 and "Cannot sign in" in page.text
        posted = await http.post(f"{idp.issuer}/authorize", data={**params, "email": "a@b.c"})
        assert posted.status_code == 200 and "Cannot sign in" in posted.text


async def test_listens_on_loopback_only() -> None:
    from gwctl.cli import CommandError

    with pytest.raises(CommandError, match="loopback only"):
        await serve(DevIdp("c", "s"), "0.0.0.0", 0)
