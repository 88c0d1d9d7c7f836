"""``GET /v1/tollgate/whoami``: the caller's own view (gwctl doctor), on a real data plane fed a
hand-built snapshot, in front of the strict fake upstream."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from dataplane.config.snapshot import Snapshot
from dataplane.process.server import DataPlane
from gwapi.v1 import common_pb2, discovery_pb2
from tests.dataplane.conftest import (
    EXPIRED,
    REVOKED,
    SECRET,
    SIMULATED,
    build_snapshot,
    sha,
    start_dataplane,
)
from tests.fakes.anthropic import UPSTREAM_KEY, FakeAnthropic

PATH = "/v1/tollgate/whoami"
BEDROCK = "gw-bedrock-0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
ROUTED = "gw-routed-0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
OTHER = "gw-other-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHI"
ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc"
STORED_SECRET = "sk-ant-stored-provider-secret-0123456789"
API = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


def auth(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def snapshot(upstream: FakeAnthropic, *, stored_secret: str | None = "") -> Snapshot:
    """The conftest snapshot plus: budgets on key_alice and team-a, a Bedrock provider with a
    model map, a route sim → dead → bedrock (breaker after 1 failure), a provider whose key is
    stored on the control plane (``stored_secret`` None: not received), and another workspace."""
    msg = build_snapshot(upstream.base_url)
    ws = msg.workspaces[0]
    ws.timezone = "Europe/Berlin"
    ws.min_client_version = "2.1.0"
    ws.allowed_models.extend(["claude-*", "mistral-*"])
    ws.limits.CopyFrom(
        common_pb2.Limits(
            budgets=[common_pb2.Budget(amount_micros=900_000_000, period=common_pb2.PERIOD_MONTH)],
            rpm=600,
        )
    )
    alice = next(k for k in msg.keys if k.id == "key_alice")
    alice.limits.CopyFrom(
        common_pb2.Limits(
            budgets=[common_pb2.Budget(amount_micros=1_000_000, period=common_pb2.PERIOD_DAY)],
            max_parallel=4,
        )
    )
    alice.expires_at_ms = int(time.time() * 1000) + 86_400_000
    msg.providers.append(
        common_pb2.Provider(
            name="bedrock",
            kind="bedrock",
            base_url="http://127.0.0.1:9",
            options={"region": "eu-west-1", "model_map": orjson.dumps({"big": ARN}).decode()},
        )
    )
    msg.providers.append(
        common_pb2.Provider(
            name="stored",
            kind="anthropic",
            base_url="http://stored.example.invalid",
            has_secret=True,
        )
    )
    if stored_secret is not None:
        msg.secrets.append(discovery_pb2.ProviderSecret(provider="stored", api_key=STORED_SECRET))
    msg.routes.append(
        common_pb2.Route(
            name="r",
            mode="fallback",
            breaker_failures=1,
            targets=[
                common_pb2.RouteTarget(provider="dead"),
                common_pb2.RouteTarget(provider="sim"),
                common_pb2.RouteTarget(provider="bedrock", model="claude-sonnet-4-5-20250929"),
            ],
        )
    )
    key = discovery_pb2.SnapshotKey
    msg.keys.extend(
        [
            key(id="key_bed", secret_sha256=sha(BEDROCK), name="bed", workspace="team-a",
                provider="bedrock"),
            key(id="key_route", secret_sha256=sha(ROUTED), name="routed", workspace="team-a",
                route="r"),
            key(id="key_stored", secret_sha256=sha("gw-stored-0123456789abcdefghijklmnopqrstuv"),
                name="stored-user", workspace="team-a", provider="stored"),
        ]
    )  # fmt: skip
    msg.workspaces.append(common_pb2.Workspace(name="team-b", allowed_models=["secret-model-*"]))
    msg.keys.append(key(id="key_bob", secret_sha256=sha(OTHER), name="bob", workspace="team-b",
                        provider="sim"))  # fmt: skip
    return Snapshot.from_proto(msg)


async def whoami(client: httpx.AsyncClient, secret: str, model: str = "") -> dict[str, Any]:
    r = await client.get(PATH, params={"model": model} if model else None, headers=auth(secret))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_a_key_sees_itself_its_workspace_budgets_and_target(
    dataplane: DataPlane, client: httpx.AsyncClient, upstream: FakeAnthropic
) -> None:
    dataplane.holder.swap(snapshot(upstream))
    body = await whoami(client, SECRET, "claude-opus-4-8")
    assert body["dataplane_id"] == dataplane.node_id
    assert body["snapshot"]["version"] == "v1" and body["snapshot"]["age_s"] < 60
    member = body["member"]
    assert (member["kind"], member["id"], member["name"]) == ("key", "key_alice", "alice-laptop")
    assert member["expires_at"].endswith("Z") and member["models"] == []
    ws = body["workspace"]
    assert ws["name"] == "team-a" and ws["timezone"] == "Europe/Berlin"
    assert ws["allowed_models"] == ["claude-*", "mistral-*"] and ws["min_client_version"] == "2.1.0"
    key_day, ws_month = body["budgets"]
    assert (key_day["scope"], key_day["period"], key_day["limit_micros"]) == ("key", "day", 10**6)
    assert key_day["label"] == "key 'alice-laptop' (workspace team-a)"  # as refusals say it
    assert ws_month["label"] == "workspace 'team-a'"
    assert key_day["spent_micros"] == 0 and key_day["remaining_micros"] == 10**6
    assert key_day["resets_at"].endswith(("+01:00", "+02:00"))  # the workspace's own midnight
    assert (ws_month["scope"], ws_month["period"], ws_month["source"]) == (
        "workspace",
        "month",
        "counters",
    )
    assert body["rate_limits"] == [
        {"scope": "key", "rpm": 0, "rph": 0, "tpm": 0, "max_parallel": 4},
        {"scope": "workspace", "rpm": 600, "rph": 0, "tpm": 0, "max_parallel": 0},
    ]
    assert body["target"] == {"kind": "provider", "name": "anthropic", "mode": ""}
    assert body["model"] == {"id": "claude-opus-4-8", "allowed": True, "status": 200, "message": ""}
    (target,) = body["targets"]
    assert target["provider"] == "anthropic" and target["kind"] == "anthropic"
    assert target["upstream_model"] == "claude-opus-4-8" and target["breaker"] == "closed"
    assert target["problem"] == "" and target["available"] is True


async def test_budgets_show_what_requests_spent_without_reserving_anything(
    dataplane: DataPlane, client: httpx.AsyncClient, upstream: FakeAnthropic
) -> None:
    dataplane.holder.swap(snapshot(upstream))
    message = orjson.dumps(
        {
            "model": "claude-opus-4-8",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}],
        }
    )

    async def remaining_after_admission() -> int:
        r = await client.post("/v1/messages", headers={**auth(SECRET), **API}, content=message)
        assert r.status_code == 200, r.text
        return int(r.headers["x-tollgate-budget-remaining-usd"].replace(".", ""))

    assert await remaining_after_admission() == 10**6
    for _ in range(3):  # reading changes nothing
        key_day, ws_month = (await whoami(client, SECRET))["budgets"]
    spent = key_day["spent_micros"]
    assert spent > 0 and key_day["reserved_micros"] == 0
    assert key_day["remaining_micros"] == 10**6 - spent
    assert ws_month["spent_micros"] == spent
    # The next request's admission sees exactly what whoami showed.
    assert await remaining_after_admission() == 10**6 - spent


async def test_nothing_about_other_tenants_and_no_secret(
    dataplane: DataPlane, client: httpx.AsyncClient, upstream: FakeAnthropic
) -> None:
    dataplane.holder.swap(snapshot(upstream))
    for secret in (SECRET, ROUTED, BEDROCK):
        r = await client.get(PATH, params={"model": "big"}, headers=auth(secret))
        leaks = ["team-b", "bob", "secret-model", "key_bob", UPSTREAM_KEY, STORED_SECRET,
                 "127.0.0.1:9", upstream.base_url, "123456789012", "example.invalid"]  # fmt: skip
        if secret != SECRET:
            leaks.append("alice")
        for leaked in leaks:
            assert leaked not in r.text, (secret, leaked)
    body = await whoami(client, OTHER)
    assert body["workspace"]["name"] == "team-b" and "team-a" not in orjson.dumps(body).decode()
    assert body["budgets"] == [] and body["member"]["name"] == "bob"


async def test_bedrock_mapping_and_its_refusal(
    dataplane: DataPlane, client: httpx.AsyncClient, upstream: FakeAnthropic
) -> None:
    dataplane.holder.swap(snapshot(upstream))
    (target,) = (await whoami(client, BEDROCK, "claude-opus-4-8"))["targets"]
    assert (target["kind"], target["upstream_model"]) == ("bedrock", "eu.anthropic.claude-opus-4-8")
    (target,) = (await whoami(client, BEDROCK, "big"))["targets"]
    assert (
        target["upstream_model"] == "arn:aws:bedrock:us-east-1:…:application-inference-profile/abc"
    )
    body = await whoami(client, BEDROCK, "mistral-large")
    assert body["model"]["allowed"] is True
    (target,) = body["targets"]
    assert target["upstream_model"] == ""
    assert "is not served by Bedrock provider 'bedrock'" in target["model_error"]


async def test_route_targets_in_order_with_overrides_and_breakers(
    dataplane: DataPlane, client: httpx.AsyncClient, upstream: FakeAnthropic
) -> None:
    dataplane.holder.swap(snapshot(upstream))
    r = await client.post(
        "/v1/messages",
        headers={**auth(ROUTED), **API},
        content=orjson.dumps(
            {
                "model": "claude-opus-4-8",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}],
            }
        ),
    )
    assert r.status_code == 200 and r.headers["x-tollgate-provider"] == "sim"
    body = await whoami(client, ROUTED, "claude-opus-4-8")
    assert body["target"] == {"kind": "route", "name": "r", "mode": "fallback"}
    dead, sim, bedrock = body["targets"]
    assert (dead["provider"], dead["breaker"]) == ("dead", "open")
    assert 0 < dead["breaker_retry_s"] <= 30
    assert (sim["breaker"], sim["upstream_model"]) == ("closed", "claude-opus-4-8")
    assert bedrock["model"] == "claude-sonnet-4-5-20250929"  # the route's override
    assert bedrock["upstream_model"] == "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"


async def test_a_stored_key_not_received_is_a_problem(
    dataplane: DataPlane, client: httpx.AsyncClient, upstream: FakeAnthropic
) -> None:
    dataplane.holder.swap(snapshot(upstream, stored_secret=None))
    stored = "gw-stored-0123456789abcdefghijklmnopqrstuv"
    (target,) = (await whoami(client, stored, "claude-opus-4-8"))["targets"]
    assert target["problem"] == "secret_not_received"
    assert "has not received it yet" in target["message"]
    dataplane.holder.swap(snapshot(upstream))
    (target,) = (await whoami(client, stored, "claude-opus-4-8"))["targets"]
    assert target["problem"] == "" and target["upstream_model"] == "claude-opus-4-8"


async def test_model_refusals_are_the_ones_a_request_gets(
    dataplane: DataPlane, client: httpx.AsyncClient, upstream: FakeAnthropic
) -> None:
    dataplane.holder.swap(snapshot(upstream))
    model = (await whoami(client, SIMULATED, "gpt-5"))["model"]
    assert model["allowed"] is False and model["status"] == 403
    assert "not allowed in workspace 'team-a' (allowed: claude-*, mistral-*)" in model["message"]
    r = await client.get(PATH, params={"model": "bad model"}, headers=auth(SECRET))
    assert r.status_code == 400 and "not a model id" in r.json()["error"]["message"]
    assert (await whoami(client, SECRET))["model"] is None


async def test_refused_credentials_get_the_401_that_says_which(
    dataplane: DataPlane, client: httpx.AsyncClient, upstream: FakeAnthropic
) -> None:
    dataplane.holder.swap(snapshot(upstream))
    for secret, words in (
        (REVOKED, "has been revoked"),
        (EXPIRED, "expired at"),
        ("gw-unknown-0123456789abcdefghijklmnopqrstuvwxyz", "not a valid Tollgate virtual key"),
        ("sk-ant-api03-provider-key", "looks like a provider key"),
    ):
        r = await client.get(PATH, headers=auth(secret))
        assert r.status_code == 401 and words in r.json()["error"]["message"], r.text


async def test_counter_store_down_falls_back_to_the_ledger(
    tmp_path: Path, upstream: FakeAnthropic
) -> None:
    # Shared counters at a closed port: the budgets come from the snapshot's spend seeds.
    msg_dp = await start_dataplane(tmp_path / "dp", None, redis_url="redis://127.0.0.1:1/0")
    try:
        msg_dp.holder.swap(snapshot(upstream))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{msg_dp.port}") as c:
            key_day, ws_month = (await whoami(c, SECRET))["budgets"]
        assert key_day["source"] == ws_month["source"] == "ledger"
        assert key_day["spent_micros"] == 0 and key_day["limit_micros"] == 10**6
    finally:
        await msg_dp.stop()
