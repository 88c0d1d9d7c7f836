"""The OAuth endpoints Claude Code calls (discovery, device authorization, token), every error row,
against the strict fake control plane over real gRPC."""

from __future__ import annotations

import grpc
import httpx
import orjson

from dataplane.edge.signin.oauth import DEVICE_GRANT
from dataplane.process.server import DataPlane
from tests.dataplane.edge.signin.conftest import wait_for_version
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.signin import FakeSignInControlPlane, oauth_error, sso_snapshot

FORM = {"content-type": "application/x-www-form-urlencoded"}


def assert_oauth_error(r: httpx.Response, status: int, error: str) -> dict[str, str]:
    assert r.status_code == status, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-type"].startswith("application/json")
    body = orjson.loads(r.content)
    assert set(body) == {"error", "error_description"} and body["error"] == error, body
    assert body["error_description"]
    return body


async def test_discovery_names_both_endpoints_on_the_base_origin(
    client: httpx.AsyncClient, dp: DataPlane
) -> None:
    r = await client.get("/.well-known/oauth-authorization-server")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    base = f"http://127.0.0.1:{dp.port}"
    doc = r.json()
    assert doc["issuer"] == base
    assert doc["device_authorization_endpoint"] == base + "/oauth/device_authorization"
    assert doc["token_endpoint"] == base + "/oauth/token"
    assert doc["grant_types_supported"] == [DEVICE_GRANT, "refresh_token"]
    assert "authorization_endpoint" not in doc


async def test_sign_in_off_is_404_with_an_oauth_error(
    client: httpx.AsyncClient, dp: DataPlane, cp: FakeSignInControlPlane, upstream: FakeAnthropic
) -> None:
    cp.push(sso_snapshot(upstream.base_url, "off", enabled=False))
    await wait_for_version(dp, "off")
    body = assert_oauth_error(
        await client.get("/.well-known/oauth-authorization-server"), 404, "not_configured"
    )
    assert "not enabled" in body["error_description"]
    assert_oauth_error(await client.post("/oauth/device_authorization"), 404, "not_configured")
    assert cp.calls == []


async def test_device_authorization(
    client: httpx.AsyncClient, dp: DataPlane, cp: FakeSignInControlPlane
) -> None:
    r = await client.post("/oauth/device_authorization", content=b"", headers=FORM)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    base = f"http://127.0.0.1:{dp.port}"
    assert body["verification_uri"] == base + "/device"
    assert body["verification_uri_complete"] == f"{base}/device?user_code={body['user_code']}"
    assert body["expires_in"] == 600 and body["interval"] == 5
    assert len(body["device_code"]) >= 43
    name, request = cp.calls[-1]
    assert name == "StartDevice" and request.public_url == base
    assert request.client_ip == "127.0.0.1" and request.user_agent.startswith("python-httpx")


async def test_device_authorization_when_the_control_plane_refuses(
    client: httpx.AsyncClient, cp: FakeSignInControlPlane
) -> None:
    cp.start_error = oauth_error("not_configured", 404, "Sign-in is not configured.")
    r = await client.post("/oauth/device_authorization")
    assert_oauth_error(r, 404, "not_configured")


async def test_device_authorization_is_rate_limited_per_address(
    client: httpx.AsyncClient, dp: DataPlane, cp: FakeSignInControlPlane
) -> None:
    answers = [(await client.post("/oauth/device_authorization")).status_code for _ in range(12)]
    assert answers[:10] == [200] * 10  # the burst
    r = await client.post("/oauth/device_authorization")
    body = assert_oauth_error(r, 429, "slow_down")
    assert int(r.headers["retry-after"]) >= 1 and "/login" in body["error_description"]
    assert len([c for c in cp.calls if c[0] == "StartDevice"]) == 10  # refusals cost no call
    metrics = (await client.get("/metrics")).text
    assert 'tollgate_signin_rate_limited_total{endpoint="device_authorization"} 3' in metrics
    assert 'tollgate_signin_device_authorizations_total{outcome="ok"} 10' in metrics


async def test_control_plane_down_is_503_temporarily_unavailable(
    client: httpx.AsyncClient, cp: FakeSignInControlPlane
) -> None:
    cp.fail["StartDevice"] = grpc.StatusCode.UNAVAILABLE
    r = await client.post("/oauth/device_authorization")
    assert_oauth_error(r, 503, "temporarily_unavailable")
    assert r.headers["retry-after"]
    for rpc, form in (
        ("PollDevice", {"grant_type": DEVICE_GRANT, "device_code": "x" * 43}),
        ("Refresh", {"grant_type": "refresh_token", "refresh_token": "r" * 43}),
    ):
        cp.fail[rpc] = grpc.StatusCode.DEADLINE_EXCEEDED
        assert_oauth_error(
            await client.post("/oauth/token", data=form), 503, "temporarily_unavailable"
        )
    metrics = (await client.get("/metrics")).text
    assert (
        'tollgate_signin_token_requests_total{grant="refresh_token",outcome="unavailable"} 1'
        in (metrics)
    )


async def test_each_oauth_error_keeps_its_status(
    client: httpx.AsyncClient, cp: FakeSignInControlPlane
) -> None:
    rows = [
        ("authorization_pending", 400),
        ("slow_down", 400),
        ("slow_down", 429),
        ("access_denied", 400),
        ("expired_token", 400),
        ("invalid_grant", 401),
    ]
    for error, status in rows:
        cp.poll_script.append(oauth_error(error, status))
    form = {"grant_type": DEVICE_GRANT, "device_code": "d" * 43}
    for error, status in rows:
        r = await client.post("/oauth/token", data=form)
        assert_oauth_error(r, status, error)
        if status == 429:
            assert r.headers["retry-after"]
    assert [c[1].device_code for c in cp.calls] == ["d" * 43] * len(rows)


async def test_device_grant_and_refresh_rotation(
    client: httpx.AsyncClient, cp: FakeSignInControlPlane
) -> None:
    device = (await client.post("/oauth/device_authorization")).json()
    form = {"grant_type": DEVICE_GRANT, "device_code": device["device_code"]}
    assert_oauth_error(await client.post("/oauth/token", data=form), 400, "authorization_pending")
    cp.grants[device["user_code"].replace("-", "")].approved = True
    r = await client.post("/oauth/token", data=form)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    tokens = r.json()
    assert set(tokens) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    rotated = (await client.post("/oauth/token", data=refresh)).json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    # The used one again: the control plane's 401 invalid_grant, the deprovisioning hook.
    body = assert_oauth_error(await client.post("/oauth/token", data=refresh), 401, "invalid_grant")
    assert "/login" in body["error_description"]


async def test_malformed_token_requests(
    client: httpx.AsyncClient, cp: FakeSignInControlPlane
) -> None:
    assert_oauth_error(
        await client.post("/oauth/token", data={"grant_type": "password"}),
        400,
        "unsupported_grant_type",
    )
    assert_oauth_error(await client.post("/oauth/token", data={}), 400, "invalid_request")
    assert_oauth_error(
        await client.post("/oauth/token", data={"grant_type": DEVICE_GRANT}), 400, "invalid_request"
    )
    assert_oauth_error(
        await client.post("/oauth/token", data={"grant_type": "refresh_token"}),
        400,
        "invalid_request",
    )
    repeated = b"grant_type=refresh_token&refresh_token=a&refresh_token=b"
    r = await client.post("/oauth/token", content=repeated, headers=FORM)
    assert "more than once" in assert_oauth_error(r, 400, "invalid_request")["error_description"]
    r = await client.post(
        "/oauth/token",
        content=b'{"grant_type": "refresh_token"}',
        headers={"content-type": "application/json"},
    )
    assert_oauth_error(r, 400, "invalid_request")
    r = await client.post("/oauth/token", content=b"grant_type=" + b"x" * 5000, headers=FORM)
    assert_oauth_error(r, 413, "invalid_request")
    assert_oauth_error(await client.get("/oauth/token"), 405, "invalid_request")
    assert cp.calls == []  # none of these reached the control plane
