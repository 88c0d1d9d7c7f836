"""What the gwctl end-to-end tests share: a control plane's settings, running gwctl's ``main`` on
the test thread and reading what it printed, and reporting usage as a data plane would.

The fixtures built on these (``control_plane``, ``gwctl_env``) are in ``conftest.py``."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest

from controlplane.settings import Settings
from gwapi.v1 import telemetry_pb2, telemetry_pb2_grpc
from gwctl.main import main

ADMIN = "gwctl-admin-token-" + uuid.uuid4().hex
DATAPLANE = "gwctl-dataplane-token-" + uuid.uuid4().hex


def settings(db_url: str, **extra: Any) -> Settings:
    """A control plane on 127.0.0.1:0 that accepts :data:`ADMIN` and :data:`DATAPLANE`."""
    base: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "db_url": db_url,
        "admin_token": ADMIN,
        "dataplane_token": DATAPLANE,
        "shutdown_grace_s": 0.5,
    }
    return Settings(**(base | extra))


def point_gwctl_at(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    """gwctl talks to ``address`` as :data:`ADMIN`; stdin is not a TTY, so confirmations refuse."""
    monkeypatch.setenv("TOLLGATE_CONTROL_PLANE", address)
    monkeypatch.setenv("TOLLGATE_ADMIN_TOKEN", ADMIN)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))


def gw(
    capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None
) -> tuple[int, str, str]:
    """Runs gwctl (with ``stdin`` as its input when given): its exit code, stdout and stderr."""
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def gw_json(capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None) -> Any:
    """Runs gwctl with ``-o json``, which must succeed: the parsed output."""
    code, stdout, err = gw(capsys, *argv, "-o", "json", stdin=stdin)
    assert code == 0, err
    return orjson.loads(stdout)


def following(cwd: Path, *argv: str) -> subprocess.Popen[bytes]:
    """``gwctl ARGV`` (a ``-f``/``--follow`` command) as its own process, its output unbuffered
    and piped, in the environment :func:`point_gwctl_at` set: the test reads it line by line."""
    return subprocess.Popen(
        [sys.executable, "-m", "gwctl.main", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=cwd,
    )


def fields(text: str) -> dict[str, str]:
    """A ``show`` view's ``label: value`` lines as a dict."""
    pairs = (line.partition(":") for line in text.splitlines() if ":" in line)
    return {label.strip(): value.strip() for label, _, value in pairs}


def unique(prefix: str) -> str:
    """A name no other test (of this run or an earlier one on the same database) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def report(address: str, events: list[telemetry_pb2.UsageEvent], node_id: str = "dp-test") -> None:
    """Sends usage events as a data plane does (Telemetry.ReportUsage, one batch)."""
    with grpc.insecure_channel(address) as channel:
        telemetry_pb2_grpc.TelemetryStub(channel).ReportUsage(
            telemetry_pb2.ReportUsageRequest(node_id=node_id, events=events, last_seq=1),
            metadata=(("authorization", f"Bearer {DATAPLANE}"),),
            timeout=10,
        )
