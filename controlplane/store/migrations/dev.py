"""Developer tool behind ``make migration NAME=…``: autogenerate the next revision.

``python -m controlplane.store.migrations.dev NAME`` upgrades a scratch SQLite database to head,
lets Alembic compare it with the models, and writes ``versions/NNNN_<name>.py`` (the next
number). Always review the file: see this package's docstring.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from controlplane.store.migrations import VERSIONS_DIR, alembic_config
from controlplane.store.schema import Migrator

_NAME = re.compile(r"[a-z][a-z0-9_]{2,50}")


def next_revision_id() -> str:
    script = ScriptDirectory.from_config(alembic_config())
    numbers = [int(s.revision) for s in script.walk_revisions() if s.revision.isdigit()]
    return f"{max(numbers, default=0) + 1:04d}"


def generate(name: str) -> Path:
    """Write the next revision for what the models have and head lacks; returns its path."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"NAME {name!r}: use lower_case_with_underscores, e.g. add_team_table")
    rev_id = next_revision_id()
    with tempfile.TemporaryDirectory(prefix="tollgate-migration-") as tmp:
        engine = create_engine(f"sqlite:///{tmp}/scratch.db")
        try:
            Migrator(engine).prepare(migrate=True)
            with engine.begin() as conn:
                script = command.revision(
                    alembic_config(connection=conn),
                    message=name.replace("_", " "),
                    autogenerate=True,
                    rev_id=rev_id,
                    version_path=str(VERSIONS_DIR),
                )
        finally:
            engine.dispose()
    if script is None or isinstance(script, list):
        raise RuntimeError("alembic wrote no single revision")
    ruff = Path(sys.executable).with_name("ruff")  # the project's formatter, when installed
    if ruff.exists():
        subprocess.run([str(ruff), "format", "--quiet", script.path], check=False)
    return Path(script.path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: make migration NAME=add_something", file=sys.stderr)
        return 2
    try:
        path = generate(args[0])
    except ValueError as exc:
        print(f"make migration: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}\nreview it (renames, server defaults, backward_compatible), then run:")
    print("  .venv/bin/python -m pytest -q tests/controlplane/store/test_migrations.py")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
