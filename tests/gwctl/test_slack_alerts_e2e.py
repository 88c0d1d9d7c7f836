"""Budget alerts to Slack, end to end: a real control plane (``--allow-internal-webhooks``: the
receiver is on 127.0.0.1), usage through Telemetry.ReportUsage with the data-plane token, and a
fake Slack incoming webhook as strict as Slack about the message. Delivery is retried with
backoff (a 500, then a 429 whose Retry-After is waited for), every attempt is visible in
``gwctl alerts`` while it happens and after; a webhook that keeps failing gives up after the
configured attempts, and a deleted one (404) is not retried."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from gwapi.v1 import admin_pb2, admin_pb2_grpc, common_pb2, telemetry_pb2, telemetry_pb2_grpc
from tests.fakes.slack import FakeSlack
from tests.gwctl.cli import ADMIN, DATAPLANE, gw, gw_json

pytestmark = pytest.mark.usefixtures("gwctl_env")

ATTEMPTS = 4


@pytest.fixture(scope="module")
def control_plane_settings() -> dict[str, Any]:
    return {
        "allow_internal_webhooks": True,
        "webhook_timeout_s": 2.0,
        "webhook_attempts": ATTEMPTS,
        "webhook_backoff_s": 0.05,
        "webhook_max_delay_s": 5.0,
    }


def spend(address: str, ws: str, key_id: str, cost_micros: int) -> None:
    now = time.time_ns() // 1_000_000
    event = telemetry_pb2.UsageEvent(
        request_id=f"req_{uuid.uuid4().hex}",
        time_ms=now,
        workspace=ws,
        key_id=key_id,
        key_name="alice-laptop",
        model_requested="claude-sonnet-4-5",
        model_served="claude-sonnet-4-5",
        provider="sim",
        status=200,
        usage=common_pb2.Usage(input_tokens=1000, output_tokens=100, cost_micros=cost_micros),
    )
    with grpc.insecure_channel(address) as channel:
        telemetry_pb2_grpc.TelemetryStub(channel).ReportUsage(
            telemetry_pb2.ReportUsageRequest(node_id="dp-slack", events=[event], last_seq=1),
            metadata=(("authorization", f"Bearer {DATAPLANE}"),),
            timeout=10,
        )


def setup(capsys: pytest.CaptureFixture[str], url: str, fmt: str = "slack") -> tuple[str, str]:
    """A Berlin workspace posting alerts to ``url`` and a key with a $5/day budget."""
    ws, provider = f"sl-{uuid.uuid4().hex[:8]}", f"sim-{uuid.uuid4().hex[:6]}"
    gw_json(capsys, "providers", "create", provider, "--kind", "simulator")
    created = gw_json(capsys, "workspaces", "create", ws, "--timezone", "Europe/Berlin",
                      "--alert-webhook", url, "--alert-format", fmt)  # fmt: skip
    assert created["alert_format"] == fmt
    key = gw_json(capsys, "keys", "create", "-w", ws, "--name", "alice-laptop",
                  "--provider", provider, "--budget", "5/day")  # fmt: skip
    return ws, key["id"]


def wait_for(
    capsys: pytest.CaptureFixture[str], ws: str, done: Callable[[dict[str, Any]], bool]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll ``gwctl alerts -w WS -o json`` until its one alert satisfies ``done``; returns it
    and every state seen on the way."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        alerts = gw_json(capsys, "alerts", "-w", ws)
        if alerts:
            assert len(alerts) == 1, alerts
            seen.append(alerts[0])
            if done(alerts[0]):
                return alerts[0], seen
        time.sleep(0.05)
    raise AssertionError(f"alert never got there: {seen[-3:]}")


def test_slack_alert_is_retried_and_every_attempt_shows(
    control_plane: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeSlack([(500, {}), (429, {"Retry-After": "2"})]) as slack:
        ws, key_id = setup(capsys, slack.url)
        code, shown, _ = gw(capsys, "workspaces", "show", ws)
        assert code == 0 and "alert format:" in shown and "slack" in shown

        spend(control_plane, ws, key_id, 2_600_000)  # 52 % of $5/day: the 50 % alert
        alert, seen = wait_for(capsys, ws, lambda a: a["webhook_status"] == "delivered")

    # Slack got one well-formed message three times: 500, 429 (Retry-After: 2), then ok.
    assert [r.status for r in slack.requests] == [500, 429, 200]
    for request in slack.requests:
        assert request.headers["content-type"] == "application/json"
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime.fromtimestamp(alert["period_start_ms"] / 1000, tz=UTC).astimezone(berlin)
    reset = (start.date() + timedelta(days=1)).isoformat()
    expected = (
        f"Budget alert: key 'alice-laptop' (workspace {ws}) has spent $2.60 of $5.00/day "
        f"(52.0 %); it resets at {reset} 00:00 Europe/Berlin."
    )
    assert [r.body for r in slack.requests] == [{"text": expected}] * 3
    first, second, third = (r.at for r in slack.requests)
    assert second - first < 1.5  # the backoff (0.05 s, jittered)
    assert third - second >= 1.9  # the 429's Retry-After: 2

    # gwctl alerts showed the retries while they happened…
    retrying = [a for a in seen if a["webhook_status"].startswith("retrying")]
    assert retrying, "never saw the delivery retrying"
    assert {a["webhook_status"] for a in retrying} <= {"retrying: HTTP 500", "retrying: HTTP 429"}
    waiting = [a for a in retrying if a["webhook_status"] == "retrying: HTTP 429"]
    assert waiting and waiting[-1]["webhook_attempts"] == 2
    assert waiting[-1]["webhook_next_attempt_ms"] - waiting[-1]["webhook_last_attempt_ms"] >= 1900
    # … and the outcome after.
    assert (alert["webhook_status"], alert["webhook_attempts"], alert["webhook_format"]) == (
        "delivered", 3, "slack",
    )  # fmt: skip
    assert alert["webhook_next_attempt_ms"] == 0 and alert["webhook_next_attempt"] is None
    assert alert["webhook_last_attempt_ms"] >= waiting[-1]["webhook_next_attempt_ms"] - 100
    assert alert["threshold_percent"] == 50 and alert["scope"] == "key"
    code, table, _ = gw(capsys, "alerts", "-w", ws)
    assert code == 0
    (line,) = table.splitlines()[1:]
    assert "delivered (slack)" in line
    assert line.split()[-2:] == ["3", alert["webhook_last_attempt"]]


def test_a_failing_webhook_gives_up_and_a_deleted_one_is_not_retried(
    control_plane: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeSlack([(503, {})] * ATTEMPTS) as slack:
        ws, key_id = setup(capsys, slack.url)
        spend(control_plane, ws, key_id, 2_600_000)
        alert, _ = wait_for(capsys, ws, lambda a: a["webhook_status"].startswith("failed"))
        assert alert["webhook_status"] == f"failed: HTTP 503 (after {ATTEMPTS} attempts)"
        assert alert["webhook_attempts"] == ATTEMPTS == len(slack.requests)

        # A Slack webhook that was removed answers 404: once, no retries.
        gone, gone_key = setup(capsys, slack.url.replace("/services/", "/services/gone/"))
        spend(control_plane, gone, gone_key, 2_600_000)
        alert, _ = wait_for(capsys, gone, lambda a: a["webhook_status"].startswith("failed"))
        assert (alert["webhook_status"], alert["webhook_attempts"]) == ("failed: HTTP 404", 1)
        assert [r.status for r in slack.requests[ATTEMPTS:]] == [404]


def test_generic_stays_the_default_and_the_format_is_validated(
    control_plane: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeSlack() as slack:
        ws, key_id = setup(capsys, slack.url, fmt="generic")
        updated = gw_json(capsys, "workspaces", "update", ws, "--budget", "100/month")
        assert updated["alert_format"] == "generic"
        code, _, err = gw(capsys, "workspaces", "update", ws, "--alert-format", "teams")
        assert code == 2 and "invalid choice: 'teams'" in err

        # The Admin API refuses an unknown format readably (gwctl's choices are not the check).
        with grpc.insecure_channel(control_plane) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                admin_pb2_grpc.AdminStub(channel).UpdateWorkspace(
                    admin_pb2.UpdateWorkspaceRequest(
                        workspace=common_pb2.Workspace(name=ws, alert_format="teams"),
                        update_mask=FieldMask(paths=["alert_format"]),
                    ),
                    metadata=(("authorization", f"Bearer {ADMIN}"),),
                    timeout=10,
                )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "invalid alert_format 'teams'" in str(refused.value.details())

        # A workspace-admin may choose its own webhook's format.
        lead = gw_json(capsys, "tokens", "create", "--role", "workspace-admin",
                       "--workspace", ws, "--name", "lead")  # fmt: skip
        code, _, err = gw(capsys, "--token", lead["secret"], "workspaces", "update", ws,
                          "--alert-format", "slack", "-o", "json")  # fmt: skip
        assert code == 0, err
        assert gw_json(capsys, "workspaces", "show", ws)["alert_format"] == "slack"
        gw_json(capsys, "workspaces", "update", ws, "--alert-format", "generic")

        spend(control_plane, ws, key_id, 2_600_000)
        alert, _ = wait_for(capsys, ws, lambda a: a["webhook_status"] == "delivered")
    assert alert["webhook_format"] == "generic" and alert["webhook_attempts"] == 1
    (request,) = slack.requests  # the generic document has a "text" too, so Slack takes it
    assert request.body["type"] == "budget_alert" and request.body["threshold_percent"] == 50
    assert request.body["text"].startswith("Key 'alice-laptop'")
