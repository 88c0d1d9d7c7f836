"""``gwctl usage --by developer``: the gateway's metered spend per signed-in developer next to
what each developer's Claude Code reported about itself (OTLP telemetry, ``QueryUsage``'s
activity fields).

Columns: developer (email), workspace, requests, tokens (input + output + cache), metered cost,
the client's own cost estimate, lines added/removed, commits, pull requests, edit-tool decisions
accepted/rejected, and two derived ratios, each the *metered* cost divided by a count:
``$/100 LINES`` (per 100 lines added) and ``$/PR`` (per pull request); ``—`` when the count is 0.

Mismatch marker: ``!`` after the client's cost when it and the metered cost differ by more than
5 % of the larger one *and* by at least one cent (:func:`gwcommon.activity.cost_disagreement`);
a note under the table then says by how much and the likely cause. Activity is summed per UTC
day on the control plane, so a window that starts mid-day (``--since 36h``) may disagree on its
first day for that reason alone.

Virtual-key traffic forms one row, ``(virtual keys)``. The TOTAL line sums every row; its ratios
and its mismatch check count the signed-in developers' metered cost only (keys report no
activity). ``-o json`` carries every ``UsageRow`` field plus ``cost_usd``, ``client_cost_usd``,
``cost_per_100_lines_added_usd``, ``cost_per_pull_request_usd`` (``null`` when the count is 0),
``cost_mismatch`` and ``cost_disagreement`` (the note, or ``null``). Integer arithmetic only.
"""

from __future__ import annotations

from collections.abc import Sequence

from gwapi.v1 import telemetry_pb2
from gwcommon.activity import MIN_MICROS, TOLERANCE_PERCENT, cost_disagreement
from gwcommon.terminal import escape_controls
from gwctl import output as out

MISMATCH_MARK = "!"
NONE = "—"
KEYS_LABEL = "(virtual keys)"
MISMATCH_LEGEND = (
    f"{MISMATCH_MARK} Claude Code's self-reported cost differs from the metered cost by more "
    f"than {TOLERANCE_PERCENT} % (and at least ${MIN_MICROS / 1_000_000:.2f})"
)
# The metered sums of a usage row (one list, shared with `gwctl usage`'s totals).
_METERED = out.USAGE_COUNTERS
_ACTIVITY = (
    "client_cost_micros",
    "lines_added",
    "lines_removed",
    "commits",
    "pull_requests",
    "edits_accepted",
    "edits_rejected",
    "client_sessions",
)
HEADERS = (
    "DEVELOPER", "WORKSPACE", "REQUESTS", "TOKENS", "COST USD", "CLIENT USD", "LINES +/-",
    "COMMITS", "PRS", "EDITS ACC/REJ", "$/100 LINES", "$/PR",
)  # fmt: skip


def per_count(cost_micros: int, count: int, per: int = 1) -> int | None:
    """Micro-dollars per ``per`` units of ``count`` (rounded half up); None when count is 0."""
    if count <= 0:
        return None
    return (cost_micros * per + count // 2) // count


def ratio_text(micros: int | None) -> str:
    return NONE if micros is None else out.format_usd(micros, 4)


def is_developer(row: telemetry_pb2.UsageRow) -> bool:
    return bool(row.group)


def label(row: telemetry_pb2.UsageRow) -> str:
    if not row.group:
        return KEYS_LABEL
    return row.developer_email or row.group


def total(rows: Sequence[telemetry_pb2.UsageRow]) -> tuple[telemetry_pb2.UsageRow, int]:
    """The TOTAL row (every counter summed) and the developers' metered cost alone."""
    row = telemetry_pb2.UsageRow(group="TOTAL")
    for r in rows:
        for name in (*_METERED, *_ACTIVITY):
            setattr(row, name, getattr(row, name) + getattr(r, name))
    developers_cost = sum(r.cost_micros for r in rows if is_developer(r))
    return row, developers_cost


def _figures(row: telemetry_pb2.UsageRow, metered: int) -> out.JSON:
    note = cost_disagreement(metered, row.client_cost_micros)
    per_lines = per_count(metered, row.lines_added, 100)
    per_pr = per_count(metered, row.pull_requests)
    return {
        "cost_usd": out.format_usd(row.cost_micros),
        "client_cost_usd": out.format_usd(row.client_cost_micros),
        "cost_per_100_lines_added_usd": None if per_lines is None else out.format_usd(per_lines),
        "cost_per_pull_request_usd": None if per_pr is None else out.format_usd(per_pr),
        "cost_mismatch": note is not None,
        "cost_disagreement": note,
    }


def row_dict(row: telemetry_pb2.UsageRow) -> out.JSON:
    return {**out.message_dict(row), **_figures(row, row.cost_micros)}


def total_dict(rows: Sequence[telemetry_pb2.UsageRow]) -> out.JSON:
    row, developers_cost = total(rows)
    return {
        **out.message_dict(row),
        **_figures(row, developers_cost),
        "developers_cost_usd": out.format_usd(developers_cost),
    }


def _cells(row: telemetry_pb2.UsageRow, name: str, metered: int) -> list[object]:
    client = (
        out.format_usd(row.client_cost_micros)
        + (f" {MISMATCH_MARK}" if cost_disagreement(metered, row.client_cost_micros) else "")
        if row.client_cost_micros
        else "-"
    )
    tokens = (
        row.input_tokens
        + row.output_tokens
        + row.cache_creation_input_tokens
        + row.cache_read_input_tokens
    )
    return [
        name,
        row.workspace or "-",
        format(row.requests, ","),
        out.format_tokens(tokens),
        out.format_usd(row.cost_micros),
        client,
        f"+{row.lines_added:,}/-{row.lines_removed:,}",
        format(row.commits, ","),
        format(row.pull_requests, ","),
        f"{row.edits_accepted:,}/{row.edits_rejected:,}",
        ratio_text(per_count(metered, row.lines_added, 100)),
        ratio_text(per_count(metered, row.pull_requests)),
    ]


def render(rows: Sequence[telemetry_pb2.UsageRow]) -> str:
    """The table, its TOTAL line, and a note per cost mismatch (with the marker's legend)."""
    body = [_cells(r, label(r), r.cost_micros) for r in rows]
    summed, developers_cost = total(rows)
    body.append(_cells(summed, "TOTAL", developers_cost))
    text = out.render_table(HEADERS, body, right=range(2, 12))
    notes = [
        f"{MISMATCH_MARK} {escape_controls(label(r))}: {note}"
        for r in rows
        if (note := cost_disagreement(r.cost_micros, r.client_cost_micros)) is not None
    ]
    if notes:
        text += "\n\n" + "\n".join([*notes, MISMATCH_LEGEND])
    return text
