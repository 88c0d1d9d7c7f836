"""``Discovery.DeltaWatch``: incremental resource distribution (Envoy delta-xDS style).

Per stream:

1. The first request must carry ``node_id``; ``initial_resource_versions`` says what the data
   plane holds ("kind/name" → version, from its disk cache). The first response carries every
   resource it lacks or holds at another version, and removes what it holds that no longer
   exists (sent even when empty, so the node ACKs the current versions and shows as in sync).
2. Then, whenever the snapshot cache publishes (config or spend), the stream sends the resources
   changed since the last publication it sent (:meth:`ResourceTable.changed_since`, a bounded
   history); a stream too far behind, or one whose data plane NACKed a response (its state is
   no longer what the server thinks), gets the full state (``full_state``) instead.
3. Each response has a fresh nonce; a request carrying it is an ACK (``system_version`` =
   the config version now running) or a NACK (``error_detail``), recorded for ``gwctl
   dataplanes list`` exactly like ``Watch``. Spend-only responses change ``spend_version``,
   never ``system_version``. Breakers and set-aside events are reported as in ``Watch``.

Responses are built synchronously on the event loop, where the table is also committed, so a
response is always one consistent publication.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from google.protobuf.message import Message

from controlplane.services import watch_stream
from controlplane.services.state import AppState
from controlplane.snapshots.table import Ref, ResourceTable
from gwapi.v1 import discovery_pb2 as dpb

log = logging.getLogger(__name__)


def resource_pb(kind: str, name: str, version: str, msg: Message) -> dpb.Resource:
    res = dpb.Resource(kind=kind, name=name, version=version)
    getattr(res, kind).CopyFrom(msg)
    return res


def full_state(table: ResourceTable) -> list[dpb.Resource]:
    return [
        resource_pb(kind, name, version, msg)
        for kind, entries in table.items.items()
        for name, (version, msg) in entries.items()
    ]


def initial_diff(
    table: ResourceTable, known: dict[str, str]
) -> tuple[list[dpb.Resource], list[str]]:
    """What a data plane holding ``known`` lacks, and what it holds that is gone."""
    send: list[dpb.Resource] = []
    present: set[str] = set()
    for kind, entries in table.items.items():
        for name, (version, msg) in entries.items():
            key = f"{kind}/{name}"
            present.add(key)
            if known.get(key) != version:
                send.append(resource_pb(kind, name, version, msg))
    return send, sorted(k for k in known if k not in present)


def changes(table: ResourceTable, refs: frozenset[Ref]) -> tuple[list[dpb.Resource], list[str]]:
    send: list[dpb.Resource] = []
    removed: list[str] = []
    for kind, name in sorted(refs):
        entry = table.items[kind].get(name)
        if entry is None:
            removed.append(f"{kind}/{name}")
        else:
            send.append(resource_pb(kind, name, entry[0], entry[1]))
    return send, removed


@dataclass
class _Stream:
    node_id: str
    publication: int = -1  # the last publication sent
    diverged: bool = False  # a NACK: the next response is the full state
    pending: dict[str, str] = field(default_factory=dict)  # nonce -> system version

    def issue(self, version: str) -> str:
        return watch_stream.issue_nonce(self.pending, version)


async def delta_watch(
    state: AppState, request_iterator: AsyncIterator[dpb.DeltaWatchRequest]
) -> AsyncIterator[dpb.DeltaWatchResponse]:
    requests = request_iterator.__aiter__()
    first = await watch_stream.first_request(requests, "DeltaWatchRequest")
    if first is None:
        return
    registry, cache = state.registry, state.cache
    stream = _Stream(first.node_id)
    generation = watch_stream.connect(registry, first, first.system_version)
    await cache.fresh_spend()  # before the first response: seeds a sweep skipped
    log.info(
        "data plane %s connected for deltas (%s, holding %d resources)",
        first.node_id,
        first.hostname or "?",
        len(first.initial_resource_versions),
    )
    reader = asyncio.create_task(_read(state, requests, stream), name=f"delta-{first.node_id}")
    known: dict[str, str] | None = dict(first.initial_resource_versions)
    try:
        while not cache.closed:
            if cache.published and stream.publication != cache.publication:
                yield _respond(
                    cache.table,
                    stream,
                    known,
                    cache.version,
                    cache.spend_version,
                    cache.built_at_ms,
                )
                known = None
            if not await watch_stream.published(cache, stream.publication, reader):
                break
    finally:
        watch_stream.close(registry, first.node_id, generation, reader)


def _respond(
    table: ResourceTable,
    stream: _Stream,
    known: dict[str, str] | None,
    system_version: str,
    spend_version: str,
    built_at_ms: int,
) -> dpb.DeltaWatchResponse:
    full = False
    if known is not None:
        send, removed = initial_diff(table, known)
    else:
        refs = None if stream.diverged else table.changed_since(stream.publication)
        if refs is None:
            send, removed, full = full_state(table), [], True
        else:
            send, removed = changes(table, refs)
    stream.diverged = False
    stream.publication = table.publication
    return dpb.DeltaWatchResponse(
        system_version=system_version,
        spend_version=spend_version,
        nonce=stream.issue(system_version),
        resources=send,
        removed_resources=removed,
        full_state=full,
        built_at_ms=built_at_ms,
    )


async def _read(
    state: AppState, requests: AsyncIterator[dpb.DeltaWatchRequest], stream: _Stream
) -> None:
    registry = state.registry
    async for req in requests:
        version = watch_stream.answered(registry, stream.node_id, stream.pending, req)
        if version is None:
            continue
        if req.error_detail:
            stream.diverged = True
            watch_stream.record_nack(
                registry, stream.node_id, version, req.error_detail, "resources of"
            )
        else:
            registry.ack(stream.node_id, req.system_version or version)
