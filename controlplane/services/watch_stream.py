"""What ``Watch`` and ``DeltaWatch`` streams share: opening, status reports, waking, closing.

Both protocols open the same way (a first request naming the node, which is registered as
connected), read the same per-request status (breakers, set-aside events), wake on the snapshot
cache's publication or the end of the request reader, and mark the node disconnected when the
stream ends. The protocol-specific parts (what is sent, what an ACK means) stay in
:mod:`controlplane.services.discovery` and :mod:`controlplane.services.delta_watch`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import Protocol, TypeVar

from controlplane.domain.errors import InvalidArgument
from controlplane.services.registry import DataPlaneRegistry
from controlplane.snapshots.cache import SnapshotCache

log = logging.getLogger(__name__)
MAX_PENDING_NONCES = 16


class StatusReport(Protocol):
    """The fields every Watch/DeltaWatch request carries about its data plane."""

    @property
    def breakers(self) -> Mapping[str, str]: ...
    @property
    def quarantined_events(self) -> int: ...


class Answer(StatusReport, Protocol):
    """A request that may ACK or NACK a response by its nonce."""

    @property
    def response_nonce(self) -> str: ...


class FirstRequest(StatusReport, Protocol):
    @property
    def node_id(self) -> str: ...
    @property
    def hostname(self) -> str: ...
    @property
    def listen(self) -> str: ...


R = TypeVar("R", bound=FirstRequest)


async def first_request(requests: AsyncIterator[R], message: str) -> R | None:
    """The stream's first request; None when the client closed before sending one.

    Raises InvalidArgument when it names no node (``message`` is the request type's name).
    """
    try:
        first = await requests.__anext__()
    except StopAsyncIteration:
        return None
    if not first.node_id:
        raise InvalidArgument(f"node_id is required in the first {message}")
    return first


def connect(registry: DataPlaneRegistry, first: FirstRequest, running_version: str) -> int:
    """Register the node as connected and record its first status; returns the generation."""
    generation = registry.connect(first.node_id, first.hostname, first.listen, running_version)
    report_status(registry, first.node_id, first)
    return generation


def report_status(registry: DataPlaneRegistry, node_id: str, req: StatusReport) -> None:
    """Record a request's breaker states and set-aside count (also refreshes last_seen)."""
    registry.report_breakers(node_id, req.breakers)
    registry.report_quarantined(node_id, req.quarantined_events)


def answered(
    registry: DataPlaneRegistry, node_id: str, pending: dict[str, str], req: Answer
) -> str | None:
    """Record ``req``'s status; the version it ACKs or NACKs, None when it answers nothing we
    sent (no nonce, or one no longer pending)."""
    report_status(registry, node_id, req)
    return pending.pop(req.response_nonce, None) if req.response_nonce else None


def record_nack(
    registry: DataPlaneRegistry, node_id: str, version: str, detail: str, what: str
) -> None:
    """A data plane refused ``version`` (``what``: how the log names it, e.g. "snapshot")."""
    registry.nack(node_id, version, detail)
    log.warning("data plane %s rejected %s %s: %s", node_id, what, version, detail[:300])


def issue_nonce(pending: dict[str, str], version: str) -> str:
    """A fresh nonce for a response carrying ``version``, remembered in ``pending``.

    Only the newest MAX_PENDING_NONCES are kept, so a client that never answers cannot grow it.
    """
    nonce = secrets.token_hex(8)
    pending[nonce] = version
    while len(pending) > MAX_PENDING_NONCES:
        pending.pop(next(iter(pending)))
    return nonce


async def published(cache: SnapshotCache, seen: int, reader: asyncio.Task[None]) -> bool:
    """Wait for a publication after ``seen`` (True) or the end of ``reader`` (False).

    A reader failure is raised here.
    """
    waiter = asyncio.create_task(cache.wait_for_publication(seen))
    try:
        done, _ = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if reader in done:
        reader.result()
        return False
    return True


def close(
    registry: DataPlaneRegistry, node_id: str, generation: int, reader: asyncio.Task[None]
) -> None:
    """End the stream: stop reading and mark the node disconnected (unless it reconnected)."""
    reader.cancel()
    registry.disconnect(node_id, generation)
    log.info("data plane %s disconnected", node_id)
