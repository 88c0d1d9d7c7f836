"""``gwctl controlplane rebuild-ledger``: recompute spend totals and usage rollups from the raw
usage events (see :mod:`controlplane.usage.rebuild`), then say what was done.

Safe while control planes serve the same database (ingest waits for the rebuild's commit;
readers keep the previous totals until then) and idempotent. Exit status 0 on success, 1 when
the database cannot be opened or the rebuild fails (the message says why; nothing is changed).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from sqlalchemy.exc import DBAPIError

from controlplane.settings import DEFAULT_DB_URL
from controlplane.store.db import Database, redact_url
from controlplane.usage.rebuild import rebuild_sync


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gwctl controlplane rebuild-ledger",
        description="Recompute the ledger's spend totals and hourly/daily usage rollups from the "
        "raw usage events. Safe while serving (ingest waits for it); idempotent.",
    )
    parser.add_argument(
        "--db",
        default=os.environ.get("TOLLGATE_DB") or DEFAULT_DB_URL,
        help=f"database URL (env TOLLGATE_DB, default {DEFAULT_DB_URL})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        db = Database(args.db)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        db.create_all()
        report = rebuild_sync(db)
    except DBAPIError as exc:
        reason = (str(exc.orig).strip().splitlines() or ["?"])[0]
        print(
            f"error: rebuilding the ledger of {redact_url(db.url)} failed: {reason}",
            file=sys.stderr,
        )
        return 1
    finally:
        db.dispose()
    assert report is not None
    print(report.text())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
