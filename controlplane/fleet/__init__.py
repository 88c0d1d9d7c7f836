"""The fleet: several control-plane replicas on one database.

* :mod:`~controlplane.fleet.topics` — which table belongs to which topic, and the SQLAlchemy
  session hooks that announce every committed write by topic (no handler has to remember).
* :mod:`~controlplane.fleet.bus` — the bus contract and its in-process form (SQLite: one replica
  by design, so "the fleet" is this process).
* :mod:`~controlplane.fleet.pg` — PostgreSQL ``LISTEN/NOTIFY``: ``pg_notify`` inside the writing
  transaction (delivered on commit), one listening connection per replica.
* :mod:`~controlplane.fleet.leader` — once-per-fleet background jobs behind a leader lease.
* :mod:`~controlplane.fleet.feeds` — other replicas' audit events and usage into this replica's
  live streams (TailAudit, TailLogs, StreamStats).
* :mod:`~controlplane.fleet.wiring` — what each topic does to a running control plane.
"""
