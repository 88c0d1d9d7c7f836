"""A signed-in developer's bearer token on the API: inference, attribution, allow-lists, target,
limits, /managed/settings, revocation within a second, and keys not yet received after a restart
from the disk cache — on a data plane fed by the strict fake control plane."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import orjson

from dataplane.process.server import DataPlane
from gwapi.v1 import common_pb2
from tests.dataplane.conftest import SECRET
from tests.dataplane.edge.signin.conftest import StartDataPlane, wait_for_version
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.signin import (
    DEVELOPER_EMAIL,
    DEVELOPER_ID,
    FakeSignInControlPlane,
    mint,
    sso_snapshot,
)

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}
POLICY = '{"env": {"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"}}'


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"}


async def events_for(cp: FakeSignInControlPlane, n: int, timeout: float = 5.0) -> list[object]:
    async with asyncio.timeout(timeout):
        while len(cp.events) < n:
            await asyncio.sleep(0.02)
    return list(cp.events)


async def test_a_developer_is_served_and_named_in_usage(
    client: httpx.AsyncClient, cp: FakeSignInControlPlane, upstream: FakeAnthropic
) -> None:
    # Claude Code with a stray provider key in the shell: the access token still wins.
    headers = {**bearer(mint()), "x-api-key": "sk-ant-api03-stray"}
    r = await client.post("/v1/messages", json=BODY, headers=headers)
    assert r.status_code == 200, r.text
    sent = upstream.requests[-1]
    assert sent.header("authorization") is None  # the access token never goes upstream
    (event,) = await events_for(cp, 1)
    assert event.developer_id == DEVELOPER_ID and event.developer_email == DEVELOPER_EMAIL  # type: ignore[attr-defined]
    assert event.key_id == "" and event.key_name == "" and event.workspace == "team-a"  # type: ignore[attr-defined]
    assert event.usage.cost_micros > 0  # type: ignore[attr-defined]
    # Virtual keys unchanged, side by side.
    r = await client.post("/v1/messages", json=BODY, headers=bearer(SECRET))
    assert r.status_code == 200
    key_event = (await events_for(cp, 2))[1]
    assert key_event.key_id == "key_alice" and key_event.developer_id == ""  # type: ignore[attr-defined]


async def test_model_outside_the_allow_list_is_400_for_developers_403_for_keys(
    start_dp: StartDataPlane, cp: FakeSignInControlPlane, upstream: FakeAnthropic
) -> None:
    cp.push(sso_snapshot(upstream.base_url, "haiku", allowed_models=("claude-haiku-*",)))
    dp = await start_dp()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}") as c:
        r = await c.post("/v1/messages", json=BODY, headers=bearer(mint()))
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        assert "not allowed in workspace 'team-a'" in r.json()["error"]["message"]
        r = await c.post("/v1/messages", json=BODY, headers=bearer(SECRET))
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
        models = (await c.get("/v1/models", headers=bearer(mint()))).json()
        assert [m["id"] for m in models["data"]] == ["claude-haiku-4-5"]
    assert upstream.requests == []


async def test_no_member_provider_is_a_503_api_error_naming_the_fix(
    start_dp: StartDataPlane, cp: FakeSignInControlPlane, upstream: FakeAnthropic
) -> None:
    cp.push(sso_snapshot(upstream.base_url, "untargeted", member_provider=""))
    dp = await start_dp()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}") as c:
        r = await c.post("/v1/messages", json=BODY, headers=bearer(mint()))
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["type"] == "api_error"
    assert error["message"] == (
        "No provider is set for signed-in developers of workspace 'team-a'; ask your platform "
        "team (gwctl workspaces update team-a --member-provider …)."
    )
    assert r.headers["x-should-retry"] == "false"


async def test_developer_limits_name_the_developer(
    start_dp: StartDataPlane, cp: FakeSignInControlPlane, upstream: FakeAnthropic
) -> None:
    cp.push(sso_snapshot(upstream.base_url, "limited", member_limits=common_pb2.Limits(rpm=1)))
    dp = await start_dp()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}") as c:
        first = await c.post("/v1/messages", json=BODY, headers=bearer(mint()))
        assert first.headers["x-tollgate-ratelimit-requests-limit"] == "1"
        r = await c.post("/v1/messages", json=BODY, headers=bearer(mint(iat=time.time() - 1)))
        assert r.status_code == 429
        assert "for developer 'alice@example.com' reached" in r.json()["error"]["message"]
        # The key in the same workspace has its own counters.
        assert (await c.post("/v1/messages", json=BODY, headers=bearer(SECRET))).status_code == 200


async def test_managed_settings(
    start_dp: StartDataPlane, cp: FakeSignInControlPlane, upstream: FakeAnthropic
) -> None:
    cp.push(sso_snapshot(upstream.base_url, "policy", managed_settings=POLICY))
    dp = await start_dp()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}") as c:
        r = await c.get("/managed/settings", headers=bearer(mint()))
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"uuid", "checksum", "settings"}
        assert body["settings"] == orjson.loads(POLICY)
        assert r.headers["etag"] == f'"{body["checksum"]}"'
        assert r.headers["cache-control"] == "no-cache"
        for tag in (r.headers["etag"], body["checksum"]):
            again = await c.get(
                "/managed/settings", headers={**bearer(mint()), "if-none-match": tag}
            )
            assert again.status_code == 304 and again.content == b""
            assert again.headers["etag"] == r.headers["etag"]
        stale = await c.get("/managed/settings", headers={**bearer(mint()), "if-none-match": '"x"'})
        assert stale.status_code == 200
        # A virtual key has no managed policy: 404, the client's clean "none".
        r = await c.get("/managed/settings", headers=bearer(SECRET))
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
        # No token at all: the Anthropic envelope's 401.
        r = await c.get("/managed/settings")
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    cp.push(sso_snapshot(upstream.base_url, "nopolicy"))
    await wait_for_version(dp, "nopolicy")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}") as c:
        r = await c.get("/managed/settings", headers=bearer(mint()))
    assert r.status_code == 404 and "No managed settings" in r.json()["error"]["message"]


async def test_disable_refuses_live_tokens_within_a_second(
    client: httpx.AsyncClient, dp: DataPlane, cp: FakeSignInControlPlane, upstream: FakeAnthropic
) -> None:
    token = mint(iat=time.time() - 5)
    assert (await client.post("/v1/messages", json=BODY, headers=bearer(token))).status_code == 200
    started = time.monotonic()
    cp.push(
        sso_snapshot(
            upstream.base_url,
            "disabled",
            disabled=True,
            tokens_not_before_ms=int(time.time() * 1000),
        )
    )
    while True:
        r = await client.post("/v1/messages", json=BODY, headers=bearer(token))
        if r.status_code != 200:
            break
        await asyncio.sleep(0.02)
    assert time.monotonic() - started < 1.0
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert "run /login again" in r.json()["error"]["message"]
    assert r.headers["x-should-retry"] == "false"
    metrics = (await client.get("/metrics")).text
    assert 'tollgate_bearer_refusals_total{reason="disabled"} 1' in metrics


async def test_keys_not_received_after_a_restart_from_the_cache(
    start_dp: StartDataPlane, cp: FakeSignInControlPlane, tmp_path: Path
) -> None:
    state = tmp_path / "restart"
    first = await start_dp(state_dir=state)
    await first.stop()
    raw = (state / "snapshot.pb").read_bytes()
    assert cp.snapshot.signing_keys[0].key not in raw  # never on disk
    port = cp.port
    await cp.stop()
    dp = await start_dp(state_dir=state, wait=False)  # serves the cached snapshot
    assert dp.holder.current is not None and dp.holder.current.signing_keys_missing
    token = mint()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}") as c:
        r = await c.post("/v1/messages", json=BODY, headers=bearer(token))
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        assert "sign-in keys" in r.json()["error"]["message"]
        assert (await c.post("/v1/messages", json=BODY, headers=bearer(SECRET))).status_code == 200
        before = len(cp.watch_requests)
        await cp.start(port)  # back: the data plane announces "" and gets the keys
        async with asyncio.timeout(10):
            while dp.holder.current.signing_keys_missing:
                await asyncio.sleep(0.05)
        r = await c.post("/v1/messages", json=BODY, headers=bearer(token))
        assert r.status_code == 200, r.text
    assert cp.watch_requests[before].version_info == ""


async def test_bad_tokens_are_refused_with_a_login_hint(client: httpx.AsyncClient) -> None:
    old = time.time() - 120  # issued before the snapshot: a developer it does not know is gone
    for token in (mint(key=b"w" * 32), mint(sub="dev_ghost", iat=old), mint(iat=old - 8000)):
        r = await client.post("/v1/messages", json=BODY, headers=bearer(token))
        assert r.status_code == 401 and "/login" in r.json()["error"]["message"]
        assert token not in r.text
    metrics = (await client.get("/metrics")).text
    for reason in ("bad_signature", "unknown_developer", "expired"):
        assert f'tollgate_bearer_refusals_total{{reason="{reason}"}} 1' in metrics


async def test_the_middleware_verifies_a_token_once(
    client: httpx.AsyncClient, jwt_decodes: list[None]
) -> None:
    token = mint()
    for _ in range(3):
        assert (await client.get("/v1/models", headers=bearer(token))).status_code == 200
    assert (await client.get("/managed/settings", headers=bearer(token))).status_code == 404
    assert len(jwt_decodes) == 1
