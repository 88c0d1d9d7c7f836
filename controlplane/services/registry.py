"""Which data plane runs which snapshot version (for ``ListDataPlanes``).

One entry per ``node_id``, updated by Watch streams. A data plane that reconnects before its old
stream is noticed as gone keeps one entry: each stream gets a generation number and only the
newest stream may mark the node disconnected. Disconnected entries are kept (bounded) so
operators can see a data plane that went away.

Each node also reports its circuit breakers that are not closed (provider name → ``open`` |
``half_open``) and how many usage events it set aside (``quarantined_events``) on every Watch
request; the registry keeps the last report (bounded), which is independent of the acked/nacked
versions.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from controlplane.catalog.common import now_ms
from gwapi.v1 import discovery_pb2 as dpb

MAX_ENTRIES = 1000
MAX_ERROR_CHARS = 1000
MAX_BREAKERS = 256  # per node; more would be a misbehaving data plane
MAX_BREAKER_CHARS = 200


class DataPlaneRegistry:
    def __init__(self) -> None:
        self._nodes: dict[str, dpb.DataPlaneStatus] = {}
        self._generation: dict[str, int] = {}
        self._counter = itertools.count(1)

    def connect(self, node_id: str, hostname: str, listen: str, running_version: str) -> int:
        """Record a new stream; returns its generation (pass it to :meth:`disconnect`)."""
        now = now_ms()
        status = self._nodes.get(node_id) or dpb.DataPlaneStatus(node_id=node_id)
        status.hostname = hostname or status.hostname
        status.listen = listen or status.listen
        status.connected = True
        status.connected_at_ms = now
        status.last_seen_ms = now
        if running_version:
            status.acked_version = running_version
        self._nodes[node_id] = status
        gen = next(self._counter)
        self._generation[node_id] = gen
        self._prune()
        return gen

    def seen(self, node_id: str) -> None:
        if node_id in self._nodes:
            self._nodes[node_id].last_seen_ms = now_ms()

    def report_breakers(self, node_id: str, breakers: Mapping[str, str]) -> None:
        """Replace the node's breaker states with its latest report (closed ones are dropped)."""
        status = self._nodes.get(node_id)
        if status is None:
            return
        status.breakers.clear()
        for name in sorted(breakers)[:MAX_BREAKERS]:
            state = breakers[name]
            if state and state != "closed":
                status.breakers[name[:MAX_BREAKER_CHARS]] = state[:MAX_BREAKER_CHARS]
        status.last_seen_ms = now_ms()

    def report_quarantined(self, node_id: str, count: int) -> None:
        """The node's count of usage events set aside (refused for good), as last reported."""
        status = self._nodes.get(node_id)
        if status is not None:
            status.quarantined_events = count

    def ack(self, node_id: str, version: str) -> None:
        status = self._nodes.get(node_id)
        if status is not None:
            status.acked_version = version
            status.last_error = ""
            status.last_seen_ms = now_ms()

    def nack(self, node_id: str, version: str, error: str) -> None:
        status = self._nodes.get(node_id)
        if status is not None:
            status.nacked_version = version
            status.last_error = error[:MAX_ERROR_CHARS]
            status.last_seen_ms = now_ms()

    def disconnect(self, node_id: str, generation: int) -> None:
        if self._generation.get(node_id) == generation and node_id in self._nodes:
            self._nodes[node_id].connected = False
            self._nodes[node_id].last_seen_ms = now_ms()

    def get(self, node_id: str) -> dpb.DataPlaneStatus | None:
        status = self._nodes.get(node_id)
        if status is None:
            return None
        copy = dpb.DataPlaneStatus()
        copy.CopyFrom(status)
        return copy

    def connected_count(self) -> int:
        return sum(1 for s in self._nodes.values() if s.connected)

    def list(self) -> list[dpb.DataPlaneStatus]:
        """Copies, sorted by node id."""
        return [s for s in (self.get(n) for n in sorted(self._nodes)) if s is not None]

    def _prune(self) -> None:
        if len(self._nodes) <= MAX_ENTRIES:
            return
        gone = sorted(
            (s for s in self._nodes.values() if not s.connected), key=lambda s: s.last_seen_ms
        )
        for status in gone[: len(self._nodes) - MAX_ENTRIES]:
            del self._nodes[status.node_id]
            self._generation.pop(status.node_id, None)
