"""Upgrading a database from before the ledger (revision 0003) with N usage events in it.

``python -m bench.ledger_upgrade [--events N] [--pg URL]`` (``make bench-ledger-upgrade``):

1. creates a unique schema (dropped at the end, whatever happens) at revision 0003 and loads N
   usage events over the past year as the previous release stored them (no ``ledger_counted``;
   :func:`bench.ledger_load.load_events`), 5,000 developers in 50 workspaces;
2. times the migration to head (revision 0004: the column, metadata only, and the partial index
   ``ix_usage_event_uncounted``, one scan of the table), then the control plane's start-up work
   on the database (:func:`controlplane.server.open_database`), which must not depend on N;
3. times the reconciler's first fill (:func:`controlplane.usage.reconcile.catch_up`, the leader
   job's loop) with its progress log, noting when the last day, 7 and 31 days were complete
   (newest first: the windows budgets enforce), and checks that the lifetime totals equal the
   raw sum.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from sqlalchemy import text

from bench.ledger import seed_fleet
from bench.ledger_load import DAY_MS, index_ddl, load_events
from controlplane.server import open_database
from controlplane.store.db import Database
from controlplane.store.schema import Migrator
from controlplane.usage import reconcile


def load(db: Database, args: argparse.Namespace, now: int) -> None:
    with db.engine.begin() as conn:
        ddl = index_ddl(conn)
        for statement in ddl:
            conn.execute(text(f"DROP INDEX {statement.split()[2]}"))
    t0 = time.perf_counter()
    for start in range(0, args.events, args.chunk):
        with db.engine.begin() as conn:
            end = min(args.events, start + args.chunk)
            load_events(
                conn, start, end, args.developers, args.workspaces, now, previous_release=True
            )
    with db.engine.begin() as conn:
        for statement in ddl:
            conn.execute(text(statement))
        conn.execute(text("ANALYZE usage_event"))
    print(
        f"loaded and indexed {args.events:,} pre-ledger events in {time.perf_counter() - t0:.0f} s"
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="  %(asctime)s %(name)s: %(message)s")
    schema = f"bench_upgrade_{secrets.token_hex(4)}"
    admin = Database(args.pg)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{args.pg}{'&' if '?' in args.pg else '?'}options={quote(f'-csearch_path={schema}')}"
    pre = Database(url)
    db: Database | None = None
    try:
        Migrator(pre.engine).upgrade("0003")
        now = int(time.time() * 1000)
        seed_fleet(pre, args.developers, args.workspaces, ledger=False)
        load(pre, args, now)
        t0 = time.perf_counter()
        Migrator(pre.engine).upgrade()
        print(f"migration 0003 -> head: {time.perf_counter() - t0:.2f} s")
        pre.dispose()
        t0 = time.perf_counter()
        db = open_database(url)
        print(f"start-up work on the database (open_database): {time.perf_counter() - t0:.2f} s")
        started = time.perf_counter()
        marks = {"1 day": DAY_MS, "7 days": 7 * DAY_MS, "31 days": 31 * DAY_MS}
        reached: dict[str, float] = {}  # newest first: when the last N days were all counted

        def counted(rows: Sequence[Mapping[str, Any]]) -> None:
            oldest = min(int(r["time_ms"]) for r in rows)
            for name, span in marks.items():
                if name not in reached and oldest < now - span:
                    reached[name] = time.perf_counter() - started

        n = asyncio.run(reconcile.catch_up(db, batch=args.batch, on_counted=counted))
        seconds = time.perf_counter() - started
        windows = ", ".join(f"the last {k} after {v:.1f} s" for k, v in reached.items())
        print(
            f"first fill: {n:,} events in {seconds:.1f} s ({n / seconds:,.0f} events/s, batches "
            f"of {args.batch}); complete for {windows}"
        )
        with db.engine.connect() as conn:
            raw = conn.execute(text("SELECT coalesce(sum(cost_micros), 0) FROM usage_event"))
            total = conn.execute(
                text(
                    "SELECT coalesce(sum(spent_micros), 0) FROM spend_total "
                    "WHERE scope_kind = 'workspace' AND period = 'lifetime'"
                )
            )
            raw_sum, total_sum = int(raw.scalar_one()), int(total.scalar_one())
        ok = raw_sum == total_sum
        print(f"lifetime totals {'equal' if ok else 'DIFFER FROM'} the raw sum ({raw_sum:,} µ$)")
        return 0 if ok else 1
    finally:
        pre.dispose()
        if db is not None:
            db.dispose()
        with admin.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ledger_upgrade", description=__doc__)
    p.add_argument("--events", type=int, default=1_000_000, help="pre-ledger usage events")
    p.add_argument("--developers", type=int, default=5_000)
    p.add_argument("--workspaces", type=int, default=50)
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--chunk", type=int, default=1_000_000, help="events per INSERT statement")
    p.add_argument("--batch", type=int, default=reconcile.BATCH, help="reconciler batch size")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
