"""``gwapi.v1.UsageEvent`` ↔ ``usage_event`` row values."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format

from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import telemetry_pb2 as tpb

_SCALARS = (
    "request_id",
    "time_ms",
    "workspace",
    "key_id",
    "key_name",
    "session_id",
    "model_requested",
    "model_served",
    "provider",
    "attempts",
    "status",
    "error_type",
    "error_message",
    "ttfb_ms",
    "latency_ms",
    "stream",
    "path",
    "user_agent",
    "client_version",
    "dataplane_id",
    "upstream_request_id",
    "client_disconnected",
    "cache_status",
    "cost_saved_micros",
    "developer_id",
    "developer_email",
)
_USAGE = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cost_micros",
    "priced_as",
    "web_search_requests",
    "web_fetch_requests",
    "output_estimated",
)


def event_to_values(ev: tpb.UsageEvent, received_at_ms: int) -> dict[str, Any]:
    """Column values for one ledger row (metadata as sorted JSON text)."""
    values: dict[str, Any] = {name: getattr(ev, name) for name in _SCALARS}
    values.update({name: getattr(ev.usage, name) for name in _USAGE})
    values["metadata_json"] = json.dumps(dict(ev.metadata), sort_keys=True, separators=(",", ":"))
    values["received_at_ms"] = received_at_ms
    values["attempt_log_json"] = json.dumps(
        [json_format.MessageToDict(a, preserving_proto_field_name=True) for a in ev.attempt_log],
        separators=(",", ":"),
    )
    return values


def row_to_event(row: Any) -> tpb.UsageEvent:
    """``row``: a ``UsageEventRow`` or a Core row of the ``usage_event`` table (attributes)."""
    ev = tpb.UsageEvent(**{name: getattr(row, name) for name in _SCALARS})
    ev.usage.CopyFrom(pb.Usage(**{name: getattr(row, name) for name in _USAGE}))
    ev.metadata.update(json.loads(row.metadata_json or "{}"))
    for attempt in json.loads(row.attempt_log_json or "[]"):
        json_format.ParseDict(attempt, ev.attempt_log.add(), ignore_unknown_fields=True)
    return ev
