"""QueryUsage from rollups (plus raw edge hours) answers exactly what a raw scan answers, for
every grouping, filter and range; property-tested on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.store.db import Database
from controlplane.usage import sources
from controlplane.usage.ledger import query_usage
from gwapi.v1 import telemetry_pb2 as tpb
from tests.controlplane.usage.ledger_support import add_workspace, ms, report

HOUR, DAY = 3_600_000, 86_400_000
BASE = ms(2026, 11, 27)
GROUPINGS = (
    "", "workspace", "key", "developer", "model", "provider", "session", "client_version",
    "day", "member", "metadata.team",
)  # fmt: skip
_ids = itertools.count()

times = st.one_of(
    st.integers(BASE - 2 * DAY, BASE + 3 * DAY),
    st.integers(-2, 3).map(lambda d: BASE + d * DAY),
    st.integers(-48, 72).map(lambda h: BASE + h * HOUR),
    st.integers(-48, 72).map(lambda h: BASE + h * HOUR - 1),
)
events = st.lists(
    st.fixed_dictionaries(
        {
            "time_ms": times,
            "workspace": st.sampled_from(["ws-a", "ws-b", "gone"]),
            "who": st.sampled_from(["key_1", "key_2", "dev_1", "dev_2", ""]),
            "model": st.sampled_from(["m-big", "m-small", ""]),
            "served": st.booleans(),
            "provider": st.sampled_from(["sim", "bedrock"]),
            "session": st.sampled_from(["", "s1", "s2"]),
            "client_version": st.sampled_from(["", "2.0.1", "2.1.0"]),
            "team": st.sampled_from([None, "red", "blue"]),
            "status": st.sampled_from([200, 200, 429, 500]),
            "cache": st.sampled_from(["", "hit", "miss"]),
            "cost": st.integers(0, 5_000_000),
            "tokens": st.integers(0, 100_000),
            "name": st.sampled_from(["alice", "bob", "Alice"]),
        }
    ),
    max_size=25,
)
query = st.fixed_dictionaries(
    {
        "since": st.one_of(st.just(0), times),
        "until": st.one_of(st.just(0), times),
        "filter": st.sampled_from(
            [{}, {"workspace": "ws-a"}, {"key_id": "key_1"}, {"developer_id": "dev_2"}]
        ),
        "scope": st.sampled_from([frozenset(), frozenset({"ws-b"})]),
    }
)


def to_event(spec: dict[str, Any]) -> tpb.UsageEvent:
    who = spec["who"]
    ev = tpb.UsageEvent(
        request_id=f"p{next(_ids)}",
        time_ms=spec["time_ms"],
        workspace=spec["workspace"],
        key_id=who if who.startswith("key") else "",
        key_name=spec["name"] if who.startswith("key") else "",
        developer_id=who if who.startswith("dev") else "",
        developer_email=f"{spec['name']}@example.com" if who.startswith("dev") else "",
        model_requested=spec["model"] or "m-req",
        model_served=spec["model"] if spec["served"] else "",
        provider=spec["provider"],
        session_id=spec["session"],
        client_version=spec["client_version"],
        status=spec["status"],
        cache_status=spec["cache"],
    )
    if spec["team"] is not None:
        ev.metadata["team"] = spec["team"]
    ev.usage.cost_micros = spec["cost"]
    ev.usage.input_tokens = spec["tokens"]
    ev.usage.output_tokens = spec["tokens"] // 3
    ev.usage.cache_read_input_tokens = spec["tokens"] // 5
    ev.usage.web_search_requests = spec["tokens"] % 3
    ev.cost_saved_micros = spec["cost"] // 7 if spec["cache"] == "hit" else 0
    return ev


def raw_plan(since_ms: int, until_ms: int, coarse: bool) -> list[tuple[str, sources.Range]]:
    return [("raw", (since_ms or None, until_ms or None))]


@settings(max_examples=40)
@given(batch=events, queries=st.lists(query, min_size=1, max_size=3))
def test_rollups_answer_what_raw_rows_answer(
    db: Database, monkeypatch: pytest.MonkeyPatch, batch: list[dict[str, Any]], queries: list[Any]
) -> None:
    if batch:
        report(db, [to_event(spec) for spec in batch])
    for q in queries:
        since, until = q["since"], q["until"]
        if since and until and until <= since:
            since, until = until, since + 1
        for group_by in GROUPINGS:
            req = tpb.QueryUsageRequest(
                group_by=group_by, since_ms=since, until_ms=until, **q["filter"]
            )
            read = partial(query_usage, req=req, scope=q["scope"])
            fast = db.read_sync(read)
            with monkeypatch.context() as m:
                m.setattr(sources, "plan", raw_plan)
                slow = db.read_sync(read)
            assert fast == slow, (group_by, since, until, q)


def test_plan_reads_raw_rows_only_at_the_edges() -> None:
    since, until = BASE - 30 * DAY + 5 * HOUR + 123, BASE + 14 * HOUR + 77
    parts = sources.plan(since, until, coarse=True)
    assert parts == [
        ("raw", (since, BASE - 30 * DAY + 6 * HOUR)),
        ("raw", (BASE + 14 * HOUR, until)),
        ("hour", (BASE - 30 * DAY + 6 * HOUR, BASE - 29 * DAY)),
        ("hour", (BASE, BASE + 14 * HOUR)),
        ("day", (BASE - 29 * DAY, BASE)),
    ]
    assert sources.plan(0, 0, coarse=True) == [("day", (None, None))]
    assert sources.plan(since, 0, coarse=False) == [
        ("raw", (since, BASE - 30 * DAY + 6 * HOUR)),
        ("hour", (BASE - 30 * DAY + 6 * HOUR, None)),
    ]
    assert sources.plan(BASE + 5, BASE + HOUR - 1, coarse=True) == [
        ("raw", (BASE + 5, BASE + HOUR - 1))
    ]


def test_a_deleted_workspaces_usage_stays_queryable(db: Database) -> None:
    """Workspaces need not exist for their usage to be rolled up (a deleted workspace's
    history stays queryable)."""
    add_workspace(db, "ws-a")
    report(db, [to_event({**_SPEC, "workspace": "gone"})])
    rows = db.read_sync(lambda s: query_usage(s, tpb.QueryUsageRequest(group_by="workspace")))
    assert [(r.group, r.requests, r.cost_micros) for r in rows] == [("gone", 1, 42)]


_SPEC: dict[str, Any] = {
    "time_ms": BASE, "workspace": "ws-a", "who": "key_1", "model": "m", "served": True,
    "provider": "sim", "session": "s", "client_version": "", "team": None, "status": 200,
    "cache": "", "cost": 42, "tokens": 1, "name": "alice",
}  # fmt: skip
