"""Alembic's environment script, run by every ``alembic.command`` call on this package.

Online: the connection comes from ``config.attributes["connection"]`` and is already inside the
caller's transaction (:mod:`controlplane.store.schema` holds the migration lock in it), so the
whole upgrade commits or rolls back as one on PostgreSQL. Offline (``--sql``): the URL in
``config.attributes["url"]`` names the dialect; nothing connects.
"""

from __future__ import annotations

from alembic import context

from controlplane.store.migrations.compare import OPTIONS

config = context.config
callbacks = config.attributes.get("on_version_apply")
if context.is_offline_mode():
    context.configure(
        url=config.attributes["url"],
        literal_binds=True,
        on_version_apply=callbacks,
        **OPTIONS,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    context.configure(
        connection=config.attributes["connection"],
        on_version_apply=callbacks,
        **OPTIONS,
    )
    with context.begin_transaction():
        context.run_migrations()
