"""``-o csv`` building blocks: RFC 4180 framing, defused formulas, escaped controls, exact money;
and the month / moment parsers behind ``--month``, ``--since`` and ``--until``."""

from __future__ import annotations

import argparse
import csv
import io

import pytest

from gwctl import export, parse


def test_rfc4180_framing_and_cells() -> None:
    text = export.render_csv(
        ["group", "requests", "cost_usd", "when", "flag"],
        [
            ['a "quoted", value', 3, export.usd_cell(12_345), export.time_cell(0), True],
            [
                "=1+1",
                0,
                export.usd_cell(1_000_000_000_001),
                export.time_cell(1_795_824_000_000),
                None,
            ],
        ],
    )
    assert text == (
        "group,requests,cost_usd,when,flag\r\n"
        '"a ""quoted"", value",3,0.012345,,1\r\n'
        "'=1+1,0,1000000.000001,2026-11-28T00:00:00Z,\r\n"
    )
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[1][0] == 'a "quoted", value'


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("x")', '\'=HYPERLINK("x")'),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-1", "'-1"),
        ("@cmd", "'@cmd"),
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("tab\there\r\n", "tab\\there\\r\\n"),
        ("\x1b[2J=x", "\\x1b[2J=x"),
        ("\u202eevil", "\\u202eevil"),
    ],
)
def test_text_cells_are_defused_and_escaped(value: str, cell: str) -> None:
    assert export.text_cell(value) == cell


def test_a_row_of_the_wrong_width_is_a_bug() -> None:
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        export.render_csv(["a", "b", "c"], [[1, 2]])


def test_months_are_utc_calendar_months() -> None:
    assert parse.parse_month("2026-11") == (1_793_491_200_000, 1_796_083_200_000)
    assert parse.parse_month("2026-12") == (1_796_083_200_000, 1_798_761_600_000)  # year end
    assert parse.parse_month("2028-02")[1] - parse.parse_month("2028-02")[0] == 29 * 86_400_000
    for bad in ("2026-13", "2026-00", "26-11", "2026-1", "1969-12", "november"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected YYYY-MM"):
            parse.parse_month(bad)


def test_moments_are_durations_or_utc_times() -> None:
    assert parse.parse_moment("7d") == parse.Moment(ago_s=7 * 86400)
    assert parse.parse_moment("7d").resolve(1_000_000_000) == 1_000_000_000 - 7 * 86_400_000
    assert parse.parse_moment("2026-11-01").resolve(0) == 1_793_491_200_000
    assert parse.parse_moment("2026-11-01T09:00Z").at_ms == 1_793_491_200_000 + 9 * 3_600_000
    assert parse.parse_moment("2026-11-01T10:00:00+01:00").at_ms == (
        1_793_491_200_000 + 9 * 3_600_000
    )
    assert parse.parse_moment("2026-11-01T00:00:00.0015").at_ms == 1_793_491_200_001
    for bad in ("yesterday", "2026-11-31", "1960-01-01", "-5d"):
        with pytest.raises(argparse.ArgumentTypeError, match="invalid time"):
            parse.parse_moment(bad)
