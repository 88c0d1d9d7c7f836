"""gwctl against a real control plane fed with usage events whose client-chosen strings carry
terminal controls: no human-readable output writes one raw, and ``-o json`` keeps the values.

Before: ``gwctl logs tail`` (and ``logs show``, ``sessions``, ``usage --by model``…) wrote the
model name's ``ESC [2J`` (clear screen), ``ESC ]0;…BEL`` (window title), carriage returns and
bidi overrides straight to the operator's terminal.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from gwapi.v1 import telemetry_pb2
from tests.gwctl.cli import following, gw, gw_json, report, unique
from tests.gwctl.test_observability_e2e import event

pytestmark = pytest.mark.usefixtures("gwctl_env")

MODEL = "claude\x1b[2J\x1b]0;pwned\x07\x9b31m"
SESSION = "sess\rforged\u202etxt"
TEAM = "t\x1b[5mblink\x7f"
AGENT = "claude-cli/2.1.0\x1b[31m (external, cli)"
ERROR = "upstream said \x1b[31mno\r\n"
# Anything a terminal acts on: C0 but the newline, DEL, C1, bidi controls, line separators.
RAW = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)
SSE = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"hi \\u001b[2J there"}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def assert_no_raw_controls(text: str) -> None:
    found = RAW.search(text)
    assert found is None, f"raw {found.group()!r} in output:\n{text!r}"


def hostile(ws: str, n: int) -> telemetry_pb2.UsageEvent:
    ev = event(ws, n, session=SESSION, model=MODEL)
    ev.user_agent = AGENT
    ev.status, ev.error_type, ev.error_message = 400, "invalid_request_error", ERROR
    ev.metadata.update({"team": TEAM})
    ev.attempt_log.add(provider="sim", model=MODEL, status=400, outcome="failed")
    ev.request_headers.update({"x-app": "cli\x1b[2J"})
    ev.request_body = b"not json \x1b[2J\x07"
    ev.response_body = SSE
    return ev


def seeded(control_plane: str, capsys: pytest.CaptureFixture[str]) -> telemetry_pb2.UsageEvent:
    ws = unique("esc")
    gw_json(capsys, "workspaces", "create", ws, "--log-bodies", "full")
    ev = hostile(ws, 1)
    report(control_plane, [ev])
    return ev


def test_text_output_escapes_controls_and_json_keeps_values(
    control_plane: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ev = seeded(control_plane, capsys)
    ws = ev.workspace
    outputs = {}
    for argv in (
        ("logs", "tail", "-w", ws),
        ("logs", "show", ev.request_id),
        ("sessions", "list", "-w", ws),
        ("sessions", "show", SESSION),
        ("usage", "-w", ws, "--by", "model"),
        ("usage", "-w", ws, "--by", "session"),
        ("usage", "-w", ws, "--by", "metadata.team"),
        ("clients", "-w", ws),
    ):
        code, stdout, err = gw(capsys, *argv)
        assert code == 0, (argv, err)
        assert_no_raw_controls(stdout)
        assert_no_raw_controls(err)
        outputs[" ".join(argv[:2] + argv[-1:])] = stdout

    shown_model = "claude\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m"
    assert shown_model in outputs[f"logs tail {ws}"]
    show = outputs[f"logs show {ev.request_id}"]
    for escaped in (
        shown_model,
        "sess\\rforged\\u202etxt",
        "team=t\\x1b[5mblink\\x7f",
        "claude-cli/2.1.0\\x1b[31m (external, cli)",
        "upstream said \\x1b[31mno\\r\\n",
        "x-app: cli\\x1b[2J",
        "not json \\x1b[2J\\x07",
        "hi \\x1b[2J there",  # the assistant's text, decoded from the SSE JSON
    ):
        assert escaped in show, escaped
    assert "sess\\rforged\\u202etxt" in outputs[f"sessions list {ws}"]
    assert shown_model in outputs["usage -w model"]
    assert "t\\x1b[5mblink\\x7f" in outputs["usage -w metadata.team"]

    # JSON is for scripts: the same values, escaped the JSON way (nothing raw on a terminal).
    for argv in (
        ("logs", "tail", "-w", ws),
        ("logs", "show", ev.request_id),
        ("usage", "-w", ws, "--by", "model"),
    ):
        code, stdout, err = gw(capsys, *argv, "-o", "json")
        assert code == 0, err
        assert_no_raw_controls(stdout)
        doc = orjson.loads(stdout)
        if argv[1] == "tail":
            assert (doc[0]["model_served"], doc[0]["session_id"]) == (MODEL, SESSION)
            assert doc[0]["metadata"] == {"team": TEAM}
        elif argv[1] == "show":
            assert doc["error_message"] == ERROR and doc["response_text"] == "hi \x1b[2J there"
        else:
            assert doc["rows"][0]["group"] == MODEL


def test_logs_tail_follow_writes_no_raw_controls(
    control_plane: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    ws = unique("escf")
    gw_json(capsys, "workspaces", "create", ws)
    report(control_plane, [hostile(ws, 1)])
    proc = following(tmp_path, "logs", "tail", "-f", "-w", ws)
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()
        first = proc.stdout.readline()
        report(control_plane, [hostile(ws, 2)])
        second = proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(10)
    for line in (header, first, second):
        assert_no_raw_controls(line.decode())
    assert b"claude\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m" in first + second
    assert f"req_{ws}_1".encode() in first and f"req_{ws}_2".encode() in second
