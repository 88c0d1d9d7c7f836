"""One request's record, filled in as the request goes, turned into a usage event at the end.

The record is the only mutable per-request state. It is converted to a ``gwapi.v1.UsageEvent``
exactly once, when the response has ended (completed, failed or abandoned by the client), and
handed to the reporter's queue; nothing here does I/O.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from dataplane.clienttext import clean
from dataplane.errors import bad_request
from dataplane.metering.bodylog import BodyLog
from dataplane.metering.meter import TokenUsage
from dataplane.metering.pricing import Priced
from gwapi.v1 import common_pb2, telemetry_pb2
from gwcommon.usage_limits import EVENT_BODY_BYTES, TEXT_CHARS

if TYPE_CHECKING:
    from dataplane.edge.tracing.context import TraceContext

_META_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_META_ENTRIES = 16
MAX_META_VALUE = 256
_CLIENT_VERSION = re.compile(rb"claude-cli/([0-9][0-9A-Za-z.+-]*)")


def parse_metadata(raw: bytes | None) -> dict[str, str]:
    """Validate ``x-tollgate-metadata``: a JSON object of short scalar values."""
    if not raw:
        return {}
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request(
            'x-tollgate-metadata must be a JSON object, e.g. {"team":"payments","project":"api"}.'
        ) from None
    if not isinstance(obj, dict):
        raise bad_request("x-tollgate-metadata must be a JSON object of string values.")
    if len(obj) > MAX_META_ENTRIES:
        raise bad_request(f"x-tollgate-metadata has more than {MAX_META_ENTRIES} entries.")
    out: dict[str, str] = {}
    for key, value in obj.items():
        if not _META_KEY.match(key):
            raise bad_request(
                f"x-tollgate-metadata key {key[:70]!r} is invalid: use 1-64 letters, digits, _ . -"
            )
        if isinstance(value, bool | int | float):
            value = orjson.dumps(value).decode()
        if not isinstance(value, str):
            raise bad_request(f"x-tollgate-metadata value of {key!r} must be a string or number.")
        value = value[:MAX_META_VALUE]
        if clean(value, MAX_META_VALUE) is not value:
            raise bad_request(
                f"x-tollgate-metadata value of {key!r} contains a control character "
                "(such as \\u0000 or a newline): use printable text."
            )
        out[key] = value
    return out


def client_version(user_agent: bytes | None) -> str:
    """The Claude Code version from ``user-agent: claude-cli/2.1.197 (external, sdk-cli)``."""
    if not user_agent:
        return ""
    match = _CLIENT_VERSION.search(user_agent)
    return match.group(1).decode() if match else ""


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    dataplane_id: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    time_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    workspace: str = ""
    key_id: str = ""
    key_name: str = ""
    developer_id: str = ""  # a signed-in developer (then key_id/key_name stay empty)
    developer_email: str = ""
    session_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    user_agent: str = ""
    model_requested: str = ""
    model_served: str = ""
    provider: str = ""
    attempts: int = 0
    stream: bool = False
    status: int = 0
    error_type: str = ""
    error_message: str = ""
    ttfb_s: float | None = None
    upstream_request_id: str = ""
    client_disconnected: bool = False
    usage: TokenUsage = field(default_factory=TokenUsage)
    output_estimated: bool = (
        False  # usage.output_tokens is an estimate (see dataplane.metering.meter)
    )
    priced: Priced | None = None
    attempt_log: list[telemetry_pb2.Attempt] = field(default_factory=list)
    cache_status: str = ""
    cost_saved_micros: int = 0
    log: BodyLog | None = None  # set only when the workspace's log_bodies policy is not "none"
    trace: TraceContext | None = None  # set only when the data plane traces itself (--otlp-…)

    def mark_first_byte(self) -> None:
        if self.ttfb_s is None:
            self.ttfb_s = time.perf_counter() - self.started

    def fail(self, status: int, error_type: str, message: str) -> None:
        self.status = status
        self.error_type = error_type
        self.error_message = message[:1000]

    def to_event(self) -> telemetry_pb2.UsageEvent:
        latency = time.perf_counter() - self.started
        u = self.usage
        usage = common_pb2.Usage(
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_creation_input_tokens=u.cache_creation_input_tokens,
            cache_read_input_tokens=u.cache_read_input_tokens,
            cache_write_5m_tokens=u.cache_write_5m_tokens,
            cache_write_1h_tokens=u.cache_write_1h_tokens,
            cost_micros=self.priced.cost_micros if self.priced else 0,
            priced_as=self.priced.priced_as if self.priced else "",
            web_search_requests=u.web_search_requests,
            web_fetch_requests=u.web_fetch_requests,
            output_estimated=self.output_estimated,
        )
        t = TEXT_CHARS
        # Client (and upstream) strings are cleaned and cut here, once: no event carries NUL
        # (PostgreSQL refuses it) or anything huge into the spool and the ledger.
        model_requested = clean(self.model_requested, t["model_requested"])
        event = telemetry_pb2.UsageEvent(
            request_id=self.request_id,
            time_ms=self.time_ms,
            workspace=self.workspace,
            key_id=self.key_id,
            key_name=self.key_name,
            developer_id=self.developer_id,
            developer_email=clean(self.developer_email, t["developer_email"]),
            session_id=clean(self.session_id, t["session_id"]),
            metadata=self.metadata,
            model_requested=model_requested,
            model_served=clean(self.model_served, t["model_served"])
            if self.model_served
            else model_requested,
            provider=self.provider,
            attempts=self.attempts,
            status=self.status,
            error_type=clean(self.error_type, t["error_type"]),
            error_message=clean(self.error_message, t["error_message"]),
            ttfb_ms=round(self.ttfb_s * 1000) if self.ttfb_s is not None else 0,
            latency_ms=round(latency * 1000),
            usage=usage,
            stream=self.stream,
            path=clean(self.path, t["path"]),
            user_agent=clean(self.user_agent, t["user_agent"]),
            client_version=clean(client_version(self.user_agent.encode()), t["client_version"]),
            dataplane_id=self.dataplane_id,
            upstream_request_id=clean(self.upstream_request_id, t["upstream_request_id"]),
            client_disconnected=self.client_disconnected,
            attempt_log=self.attempt_log,
            cache_status=self.cache_status,
            cost_saved_micros=self.cost_saved_micros,
        )
        log = self.log
        if log is not None:
            event.request_headers.update(log.headers)
            event.request_body_size = log.request_size
            event.response_body_size = log.response_size
            if log.full:
                whole = log.scrubbed(log.request), log.scrubbed(log.response)
                request, response = fit_bodies(*whole, EVENT_BODY_BYTES)
                event.request_body = request
                event.response_body = response
                event.bodies_truncated = log.truncated or (
                    len(request) + len(response) < len(whole[0]) + len(whole[1])
                )
        return event


def fit_bodies(request: bytes, response: bytes, budget: int) -> tuple[bytes, bytes]:
    """Both bodies cut so that together they hold at most ``budget`` bytes: the smaller one
    keeps up to half, the other the rest (so an event always fits a ``ReportUsage`` alone)."""
    if len(request) + len(response) <= budget:
        return request, response
    half = budget // 2
    if len(request) <= half:
        return request, response[: budget - len(request)]
    if len(response) <= half:
        return request[: budget - len(response)], response
    return request[:half], response[: budget - half]


def repair_event(event: telemetry_pb2.UsageEvent) -> bool:
    """Make an event the control plane can take: strings cleaned and cut, bodies fitted.

    For events built by older data planes (and kept in a spool across the upgrade) that a
    control plane refused or that exceed the message size alone; returns True if anything
    changed (the caller then sends the repaired copy instead)."""
    changed = False
    for name, limit in TEXT_CHARS.items():
        value = getattr(event, name)
        fixed = clean(value, limit)
        if fixed is not value:
            setattr(event, name, fixed)
            changed = True
    for key, value in list(event.metadata.items()):
        fixed_key, fixed = clean(key, 64), clean(value, MAX_META_VALUE)
        if fixed_key is not key or fixed is not value:
            del event.metadata[key]
            event.metadata[fixed_key] = fixed
            changed = True
    request, response = fit_bodies(event.request_body, event.response_body, EVENT_BODY_BYTES)
    if len(request) < len(event.request_body) or len(response) < len(event.response_body):
        event.request_body, event.response_body = request, response
        event.bodies_truncated = True
        changed = True
    return changed
