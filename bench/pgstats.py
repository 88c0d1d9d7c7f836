"""What PostgreSQL spent during a benchmark phase: the CPU of its processes, and the blocks each
index and table of the current schema read from outside shared buffers or found in them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import text

from controlplane.store.db import Database


def postgres_cpu_seconds() -> float:
    """CPU seconds used so far by the processes named ``postgres`` on this box (the server and
    its backends, whoever's; a backend that exits in between takes its share with it)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:  # exited meanwhile
            continue
        if raw[raw.index("(") + 1 : raw.rindex(")")] == "postgres":
            fields = raw.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


IO_SQL = """
SELECT relname, indexrelname, idx_blks_read, idx_blks_hit FROM pg_statio_user_indexes
 WHERE schemaname = current_schema()
UNION ALL
SELECT relname, '(heap)', heap_blks_read, heap_blks_hit FROM pg_statio_user_tables
 WHERE schemaname = current_schema()
"""


def io_counters(db: Database) -> dict[tuple[str, str], tuple[int, int]]:
    """Blocks read from outside shared buffers and found in them, per index and table heap of
    the bench's schema (cumulative statistics; backends flush them within a second)."""
    with db.engine.connect() as conn:
        return {(r[0], r[1]): (r[2] or 0, r[3] or 0) for r in conn.execute(text(IO_SQL))}


def io_report(before: dict[Any, tuple[int, int]], after: dict[Any, tuple[int, int]]) -> str:
    rows = []
    for name, (read, hit) in after.items():
        r0, h0 = before.get(name, (0, 0))
        if read - r0 or hit - h0:
            rows.append((read - r0, hit - h0, name))
    rows.sort(reverse=True)
    return "\n".join(f"  {r:>9,} read {h:>10,} hit  {t}.{i}" for r, h, (t, i) in rows)
