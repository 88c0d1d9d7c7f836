"""Rendering for gwctl: aligned text tables, JSON documents, money and time formatting.

Contracts:

* ``-o json`` prints exactly ONE JSON document (``print_json``); follow modes print one compact
  document per line (``print_json_line``).
* Protobuf messages become dicts through ``json_format.MessageToDict`` with the proto field names,
  every field present (zero values included, so scripts need no defaults) and int64 kept as JSON
  numbers (int64 counters and micro-dollars stay far below 2**53).
* Dollar amounts are computed from integer micro-dollars with integer arithmetic only; no float
  ever touches money.
* Text output never writes a terminal control from a value: every cell, field and note goes
  through :func:`printable` (``ESC`` shows as ``\\x1b``), so a model name, session id or metadata
  value a client chose cannot recolour, rewrite or retitle the operator's terminal. JSON escapes
  C0 itself; DEL, C1, bidi overrides and line separators are written as ``\\uXXXX`` too (the same
  JSON value, nothing raw on a terminal).
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterable, Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from google.protobuf import json_format
from google.protobuf.message import Message

from gwapi import vocab
from gwapi.v1 import common_pb2, telemetry_pb2
from gwapi.vocab import TEXT_FIELDS
from gwcommon import money
from gwcommon.terminal import escape_controls, escape_json_text
from gwctl.parse import PERIOD_NAMES

JSON = dict[str, Any]
T = TypeVar("T")

# The summable fields of a usage row, in display order: totals add these.
USAGE_COUNTERS = vocab.USAGE_COUNTERS
# The count and token columns of the usage tables (``gwctl usage``, ``gwctl report``), in order.
USAGE_COUNT_HEADERS = (
    "REQUESTS", "ERRORS", "INPUT", "OUTPUT", "CACHE WRITE", "CACHE READ", "SEARCHES",
)  # fmt: skip


def printable(value: object) -> str:
    """``str(value)`` on one line with every terminal control shown escaped (``\\x1b``)."""
    return escape_controls(str(value))


def printable_block(text: str) -> str:
    """Multi-line text (bodies, notes): lines and tabs kept, every other control escaped."""
    return escape_controls(text, keep_newlines=True)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# The money spellings live in gwcommon.money; these names are what gwctl's modules call.
format_usd = money.decimal
format_money = money.budget
format_dollars = money.dollars
format_cents = money.cents


def format_budget(budget: common_pb2.Budget) -> str:
    """``Budget(50_000_000, PERIOD_DAY)`` → ``"$50/day"``; parseable again by ``parse_budget``."""
    period = PERIOD_NAMES.get(budget.period, "lifetime")
    return f"{format_money(budget.amount_micros)}/{period}"


def format_budgets(limits: common_pb2.Limits) -> str:
    return ", ".join(format_budget(b) for b in limits.budgets) or "-"


def format_percent(spent_micros: int, amount_micros: int) -> str:
    """One decimal, rounded down so 99.96 % never shows as 100.0 %: ``"24.7 %"``."""
    if amount_micros <= 0:
        return "-"
    tenths = spent_micros * 1000 // amount_micros
    return f"{tenths // 10}.{tenths % 10} %"


def budget_status_text(status: common_pb2.BudgetStatus) -> str:
    """``"$12.34 of $50.00/day (24.7 %), resets 2026-11-29T00:00:00Z"``."""
    budget = status.budget
    period = PERIOD_NAMES.get(budget.period, "lifetime")
    of = f"{format_dollars(budget.amount_micros)}" + (
        " lifetime" if period == "lifetime" else f"/{period}"
    )
    resets = (
        f"resets {format_time(status.period_end_ms)}" if status.period_end_ms else "never resets"
    )
    return (
        f"{format_cents(status.spent_micros)} of {of} "
        f"({format_percent(status.spent_micros, budget.amount_micros)}), {resets}"
    )


def budget_status_dict(status: common_pb2.BudgetStatus) -> JSON:
    """The derived, human-friendly view of one budget's current period (for ``-o json``)."""
    budget = status.budget
    tenths = status.spent_micros * 1000 // budget.amount_micros if budget.amount_micros else 0
    return {
        "budget": format_budget(budget),
        "period": PERIOD_NAMES.get(budget.period, "lifetime"),
        "amount_usd": format_usd(budget.amount_micros),
        "spent_usd": format_usd(status.spent_micros),
        "remaining_usd": format_usd(max(0, budget.amount_micros - status.spent_micros)),
        "percent": f"{tenths // 10}.{tenths % 10}",
        "period_start": format_time(status.period_start_ms) if status.period_end_ms else None,
        "resets_at": format_time(status.period_end_ms) if status.period_end_ms else None,
        "text": budget_status_text(status),
    }


def spend_fields(statuses: Iterable[common_pb2.BudgetStatus]) -> list[tuple[str, object]]:
    """``show`` lines, one per budget: ``("spend/day", "$12.34 of $50.00/day …")``."""
    return [
        (f"spend/{PERIOD_NAMES.get(st.budget.period, 'lifetime')}", budget_status_text(st))
        for st in statuses
    ]


def format_limit(value: int) -> str:
    """Zero means "no limit" in every numeric limit field."""
    return str(value) if value else "-"


def format_time(ms: int) -> str:
    """Unix milliseconds → ``2025-01-31T09:05:00Z``; ``-`` for 0 (never / unset)."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_tokens(n: int) -> str:
    return f"{n:,}"


def usage_count_cells(row: telemetry_pb2.UsageRow) -> list[object]:
    """A usage row's cells under :data:`USAGE_COUNT_HEADERS`."""
    return [
        format(row.requests, ","),
        format(row.errors, ","),
        format_tokens(row.input_tokens),
        format_tokens(row.output_tokens),
        format_tokens(row.cache_creation_input_tokens),
        format_tokens(row.cache_read_input_tokens),
        format(row.web_search_requests, ","),
    ]


def key_status(key: common_pb2.VirtualKey, at_ms: int | None = None) -> str:
    """``revoked`` beats ``expired`` beats ``active``."""
    if key.revoked_at_ms:
        return "revoked"
    if key.expires_at_ms and key.expires_at_ms <= (now_ms() if at_ms is None else at_ms):
        return "expired"
    return "active"


def message_dict(message: Message) -> JSON:
    """A protobuf message as a JSON-ready dict (see the module contract), keys in .proto order."""
    doc = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )
    # The vocabulary's typed fields repeat the text ones (gwapi.vocab) this output has always
    # had: shown once, in the words the CLI takes.
    for name in TEXT_FIELDS:
        doc.pop(name, None)
    return _in_proto_order(message.DESCRIPTOR, doc)


def _in_proto_order(descriptor: Any, doc: JSON) -> JSON:
    # MessageToDict lists set fields before defaulted ones; humans read .proto order better.
    ordered: JSON = {}
    for field in descriptor.fields:
        if field.name not in doc:
            continue
        value = doc[field.name]
        sub = field.message_type
        if sub is not None and not sub.GetOptions().map_entry:
            if isinstance(value, list):
                value = [_in_proto_order(sub, v) if isinstance(v, dict) else v for v in value]
            elif isinstance(value, dict):
                value = _in_proto_order(sub, value)
        ordered[field.name] = value
    return ordered


def limits_extras(limits: common_pb2.Limits) -> JSON:
    """Derived fields added next to a message's ``limits``: the budgets as ``"$50/day"``."""
    return {"budgets": [format_budget(b) for b in limits.budgets]}


def workspace_dict(ws: common_pb2.Workspace) -> JSON:
    return {
        **message_dict(ws),
        **limits_extras(ws.limits),
        "spend": [budget_status_dict(st) for st in ws.budget_status],
    }


def key_dict(key: common_pb2.VirtualKey, at_ms: int | None = None) -> JSON:
    return {
        **message_dict(key),
        **limits_extras(key.limits),
        "spend": [budget_status_dict(st) for st in key.budget_status],
        "status": key_status(key, at_ms),
        "expires_at": format_time(key.expires_at_ms) if key.expires_at_ms else None,
    }


def with_cost(message: Message, cost_micros: int) -> JSON:
    """The message's dict plus ``cost_usd``: the exact dollar amount as a 6-decimal string."""
    return {**message_dict(message), "cost_usd": format_usd(cost_micros)}


def _dumps(doc: Any, indent: bool) -> str:
    option = orjson.OPT_INDENT_2 if indent else 0
    text = orjson.dumps(doc, option=option | orjson.OPT_NON_STR_KEYS).decode()
    return escape_json_text(text)  # orjson leaves DEL, C1 and bidi marks raw


def print_json(doc: Any) -> None:
    sys.stdout.write(_dumps(doc, indent=True) + "\n")


def print_json_line(doc: Any) -> None:
    sys.stdout.write(_dumps(doc, indent=False) + "\n")
    sys.stdout.flush()


def render_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], right: Iterable[int] = ()
) -> str:
    """Columns padded to their widest cell, two spaces apart; ``right`` = right-aligned columns."""
    cells = [[printable(c) for c in headers], *([printable(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    right_set = set(right)
    lines = []
    for row in cells:
        parts = [
            cell.rjust(widths[i]) if i in right_set else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], right: Iterable[int] = ()
) -> None:
    sys.stdout.write(render_table(headers, rows, right) + "\n")


def print_list(
    as_json: bool,
    items: Sequence[T],
    doc: Callable[[T], JSON],
    headers: Sequence[str],
    row: Callable[[T], Sequence[object]],
    right: Iterable[int] = (),
) -> None:
    """A ``list`` command's output: ``-o json`` one array of the items' documents, else a table
    with one ``row`` per item."""
    if as_json:
        print_json([doc(item) for item in items])
    else:
        print_table(headers, (row(item) for item in items), right)


def print_gone(as_json: bool, verb: str, what: str, name: str) -> None:
    """What a ``delete`` (``remove``) prints: ``{"deleted": name}``, or ``deleted key key_…``."""
    if as_json:
        print_json({verb: name})
    else:
        print(f"{verb} {what} {name}")


def fixed_width_line(
    values: Sequence[str], widths: Sequence[int], right: Collection[int] = ()
) -> str:
    """One line of a follow mode, which cannot measure the widest cell in advance: each value
    padded to its column's width (``right``: right-aligned), a wider one pushing the rest right
    rather than being cut; controls in a value are shown escaped."""
    parts = []
    for i, (raw, width) in enumerate(zip(values, widths, strict=True)):
        value = printable(raw)
        parts.append(value.rjust(width) if i in right else value.ljust(width))
    return "  ".join(parts).rstrip()


async def print_follow(
    events: AsyncIterable[T],
    as_json: bool,
    header: str,
    line: Callable[[T], str],
    doc: Callable[[T], JSON],
) -> None:
    """A follow mode's output, each event as it comes: ``-o json`` one compact document per line;
    otherwise ``header`` then one ``line`` per event, flushed so a pipe sees it at once."""
    if not as_json:
        print(header, flush=True)
    async for event in events:
        if as_json:
            print_json_line(doc(event))
        else:
            sys.stdout.write(line(event) + "\n")
            sys.stdout.flush()


def print_fields(pairs: Iterable[tuple[str, object]]) -> None:
    """A ``show`` view: one ``label: value`` per line, labels aligned."""
    items = [(printable(label), printable(value)) for label, value in pairs]
    width = max((len(label) for label, _ in items), default=0)
    for label, value in items:
        sys.stdout.write(f"{label + ':':<{width + 1}} {value}\n")


def info(message: str) -> None:
    """Human notes go to stderr so stdout stays clean for pipes (and ``eval "$(gwctl up)"``)."""
    sys.stderr.write(printable_block(message) + "\n")
