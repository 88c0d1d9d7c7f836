"""``gwctl logs tail [-f]`` — one line per request, oldest first; ``gwctl logs show REQUEST_ID`` —
one request in full; ``gwctl logs alerts`` — budget alerts (see :mod:`gwctl.alerts`).

``show`` prints the ledger record, every upstream attempt, the request headers (credentials
redacted by the data plane) and, when the workspace's ``log_bodies`` policy kept them, the bodies:
a JSON request body indented, an SSE response reconstructed to the assistant's text followed by
the raw events. ``-o json`` gives the same with bodies as text (``request_json`` parsed when it
is JSON, ``response_text`` the reconstructed answer).

Table mode prints a header and one aligned line per request (time, status, workspace, key, model,
provider, tokens in/out/cache write/cache read, cost, latency, ttfb, short session id, request id,
error type). A signed-in developer's request names the developer (email) in the key column;
``--developer ID_OR_EMAIL`` keeps only that developer's requests. An output count the data plane
estimated (the stream ended before its final usage) reads ``~N``; a count_tokens call shows its
model as ``MODEL (count_tokens)``. ``-o json`` prints one JSON array without ``-f`` and JSON lines
with it (a stream has
no end to close an array at). Ctrl-C ends a follow quietly.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gwapi.v1 import common_pb2, telemetry_pb2
from gwclient.client import GatewayClient
from gwctl import alerts, parse
from gwctl import output as out
from gwctl.cli import Subparsers, group, is_json, leaf

HEADERS = (
    "TIME", "STATUS", "WORKSPACE", "KEY", "MODEL", "PROVIDER", "IN", "OUT", "CACHE W", "CACHE R",
    "COST USD", "LATENCY", "TTFB", "SESSION", "REQUEST", "ERROR",
)  # fmt: skip
_RIGHT = (1, 6, 7, 8, 9, 10, 11, 12)
# Follow mode cannot measure the widest cell in advance: these widths fit typical values.
_WIDTHS = (20, 6, 12, 14, 26, 10, 8, 7, 8, 9, 10, 8, 7, 8, 12, 0)


def register(subparsers: Subparsers) -> None:
    sub = group(subparsers, "logs", "request logs", aliases=["log"])
    p = leaf(sub, "tail", "the most recent requests; -f to keep following")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new requests")
    p.add_argument("--workspace", "-w", default="")
    p.add_argument("--key", default="", metavar="ID")
    p.add_argument(
        "--developer", default="", metavar="ID_OR_EMAIL", help="only this developer's requests"
    )
    p.add_argument(
        "-n", "--lines", type=parse.parse_count, default=20, metavar="N", help="default 20"
    )
    p.add_argument(
        "--status", default=None, type=status_filter, metavar="CODE|Nxx",
        help="only these statuses, e.g. 429 or 4xx",
    )  # fmt: skip
    p.add_argument(
        "--model", default="", metavar="GLOB", help="only models matching, e.g. '*opus*'"
    )
    p.set_defaults(handler=tail)
    p = leaf(sub, "show", "one request in full: attempts, headers, bodies (per log policy)")
    p.add_argument("request_id", metavar="REQUEST_ID")
    p.set_defaults(handler=show)
    alerts.add_parser(leaf(sub, "alerts", "budget alerts, newest first (same as gwctl alerts)"))


def event_dict(event: telemetry_pb2.UsageEvent) -> out.JSON:
    return out.with_cost(event, event.usage.cost_micros)


def who(event: telemetry_pb2.UsageEvent) -> str:
    """The key's name, or the signed-in developer's email (their requests carry no key)."""
    if event.developer_id or event.developer_email:
        return event.developer_email or event.developer_id
    return event.key_name or event.key_id or "-"


def is_count_tokens(event: telemetry_pb2.UsageEvent) -> bool:
    """A token-counting call (Anthropic and Vertex doors), not a Messages request."""
    return event.path.endswith(("/count_tokens", "count-tokens:rawPredict"))


def output_cell(usage: common_pb2.Usage) -> str:
    text = out.format_tokens(usage.output_tokens)
    return f"~{text}" if usage.output_estimated else text


def cells(event: telemetry_pb2.UsageEvent) -> list[str]:
    usage = event.usage
    model = event.model_served or event.model_requested or "-"
    return [
        out.format_time(event.time_ms),
        str(event.status),
        event.workspace or "-",
        who(event),
        f"{model} (count_tokens)" if is_count_tokens(event) else model,
        event.provider or "-",
        out.format_tokens(usage.input_tokens),
        output_cell(usage),
        out.format_tokens(usage.cache_creation_input_tokens),
        out.format_tokens(usage.cache_read_input_tokens),
        out.format_usd(usage.cost_micros),
        f"{event.latency_ms}ms",
        f"{event.ttfb_ms}ms" if event.ttfb_ms else "-",
        event.session_id[:8] or "-",
        event.request_id,
        event.error_type,
    ]


def format_line(values: list[str] | tuple[str, ...]) -> str:
    """One fixed-width line (follow mode)."""
    return out.fixed_width_line(values, _WIDTHS, _RIGHT)


def status_filter(value: str) -> str:
    """``429`` or a class like ``4xx``."""
    v = value.strip().lower()
    if (len(v) == 3 and v.isdigit()) or (len(v) == 3 and v[0] in "12345" and v[1:] == "xx"):
        return v
    raise argparse.ArgumentTypeError(
        f"invalid status {value!r}: use a code like 429 or a class like 4xx"
    )


def matches(event: telemetry_pb2.UsageEvent, args: argparse.Namespace) -> bool:
    status = getattr(args, "status", None) or ""
    if status:
        code = str(event.status)
        if status.endswith("xx") and not code.startswith(status[0]):
            return False
        if not status.endswith("xx") and code != status:
            return False
    model = getattr(args, "model", "")
    return not model or fnmatch.fnmatchcase(event.model_served or event.model_requested, model)


async def tail(client: GatewayClient, args: argparse.Namespace) -> int:
    filtered = bool(getattr(args, "status", None) or getattr(args, "model", ""))
    # Filters apply here, so look further back for N matching requests (the server caps at 1000).
    limit = min(1000, args.lines * 20) if filtered else args.lines
    developer = getattr(args, "developer", "")
    developer_id = (await client.get_developer(developer)).id if developer else ""
    source = client.tail_logs(
        follow=args.follow,
        limit=limit,
        workspace=args.workspace,
        key_id=args.key,
        developer_id=developer_id,
    )

    async def only_matching() -> AsyncIterator[telemetry_pb2.UsageEvent]:
        async for event in source:
            if matches(event, args):
                yield event

    events = only_matching()
    if not args.follow:
        collected = [e async for e in events][-args.lines :]
        if is_json(args):
            out.print_json([event_dict(e) for e in collected])
        else:
            out.print_table(HEADERS, (cells(e) for e in collected), right=_RIGHT)
        return 0
    await out.print_follow(
        events, is_json(args), format_line(HEADERS), lambda e: format_line(cells(e)), event_dict
    )
    return 0


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _json_or_none(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def sse_events(data: bytes) -> list[tuple[str, Any]]:
    """(event name, parsed data) per SSE frame; data that is not JSON stays a string."""
    out: list[tuple[str, Any]] = []
    for frame in data.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, lines = "", []
        for line in frame.split(b"\n"):
            if line.startswith(b"event:"):
                name = _text(line[6:].strip())
            elif line.startswith(b"data:"):
                lines.append(line[5:].lstrip())
        if not lines:
            continue
        raw = b"\n".join(lines)
        parsed = _json_or_none(raw)
        out.append((name, parsed if parsed is not None else _text(raw)))
    return out


def assistant_text(data: bytes) -> str:
    """The answer's text: from SSE deltas, or from a JSON message's text blocks."""
    obj = _json_or_none(data)
    if isinstance(obj, dict):
        content = obj.get("content")
        if isinstance(content, list):
            return "".join(
                str(b.get("text", "")) for b in content if isinstance(b, dict) and "text" in b
            )
        return ""
    parts = []
    for _, ev in sse_events(data):
        if isinstance(ev, dict) and ev.get("type") == "content_block_delta":
            delta = ev.get("delta") or {}
            if isinstance(delta, dict) and isinstance(delta.get("text"), str):
                parts.append(delta["text"])
    return "".join(parts)


def log_dict(event: telemetry_pb2.UsageEvent) -> out.JSON:
    doc = event_dict(event)
    doc["request_body"] = _text(event.request_body)
    doc["response_body"] = _text(event.response_body)
    doc["request_json"] = _json_or_none(event.request_body) if event.request_body else None
    doc["response_text"] = assistant_text(event.response_body) if event.response_body else ""
    return doc


def _pretty(body: bytes) -> str:
    """A JSON body indented, anything else as text."""
    obj = _json_or_none(body)
    return (
        orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() if obj is not None else _text(body)
    )


def _is_sse(data: bytes) -> bool:
    return data.lstrip().startswith((b"event:", b"data:"))


def render(event: telemetry_pb2.UsageEvent) -> str:
    """The human view of ``gwctl logs show``: every value from the client or upstream has its
    terminal controls escaped (bodies keep their lines)."""
    lines: list[str] = []
    u = event.usage
    fields: list[tuple[str, object]] = [
        ("request", event.request_id),
        ("time", out.format_time(event.time_ms)),
        ("status", f"{event.status} {event.error_type}".strip()),
        ("error", event.error_message or "-"),
        ("workspace", event.workspace or "-"),
        *(
            [("developer", f"{event.developer_email or '-'} ({event.developer_id or '-'})")]
            if event.developer_id or event.developer_email
            else [("key", f"{event.key_name or '-'} ({event.key_id or '-'})")]
        ),
        ("session", event.session_id or "-"),
        ("model", f"{event.model_requested or '-'} -> {event.model_served or '-'}"),
        ("provider", event.provider or "-"),
        ("cache", event.cache_status or "-"),
        ("stream", "yes" if event.stream else "no"),
        ("path", event.path or "-"),
        ("tokens", f"in {u.input_tokens}  out {u.output_tokens}"
         f"{' (estimated: the stream ended before its final usage)' if u.output_estimated else ''}"
         f"  cache w {u.cache_creation_input_tokens}  cache r {u.cache_read_input_tokens}"),
        ("server tools", f"web search {u.web_search_requests}  web fetch {u.web_fetch_requests}"),
        ("cost USD", out.format_usd(u.cost_micros)),
        ("latency", f"{event.latency_ms}ms (ttfb {event.ttfb_ms}ms)"),
        ("client", event.user_agent or "-"),
        ("upstream id", event.upstream_request_id or "-"),
        ("metadata", ", ".join(f"{k}={v}" for k, v in sorted(event.metadata.items())) or "-"),
    ]  # fmt: skip
    width = max(len(label) for label, _ in fields)
    lines.extend(f"{label + ':':<{width + 1}} {out.printable(value)}" for label, value in fields)
    if event.attempt_log:
        lines.append("")
        lines.append("attempts:")
        for i, a in enumerate(event.attempt_log, 1):
            lines.append(
                out.printable(
                    f"  {i}. {a.provider} {a.model} -> {a.status or '-'} {a.outcome}"
                    f"{' ' + a.error_type if a.error_type else ''} "
                    f"(+{a.start_offset_ms}ms, {a.duration_ms}ms)"
                )
            )
    if event.request_headers:
        lines.append("")
        lines.append("request headers:")
        lines.extend(out.printable(f"  {k}: {v}") for k, v in sorted(event.request_headers.items()))
    if not (event.request_headers or event.request_body or event.response_body):
        lines.append("")
        lines.append("bodies: not logged (the workspace's log_bodies policy is none)")
        return "\n".join(lines)
    sizes = f"request {event.request_body_size} bytes, response {event.response_body_size} bytes"
    lines.append("")
    lines.append(f"sizes: {sizes}{' (bodies truncated)' if event.bodies_truncated else ''}")
    if event.request_body:
        lines.append("")
        lines.append("request body:")
        lines.append(out.printable_block(_pretty(event.request_body)))
    if event.response_body:
        lines.append("")
        if _is_sse(event.response_body):
            lines.append("response (assistant text):")
            lines.append(out.printable_block(assistant_text(event.response_body)))
            lines.append("")
            lines.append("response events:")
            lines.append(out.printable_block(_text(event.response_body).rstrip()))
        else:
            lines.append("response body:")
            lines.append(out.printable_block(_pretty(event.response_body)))
    elif event.request_headers and not event.request_body:
        lines.append("bodies: not logged (the workspace's log_bodies policy is metadata)")
    return "\n".join(lines)


async def show(client: GatewayClient, args: argparse.Namespace) -> int:
    event = await client.get_log(args.request_id)
    if is_json(args):
        out.print_json(log_dict(event))
    else:
        sys.stdout.write(render(event) + "\n")
    return 0
