"""``gwctl usage --by developer`` rendering: the mismatch marker, the ratios, the TOTAL line, and
the JSON document (the control-plane round trip is in test_developers_e2e.py)."""

from __future__ import annotations

from gwapi.v1 import telemetry_pb2
from gwctl import usage_developers as ud


def row(**fields: object) -> telemetry_pb2.UsageRow:
    return telemetry_pb2.UsageRow(**fields)  # type: ignore[arg-type]


ALICE = row(
    group="alice@example.com", developer_email="alice@example.com", workspace="platform",
    requests=10, input_tokens=1000, output_tokens=200, cost_micros=3_000_000,
    client_cost_micros=3_500_000, lines_added=600, lines_removed=100, commits=4,
    pull_requests=3, edits_accepted=20, edits_rejected=2, client_sessions=2,
)  # fmt: skip
BOB = row(
    group="bob@example.com", developer_email="bob@example.com", workspace="platform",
    requests=2, cost_micros=1_000_000, client_cost_micros=1_040_000,
)  # fmt: skip
KEYS = row(group="", requests=5, cost_micros=2_000_000)


def cells(text: str, first: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(first))
    return [c.strip() for c in line.split("  ") if c.strip()]


def test_per_count_rounds_half_up_and_is_none_for_zero() -> None:
    assert ud.per_count(1_000_000, 3) == 333_333
    assert ud.per_count(2_000_000, 3) == 666_667
    assert ud.per_count(1_000_000, 250, 100) == 400_000
    assert ud.per_count(5, 0) is None
    assert ud.ratio_text(None) == "—" and ud.ratio_text(400_000) == "0.4000"


def test_marker_and_note_only_beyond_five_percent() -> None:
    text = ud.render([ALICE, BOB, KEYS])
    alice = cells(text, "alice@example.com")
    assert alice[4:6] == ["3.000000", "3.500000 !"]  # 14.3 % apart
    assert alice[6:] == ["+600/-100", "4", "3", "20/2", "0.5000", "1.0000"]
    bob = cells(text, "bob@example.com")
    assert bob[5] == "1.040000"  # 3.8 % apart: no marker
    assert bob[-2:] == ["—", "—"]
    keys = cells(text, "(virtual keys)")
    assert keys[1] == "-" and keys[5] == "-"  # keys report nothing of their own
    assert "! alice@example.com: Claude Code reported $3.5000, the gateway metered $3.0000" in text
    assert "bob@example.com:" not in text
    assert text.rstrip().endswith(ud.MISMATCH_LEGEND)
    assert "more than 5 %" in ud.MISMATCH_LEGEND


def test_total_ratios_count_the_developers_spend_only() -> None:
    text = ud.render([ALICE, BOB, KEYS])
    total = cells(text, "TOTAL")
    assert total[4] == "6.000000"  # every row
    # $4.00 of developers' spend against $4.54 reported: 11.9 % apart.
    assert total[5] == "4.540000 !"
    assert total[-2:] == ["0.6667", "1.3333"]  # $4.00 / 6 (per 100 lines), $4.00 / 3 PRs
    doc = ud.total_dict([ALICE, BOB, KEYS])
    assert doc["developers_cost_usd"] == "4.000000" and doc["cost_usd"] == "6.000000"
    assert doc["cost_per_pull_request_usd"] == "1.333333"


def test_no_notes_without_disagreement() -> None:
    text = ud.render([BOB])
    assert ud.MISMATCH_MARK not in text


def test_json_carries_every_field() -> None:
    doc = ud.row_dict(ALICE)
    for name in telemetry_pb2.UsageRow.DESCRIPTOR.fields_by_name:
        assert name in doc
    assert doc["cost_usd"] == "3.000000" and doc["client_cost_usd"] == "3.500000"
    assert doc["cost_per_100_lines_added_usd"] == "0.500000"
    assert doc["cost_per_pull_request_usd"] == "1.000000"
    assert doc["cost_mismatch"] is True and "14.2 % apart" in doc["cost_disagreement"]
    bob = ud.row_dict(BOB)
    assert bob["cost_mismatch"] is False and bob["cost_disagreement"] is None
    assert bob["cost_per_100_lines_added_usd"] is None


def test_an_email_from_the_idp_cannot_drive_the_terminal_in_the_notes() -> None:
    evil = row(
        group="x", developer_email="eve\x1b[2J@example.com", cost_micros=1_000_000,
        client_cost_micros=2_000_000,
    )  # fmt: skip
    notes = ud.render([evil]).split("\n\n", 1)[1]
    assert "\x1b" not in notes and "! eve\\x1b[2J@example.com: Claude Code reported" in notes
