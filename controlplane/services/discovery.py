"""The Discovery service: snapshot distribution to data planes (xDS state-of-the-world style).

Watch, per stream:

1. The first request must carry ``node_id``; its ``version_info`` is the version the data plane
   already runs (from its disk cache, or ``""``). The node is registered as connected.
2. Whenever the current snapshot's version (the config version) differs both from the version
   the data plane runs and from the last version sent on this stream, the server sends
   ``WatchResponse(version, nonce, snapshot)`` with a fresh nonce. So: nothing is sent to a data
   plane that already runs the current version; a newer change is sent at once even if the
   previous response was not answered yet; a NACKed version is not sent again on the same
   stream. Spend seeds do not change the version: new spend is sent (the same version, the new
   seeds) to a stream that runs or was sent the current version, whenever the spend version
   differs from the last one sent on the stream. The snapshot is assembled from the snapshot
   cache's resource table (:attr:`SnapshotCache.current`), once per version pair.
3. A request carrying one of the stream's nonces is an ACK (``error_detail`` empty; the data plane
   now runs ``version_info``) or a NACK (``error_detail`` set; recorded as ``nacked_version`` and
   ``last_error``). Requests with unknown nonces only refresh ``last_seen``. Every request
   (including the first, and status-only ones without a nonce) also carries the data plane's
   non-closed circuit breakers and its count of usage events set aside, recorded as the node's
   ``breakers`` and ``quarantined_events`` — never an ACK or NACK.
4. The server then waits on the snapshot cache's change notification (no polling).
5. The stream ends when the client cancels or half-closes, or the server shuts down; the node is
   then marked disconnected.

``DeltaWatch`` (:mod:`controlplane.services.delta_watch`) is the incremental protocol new data
planes prefer; ``Watch`` stays for data planes of the previous version.

ListDataPlanes reports every known node with its acked/nacked version and the current version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from controlplane.errors import grpc_errors
from controlplane.services import watch_stream
from controlplane.services.delta_watch import delta_watch
from controlplane.services.state import AppState
from gwapi.v1 import discovery_pb2 as dpb
from gwapi.v1 import discovery_pb2_grpc

log = logging.getLogger(__name__)
Ctx = Any  # grpc.aio.ServicerContext


@dataclass
class _Stream:
    node_id: str
    running: str  # the version the data plane says it runs (initial, then each ACK)
    sent: str = ""  # the last version sent on this stream
    spend_sent: str = ""  # the spend version of the last snapshot sent (or assumed held)
    pending: dict[str, str] = field(default_factory=dict)  # nonce -> version sent

    def issue(self, version: str) -> str:
        self.sent = version
        return watch_stream.issue_nonce(self.pending, version)


@grpc_errors
class DiscoveryService(discovery_pb2_grpc.DiscoveryServicer):
    def __init__(self, state: AppState) -> None:
        self._s = state

    async def Watch(
        self, request_iterator: AsyncIterator[dpb.WatchRequest], context: Ctx
    ) -> AsyncIterator[dpb.WatchResponse]:
        requests = request_iterator.__aiter__()
        first = await watch_stream.first_request(requests, "WatchRequest")
        if first is None:
            return
        registry, cache = self._s.registry, self._s.cache
        stream = _Stream(node_id=first.node_id, running=first.version_info)
        if first.version_info and first.version_info == cache.version:
            stream.spend_sent = cache.spend_version  # up to date; new spend will be sent
        generation = watch_stream.connect(registry, first, first.version_info)
        await cache.fresh_spend()  # after spend_sent: seeds a sweep skipped are then sent
        log.info(
            "data plane %s connected (%s, running %s)",
            first.node_id,
            first.hostname or "?",
            first.version_info or "<nothing>",
        )
        reader = asyncio.create_task(
            self._read(requests, stream), name=f"watch-read-{first.node_id}"
        )
        try:
            while not cache.closed:
                snap = cache.current
                if snap is not None and (
                    snap.version not in (stream.running, stream.sent)
                    or stream.spend_sent != cache.spend_version
                ):
                    nonce = stream.issue(snap.version)
                    stream.spend_sent = cache.spend_version
                    yield dpb.WatchResponse(version=snap.version, nonce=nonce, snapshot=snap)
                if not await watch_stream.published(cache, cache.publication, reader):
                    break
        finally:
            watch_stream.close(registry, first.node_id, generation, reader)

    async def DeltaWatch(
        self, request_iterator: AsyncIterator[dpb.DeltaWatchRequest], context: Ctx
    ) -> AsyncIterator[dpb.DeltaWatchResponse]:
        async for response in delta_watch(self._s, request_iterator):
            yield response

    async def _read(self, requests: AsyncIterator[dpb.WatchRequest], stream: _Stream) -> None:
        """Consume ACK/NACKs and status reports until the client half-closes."""
        registry = self._s.registry
        async for req in requests:
            version = watch_stream.answered(registry, stream.node_id, stream.pending, req)
            if version is None:
                continue
            if req.error_detail:
                watch_stream.record_nack(
                    registry, stream.node_id, version, req.error_detail, "snapshot"
                )
            else:
                stream.running = req.version_info or version
                registry.ack(stream.node_id, stream.running)
                log.debug("data plane %s applied snapshot %s", stream.node_id, stream.running)

    async def ListDataPlanes(
        self, request: dpb.ListDataPlanesRequest, context: Ctx
    ) -> dpb.ListDataPlanesResponse:
        return dpb.ListDataPlanesResponse(
            current_version=self._s.cache.version, dataplanes=self._s.registry.list()
        )
