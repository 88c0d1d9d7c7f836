"""The control plane's schema migrations (Alembic), configured in code: no ``alembic.ini``.

Revisions live in ``versions/`` (shipped in the wheel) and form one linear chain starting at the
**baseline** (``0001``: the schema as it was when migrations were introduced, written out
explicitly so later model changes never alter it). :mod:`controlplane.store.schema` runs them:
``gwctl controlplane migrate`` upgrades; ``gwctl controlplane serve`` initialises an empty
database at head, adopts a database made before migrations (checked against the baseline, then
stamped), refuses a database behind head unless ``--migrate``, and accepts one *ahead* of its
code only when every newer revision is backward compatible.

Rolling upgrades: expand, then contract
---------------------------------------
During a rolling upgrade, replicas of release N and N+1 run against one database that N+1 has
already migrated. So every revision declares, next to ``down_revision``::

    backward_compatible = True   # code of every earlier revision still works after it

``True`` (**expand**) only for changes older code cannot notice: a new table; a new column that
is nullable or has a server default (older code's INSERTs omit it); a new index; new rows older
code ignores. ``False`` (**contract**) for anything else: dropping or renaming a table or column
older code may use, changing a type, adding NOT NULL without a default, a constraint older code's
writes could violate. The upgrade path for a contract change spans releases: release N+1 adds
the new shape (expand) and writes both shapes; N+2 stops reading the old one; only N+3 removes
it (contract). A contract revision is recorded in the ``schema_revision`` table, so a replica
whose code predates it refuses to start against that database ("the database was migrated by a
newer release…") instead of failing on its first query; finish the rollout instead.

Migrations only go forward (no ``downgrade``): roll code back, not the schema — expand-only
revisions make that safe; after a contract revision, restore from a backup.

Developer workflow (a model change)
-----------------------------------
1. Change the tables in ``controlplane/store/models/``.
2. ``make migration NAME=add_foo_to_bar``: autogenerates ``versions/NNNN_add_foo_to_bar.py``
   against a scratch SQLite database at head (``python -m controlplane.store.migrations.dev``).
3. Review it by hand: autogenerate misses renames (it sees drop + add) and server defaults; set
   ``backward_compatible`` and delete the ``TODO(review)`` comment (a test refuses it); make new
   NOT NULL columns carry a ``server_default``; a docstring's first line is what
   ``gwctl controlplane migrate`` prints for the revision.
4. ``pytest tests/controlplane/store/`` checks head == models on SQLite and PostgreSQL (naming
   anything missing) and upgrades a baseline database full of data to head.
5. Two branches that each added ``NNNN``: two heads, which every start refuses; renumber one and
   point its ``down_revision`` at the other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic.config import Config

PACKAGE_DIR = Path(__file__).resolve().parent
VERSIONS_DIR = PACKAGE_DIR / "versions"
BASELINE = "0001"
# Alembic's own bookkeeping table, in the schema the connection's search_path selects.
VERSION_TABLE = "alembic_version"


def alembic_config(
    *,
    connection: Any = None,
    url: str = "",
    extra_version_dirs: tuple[Path, ...] = (),
    on_version_apply: Any = None,
) -> Config:
    """An Alembic :class:`Config` for this package, built in code.

    ``connection`` (online: migrations run on it, inside its transaction) or ``url`` (offline
    ``--sql``: the dialect only). ``extra_version_dirs`` add revisions (tests use a directory of
    their own). ``on_version_apply`` is handed to ``EnvironmentContext.configure``.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(PACKAGE_DIR))
    cfg.set_main_option("path_separator", "os")
    locations = [str(VERSIONS_DIR), *(str(d) for d in extra_version_dirs)]
    cfg.set_main_option("version_locations", os.pathsep.join(locations))
    # "0002_add_foo.py": sequential ids make two branches adding "0002" collide visibly.
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    cfg.attributes["connection"] = connection
    cfg.attributes["url"] = url
    cfg.attributes["on_version_apply"] = on_version_apply
    return cfg
