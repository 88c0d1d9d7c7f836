"""gwctl against a real control plane for P5: ``clients`` and a workspace's minimum Claude Code
version (and, below, ``sessions``). Usage events enter through Telemetry.ReportUsage."""

from __future__ import annotations

import time
import uuid

import pytest

from gwapi.v1 import common_pb2, telemetry_pb2
from tests.gwctl.cli import gw, gw_json, report, unique

pytestmark = pytest.mark.usefixtures("gwctl_env")


def event(
    ws: str,
    n: int,
    *,
    session: str = "",
    version: str = "",
    key_id: str = "key_a",
    at_ms: int = 0,
    model: str = "claude-sonnet-4-5",
    status: int = 200,
    cost: int = 1000,
) -> telemetry_pb2.UsageEvent:
    return telemetry_pb2.UsageEvent(
        request_id=f"req_{ws}_{n}_{uuid.uuid4().hex[:6]}",
        time_ms=at_ms or int(time.time() * 1000) - 60_000 + n,
        workspace=ws,
        key_id=key_id,
        key_name="alice",
        session_id=session,
        model_requested=model,
        model_served=model,
        provider="sim",
        attempts=1,
        status=status,
        latency_ms=900 + n,
        user_agent=f"claude-cli/{version} (external, cli)" if version else "curl/8",
        client_version=version,
        usage=common_pb2.Usage(
            input_tokens=100,
            output_tokens=10 * n,
            cache_creation_input_tokens=100,
            cache_read_input_tokens=800,
            cost_micros=cost,
        ),
    )


# ---- client versions ------------------------------------------------------------------------


def test_min_client_version_is_validated_stored_and_shown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ws = unique("cv")
    code, _, err = gw(capsys, "workspaces", "create", ws, "--min-client-version", "two")
    assert code != 0 and "dotted numbers" in err
    doc = gw_json(capsys, "workspaces", "create", ws, "--min-client-version", "2.1.0")
    assert doc["min_client_version"] == "2.1.0"
    code, out, _ = gw(capsys, "workspaces", "show", ws)
    assert code == 0 and "2.1.0" in out
    doc = gw_json(capsys, "workspaces", "update", ws, "--min-client-version", "2.2")
    assert doc["min_client_version"] == "2.2"
    doc = gw_json(capsys, "workspaces", "update", ws, "--min-client-version", "")
    assert doc.get("min_client_version", "") == ""


def test_clients_lists_versions_per_workspace(
    control_plane: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = unique("cla"), unique("clb")
    gw_json(capsys, "workspaces", "create", a, "--min-client-version", "2.1.10")
    gw_json(capsys, "workspaces", "create", b)
    report(
        control_plane,
        [
            event(a, 1, version="2.1.9"),
            event(a, 2, version="2.1.197"),
            event(a, 3, version="2.1.197"),
            event(a, 4),  # not Claude Code
            event(b, 1, version="1.0.0"),
            event(b, 2, version="2.0.1", at_ms=int(time.time() * 1000) - 10 * 86_400_000),
        ],
    )
    doc = gw_json(capsys, "clients", "--workspace", a)
    rows = [(c["client_version"], c["requests"], c["below_minimum"]) for c in doc["clients"]]
    assert rows == [("2.1.197", 2, False), ("2.1.9", 1, True), ("", 1, False)]

    doc = gw_json(capsys, "clients")  # every workspace; 7 days by default
    mine = [c for c in doc["clients"] if c["workspace"] in (a, b)]
    assert {(c["workspace"], c["client_version"]) for c in mine} == {
        (a, "2.1.197"),
        (a, "2.1.9"),
        (a, ""),
        (b, "1.0.0"),
    }
    doc = gw_json(capsys, "clients", "-w", b, "--since", "30d")
    assert {c["client_version"] for c in doc["clients"]} == {"1.0.0", "2.0.1"}

    code, out, _ = gw(capsys, "clients", "-w", a)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["WORKSPACE", "VERSION", "REQUESTS", "MINIMUM"]
    assert "2.1.9  (below minimum)" in out and "2.1.10" in out


# ---- sessions -------------------------------------------------------------------------------


def test_sessions_list_and_show(control_plane: str, capsys: pytest.CaptureFixture[str]) -> None:
    ws = unique("sess")
    gw_json(capsys, "workspaces", "create", ws)
    s1, s2 = str(uuid.uuid4()), str(uuid.uuid4())
    t0 = int(time.time() * 1000) - 3_600_000
    report(
        control_plane,
        [
            # reported out of order: show lists them by request time
            event(ws, 3, session=s1, at_ms=t0 + 95_000, model="claude-haiku-4-5", cost=300),
            event(ws, 1, session=s1, at_ms=t0, cost=1000),
            event(ws, 2, session=s1, at_ms=t0 + 30_000, status=529, cost=0),
            event(ws, 4, session=s2, at_ms=t0 + 200_000, key_id="key_b", cost=50),
            event(ws, 5, at_ms=t0 + 1000),  # no session: not listed
            event(ws, 6, session=str(uuid.uuid4()), at_ms=t0 - 2 * 86_400_000),  # too old
        ],
    )
    doc = gw_json(capsys, "sessions", "list", "--workspace", ws)
    assert [s["session_id"] for s in doc["sessions"]] == [s2, s1]  # most recently active first
    first = doc["sessions"][1]
    assert first["requests"] == 3 and first["errors"] == 1
    assert first["cost_usd"] == "0.001300"
    assert first["key_id"] == "key_a"
    assert first["input_tokens"] == 300 and first["output_tokens"] == 60
    # 800 read of (100 input + 800 read + 100 written) per request
    assert first["cache_hit_ratio"] == 0.8
    assert first["duration_s"] == 95.0
    assert first["first_seen"] < first["last_seen"]
    assert doc["sessions"][0]["key_id"] == "key_b"

    code, out, _ = gw(capsys, "sessions", "list", "-w", ws)
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split()[:4] == ["SESSION", "KEY/DEVELOPER", "REQUESTS", "TOKENS"]
    assert lines[1].startswith(s1) and "80%" in lines[1] and "1m35s" in lines[1]

    doc = gw_json(capsys, "sessions", "show", s1)
    assert [(r["status"], r["cost_usd"]) for r in doc["requests"]] == [
        (200, "0.001000"),
        (529, "0.000000"),
        (200, "0.000300"),
    ]
    assert doc["cost_usd"] == "0.001300"
    code, out, _ = gw(capsys, "sessions", "show", s1)
    assert code == 0
    assert "claude-haiku-4-5" in out and "529" in out and "903 ms" in out
    assert "cost" in out and "0.001300" in out

    code, _, err = gw(capsys, "sessions", "show", "no-such-session")
    assert code == 1 and "no requests" in err
