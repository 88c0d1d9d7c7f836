"""``gwapi.v1.UsageEvent`` ↔ ``usage_event`` row values."""

from __future__ import annotations

import json
import operator
from typing import Any

import orjson
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


# Attempt <-> its proto3 JSON dict (as MessageToDict(preserving_proto_field_name=True) writes it
# and ParseDict reads it), by hand: json_format costs tens of microseconds per attempt, and every
# event carries at least one. Used only while Attempt has exactly these fields (else json_format).
_ATTEMPT_TEXT = ("provider", "model", "error_type", "outcome")
_ATTEMPT_INT32 = ("status",)
_ATTEMPT_INT64 = ("start_offset_ms", "duration_ms")  # proto3 JSON writes 64-bit ints as strings
_ATTEMPT_FIELDS = (*_ATTEMPT_TEXT, *_ATTEMPT_INT32, *_ATTEMPT_INT64)
_FAST_ATTEMPTS = sorted(f.name for f in tpb.Attempt.DESCRIPTOR.fields) == sorted(_ATTEMPT_FIELDS)
_ATTEMPT_ORDER = [f.name for f in tpb.Attempt.DESCRIPTOR.fields]  # MessageToDict's key order


def attempt_to_dict(a: tpb.Attempt) -> dict[str, Any]:
    if not _FAST_ATTEMPTS:
        return json_format.MessageToDict(a, preserving_proto_field_name=True)
    out: dict[str, Any] = {}
    for name in _ATTEMPT_ORDER:
        value = getattr(a, name)
        if value:  # proto3 JSON leaves default values out
            out[name] = str(value) if name in _ATTEMPT_INT64 else value
    return out


def attempt_from_dict(d: dict[str, Any], into: tpb.Attempt) -> None:
    if not _FAST_ATTEMPTS or not d.keys() <= set(_ATTEMPT_FIELDS):
        json_format.ParseDict(d, into, ignore_unknown_fields=True)
        return
    for name, value in d.items():
        setattr(into, name, value if name in _ATTEMPT_TEXT else int(value))


_read_scalars = operator.attrgetter(*_SCALARS)
_read_usage = operator.attrgetter(*_USAGE)


def event_to_values(ev: tpb.UsageEvent, received_at_ms: int) -> dict[str, Any]:
    """Column values for one ledger row (metadata as sorted JSON text), marked counted: whoever
    inserts it adds it to the totals and rollups in the same transaction
    (:func:`controlplane.usage.derived.apply`)."""
    # attrgetter reads every field in one C call: a dict comprehension of getattr cost twice as
    # much, per event.
    values: dict[str, Any] = dict(zip(_SCALARS, _read_scalars(ev), strict=True))
    values.update(zip(_USAGE, _read_usage(ev.usage), strict=True))
    # Most events carry neither: their text is known without running the JSON encoder.
    values["metadata_json"] = (
        json.dumps(dict(ev.metadata), sort_keys=True, separators=(",", ":"))
        if ev.metadata
        else "{}"
    )
    values["received_at_ms"] = received_at_ms
    values["ledger_counted"] = True
    values["attempt_log_json"] = (
        # attempt_to_dict writes what json_format.MessageToDict would, several times faster
        # (every real request carries at least one attempt); orjson writes compact JSON, with
        # text as UTF-8 rather than \u escapes (the same values once read back).
        orjson.dumps([attempt_to_dict(a) for a in ev.attempt_log]).decode()
        if ev.attempt_log
        else "[]"
    )
    return values


# The columns :func:`event_from_tuple` reads, in its order.
EVENT_COLUMNS = (*_SCALARS, *_USAGE, "metadata_json", "attempt_log_json")
_N_SCALARS, _N_USAGE = len(_SCALARS), len(_USAGE)


def event_from_tuple(values: Any) -> tpb.UsageEvent:
    """The event a stored row holds, from its :data:`EVENT_COLUMNS` values in order (every other
    replica's event passes here as a plain tuple: a Row's attribute reads cost more than the
    event itself). Only set fields are passed to the constructors (defaults cost as much to
    pass); ``usage`` is always present."""
    scalars = values[:_N_SCALARS]
    ev = tpb.UsageEvent(**{k: v for k, v in zip(_SCALARS, scalars, strict=True) if v})
    used = values[_N_SCALARS : _N_SCALARS + _N_USAGE]
    ev.usage.CopyFrom(pb.Usage(**{k: v for k, v in zip(_USAGE, used, strict=True) if v}))
    metadata_json, attempt_log_json = values[-2], values[-1]
    if metadata_json and metadata_json != "{}":
        ev.metadata.update(json.loads(metadata_json))
    if attempt_log_json and attempt_log_json != "[]":
        for attempt in json.loads(attempt_log_json):
            attempt_from_dict(attempt, ev.attempt_log.add())
    return ev


def row_to_event(row: Any) -> tpb.UsageEvent:
    """``row``: a ``UsageEventRow`` or a Core row of the ``usage_event`` table (attributes)."""
    return event_from_tuple(tuple(getattr(row, name) for name in EVENT_COLUMNS))
