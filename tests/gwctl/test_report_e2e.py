"""``gwctl report monthly`` and ``gwctl usage -o csv`` against a real control plane (SQLite and
PostgreSQL), fed through Telemetry.ReportUsage with the data-plane token: keys and signed-in
developers in two workspaces, cache hits, errors, web searches, and events a millisecond either
side of the month. The oracle is the ledger itself, read with SQL straight from the database:
every row, subtotal and the total must match it to the micro-dollar."""

from __future__ import annotations

import csv
import io
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import grpc
import orjson
import pytest
import sqlalchemy as sa

from gwapi.v1 import common_pb2, telemetry_pb2, telemetry_pb2_grpc
from gwcommon import money
from tests.gwctl import cli
from tests.gwctl.cli import DATAPLANE, gw
from tests.gwctl.threaded_cp import threaded_control_plane


def ms(text: str) -> int:
    """A whole-second UTC time as Unix milliseconds."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1000


NOV_START, DEC_START = ms("2026-11-01T00:00:00"), ms("2026-12-01T00:00:00")
COUNTERS = {
    "requests": "COUNT(*)",
    "errors": "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END)",
    "input_tokens": "SUM(input_tokens)",
    "output_tokens": "SUM(output_tokens)",
    "cache_creation_input_tokens": "SUM(cache_creation_input_tokens)",
    "cache_read_input_tokens": "SUM(cache_read_input_tokens)",
    "web_search_requests": "SUM(web_search_requests)",
    "web_fetch_requests": "SUM(web_fetch_requests)",
    "cache_hits": "SUM(CASE WHEN cache_status = 'hit' THEN 1 ELSE 0 END)",
    "cost_saved_micros": "SUM(cost_saved_micros)",
    "cost_micros": "SUM(cost_micros)",
}


@pytest.fixture
def control_plane(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    with threaded_control_plane(cli.settings(db_url)) as address:
        cli.point_gwctl_at(monkeypatch, address)
        yield address, db_url


def gw_ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, stdout, err = gw(capsys, *argv)
    assert code == 0, err
    return stdout


def report(address: str, events: list[telemetry_pb2.UsageEvent]) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = telemetry_pb2_grpc.TelemetryStub(channel)
        for start in range(0, len(events), 100):
            resp = stub.ReportUsage(
                telemetry_pb2.ReportUsageRequest(
                    node_id="dp-report", events=events[start : start + 100], last_seq=start + 1
                ),
                metadata=(("authorization", f"Bearer {DATAPLANE}"),),
                timeout=20,
            )
            assert resp.accepted == len(events[start : start + 100])


def ledger(db_url: str, where: str = "", **params: Any) -> dict[tuple[str, str, str], dict]:
    """The oracle: the month's ledger grouped by (workspace, key, developer), with plain SQL."""
    sql = (
        "SELECT workspace, key_id, developer_id, "
        + ", ".join(f"{expr} AS {name}" for name, expr in COUNTERS.items())
        + " FROM usage_event WHERE time_ms >= :start AND time_ms < :end"
        + (f" AND {where}" if where else "")
        + " GROUP BY workspace, key_id, developer_id"
    )
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(sql), {"start": NOV_START, "end": DEC_START, **params})
            return {
                (r.workspace, r.key_id, r.developer_id): {n: int(getattr(r, n)) for n in COUNTERS}
                for r in result
            }
    finally:
        engine.dispose()


def summed(rows: Any) -> dict[str, int]:
    total = dict.fromkeys(COUNTERS, 0)
    for row in rows:
        for name in COUNTERS:
            total[name] += row[name]
    return total


def usd(micros: int) -> str:
    return money.decimal(micros)


def event(n: int, ws: str, at_ms: int, rng: random.Random, **who: Any) -> telemetry_pb2.UsageEvent:
    hit = n % 7 == 0
    ev = telemetry_pb2.UsageEvent(
        request_id=f"req_{ws}_{n}_{uuid.uuid4().hex[:6]}",
        time_ms=at_ms,
        workspace=ws,
        model_requested="claude-sonnet-4-5",
        model_served="claude-sonnet-4-5",
        provider="sim",
        attempts=1,
        status=429 if n % 11 == 0 else 200,
        cache_status="hit" if hit else "miss",
        cost_saved_micros=rng.randint(1, 9_999_999) if hit else 0,
        usage=common_pb2.Usage(
            input_tokens=rng.randint(0, 50_000),
            output_tokens=rng.randint(0, 8_000),
            cache_creation_input_tokens=rng.randint(0, 20_000),
            cache_read_input_tokens=rng.randint(0, 200_000),
            web_search_requests=rng.randint(0, 3),
            web_fetch_requests=rng.randint(0, 1),
            cost_micros=0 if hit else rng.randint(1, 3_333_333),
        ),
        **who,
    )
    return ev


def seed(
    capsys: pytest.CaptureFixture[str], address: str
) -> tuple[str, str, dict[str, str], list[telemetry_pb2.UsageEvent]]:
    """Two workspaces, three keys and two developers; 240 events in November and eight just
    outside it. Returns the workspaces, key name by id and the events."""
    plat, data = f"plat-{uuid.uuid4().hex[:6]}", f"data-{uuid.uuid4().hex[:6]}"
    gw_ok(capsys, "providers", "create", "sim", "--kind", "simulator")
    keys: dict[str, str] = {}
    gw_ok(capsys, "workspaces", "create", plat)
    gw_ok(capsys, "workspaces", "create", data)
    for ws, name in ((plat, "alice-laptop"), (plat, "ci-bot"), (data, "etl")):
        doc = orjson.loads(
            gw_ok(
                capsys,
                "keys",
                "create",
                "-w",
                ws,
                "--name",
                name,
                "--provider",
                "sim",
                "-o",
                "json",
            )
        )
        keys[doc["id"]] = name
    plat_keys = [k for k, n in keys.items() if n != "etl"]
    data_key = next(k for k, n in keys.items() if n == "etl")
    members: list[tuple[str, dict[str, str]]] = [
        (plat, {"key_id": plat_keys[0], "key_name": "alice-laptop"}),
        (plat, {"key_id": plat_keys[1], "key_name": "ci-bot"}),
        (data, {"key_id": data_key, "key_name": "etl"}),
        (plat, {"developer_id": "dev_bob", "developer_email": "bob@example.com"}),
        # The same developer in the other workspace (moved mid-month): a row of its own there.
        (data, {"developer_id": "dev_bob", "developer_email": "bob@example.com"}),
        (data, {"developer_id": "dev_carol", "developer_email": "carol@example.com"}),
    ]
    rng = random.Random(20261130)
    events = []
    for n in range(240):
        ws, who = members[n % len(members)]
        at = rng.randint(NOV_START, DEC_START - 1)
        if n < len(members):  # the first and last millisecond of the month are in it
            at = NOV_START if n % 2 == 0 else DEC_START - 1
        events.append(event(n, ws, at, rng, **who))
    for i, (ws, who) in enumerate(members[:4]):  # one millisecond outside, both sides
        events.append(event(1000 + i, ws, NOV_START - 1, rng, **who))
        events.append(event(2000 + i, ws, DEC_START, rng, **who))
    report(address, events)
    return plat, data, keys, events


def test_monthly_report_matches_the_ledger_to_the_micro_dollar(
    control_plane: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    address, db_url = control_plane
    plat, data, keys, events = seed(capsys, address)
    oracle = ledger(db_url)
    assert len(oracle) == 6 and sum(r["requests"] for r in oracle.values()) == 240
    # The oracle is right about what was sent, too (the events outside November excluded).
    inside = [e for e in events if NOV_START <= e.time_ms < DEC_START]
    assert summed(oracle.values())["cost_micros"] == sum(e.usage.cost_micros for e in inside)
    grand = summed(oracle.values())
    assert grand["cache_hits"] > 0 and grand["errors"] > 0 and grand["cost_saved_micros"] > 0

    doc = orjson.loads(gw_ok(capsys, "report", "monthly", "--month", "2026-11", "-o", "json"))
    assert (doc["month"], doc["time_zone"], doc["start"], doc["end"]) == (
        "2026-11", "UTC", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z",
    )  # fmt: skip
    got = {}
    for row in doc["rows"]:
        who = (row["workspace"], row["member_id"] if row["member_kind"] == "key" else "",
               row["member_id"] if row["member_kind"] == "developer" else "")  # fmt: skip
        got[who] = {name: row[name] for name in COUNTERS}
        assert row["cost_usd"] == usd(row["cost_micros"])
        assert row["cost_saved_usd"] == usd(row["cost_saved_micros"])
        if row["member_kind"] == "key":
            assert row["member_name"] == keys[row["member_id"]]
        else:
            assert row["member_name"] == {"dev_bob": "bob@example.com",
                                          "dev_carol": "carol@example.com"}[row["member_id"]]  # fmt: skip
    assert got == oracle
    assert [r["workspace"] for r in doc["rows"]] == sorted(r["workspace"] for r in doc["rows"])
    for sub in doc["subtotals"]:
        expected = summed(v for k, v in oracle.items() if k[0] == sub["workspace"])
        assert {n: sub[n] for n in COUNTERS} == expected
        assert sub["cost_usd"] == usd(expected["cost_micros"])
    assert {s["workspace"] for s in doc["subtotals"]} == {plat, data}
    assert {n: doc["total"][n] for n in COUNTERS} == grand
    assert doc["total"]["cost_usd"] == usd(grand["cost_micros"])

    # CSV: the same figures, exact decimal dollars next to the integer micro-dollars.
    text = gw_ok(capsys, "report", "monthly", "--month", "2026-11", "-o", "csv")
    assert text.endswith("\r\n") and "\r\n" in text.split("\n", 1)[0] + "\n"
    records = list(csv.DictReader(io.StringIO(text, newline="")))
    members = [r for r in records if r["row_type"] == "member"]
    assert len(members) == 6 and [r["row_type"] for r in records].count("workspace_subtotal") == 2
    for r in records:
        assert Decimal(r["cost_usd"]) * 1_000_000 == int(r["cost_micros"])
        assert len(r["cost_usd"].split(".")[1]) == 6
        assert (r["month"], r["period_start"], r["period_end"]) == (
            "2026-11", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z",
        )  # fmt: skip
    csv_rows = {
        (r["workspace"], r["member_id"] if r["member_kind"] == "key" else "",
         r["member_id"] if r["member_kind"] == "developer" else ""): {
            n: int(r[n]) for n in COUNTERS
        }
        for r in members
    }  # fmt: skip
    assert csv_rows == oracle
    (total,) = [r for r in records if r["row_type"] == "total"]
    assert {n: int(total[n]) for n in COUNTERS} == grand
    assert records[-1] is total
    # Each workspace's subtotal follows its members.
    kinds = [(r["row_type"], r["workspace"]) for r in records]
    for ws in (plat, data):
        last_member = max(i for i, k in enumerate(kinds) if k == ("member", ws))
        assert kinds[last_member + 1] == ("workspace_subtotal", ws)

    # The table: a subtotal per workspace and the exact grand total.
    table = gw_ok(capsys, "report", "monthly", "--month", "2026-11")
    total_line = next(line for line in table.splitlines() if line.startswith("TOTAL"))
    assert total_line.split()[-1] == usd(grand["cost_micros"])
    assert total_line.split()[-2] == usd(grand["cost_saved_micros"])
    assert table.count("SUBTOTAL") == 2 and "UTC calendar month" in table

    # One workspace: only its rows, and its total is its subtotal.
    only = orjson.loads(
        gw_ok(capsys, "report", "monthly", "--month", "2026-11", "-w", data, "-o", "json")
    )
    assert {r["workspace"] for r in only["rows"]} == {data}
    assert (
        only["total"]["cost_micros"]
        == summed(v for k, v in oracle.items() if k[0] == data)["cost_micros"]
    )

    # The months either side hold only the events just outside November.
    october = orjson.loads(gw_ok(capsys, "report", "monthly", "--month", "2026-10", "-o", "json"))
    december = orjson.loads(gw_ok(capsys, "report", "monthly", "--month", "2026-12", "-o", "json"))
    assert october["total"]["requests"] == 4 and december["total"]["requests"] == 4
    assert october["total"]["cost_micros"] == sum(
        e.usage.cost_micros for e in events if e.time_ms == NOV_START - 1
    )

    # gwctl usage over the same month, any grouping, CSV and JSON agree with the ledger.
    for by in ("workspace", "key", "developer", "model", "day", ""):
        argv = ["usage", "--month", "2026-11"] + (["--by", by] if by else [])
        usage_csv = list(csv.DictReader(io.StringIO(gw_ok(capsys, *argv, "-o", "csv"))))
        (usage_total,) = [r for r in usage_csv if r["row_type"] == "total"]
        assert int(usage_total["cost_micros"]) == grand["cost_micros"], by
        assert int(usage_total["cache_hits"]) == grand["cache_hits"], by
        assert int(usage_total["cost_saved_micros"]) == grand["cost_saved_micros"], by
        groups = [r for r in usage_csv if r["row_type"] == "group"]
        assert sum(int(r["cost_micros"]) for r in groups) == (grand["cost_micros"] if by else 0)
        usage_json = orjson.loads(gw_ok(capsys, *argv, "-o", "json"))
        assert usage_json["total"]["cost_micros"] == grand["cost_micros"], by
        assert (usage_json["since_ms"], usage_json["until_ms"]) == (NOV_START, DEC_START)
    by_key = list(csv.DictReader(io.StringIO(
        gw_ok(capsys, "usage", "--month", "2026-11", "--by", "key", "-o", "csv"))))  # fmt: skip
    assert {r["group"]: r["key_name"] for r in by_key if r["row_type"] == "group"} == {
        **keys,
        "": "",
    }
    per_day = [
        r
        for r in csv.DictReader(
            io.StringIO(
                gw_ok(
                    capsys,
                    "usage",
                    "--since",
                    "2026-11-30",
                    "--until",
                    "2026-12-01T00:00:00Z",
                    "--by",
                    "day",
                    "-o",
                    "csv",
                )
            )
        )
        if r["row_type"] == "group"
    ]
    assert [r["group"] for r in per_day] == ["2026-11-30"]
    assert int(per_day[0]["cost_micros"]) == sum(
        e.usage.cost_micros for e in events if ms("2026-11-30T00:00:00") <= e.time_ms < DEC_START
    )


def test_csv_cells_are_defused_and_escaped(
    control_plane: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Client-chosen labels (model names, metadata values) that a spreadsheet would evaluate
    get a leading apostrophe; terminal controls stay escaped as in the table."""
    address, _ = control_plane
    ws = f"csv-{uuid.uuid4().hex[:6]}"
    gw_ok(capsys, "workspaces", "create", ws)
    rng = random.Random(1)
    hostile = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+1", "-2+3", "@SUM(A1)",
               "line\r\nbreak\x1b[2J", "plain, with \"quotes\""]  # fmt: skip
    events = []
    for n, model in enumerate(hostile, start=1):
        ev = event(n, ws, NOV_START + n, rng, key_id="key_x", key_name="x")
        ev.model_requested = ev.model_served = model
        ev.metadata["team"] = model
        events.append(ev)
    report(address, events)
    for by in ("model", "metadata.team"):
        text = gw_ok(capsys, "usage", "-w", ws, "--month", "2026-11", "--by", by, "-o", "csv")
        assert "\x1b" not in text and "\r\nbreak" not in text
        groups = {r["group"] for r in csv.DictReader(io.StringIO(text)) if r["row_type"] == "group"}
        assert groups == {
            "'=HYPERLINK(\"http://evil.example\",\"x\")", "'+1+1", "'-2+3", "'@SUM(A1)",
            "line\\r\\nbreak\\x1b[2J", "plain, with \"quotes\"",
        }  # fmt: skip


def test_csv_is_refused_where_there_is_none(
    control_plane: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, err = gw(capsys, "workspaces", "list", "-o", "csv")
    assert code == 2 and stdout == ""
    assert "-o csv is not available for gwctl workspaces list" in err
    assert "gwctl usage and gwctl report monthly" in err
    code, _, err = gw(capsys, "usage", "--month", "2026-11", "--since", "7d")
    assert code == 2 and "--month is a whole period" in err
    code, _, err = gw(capsys, "report", "monthly", "--month", "2026-13")
    assert code == 2 and "expected YYYY-MM" in err
    code, _, err = gw(capsys, "usage", "--since", "2026-11-02", "--until", "2026-11-01")
    assert code == 2 and "must be after --since" in err
