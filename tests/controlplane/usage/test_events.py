"""The ledger's hand-written Attempt codec writes and reads exactly what json_format does."""

from __future__ import annotations

import itertools
import json

from google.protobuf import json_format

from controlplane.usage import events
from gwapi.v1 import telemetry_pb2 as tpb


def _attempts() -> list[tpb.Attempt]:
    values = itertools.product(
        ["", "anthropic", 'é\n"x\u2028'],
        ["", "claude"],
        [0, 200, 529, -1],
        ["", "overloaded_error"],
        ["", "served", "fell_back"],
        [0, 7, -3, 2**62],
        [0, 1, 2**40],
    )
    return [
        tpb.Attempt(
            provider=p,
            model=m,
            status=st,
            error_type=e,
            outcome=o,
            start_offset_ms=s,
            duration_ms=d,
        )
        for p, m, st, e, o, s, d in values
    ]


def test_the_fast_codec_is_in_use_for_this_schema() -> None:
    assert events._FAST_ATTEMPTS


def test_attempt_json_matches_json_format_both_ways() -> None:
    for a in _attempts():
        reference = json_format.MessageToDict(a, preserving_proto_field_name=True)
        written = events.attempt_to_dict(a)
        assert json.dumps(written) == json.dumps(reference)  # same keys, order and values
        back = tpb.Attempt()
        events.attempt_from_dict(json.loads(json.dumps(written)), back)
        assert back == a


def test_rows_written_by_json_format_or_with_unknown_fields_read_back() -> None:
    stored = {"provider": "p", "status": 500, "start_offset_ms": 12, "duration_ms": "40"}
    a = tpb.Attempt()
    events.attempt_from_dict(stored, a)  # numbers for int64 fields, as older writers may have
    assert (a.provider, a.status, a.start_offset_ms, a.duration_ms) == ("p", 500, 12, 40)
    b = tpb.Attempt()
    events.attempt_from_dict({"provider": "p", "from_the_future": 1}, b)  # json_format's path
    assert b.provider == "p"


def test_an_event_round_trips_through_row_values() -> None:
    ev = tpb.UsageEvent(request_id="r1", time_ms=5, workspace="w", key_id="k")
    ev.usage.cost_micros = 3
    ev.metadata["team"] = "ünï"
    ev.attempt_log.add(provider="p", status=200, outcome="served", duration_ms=9)
    values = events.event_to_values(ev, 6)
    bare = events.event_to_values(tpb.UsageEvent(request_id="r2"), 6)
    assert (bare["metadata_json"], bare["attempt_log_json"]) == ("{}", "[]")

    class Row:
        pass

    row = Row()
    row.__dict__.update(values)
    assert events.row_to_event(row) == ev


def test_events_read_by_position_equal_events_read_by_name() -> None:
    """``event_from_tuple`` (other replicas' events, as plain tuples) builds the same event as
    ``row_to_event``: every field set, none set, metadata, attempts, booleans, negatives."""
    full = tpb.UsageEvent()
    for f in tpb.UsageEvent.DESCRIPTOR.fields:
        if f.name in events._SCALARS:
            setattr(
                full,
                f.name,
                True if f.type == f.TYPE_BOOL else 7 if f.type != f.TYPE_STRING else "x",
            )
    for f in full.usage.DESCRIPTOR.fields:
        setattr(
            full.usage,
            f.name,
            True if f.type == f.TYPE_BOOL else 9 if f.type != f.TYPE_STRING else "p",
        )
    full.metadata["team"] = "ünï"
    full.attempt_log.add(provider="p", status=529, duration_ms=2**40)
    full.attempt_log.add(provider="q", status=200, start_offset_ms=-3)
    odd = tpb.UsageEvent(request_id="r3", status=-1, error_message="é\n", time_ms=-5)
    for ev in (full, tpb.UsageEvent(request_id="r2"), odd):
        values = events.event_to_values(ev, 6)
        row = tuple(values[name] for name in events.EVENT_COLUMNS)

        class Row:
            pass

        named = Row()
        named.__dict__.update(values)
        by_name = events.row_to_event(named)
        assert events.event_from_tuple(row) == by_name
        ev.usage.SetInParent()  # a stored event always reads back with its usage present
        assert by_name == ev
