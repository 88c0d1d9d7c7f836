"""SQLModel tables: the control plane's system of record, one module per area.

* :mod:`.config`: workspaces, virtual keys, providers, routes, prices, telemetry destinations and
  the configuration change log.
* :mod:`.usage`: what data planes report (the usage ledger, logged bodies, budget alerts,
  developer activity).
* :mod:`.derived`: the ledger's totals and rollups, rebuilt from it.
* :mod:`.admin`: admin tokens and the audit log.
* :mod:`.signin`: sign-in with Claude Code (SSO config, signing keys, developers, grants,
  refresh tokens).

Conventions: times are Unix milliseconds (BIGINT); money is integer micro-dollars (BIGINT);
structured values (limits, options, targets, metadata) are JSON *text*, so the same schema runs on
SQLite and PostgreSQL (:mod:`.columns`). Virtual keys hold only the SHA-256 of their secret.

Importing this package registers every table on :data:`metadata`, which Alembic compares with
the revisions (controlplane.store.migrations.compare) and ``Database.create_all`` creates.
"""

from __future__ import annotations

from sqlmodel import SQLModel

from controlplane.store.models import admin, config, derived, signin, usage

# Every table registers on this metadata once the modules above are imported.
metadata = SQLModel.metadata

__all__ = ["admin", "config", "derived", "metadata", "signin", "usage"]
