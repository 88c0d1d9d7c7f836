"""gwctl for P3: workspace settings flags, spend vs budget in show, alerts, usage key names."""

from __future__ import annotations

import orjson
import pytest

from gwapi.v1 import common_pb2, telemetry_pb2
from gwctl import output as out
from tests.fakes.admin_client import FakeAdminClient
from tests.gwctl.cli import gw
from tests.gwctl.cli_data import sample_alert

# gwctl's client is this test's fresh fake control plane (the ``fake_cp`` fixture).
pytestmark = pytest.mark.usefixtures("fake_cp")


# ---- formatting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("micros", "dollars", "cents"),
    [
        (50_000_000, "$50.00", "$50.00"),
        (1_000_500_000, "$1,000.50", "$1,000.50"),
        (125_000, "$0.125", "$0.13"),
        (12_344_999, "$12.344999", "$12.34"),
        (0, "$0.00", "$0.00"),
    ],
)
def test_dollars_and_cents(micros: int, dollars: str, cents: str) -> None:
    assert out.format_dollars(micros) == dollars
    assert out.format_cents(micros) == cents


def test_budget_status_text() -> None:
    day = common_pb2.Budget(amount_micros=50_000_000, period=common_pb2.PERIOD_DAY)
    status = common_pb2.BudgetStatus(
        budget=day,
        period_start_ms=1_795_824_000_000,
        period_end_ms=1_795_910_400_000,
        spent_micros=12_340_000,
    )
    assert out.budget_status_text(status) == (
        "$12.34 of $50.00/day (24.6 %), resets 2026-11-29T00:00:00Z"
    )
    status.spent_micros = 12_350_000
    assert out.budget_status_text(status).startswith("$12.35 of $50.00/day (24.7 %)")
    status.spent_micros = 49_999_999  # 99.99 % never reads as 100 %
    assert "(99.9 %)" in out.budget_status_text(status)
    life = common_pb2.BudgetStatus(
        budget=common_pb2.Budget(amount_micros=100_000_000, period=common_pb2.PERIOD_LIFETIME),
        spent_micros=100_020_000,
    )
    assert out.budget_status_text(life) == "$100.02 of $100.00 lifetime (100.0 %), never resets"
    doc = out.budget_status_dict(status)
    assert doc["budget"] == "$50/day" and doc["period"] == "day"
    assert (doc["amount_usd"], doc["spent_usd"], doc["remaining_usd"]) == (
        "50.000000",
        "49.999999",
        "0.000001",
    )
    assert (doc["percent"], doc["period_start"], doc["resets_at"]) == (
        "99.9",
        "2026-11-28T00:00:00Z",
        "2026-11-29T00:00:00Z",
    )
    assert out.budget_status_dict(life)["resets_at"] is None
    assert out.budget_status_dict(life)["remaining_usd"] == "0.000000"


# ---- workspaces and keys ----------------------------------------------------------------------


def test_workspace_create_with_settings(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    code, _, err = gw(capsys, "workspaces", "create", "team-a", "--timezone", "Europe/Berlin",
                       "--redis-failure", "open", "--alert-webhook", "https://h.example.com/x",
                       "--budget", "50/day", "--budget", "1000", "--budget", "$200/monthly")  # fmt: skip
    assert code == 0, err
    _, (ws,) = fake_cp.calls[-1]
    assert (ws.timezone, ws.redis_failure, ws.alert_webhook) == (
        "Europe/Berlin",
        "open",
        "https://h.example.com/x",
    )
    assert [(b.amount_micros, b.period) for b in ws.limits.budgets] == [
        (50_000_000, common_pb2.PERIOD_DAY),
        (1_000_000_000, common_pb2.PERIOD_LIFETIME),
        (200_000_000, common_pb2.PERIOD_MONTH),
    ]


def test_workspace_update_settings_mask(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    code, _, _ = gw(capsys, "workspaces", "update", "team-a", "--redis-failure", "closed",
                     "--alert-webhook", "", "--timezone", "")  # fmt: skip
    assert code == 0
    _, (ws, paths) = fake_cp.calls[-1]
    assert paths == ["timezone", "redis_failure", "alert_webhook"]
    assert (ws.timezone, ws.redis_failure, ws.alert_webhook) == ("", "closed", "")
    code, _, err = gw(capsys, "workspaces", "update", "team-a", "--redis-failure", "sometimes")
    assert code == 2 and "invalid choice" in err


def test_workspace_show_spend_vs_budget(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = gw(capsys, "workspaces", "show", "team-a")
    assert code == 0
    lines = {k: v.strip() for k, v in (line.split(":", 1) for line in stdout.splitlines())}
    assert lines["spend/day"] == ("$12.34 of $50.00/day (24.6 %), resets 2026-11-28T23:00:00Z")
    assert lines["spend/lifetime"] == ("$1,000.02 of $1,000.00 lifetime (100.0 %), never resets")
    assert lines["redis failure"] == "open" and lines["timezone"] == "Europe/Berlin"
    assert "https://hooks.example.com/tollgate" in stdout

    doc = orjson.loads(gw(capsys, "workspaces", "show", "team-a", "-o", "json")[1])
    assert [s["text"] for s in doc["spend"]] == [
        "$12.34 of $50.00/day (24.6 %), resets 2026-11-28T23:00:00Z",
        "$1,000.02 of $1,000.00 lifetime (100.0 %), never resets",
    ]
    assert doc["spend"][0]["period_start"] == "2026-11-27T23:00:00Z"
    assert doc["budget_status"][0]["spent_micros"] == 12_340_000
    assert doc["redis_failure"] == "open" and doc["timezone"] == "Europe/Berlin"


def test_key_show_spend_vs_budget(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = gw(capsys, "keys", "show", "key_abc123")
    assert code == 0
    assert "spend/day:" in stdout
    assert "$12.34 of $50.00/day (24.6 %), resets 2026-11-29T00:00:00Z" in stdout
    doc = orjson.loads(gw(capsys, "keys", "show", "key_abc123", "-o", "json")[1])
    assert doc["spend"][0]["spent_usd"] == "12.340000"
    assert doc["spend"][0]["resets_at"] == "2026-11-29T00:00:00Z"


# ---- alerts ------------------------------------------------------------------------------------


def test_alerts_table_and_json(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    fake_cp.alerts = [sample_alert(80), sample_alert(50, scope="workspace")]
    code, stdout, _ = gw(capsys, "alerts", "--workspace", "team-a", "--since", "7d")
    assert code == 0
    (_, (kwargs,)) = fake_cp.calls[-1]
    assert kwargs["workspace"] == "team-a" and kwargs["since_ms"] > 0 and kwargs["limit"] == 0
    header, first, second = stdout.splitlines()
    assert header.split() == ["TIME", "WORKSPACE", "SCOPE", "WHO", "THRESHOLD", "BUDGET",
                              "SPENT", "PERIOD", "WEBHOOK", "TRIES", "LAST", "TRY"]  # fmt: skip
    assert "alice (key_abc123)" in first and "80 %" in first and "$40.01" in first
    assert "since 2026-11-28T00:00:00Z" in first
    assert first.endswith("delivered (slack)      2  2026-11-28T07:13:23Z")
    assert second.split()[1:4] == ["team-a", "workspace", "team-a"]
    assert second.endswith("delivered              2  2026-11-28T07:13:23Z")

    doc = orjson.loads(gw(capsys, "alerts", "-o", "json")[1])
    assert doc[0]["threshold_percent"] == 80 and doc[0]["spent_usd"] == "40.012345"
    assert doc[0]["budget_text"] == "$50/day" and doc[0]["time"] == "2026-11-28T07:13:20Z"
    assert doc[0]["period_start"] == "2026-11-28T00:00:00Z"
    assert (doc[0]["webhook_attempts"], doc[0]["webhook_format"]) == (2, "slack")
    assert doc[0]["webhook_last_attempt_ms"] == 1_795_850_003_000
    assert doc[0]["webhook_last_attempt"] == "2026-11-28T07:13:23Z"
    assert doc[0]["webhook_next_attempt"] is None and doc[0]["webhook_next_attempt_ms"] == 0


def test_logs_alerts_is_the_same_command(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    fake_cp.alerts = [sample_alert(100)]
    code, stdout, _ = gw(capsys, "logs", "alerts", "-n", "5")
    assert code == 0 and "100 %" in stdout
    (_, (kwargs,)) = fake_cp.calls[-1]
    assert kwargs["limit"] == 5


def test_no_alerts_says_so_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, err = gw(capsys, "alerts", "-w", "team-a")
    assert code == 0 and stdout == "" and "no budget alerts for workspace team-a" in err
    assert gw(capsys, "alerts", "-o", "json")[1].strip() == "[]"


# ---- usage -------------------------------------------------------------------------------------


def test_usage_by_key_names_the_keys(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    fake_cp.usage["key"] = [
        telemetry_pb2.UsageRow(group="key_abc123", requests=2, cost_micros=5),
        telemetry_pb2.UsageRow(group="key_gone", requests=1, cost_micros=1),
    ]
    code, stdout, _ = gw(capsys, "usage", "--by", "key", "--since", "7d")
    assert code == 0
    assert stdout.splitlines()[1].startswith("key_abc123 (alice)")
    assert stdout.splitlines()[2].startswith("key_gone ")
    doc = orjson.loads(gw(capsys, "usage", "--by", "key", "-o", "json")[1])
    assert [r["name"] for r in doc["rows"]] == ["alice", ""]
    # Other groupings make no extra call.
    fake_cp.calls = []
    gw(capsys, "usage", "--by", "workspace")
    assert "list_keys" not in [c[0] for c in fake_cp.calls]
