"""``gwctl controlplane migrate [--db URL] [--to REV] [--sql | --status]``.

Upgrades the database to this release's head (or ``--to`` one of its revisions), initialising an
empty database and adopting one made before migrations; prints where it was, what it applied and
where it is. ``--sql`` prints the SQL instead of running it; ``--status`` only reports (exit 0
when ``serve`` would start on the database without ``--migrate``, 1 otherwise). Exit 1 with a
readable message when the database cannot be migrated (see :mod:`controlplane.store.schema`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from sqlalchemy.exc import OperationalError

from controlplane.settings import DEFAULT_DB_URL
from controlplane.store.db import make_engine, redact_url
from controlplane.store.schema import Migrator, SchemaError, Status

_STATES = {
    "empty": "empty database: migrate or serve initialises it at head",
    "unversioned": "made before schema migrations: migrate or serve adopts it as the baseline",
    "behind": "behind: serve refuses until it is migrated (or starts with --migrate)",
    "current": "up to date",
    "ahead": "ahead: migrated by a newer release",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gwctl controlplane migrate",
        description="Upgrade the control plane's database schema to this release's revision.",
    )
    p.add_argument(
        "--db",
        dest="db_url",
        metavar="URL",
        help=f"database URL (env TOLLGATE_DB, default {DEFAULT_DB_URL})",
    )
    p.add_argument("--to", default="head", metavar="REV", help="target revision (default head)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    mode.add_argument(
        "--status",
        action="store_true",
        help="only show the database's and this release's revisions (exit 1 when serve would "
        "refuse the database)",
    )
    return p


def _line(label: str, text: str) -> None:
    print(f"{label:<9} {text}")


def _show(migrator: Migrator, label: str, status: Status) -> None:
    _line(label, migrator.describe(status.current))
    _line("state", _STATES[status.state])
    for applied in status.newer:
        kind = "backward compatible" if applied.backward_compatible else "NOT backward compatible"
        _line("newer", f"{applied.revision} ({kind})")


def run(args: argparse.Namespace) -> int:
    url = args.db_url or os.environ.get("TOLLGATE_DB") or DEFAULT_DB_URL
    engine = make_engine(url)
    try:
        migrator = Migrator(engine)
        if args.sql:
            sys.stdout.write(migrator.upgrade_sql(args.to))
            return 0
        _line("database", redact_url(str(engine.url)))
        _line("release", f"head {migrator.describe(migrator.head)}")
        if args.status:
            status = migrator.status()
            _show(migrator, "schema", status)
            for revision in status.pending:
                _line("pending", migrator.describe(revision))
            return 0 if status.servable else 1
        before, after = migrator.upgrade(args.to)
        _show(migrator, "before", before)
        if before.state == "unversioned":
            _line("adopted", "its tables match the baseline: stamped as the baseline")
        for revision in before.pending:
            if revision not in after.pending and after.current is not None:
                _line("applied", migrator.describe(revision))
        _line("now", migrator.describe(after.current))
        _line("state", _STATES[after.state])
        return 0
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s"
    )
    try:
        return run(args)
    except (SchemaError, ValueError) as exc:
        print(f"gwctl controlplane migrate: {exc}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        print(f"gwctl controlplane migrate: cannot reach the database: {exc.orig}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
