"""Sign-in through real data-plane processes (``gwctl dataplane serve --public-url …``), the way
Claude Code and a browser drive it, against the strict fake control plane (tests/fakes/signin.py)
and the fake Anthropic: discovery, device authorization on one replica, the browser on another,
polling, inference attributed to the developer, refresh rotation, managed settings, disable
within a second, and a restart from the disk cache that holds no signing key.

The real control plane's side (OIDC, developers, snapshot builder) is tested on its own; this
file is about the data plane, so the control plane here is the fake.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gwapi.v1 import telemetry_pb2
from tests.dataplane.conftest import SECRET
from tests.e2e.dataplane_process import DataPlaneProcess
from tests.e2e.test_gateway import free_port
from tests.fakes.anthropic import UPSTREAM_KEY, FakeAnthropic
from tests.fakes.signin import (
    DEVELOPER_EMAIL,
    DEVELOPER_ID,
    DP_TOKEN,
    SIGNING_KEY,
    FakeSignInControlPlane,
    mint,
    sso_snapshot,
)

pytestmark = pytest.mark.e2e

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}
POLICY = '{"env": {"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"}}'


@dataclass
class Setup:
    cp: FakeSignInControlPlane
    upstream: FakeAnthropic
    one: DataPlaneProcess
    two: DataPlaneProcess
    tmp: Path


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    upstream = FakeAnthropic()
    await upstream.start()
    # Only the RPCs a data plane calls are served (the rest answer UNIMPLEMENTED).
    cp = FakeSignInControlPlane(sso_snapshot(upstream.base_url))  # type: ignore[abstract]
    await cp.start()
    port_one, port_two = free_port(), free_port()
    public = (
        f"http://127.0.0.1:{port_one}"  # both replicas behind one address, as behind a balancer
    )
    env = {"UPSTREAM_KEY": UPSTREAM_KEY, "TOLLGATE_DATAPLANE_TOKEN": DP_TOKEN}
    one = DataPlaneProcess(cp.address, tmp_path / "dp1", public, port_one, env)
    two = DataPlaneProcess(cp.address, tmp_path / "dp2", public, port_two, env)
    try:
        await one.start()
        await two.start()
        yield Setup(cp, upstream, one, two, tmp_path)
    finally:
        one.stop()
        two.stop()
        await cp.stop()
        await upstream.stop()


async def wait_events(cp: FakeSignInControlPlane, n: int) -> list[telemetry_pb2.UsageEvent]:
    async with asyncio.timeout(10):
        while len(cp.events) < n:
            await asyncio.sleep(0.05)
    return list(cp.events)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"}


async def sign_in(s: Setup) -> dict[str, object]:
    """Claude Code on replica one, the browser on replica two; returns the token response."""
    async with (
        httpx.AsyncClient(base_url=s.one.url, timeout=10) as cli,
        httpx.AsyncClient(base_url=s.two.url, timeout=10) as browser,
    ):
        meta = (await cli.get("/.well-known/oauth-authorization-server")).json()
        assert meta["token_endpoint"] == s.one.public_url + "/oauth/token"
        device = (await cli.post(urlsplit(meta["device_authorization_endpoint"]).path)).json()
        token_path = urlsplit(meta["token_endpoint"]).path
        poll = {"grant_type": DEVICE_GRANT, "device_code": device["device_code"]}
        pending = await cli.post(token_path, data=poll)
        assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"

        page = urlsplit(device["verification_uri_complete"])
        confirm = await browser.get(f"{page.path}?{page.query}")
        assert confirm.status_code == 200 and device["user_code"] in confirm.text
        r = await browser.post(
            "/device",
            data={"user_code": device["user_code"]},
            headers={"sec-fetch-site": "same-origin"},
        )
        assert r.status_code == 302, r.text
        state = parse_qs(urlsplit(r.headers["location"]).query)["state"][0]
        callback = await browser.get(
            "/oauth/callback", params={"state": state, "code": s.cp.idp_code_for(state)}
        )
        assert callback.status_code == 200, callback.text
        assert f"Signed in as <strong>{DEVELOPER_EMAIL}</strong>" in callback.text

        tokens = await cli.post(token_path, data=poll)
        assert tokens.status_code == 200, tokens.text
        return dict(tokens.json())


async def test_sign_in_then_inference_refresh_policy_and_disable(setup: Setup) -> None:
    s = setup
    tokens = await sign_in(s)
    access = str(tokens["access_token"])
    async with httpx.AsyncClient(base_url=s.two.url, timeout=10) as c:
        r = await c.post("/v1/messages", json=BODY, headers=bearer(access))
        assert r.status_code == 200, r.text
        r = await c.post("/v1/messages", json=BODY, headers=bearer(SECRET))  # a key, same request
        assert r.status_code == 200
        developer_event, key_event = await wait_events(s.cp, 2)
        assert developer_event.developer_id == DEVELOPER_ID
        assert developer_event.developer_email == DEVELOPER_EMAIL and developer_event.key_id == ""
        assert key_event.key_id == "key_alice" and key_event.developer_id == ""
        assert developer_event.usage.cost_micros == key_event.usage.cost_micros > 0

        # Refresh on the other replica: rotated; the used one again is the deprovisioning 401.
        refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        async with httpx.AsyncClient(base_url=s.one.url) as one:
            rotated = await one.post("/oauth/token", data=refresh)
            assert rotated.status_code == 200 and rotated.json()["refresh_token"]
            reused = await one.post("/oauth/token", data=refresh)
        assert reused.status_code == 401 and reused.json()["error"] == "invalid_grant"

        assert (await c.get("/managed/settings", headers=bearer(access))).status_code == 404
        s.cp.push(sso_snapshot(s.upstream.base_url, "policy", managed_settings=POLICY))
        async with asyncio.timeout(5):
            while (
                r := await c.get("/managed/settings", headers=bearer(access))
            ).status_code != 200:
                await asyncio.sleep(0.02)
        assert r.json()["settings"]["env"] == {"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"}
        etag = r.headers["etag"]
        again = await c.get("/managed/settings", headers={**bearer(access), "if-none-match": etag})
        assert again.status_code == 304

        s.cp.push(
            sso_snapshot(
                s.upstream.base_url,
                "disabled",
                disabled=True,
                tokens_not_before_ms=int(time.time() * 1000),
            )
        )
        started = time.monotonic()
        async with asyncio.timeout(5):
            while (
                r := await c.post("/v1/messages", json=BODY, headers=bearer(access))
            ).status_code == 200:
                await asyncio.sleep(0.02)
        assert time.monotonic() - started < 1.0
        assert r.status_code == 401 and "/login" in r.json()["error"]["message"]


async def test_restart_from_the_disk_cache_holds_no_signing_key(setup: Setup) -> None:
    s = setup
    s.one.stop()
    cached = (s.one.state_dir / "snapshot.pb").read_bytes()
    assert b"alice@example.com" in cached and SIGNING_KEY not in cached
    port = s.cp.port
    await s.cp.stop()
    await s.one.start()  # serves its cached snapshot, the control plane away
    token = mint()
    async with httpx.AsyncClient(base_url=s.one.url, timeout=10) as c:
        r = await c.post("/v1/messages", json=BODY, headers=bearer(token))
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        assert "sign-in keys" in r.json()["error"]["message"]
        assert (await c.post("/v1/messages", json=BODY, headers=bearer(SECRET))).status_code == 200
        device = await c.post("/oauth/device_authorization")
        assert device.status_code == 503 and device.json()["error"] == "temporarily_unavailable"
        await s.cp.start(port)
        async with asyncio.timeout(15):
            while (
                r := await c.post("/v1/messages", json=BODY, headers=bearer(token))
            ).status_code == 503:
                await asyncio.sleep(0.1)
        assert r.status_code == 200, r.text
