"""Runtimes and holders for tests, compiled with a real adapter registry.

One registry serves every test (building its transport loads a CA bundle: ~40 ms). Its transport
opens a connection pool only when an adapter first sends, inside that test's event loop, so a test
that sends upstream through HTTP adapters builds its own registry instead.
"""

from __future__ import annotations

from dataplane.config.snapshot import Snapshot
from dataplane.policy.runtime import Runtime, SnapshotHolder, compile_runtime
from dataplane.providers.registry import ProviderRegistry
from dataplane.providers.transport import Transport

REGISTRY = ProviderRegistry(Transport())


def holder() -> SnapshotHolder:
    return SnapshotHolder(REGISTRY)


def runtime(snapshot: Snapshot) -> Runtime:
    return compile_runtime(snapshot, REGISTRY, None)
