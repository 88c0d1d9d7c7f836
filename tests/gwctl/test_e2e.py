"""gwctl against a real control plane (127.0.0.1:0, temporary SQLite) run in a background thread.

``gwctl.main.main([...])`` runs in-process on the test thread (it owns its own event loop); the
server's loop lives in the fixture's thread. Usage events enter through Telemetry.ReportUsage
with the data-plane token, exactly as a data plane would send them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from gwapi.v1 import common_pb2, telemetry_pb2
from tests.fakes.webhook import WebhookSink
from tests.gwctl.cli import following, gw, gw_json, report, unique

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gwctl_env")]


@pytest.fixture(scope="module")
def control_plane_settings() -> dict[str, Any]:
    return {"allow_internal_webhooks": True}  # the alert webhook sink listens on 127.0.0.1


def event(ws: str, key_id: str, n: int, model: str, cost: int) -> telemetry_pb2.UsageEvent:
    return telemetry_pb2.UsageEvent(
        request_id=f"req_{ws}_{n}",
        time_ms=int(time.time() * 1000) - 60_000 + n,
        workspace=ws,
        key_id=key_id,
        key_name="alice",
        session_id=str(uuid.uuid4()),
        model_requested=model,
        model_served=model,
        provider="sim",
        attempts=1,
        status=200,
        ttfb_ms=120,
        latency_ms=900 + n,
        usage=common_pb2.Usage(
            input_tokens=100 * n,
            output_tokens=10 * n,
            cache_creation_input_tokens=1000,
            cache_read_input_tokens=5000,
            cost_micros=cost,
        ),
    )


def test_workspace_lifecycle(capsys: pytest.CaptureFixture[str]) -> None:
    name = unique("ws")
    ws = gw_json(capsys, "workspaces", "create", name, "--budget", "$1,000.50/month",
                 "--budget", "50/day", "--rpm", "100", "--description", "team")  # fmt: skip
    assert ws["name"] == name
    assert sorted(ws["budgets"]) == ["$1,000.50/month", "$50/day"]
    assert {b["amount_micros"] for b in ws["limits"]["budgets"]} == {1_000_500_000, 50_000_000}
    assert name in [w["name"] for w in gw_json(capsys, "workspaces", "list")]

    updated = gw_json(capsys, "workspaces", "update", name, "--rpm", "10")
    assert updated["limits"]["rpm"] == 10
    assert sorted(updated["budgets"]) == ["$1,000.50/month", "$50/day"]  # untouched by the mask
    assert updated["description"] == "team"

    code, stdout, _ = gw(capsys, "workspaces", "show", name)
    assert code == 0 and "$50/day" in stdout and "rpm:" in stdout

    code, _, err = gw(capsys, "workspaces", "delete", name)
    assert code == 2 and "--yes" in err
    assert gw(capsys, "workspaces", "delete", name, "--yes")[0] == 0
    code, stdout, err = gw(capsys, "workspaces", "show", name)
    assert code == 1 and stdout == ""
    assert err.startswith("error: ") and name in err and "Traceback" not in err


def test_duplicate_workspace_is_a_readable_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    name = unique("dup")
    assert gw(capsys, "workspaces", "create", name)[0] == 0
    code, _, err = gw(capsys, "workspaces", "create", name)
    assert code == 1
    assert err.startswith("error: ") and name in err


def test_providers_routes_and_keys(capsys: pytest.CaptureFixture[str]) -> None:
    ws, prov, route = unique("team"), unique("sim"), unique("route")
    assert gw(capsys, "workspaces", "create", ws)[0] == 0
    p = gw_json(capsys, "providers", "create", prov, "--kind", "simulator", "--latency-ms", "5")
    assert p["kind"] == "simulator" and p["options"] == {"latency_ms": "5"}
    assert prov in [x["name"] for x in gw_json(capsys, "providers", "list")]
    assert gw_json(capsys, "providers", "show", prov)["name"] == prov

    r = gw_json(capsys, "routes", "create", route, "--mode", "fallback", "--targets", prov,
                "--retries", "1")  # fmt: skip
    assert [t["provider"] for t in r["targets"]] == [prov]
    assert route in [x["name"] for x in gw_json(capsys, "routes", "list")]

    created = gw_json(capsys, "keys", "create", "--workspace", ws, "--name", "alice",
                      "--provider", prov, "--budget", "50/day", "--expires", "30d",
                      "--models", "claude-sonnet-*,claude-haiku-*")  # fmt: skip
    key_id, secret = created["id"], created["key"]
    assert key_id and secret.startswith(created["prefix"])
    assert created["status"] == "active" and created["expires_at_ms"] > 0
    assert created["models"] == ["claude-sonnet-*", "claude-haiku-*"]

    code, stdout, err = gw(capsys, "keys", "create", "-w", ws, "--name", "bob", "--route", route)
    assert code == 0 and "gw-" in stdout and "only time" in err

    listed = gw_json(capsys, "keys", "list", "--workspace", ws)
    assert {k["name"] for k in listed} == {"alice", "bob"}
    code, stdout, _ = gw(capsys, "keys", "list", "--workspace", ws)
    assert secret not in stdout and created["prefix"] in stdout

    assert gw_json(capsys, "keys", "show", key_id)["budgets"] == ["$50/day"]
    updated = gw_json(capsys, "keys", "update", key_id, "--rpm", "5", "--route", route)
    assert updated["limits"]["rpm"] == 5
    assert (updated["route"], updated["provider"]) == (route, "")

    code, _, err = gw(capsys, "keys", "revoke", key_id)
    assert code == 2 and "not a terminal" in err
    assert gw_json(capsys, "keys", "show", key_id)["status"] == "active"
    revoked = gw_json(capsys, "keys", "revoke", key_id, "--yes")
    assert revoked["status"] == "revoked"
    assert key_id not in [k["id"] for k in gw_json(capsys, "keys", "list", "-w", ws)]
    assert key_id in [k["id"] for k in gw_json(capsys, "keys", "list", "-w", ws, "--all")]

    assert gw(capsys, "keys", "delete", key_id, "--yes")[0] == 0
    assert gw(capsys, "keys", "show", key_id)[0] == 1


def test_usage_and_logs(control_plane: str, capsys: pytest.CaptureFixture[str]) -> None:
    ws, prov = unique("usage"), unique("sim")
    assert gw(capsys, "workspaces", "create", ws)[0] == 0
    assert gw(capsys, "providers", "create", prov, "--kind", "simulator")[0] == 0
    key_id = gw_json(capsys, "keys", "create", "-w", ws, "--name", "alice", "--provider", prov)[
        "id"
    ]
    report(control_plane, [
        event(ws, key_id, 1, "claude-sonnet-4-5", 12_345),
        event(ws, key_id, 2, "claude-sonnet-4-5", 1),
        event(ws, key_id, 3, "claude-haiku-4-5", 1_000_000),
    ])  # fmt: skip
    report(control_plane, [event(ws, key_id, 3, "claude-haiku-4-5", 1_000_000)])  # a replay

    doc = gw_json(capsys, "usage", "--workspace", ws, "--by", "model", "--since", "24h")
    rows = {r["group"]: r for r in doc["rows"]}
    assert rows["claude-sonnet-4-5"]["cost_usd"] == "0.012346"
    assert rows["claude-sonnet-4-5"]["requests"] == 2
    assert rows["claude-haiku-4-5"]["cost_usd"] == "1.000000"
    assert doc["total"]["requests"] == 3
    assert doc["total"]["cost_usd"] == "1.012346"
    assert doc["total"]["cache_read_input_tokens"] == 15_000

    code, stdout, _ = gw(capsys, "usage", "--workspace", ws, "--by", "model")
    assert code == 0
    assert stdout.splitlines()[-1].split()[0] == "TOTAL"
    assert stdout.splitlines()[-1].endswith("1.012346")

    logs = gw_json(capsys, "logs", "tail", "--workspace", ws, "-n", "2")
    assert [e["request_id"] for e in logs] == [f"req_{ws}_2", f"req_{ws}_3"]
    assert logs[1]["cost_usd"] == "1.000000"
    code, stdout, _ = gw(capsys, "logs", "tail", "--key", key_id, "-n", "1")
    assert code == 0 and f"req_{ws}_3" in stdout and "claude-haiku-4-5" in stdout


def test_logs_follow_streams_json_lines(
    control_plane: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ws = unique("follow")
    assert gw(capsys, "workspaces", "create", ws)[0] == 0
    report(control_plane, [event(ws, "key_x", 1, "claude-sonnet-4-5", 5)])
    proc = following(tmp_path, "logs", "tail", "-f", "-o", "json", "-w", ws)
    try:
        assert proc.stdout is not None
        first = orjson.loads(proc.stdout.readline())
        assert first["request_id"] == f"req_{ws}_1"
        report(control_plane, [event(ws, "key_x", 2, "claude-sonnet-4-5", 7)])
        second = orjson.loads(proc.stdout.readline())
        assert second["request_id"] == f"req_{ws}_2" and second["cost_usd"] == "0.000007"
    finally:
        proc.terminate()
        proc.wait(10)


def test_dataplanes_list_when_none_connected(capsys: pytest.CaptureFixture[str]) -> None:
    doc = gw_json(capsys, "dataplanes", "list")
    assert "current_version" in doc and isinstance(doc["dataplanes"], list)
    code, stdout, _ = gw(capsys, "dataplanes", "list")
    assert code == 0 and stdout.startswith("current snapshot version:")


def test_missing_and_wrong_token_are_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOLLGATE_ADMIN_TOKEN")
    code, stdout, err = gw(capsys, "workspaces", "list")
    assert code == 1 and stdout == ""
    assert err.startswith("error: ") and "TOLLGATE_ADMIN_TOKEN" in err
    assert "Traceback" not in err
    code, _, err = gw(capsys, "workspaces", "list", "--token", "wrong-token-value")
    assert code == 1 and err.startswith("warning: --token puts the admin token on the command line")
    assert "\nerror: invalid admin token" in err
    assert "wrong-token-value" not in err


def test_unreachable_control_plane(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = gw(capsys, "workspaces", "list", "--control-plane", f"127.0.0.1:{port}")
    assert code == 1
    assert err == (
        f"error: cannot reach the control plane at 127.0.0.1:{port}: is it running? "
        "(gwctl controlplane serve)\n"
    )


def test_controlplane_serve_passes_flags_through(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    result = subprocess.run(
        [sys.executable, "-m", "gwctl.main", "controlplane", "serve", "--listen", "127.0.0.1:0",
         "--db", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "admin token is required" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "gwctl.main", "controlplane", "serve", "--help"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and "--dataplane-token-file" in result.stdout


def test_bedrock_vertex_passthrough_providers(capsys: pytest.CaptureFixture[str]) -> None:
    br, vx, mx = unique("bedrock"), unique("vertex"), unique("max")
    p = gw_json(capsys, "providers", "create", br, "--kind", "bedrock", "--region", "eu-west-3",
                "--profile", "bedrock-prod", "--inference-profile", "eu",
                "--model-map", "claude-x=eu.anthropic.x-v1:0", "--model-map", "claude-y=y",
                "--timeout-read", "300")  # fmt: skip
    assert p["base_url"] == ""  # derived from the region on the data plane
    assert p["options"] == {
        "region": "eu-west-3",
        "profile": "bedrock-prod",
        "inference_profile": "eu",
        "model_map": '{"claude-x":"eu.anthropic.x-v1:0","claude-y":"y"}',
        "timeout_read_s": "300",
    }
    code, stdout, _ = gw(capsys, "providers", "show", br)
    assert code == 0
    for text in ("https://bedrock-runtime.eu-west-3.amazonaws.com (default)",
                 "AWS profile bedrock-prod", "inference profile: eu",
                 "2 entries: claude-x → eu.anthropic.x-v1:0, claude-y → y", "read 300s"):  # fmt: skip
        assert text in stdout, stdout

    # Update: one option at a time, the rest kept; choosing a credential clears the others.
    p = gw_json(capsys, "providers", "update", br, "--bearer-token-env", "AWS_BEARER_TOKEN_BEDROCK",
                "--region", "us-east-1", "--clear-model-map")  # fmt: skip
    assert p["options"] == {
        "region": "us-east-1",
        "bearer_token_env": "AWS_BEARER_TOKEN_BEDROCK",
        "inference_profile": "eu",
        "timeout_read_s": "300",
    }
    code, _, err = gw(capsys, "providers", "update", br, "--option", "regoin=us-west-2")
    assert code == 1 and "did you mean 'region'" in err and "Traceback" not in err
    code, _, err = gw(capsys, "providers", "update", br, "--base-url",
                      "https://bedrock-runtime.us-east-1.amazonaws.com/model/x")  # fmt: skip
    assert code == 1 and "without /model" in err

    # The rules relating settings to each other are the control plane's: its reasons, and
    # nothing created.
    for argv, reason in (
        (["--kind", "bedrock", "--region", "us-east-1", "--access-key-env", "A"],
         "access_key_env and secret_key_env go together"),
        (["--kind", "bedrock", "--region", "us-east-1", "--session-token-env", "T"],
         "session_token_env needs access_key_env and secret_key_env"),
        (["--kind", "anthropic", "--auth", "passthrough", "--api-key-env", "K"],
         "leave api_key_env empty"),
    ):  # fmt: skip
        code, _, err = gw(capsys, "providers", "create", unique("refused"), *argv)
        assert code == 1 and reason in err, err
    assert not [p for p in gw_json(capsys, "providers", "list") if "refused" in p["name"]]

    code, _, err = gw(capsys, "providers", "create", vx, "--kind", "vertex", "--project", "my-proj",
                      "--base-url", "https://us-east5-aiplatform.googleapis.com")  # fmt: skip
    assert code == 1 and "https://us-east5-aiplatform.googleapis.com/v1" in err
    p = gw_json(capsys, "providers", "create", vx, "--kind", "vertex", "--project", "my-proj",
                "--base-url", "https://us-east5-aiplatform.googleapis.com/v1")  # fmt: skip
    assert p["base_url"] == "https://us-east5-aiplatform.googleapis.com/v1"
    assert p["options"] == {"project": "my-proj", "region": "global"}
    p = gw_json(capsys, "providers", "update", vx, "--region", "us-east5",
                "--credentials-file", "/etc/tollgate/sa.json")  # fmt: skip
    assert p["options"]["region"] == "us-east5" and p["options"]["project"] == "my-proj"

    p = gw_json(capsys, "providers", "create", mx, "--kind", "anthropic",
                "--api-key-env", "ANTHROPIC_API_KEY")  # fmt: skip
    p = gw_json(capsys, "providers", "update", mx, "--auth", "passthrough")
    assert p["api_key_env"] == "" and p["options"] == {"auth": "passthrough"}

    code, stdout, _ = gw(capsys, "providers", "list")
    rows = {line.split()[0]: line for line in stdout.splitlines()[1:]}
    assert "$AWS_BEARER_TOKEN_BEDROCK" in rows[br] and "region=us-east-1" in rows[br]
    assert "project=my-proj region=us-east5" in rows[vx] and "/etc/tollgate/sa.json" in rows[vx]
    assert "passthrough" in rows[mx]

    # Switching a key's provider is one command.
    ws = unique("switch")
    assert gw(capsys, "workspaces", "create", ws)[0] == 0
    key = gw_json(capsys, "keys", "create", "-w", ws, "--name", "dev", "--provider", mx)
    moved = gw_json(capsys, "keys", "update", key["id"], "--provider", br)
    assert (moved["provider"], moved["route"]) == (br, "")


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_budgets_spend_alerts_and_usage(
    control_plane: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, prov = unique("p3"), unique("sim")
    with WebhookSink() as sink:
        created = gw_json(capsys, "workspaces", "create", ws, "--timezone", "Europe/Berlin",
                          "--redis-failure", "open", "--alert-webhook", sink.url,
                          "--budget", "10/month", "--budget", "100")  # fmt: skip
        assert (created["timezone"], created["redis_failure"]) == ("Europe/Berlin", "open")
        assert created["budgets"] == ["$10/month", "$100/lifetime"]
        assert gw(capsys, "providers", "create", prov, "--kind", "simulator")[0] == 0
        key = gw_json(capsys, "keys", "create", "-w", ws, "--name", "alice", "--provider", prov,
                      "--budget", "4/day")  # fmt: skip
        key_id = key["id"]
        assert key["spend"][0]["text"].startswith("$0.00 of $4.00/day (0.0 %), resets ")

        def spend(n: int, cost: int, project: str) -> telemetry_pb2.UsageEvent:
            ev = event(ws, key_id, n, "claude-sonnet-4-5", cost)
            ev.time_ms = int(time.time() * 1000)
            ev.metadata["project"] = project
            return ev

        report(control_plane, [spend(1, 2_000_000, "web"), spend(2, 1_000_000, "api")])
        shown = gw_json(capsys, "keys", "show", key_id)
        assert shown["spend"][0]["spent_usd"] == "3.000000"
        assert shown["spend"][0]["percent"] == "75.0"
        code, stdout, _ = gw(capsys, "keys", "show", key_id)
        assert code == 0 and "$3.00 of $4.00/day (75.0 %), resets " in stdout
        code, stdout, _ = gw(capsys, "workspaces", "show", ws)
        assert code == 0
        assert "$3.00 of $10.00/month (30.0 %), resets " in stdout
        assert "$3.00 of $100.00 lifetime (3.0 %), never resets" in stdout
        assert "Europe/Berlin" in stdout and sink.url in stdout

        def alerts() -> list[Any]:
            return list(gw_json(capsys, "alerts", "--workspace", ws, "--since", "1d"))

        first = wait_for(alerts)
        assert [(a["scope"], a["threshold_percent"]) for a in first] == [("key", 50)]

        report(control_plane, [spend(3, 1_200_000, "web")])  # key 105 %, workspace 42 %
        report(control_plane, [spend(3, 1_200_000, "web")])  # a replay: nothing new
        listed = wait_for(lambda: len(alerts()) >= 3 and alerts())
        assert sorted(a["threshold_percent"] for a in listed) == [50, 80, 100]
        assert wait_for(lambda: {a["webhook_status"] for a in alerts()} == {"delivered"})
        assert sorted(b["threshold_percent"] for b in sink.bodies) == [50, 80, 100]
        code, stdout, _ = gw(capsys, "logs", "alerts", "-w", ws)
        assert code == 0 and "alice (" in stdout and "100 %" in stdout

    by_key = gw_json(capsys, "usage", "-w", ws, "--by", "key", "--since", "7d")
    assert [(r["group"], r["name"], r["cost_usd"]) for r in by_key["rows"]] == [
        (key_id, "alice", "4.200000")
    ]
    by_project = gw_json(capsys, "usage", "-w", ws, "--by", "metadata.project", "--since", "7d")
    assert {r["group"]: r["cost_usd"] for r in by_project["rows"]} == {
        "web": "3.200000",
        "api": "1.000000",
    }
    by_session = gw_json(capsys, "usage", "-w", ws, "--by", "session", "--since", "7d")
    assert len(by_session["rows"]) == 3  # each event had its own session id
    by_ws = gw_json(capsys, "usage", "--by", "workspace", "--since", "7d")
    assert {r["group"]: r["cost_usd"] for r in by_ws["rows"]}[ws] == "4.200000"
    code, stdout, _ = gw(capsys, "usage", "-w", ws, "--by", "model", "--since", "7d")
    assert code == 0 and "claude-sonnet-4-5" in stdout
    code, _, err = gw(capsys, "workspaces", "update", ws, "--timezone", "Berlin")
    assert code == 1 and "unknown time zone 'Berlin'" in err
