"""``-o csv``: RFC 4180 CSV for spreadsheets and billing imports (``gwctl usage``, ``gwctl report``).

Contract:

* One header row, then one record per row; fields quoted only when needed (the ``csv`` module's
  minimal quoting), records end in CRLF as RFC 4180 says. UTF-8, no byte-order mark.
* Money is two columns: ``*_usd``, the exact dollar amount as a decimal string with 6 places
  computed from integer micro-dollars (``0.012345``), and ``*_micros``, the integer itself. No
  float touches money. Token and request counts are integers; times are ISO 8601 UTC
  (``2026-11-03T09:05:00Z``), empty when unset.
* Text cells are the same text the table shows: terminal controls escaped (``ESC`` as
  ``\\x1b``, :func:`gwctl.output.printable`), so no cell carries a raw control or line break.
* Formula injection: a text cell starting with ``=``, ``+``, ``-`` or ``@`` gets a leading
  apostrophe (``'=HYPERLINK(…)``), so a spreadsheet shows it as text instead of evaluating it.
  Group labels come from clients (model names, metadata values, session ids), so any of them
  may be hostile. Numbers are never prefixed (they are written from ints, never negative here).
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterable, Sequence

from gwctl import output as out

FORMULA_STARTS = ("=", "+", "-", "@")
Cell = str | int | None


def text_cell(value: object) -> str:
    """A text value made safe for a spreadsheet: controls escaped, formulas defused."""
    text = out.printable(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def time_cell(ms: int) -> str:
    """Unix milliseconds → ``2026-11-03T09:05:00Z``; ``""`` for 0 (unset)."""
    return out.format_time(ms) if ms else ""


def usd_cell(micros: int) -> str:
    """``12_345`` → ``"0.012345"`` (exact, 6 decimals)."""
    return out.format_usd(micros)


def _cell(value: Cell) -> str | int:
    if value is None:
        return ""
    if isinstance(value, bool):  # a bool is an int: written as one, never as True/False
        return int(value)
    if isinstance(value, int):
        return value
    return text_cell(value)


def render_csv(headers: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    """The CSV text: the header, then the rows (see the module contract)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([text_cell(h) for h in headers])
    for row in rows:
        if len(row) != len(headers):  # a programming error, never user input
            raise ValueError(f"CSV row has {len(row)} cells for {len(headers)} columns")
        writer.writerow([_cell(c) for c in row])
    return buffer.getvalue()


def print_csv(headers: Sequence[str], rows: Iterable[Sequence[Cell]]) -> None:
    sys.stdout.write(render_csv(headers, rows))
    sys.stdout.flush()
