"""``gwctl workspaces create|update --log-bodies …`` and ``gwctl logs show REQUEST_ID`` against a
real control plane (events enter through Telemetry.ReportUsage, as a data plane sends them)."""

from __future__ import annotations

import pytest

from gwapi.v1 import telemetry_pb2
from tests.gwctl.cli import gw, gw_json, report, unique
from tests.gwctl.test_observability_e2e import event

pytestmark = pytest.mark.usefixtures("gwctl_env")

SSE = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m"}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hello"}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":" there"}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
BODY = b'{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}'


def logged(ws: str) -> telemetry_pb2.UsageEvent:
    ev = event(ws, 1)
    ev.request_headers.update({"authorization": "[redacted]", "x-app": "cli"})
    ev.request_body = BODY
    ev.response_body = SSE
    ev.request_body_size = len(BODY)
    ev.response_body_size = len(SSE)
    ev.attempt_log.add(provider="sim", model="claude-sonnet-4-5", status=200, outcome="served")
    return ev


def test_log_policy_flags(capsys: pytest.CaptureFixture[str]) -> None:
    ws = unique("lg")
    doc = gw_json(capsys, "workspaces", "create", ws, "--log-bodies", "metadata")
    assert (doc["log_bodies"], doc["log_body_max_bytes"], doc["log_retention_days"]) == (
        "metadata",
        262144,
        30,
    )
    doc = gw_json(
        capsys, "workspaces", "update", ws, "--log-bodies", "full",
        "--log-body-max-bytes", "4096", "--log-retention-days", "7",
    )  # fmt: skip
    assert (doc["log_bodies"], doc["log_body_max_bytes"], doc["log_retention_days"]) == (
        "full",
        4096,
        7,
    )
    code, _, err = gw(capsys, "workspaces", "update", ws, "--log-retention-days", "-3")
    assert code != 0 and "log_retention_days" in err


def test_logs_show_full(control_plane: str, capsys: pytest.CaptureFixture[str]) -> None:
    ws = unique("lf")
    gw_json(capsys, "workspaces", "create", ws, "--log-bodies", "full")
    ev = logged(ws)
    report(control_plane, [ev])
    code, stdout, err = gw(capsys, "logs", "show", ev.request_id)
    assert code == 0, err
    assert "authorization: [redacted]" in stdout
    assert '  "model": "claude-sonnet-4-5"' in stdout  # the JSON request body, indented
    assert "response (assistant text):\nHello there" in stdout
    assert "event: message_stop" in stdout  # the raw events follow
    assert "1. sim claude-sonnet-4-5 -> 200 served" in stdout
    doc = gw_json(capsys, "logs", "show", ev.request_id)
    assert doc["response_text"] == "Hello there"
    assert doc["request_json"]["messages"][0]["content"] == "hi"
    assert doc["request_headers"]["authorization"] == "[redacted]"


def test_logs_show_none_and_unknown(control_plane: str, capsys: pytest.CaptureFixture[str]) -> None:
    ws = unique("ln")
    gw_json(capsys, "workspaces", "create", ws)
    ev = logged(ws)
    report(control_plane, [ev])
    code, stdout, _ = gw(capsys, "logs", "show", ev.request_id)
    assert code == 0
    assert "not logged" in stdout and "Hello" not in stdout
    code, _, err = gw(capsys, "logs", "show", "req_nope")
    assert code != 0 and "not found" in err
