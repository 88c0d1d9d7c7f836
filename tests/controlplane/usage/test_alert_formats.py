"""What a Slack channel reads for each kind of alert: who, which budget, how much, when it resets
(in the budget's time zone), and Slack's control characters escaped."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane.store.models.usage import BudgetAlertRow
from controlplane.usage.alert_formats import generic_payload, payload, slack_payload, slack_text


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1000


def alert(**kw: Any) -> BudgetAlertRow:
    values: dict[str, Any] = {
        "id": 7,
        "time_ms": ms("2026-12-06T14:03:00"),
        "scope": "developer",
        "scope_id": "dev_abc",
        "name": "alice@example.com",
        "workspace": "platform",
        "threshold_percent": 80,
        "period": "day",
        "period_id": "day:2026-12-06@Europe/Berlin",
        "amount_micros": 50_000_000,
        "period_start_ms": ms("2026-12-05T23:00:00"),
        "period_end_ms": ms("2026-12-06T23:00:00"),  # midnight in Berlin
        "spent_micros": 40_123_456,
        "webhook_format": "slack",
    }
    values.update(kw)
    return BudgetAlertRow(**values)


def test_a_developer_alert_reads_as_one_line_with_the_local_reset() -> None:
    assert slack_payload(alert()) == {
        "text": "Budget alert: developer alice@example.com (workspace platform) has spent "
        "$40.12 of $50.00/day (80.2 %); it resets at 2026-12-07 00:00 Europe/Berlin."
    }


@pytest.mark.parametrize(
    ("kw", "line"),
    [
        (
            {"scope": "key", "scope_id": "key_1", "name": "ci-bot", "period": "month",
             "period_id": "month:2026-12-01@UTC", "period_end_ms": ms("2027-01-01T00:00:00"),
             "threshold_percent": 50, "spent_micros": 25_000_000},
            "Budget alert: key 'ci-bot' (workspace platform) has spent $25.00 of $50.00/month "
            "(50.0 %); it resets at 2027-01-01 00:00 UTC.",
        ),
        (
            {"scope": "workspace", "scope_id": "platform", "name": "platform",
             "threshold_percent": 100, "spent_micros": 50_020_000},
            "Budget alert: workspace platform has spent $50.02 of $50.00/day (100.0 %); "
            "requests are refused until it resets at 2026-12-07 00:00 Europe/Berlin.",
        ),
        (
            {"period": "lifetime", "period_id": "lifetime", "period_start_ms": 0,
             "period_end_ms": 0, "amount_micros": 1_000_000_000, "spent_micros": 812_000_000},
            "Budget alert: developer alice@example.com (workspace platform) has spent $812.00 "
            "of its $1,000.00 lifetime budget (81.2 %); it never resets.",
        ),
        (
            {"period": "lifetime", "period_id": "lifetime", "period_start_ms": 0,
             "period_end_ms": 0, "threshold_percent": 100, "spent_micros": 50_000_000},
            "Budget alert: developer alice@example.com (workspace platform) has spent $50.00 "
            "of its $50.00 lifetime budget (100.0 %); requests are refused until the budget "
            "is raised.",
        ),
    ],
)  # fmt: skip
def test_each_scope_and_period(kw: dict[str, Any], line: str) -> None:
    assert slack_text(alert(**kw)) == line


def test_slack_controls_are_escaped() -> None:
    row = alert(scope="key", name="<!channel> & <https://evil.example|click>")
    text = slack_payload(row)["text"]
    assert "<" not in text and ">" not in text
    assert "key '&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;'" in text


def test_the_format_picks_the_body() -> None:
    row = alert(webhook_format="generic")
    generic = payload("generic", row, "Developer 'alice@example.com' reached 80 %")
    assert generic == generic_payload(row, "Developer 'alice@example.com' reached 80 %")
    assert generic["type"] == "budget_alert" and generic["spent_usd"] == "40.123456"
    assert payload("slack", row, "ignored") == slack_payload(row)
