"""Ledger benchmark: budget seeds, ``gwctl usage`` and ingest with a year of usage in PostgreSQL.

``python -m bench.ledger [--events N] [--pg URL]`` (``make bench-ledger``):

1. creates a unique schema in the PostgreSQL database (dropped at the end, whatever happens,
   unless ``--keep-schema``);
2. loads N usage events (default 30,000,000) spread over the past year — 5,000 developers in 50
   workspaces (five time zones), every 10th request with one of 500 virtual keys — and the
   totals and rollups ingest would have kept (:mod:`bench.ledger_load`); ``--verify`` (use a small
   N) then checks them against ``controlplane.usage.rebuild``, i.e. ingest's own code;
3. measures, best of ``--repeat``: the spend seeds of a snapshot rebuild (``current_spend`` for
   the 50 workspaces and 5,000 developers, all with day and month budgets), and
   ``gwctl usage --by workspace --since 30d`` through a real control plane's gRPC ``QueryUsage``;
4. measures ingest through the real ``ReportUsage`` path: ``--ingest-events`` fresh events in
   batches of 500 (the data-plane reporter's batch size) from ``--senders`` concurrent senders,
   ``--ingest-runs`` times, each with the CPU seconds the control plane and the ``postgres``
   processes spent on it and the load average; ``--io-stats`` adds the blocks each index and
   table read from outside shared buffers, and found in them, during the run.

Loading 30 M events takes the box about half an hour: ``--keep-schema NAME`` leaves the loaded
schema in place, and ``--reuse-schema NAME`` measures on it again without loading (each run adds
its ingested events to it). Drop it when done: ``DROP SCHEMA "NAME" CASCADE`` (the database is
shared with CI).

Acceptance (issue #16): each query <= 1 s; ingest >= 5,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
from sqlalchemy import text
from sqlmodel import Session, select

from bench import pyspy
from bench.ledger_load import DAY_MS, ZONES, build_rollups, build_totals, index_ddl, load_events
from bench.pgstats import io_counters, io_report, postgres_cpu_seconds
from bench.procs import Child, spawn, wait_for_log
from controlplane.store.db import Database
from controlplane.store.models.config import WorkspaceRow
from controlplane.store.models.derived import LedgerStateRow
from controlplane.store.models.signin import DeveloperRow
from controlplane.usage.rebuild import rebuild_sync
from controlplane.usage.spend import current_spend, developer_scope, workspace_scope
from gwapi.v1 import telemetry_pb2, telemetry_pb2_grpc
from gwclient.client import GatewayClient

BUDGETS = (
    '{"budgets":[{"amount_micros":500000000,"period":"day"},'
    '{"amount_micros":5000000000,"period":"month"}]}'
)
BATCH = 500  # dataplane.sync.reporter.UsageReporter's default batch_size


def now_ms() -> int:
    return int(time.time() * 1000)


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def seed_fleet(db: Database, developers: int, workspaces: int, *, ledger: bool = True) -> None:
    """Workspaces and developers with budgets; ``ledger``: mark the ledger built (a database
    from before the ledger has no ``ledger_state``)."""

    def fill(s: Session) -> None:
        for w in range(workspaces):
            s.add(
                WorkspaceRow(
                    name=f"ws-{w:03d}",
                    timezone=ZONES[w % len(ZONES)],
                    limits_json=BUDGETS,
                    member_limits_json=BUDGETS,
                )
            )
        s.flush()
        for d in range(developers):
            s.add(
                DeveloperRow(
                    id=f"dev_{d:05d}",
                    issuer="https://idp.bench",
                    subject=f"sub-{d}",
                    workspace=f"ws-{d % workspaces:03d}",
                    email=f"dev{d}@example.com",
                )
            )
        if ledger:
            s.add(LedgerStateRow(id=1, rebuilt_at_ms=now_ms()))  # the derived tables are built

    db.run_sync(fill)


def load(db: Database, args: argparse.Namespace, now: int) -> None:
    with db.engine.begin() as conn:
        ddl = index_ddl(conn)
        for statement in ddl:
            name = statement.split()[2]
            conn.execute(text(f"DROP INDEX {name}"))
    t0 = time.perf_counter()
    for start in range(0, args.events, args.chunk):
        with db.engine.begin() as conn:
            end = min(args.events, start + args.chunk)
            load_events(conn, start, end, args.developers, args.workspaces, now)
    rate = args.events / (time.perf_counter() - t0)
    print(f"loaded {args.events:,} events in {time.perf_counter() - t0:.0f} s ({rate:,.0f}/s)")
    t0 = time.perf_counter()
    with db.engine.begin() as conn:
        for statement in ddl:
            conn.execute(text(statement))
    print(f"indexed usage_event in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    with db.engine.begin() as conn:
        build_rollups(conn, now)
        build_totals(conn, now)
        conn.execute(text("ANALYZE"))
    print(f"built totals and rollups in {time.perf_counter() - t0:.0f} s")


def counts(db: Database) -> str:
    with db.engine.connect() as conn:
        parts = [
            f"{t} {conn.execute(text(f'SELECT count(*) FROM {t}')).scalar_one():,}"
            for t in ("usage_event", "spend_total", "usage_rollup_hour", "usage_rollup_day")
        ]
    return ", ".join(parts)


def derived_content(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with db.engine.connect() as conn:
        for table in ("spend_total", "usage_rollup_hour", "usage_rollup_day"):
            result = conn.execute(text(f"SELECT * FROM {table}"))
            keys = [k for k in result.keys() if k not in ("updated_at_ms", "dims_key")]
            out[table] = sorted(tuple(r._mapping[k] for k in keys) for r in result)
    return out


def verify(db: Database) -> None:
    loaded = derived_content(db)
    report = rebuild_sync(db)
    assert report is not None
    rebuilt = derived_content(db)
    for table, rows in loaded.items():
        if rows != rebuilt[table]:
            raise SystemExit(f"verify: {table} as loaded differs from the rebuild's")
    print(f"verify: bulk-built totals and rollups equal the rebuild's ({report.text()})")


def seeds(db: Database, now: int) -> int:
    def work(s: Session) -> int:
        spaces = {w.name: w for w in s.exec(select(WorkspaceRow)).all()}
        scopes = [workspace_scope(w) for w in spaces.values()]
        scopes += [
            developer_scope(d, spaces.get(d.workspace)) for d in s.exec(select(DeveloperRow))
        ]
        return len(current_spend(s, [sc for sc in scopes if sc.budgets], now))

    return db.read_sync(work)


async def query(addr: str, token: str, repeat: int) -> tuple[float, int]:
    async with GatewayClient(addr, token=token) as client:
        times, rows = [], 0
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = await client.query_usage(group_by="workspace", since_ms=now_ms() - 30 * DAY_MS)
            times.append(time.perf_counter() - t0)
            rows = len(result)
    return min(times), rows


def batches(
    sender: int, count: int, developers: int, workspaces: int, batch: int = BATCH
) -> list[Any]:
    now = now_ms()
    out = []
    for b in range(0, count, batch):
        events = []
        for i in range(b, min(count, b + batch)):
            d = (sender * 7919 + i) % developers
            ev = telemetry_pb2.UsageEvent(
                request_id=f"ingest-{sender}-{i}-{secrets.token_hex(4)}",
                time_ms=now - (i % 1000),
                workspace=f"ws-{d % workspaces:03d}",
                developer_id=f"dev_{d:05d}",
                developer_email=f"dev{d}@example.com",
                session_id=f"sess-{d}",
                model_requested="claude-sonnet-4-5",
                model_served="claude-sonnet-4-5",
                provider="anthropic",
                status=200,
                path="/v1/messages",
                client_version="2.0.1",
                latency_ms=2000,
                ttfb_ms=300,
            )
            ev.usage.input_tokens, ev.usage.output_tokens = 1200 + i % 50, 300
            ev.usage.cache_read_input_tokens, ev.usage.cost_micros = 20_000, 4_000 + i % 100
            events.append(ev)
        out.append(
            telemetry_pb2.ReportUsageRequest(
                node_id=f"bench-dp-{sender}", last_seq=b + len(events), events=events
            )
        )
    return out


async def ingest(addr: str, token: str, args: argparse.Namespace) -> float:
    per_sender = args.ingest_events // args.senders
    work = [
        batches(s, per_sender, args.developers, args.workspaces, args.batch)
        for s in range(args.senders)
    ]
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = telemetry_pb2_grpc.TelemetryStub(channel)

        async def send(requests: list[Any]) -> int:
            accepted = 0
            for request in requests:
                response = await stub.ReportUsage(request, metadata=metadata, timeout=60)
                accepted += response.accepted
            return accepted

        t0 = time.perf_counter()
        accepted = sum(await asyncio.gather(*(send(w) for w in work)))
        elapsed = time.perf_counter() - t0
    if accepted != per_sender * args.senders:
        raise SystemExit(f"ingest: {accepted} accepted of {per_sender * args.senders}")
    return accepted / elapsed


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; the control plane's
    own cost of ingest, apart from PostgreSQL's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args: argparse.Namespace) -> int:
    reuse = args.reuse_schema is not None
    schema = args.reuse_schema or args.keep_schema or f"bench_ledger_{secrets.token_hex(4)}"
    keep = reuse or args.keep_schema is not None
    admin = Database(args.pg)
    if not reuse:
        with admin.engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{args.pg}{'&' if '?' in args.pg else '?'}options={quote(f'-csearch_path={schema}')}"
    db = Database(url)
    cp: Child | None = None
    try:
        if not reuse:
            db.create_all()
            now = now_ms()
            seed_fleet(db, args.developers, args.workspaces)
            load(db, args, now)
        print(counts(db))
        if args.verify:
            verify(db)
        elapsed, n = best(lambda: seeds(db, now_ms()), args.repeat)
        print(
            f"snapshot spend seeds: {n:,} budgets in {elapsed * 1000:.0f} ms (best of {args.repeat})"
        )
        with tempfile.TemporaryDirectory(prefix="tollgate-bench-ledger-") as tmp:
            admin_token, dp_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
            cp = spawn(
                "controlplane",
                ["-m", "controlplane", "--listen", "127.0.0.1:0", "--db", url],
                Path(tmp),
                env={"TOLLGATE_ADMIN_TOKEN": admin_token, "TOLLGATE_DATAPLANE_TOKEN": dp_token},
            )
            addr = wait_for_log(cp, r"control plane listening on (\S+:\d+)", 120).group(1)
            elapsed, rows = asyncio.run(query(addr, admin_token, args.repeat))
            print(
                f"gwctl usage --by workspace --since 30d (gRPC QueryUsage): {rows} rows in "
                f"{elapsed * 1000:.0f} ms (best of {args.repeat})"
            )
            for run_no in range(1, args.ingest_runs + 1):
                io0 = io_counters(db) if args.io_stats else {}
                pg0, cp0, load0 = postgres_cpu_seconds(), cpu_seconds(cp.pid), os.getloadavg()[0]
                spy = (
                    pyspy.start(cp.pid, args.profile, f"ingest-{run_no}") if args.profile else None
                )
                t0 = time.perf_counter()
                rate = asyncio.run(ingest(addr, dp_token, args))
                wall = time.perf_counter() - t0
                if spy is not None:
                    print(spy.stop(), flush=True)
                cp_cpu = cpu_seconds(cp.pid) - cp0
                pg_cpu = postgres_cpu_seconds() - pg0
                per = 1e6 / args.ingest_events
                print(
                    f"ingest (ReportUsage, batches of {args.batch}, {args.senders} senders): "
                    f"{rate:,.0f} events/s over {args.ingest_events:,} events in {wall:.1f} s; "
                    f"CPU: control plane {cp_cpu:.1f} s ({cp_cpu * per:.0f} us/event), "
                    f"PostgreSQL {pg_cpu:.1f} s ({pg_cpu * per:.0f} us/event); "
                    f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                if args.io_stats:
                    time.sleep(1.5)  # backends flush their I/O statistics at most once a second
                    print(io_report(io0, io_counters(db)), flush=True)
            cp.stop()
            cp = None
        return 0
    finally:
        if cp is not None:
            cp.stop()
        db.dispose()
        if keep:
            print(f'kept schema {schema} (drop it: DROP SCHEMA "{schema}" CASCADE)')
        else:
            with admin.engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__)
    p.add_argument("--events", type=int, default=30_000_000, help="usage events to load")
    p.add_argument("--developers", type=int, default=5_000)
    p.add_argument("--workspaces", type=int, default=50)
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--chunk", type=int, default=1_000_000, help="events per INSERT statement")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--ingest-events", type=int, default=50_000)
    p.add_argument("--senders", type=int, default=2, help="concurrent ReportUsage senders")
    p.add_argument(
        "--batch", type=int, default=BATCH, help="events per ReportUsage (data planes: <= 500)"
    )
    p.add_argument("--ingest-runs", type=int, default=1, help="ingest measurements in a row")
    p.add_argument("--verify", action="store_true", help="check the bulk-built tables (small N)")
    p.add_argument(
        "--io-stats", action="store_true", help="blocks read/hit per index during each ingest"
    )
    p.add_argument(
        "--profile",
        metavar="DIR",
        type=Path,
        help="py-spy the control plane during each ingest run; stacks and top functions to DIR",
    )
    keep = p.add_mutually_exclusive_group()
    keep.add_argument(
        "--keep-schema",
        metavar="NAME",
        help="load into schema NAME and leave it for --reuse-schema",
    )
    keep.add_argument(
        "--reuse-schema",
        metavar="NAME",
        help="measure on a schema kept by --keep-schema (no load; it is left in place)",
    )
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
