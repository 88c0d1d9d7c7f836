"""Usage reporting: a bounded in-memory queue, the disk spool, batches to the control plane.

The request path only calls :meth:`Reporter.record` (an append to a deque, and a wake-up). Three
background loops share the spool (one spool operation at a time, in a worker thread, in FIFO
order):

* **persist** wakes on a record, lets ``persist_delay`` (5 ms) go by, and writes *everything*
  queued to the spool: the events recorded meanwhile, or while a write is under way, go in one
  write (a group commit). A process crash (SIGKILL) thus loses only the events of the last
  moments (the delay plus one write's latency: a few milliseconds), not a whole ``interval``; a
  control plane that is down or slow does not delay it. The delay bounds the worker-thread hops
  to 200 a second however high the request rate: each costs ~100 µs of CPU in thread wake-ups and
  switches (``make bench``), which one hop per request made a tenth of the data plane's CPU.
  The fsync that makes them survive a power loss too follows in its own worker thread
  (**sync**, covering all that was written meanwhile, at most once per ``sync_interval``,
  20 ms: a power loss loses at most that much more), outside the spool's lock, so a slow fsync
  (tens of ms on a busy disk) never holds up the next write.
* **send** runs every ``interval`` seconds (plus the backoff while the control plane is unwell)
  and sends what was spooled before the pass began, in batches of at most ``batch_size`` events
  and ``batch_bytes`` bytes (far below the control plane's message limit); the control plane's
  ``acked_seq`` lets the spool forget them. Persisting promptly does not make the batches
  smaller: the control plane's cost per event stays what the cadence makes it.

With the control plane down, events accumulate in the spool and are replayed in order when it
returns; the control plane's ingest is idempotent on request id, so a replay after a lost
acknowledgement counts nothing twice.

No single event may stop reporting. The rule, by the status of a refused batch:

* ``UNAVAILABLE``, ``DEADLINE_EXCEEDED`` and every other status not named below (and any
  non-gRPC failure) mean the control plane or the way to it is unwell: retry the same batch with
  jittered exponential backoff (up to 5 s), for ever. Such failures never set an event aside.
* ``INVALID_ARGUMENT``, ``INTERNAL``, ``UNKNOWN``, ``RESOURCE_EXHAUSTED`` may be one event's
  fault: the batch is bisected and its halves resent, down to single events. An event refused
  alone is first *repaired* (strings cleaned and cut, logged bodies fitted: what current data
  planes do when they build an event; see :func:`dataplane.metering.record.repair_event`) and resent.
  Refused again, it is **set aside** (``rejected.log`` in the spool directory, counted in
  ``quarantined``, exported as ``tollgate_usage_quarantined`` and shown by ``gwctl dataplanes
  list``) when the refusal is ``INVALID_ARGUMENT`` (the control plane says it is malformed), or
  when, for the other three, some other event of the same pass was accepted and then this one is
  refused alone once more — so the control plane works and this event is the problem. If nothing
  was accepted, the control plane itself is taken to be broken: nothing is set aside and the
  batch is retried after a backoff. A pass also
  gives up, without setting anything aside, after ``MAX_SUSPECTS`` such single-event refusals
  with no acceptance, so a broken control plane costs a few calls per backoff, not one per event.

Events are acknowledged in the spool strictly in order, up to the first one not yet delivered or
set aside; events behind it that were delivered in the same pass are sent again later (and
counted as duplicates by the control plane, never twice).

This module is long (~440 lines) because it is one class, :class:`Reporter`, whose three loops
share one queue, one spool lock and one backoff, and whose bisect-and-set-aside rule above is one
contract; the spool itself lives in :mod:`dataplane.sync.spool`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from dataplane.metering.record import RequestRecord, repair_event
from dataplane.sync.spool import Spool, sync_files
from gwapi.v1 import telemetry_pb2
from gwcommon.usage_limits import BATCH_BYTES, MAX_MESSAGE_BYTES

log = logging.getLogger("tollgate.reporter")

# Sends a batch; returns the acked sequence. Raises on any failure (the batch is retried).
SendBatch = Callable[[telemetry_pb2.ReportUsageRequest], Awaitable[int]]

# Statuses that may be one event's fault (see the module docstring); INVALID_ARGUMENT is definite.
PER_EVENT = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
MAX_SUSPECTS = 4
# The group commit's pace (module docstring): a write at most this long after a record, an fsync
# at most this often.
PERSIST_DELAY_S = 0.005
SYNC_INTERVAL_S = 0.02
# A single event larger than this is repaired before it is sent at all.
SINGLE_MAX_BYTES = MAX_MESSAGE_BYTES - 1024 * 1024

Outcome = dict[int, tuple[str, str]]  # seq -> ("ok" | "bad" | "suspect", detail)


class _Retry(Exception):
    """The control plane (or the way to it) is unwell: stop this pass, back off, retry."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class Reporter:
    def __init__(
        self,
        spool: Spool,
        send_batch: SendBatch,
        node_id: str,
        *,
        interval: float = 0.2,
        batch_size: int = 500,
        batch_bytes: int = BATCH_BYTES,
        max_queue: int = 200_000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        persist_delay: float = PERSIST_DELAY_S,
        sync_interval: float = SYNC_INTERVAL_S,
    ) -> None:
        self.spool = spool
        self.send_batch = send_batch
        self.node_id = node_id
        self.interval = interval
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self._sleep = sleep  # the send loop's cadence and backoff (tests step it)
        self.persist_delay = persist_delay
        self.sync_interval = sync_interval
        self._queue: deque[bytes] = deque()
        self._max_queue = max_queue
        self._wake = asyncio.Event()  # set by record(): something is queued
        self._sync_wake = asyncio.Event()  # set by the persist loop: something to fsync
        self._sync_io: asyncio.Future[None] | None = None  # the fsync in its thread
        self._spool_lock = asyncio.Lock()
        self._persisting = 0  # events taken off the queue, not yet appended to the spool
        self.persists = 0  # spool writes by the persist loop (each holds 1+ events)
        self.batches = 0  # ReportUsage calls
        self.dropped = 0
        self.repaired = 0  # events delivered only after repair_event
        self._backoff = 0.0
        # The spool operation in progress (append, ack) in its worker thread. A cancelled run()
        # leaves that thread running: flush() must wait for it, not race it on the same spool.
        self._spool_io: asyncio.Future[Any] | None = None

    def record(self, rec: RequestRecord) -> None:
        """Hot path: queue one finished request's usage event. Never blocks, never raises."""
        try:
            payload = rec.to_event().SerializeToString()
        except Exception:  # a broken record must not break the response that produced it
            log.exception("could not encode the usage event of %s", rec.request_id)
            return
        if len(self._queue) >= self._max_queue:
            # Only reachable when the disk itself stalls for a long time; say so loudly.
            self.dropped += 1
            log.error("usage queue full: dropped the event of %s", rec.request_id)
            return
        self._queue.append(payload)
        self._wake.set()  # the persist loop writes it (with whatever else is queued) at once

    async def run(self) -> None:
        """Persist and send forever (cancel to stop; call :meth:`flush` afterwards for a final
        attempt).

        Failures of the control plane are handled here; anything unexpected propagates (the
        other loop is then stopped too), and the caller restarts the whole
        (:func:`dataplane.process.supervise.supervise`): the queue, the spool and the backoff survive a
        restart."""
        loops = [
            asyncio.create_task(self._persist_loop(), name="usage-persist"),
            asyncio.create_task(self._sync_loop(), name="usage-sync"),
            asyncio.create_task(self._send_loop(), name="usage-send"),
        ]
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
            raise RuntimeError("a usage reporter loop returned")  # they never do
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _persist_loop(self) -> None:
        while True:
            await self._wake.wait()
            if self.persist_delay > 0:  # the group commit's window (module docstring)
                await asyncio.sleep(self.persist_delay)
            self._wake.clear()
            if await self._persist(sync=False):
                self._sync_wake.set()

    async def _sync_loop(self) -> None:
        while True:
            await self._sync_wake.wait()
            self._sync_wake.clear()
            await self._sync()
            if self.sync_interval > 0:  # what is written meanwhile waits for the next one
                await asyncio.sleep(self.sync_interval)

    async def _sync(self) -> None:
        """fsync what was written unsynced so far (after any fsync a cancelled caller left
        running), in a worker thread, not holding the spool: writes go on meanwhile."""
        if self._sync_io is not None and not self._sync_io.done():
            await asyncio.wait([self._sync_io])
        async with self._spool_lock:
            await self._io_done()
            # In memory, and no spool operation runs now; the fsync starts with no await in
            # between, so a cancellation cannot lose what was handed out.
            files, directory = self.spool.unsynced()
            if not files and directory is None:
                return
            self._sync_io = asyncio.ensure_future(asyncio.to_thread(sync_files, files, directory))
        try:
            await asyncio.shield(self._sync_io)
        except OSError as exc:  # the records are written and kept in memory: still delivered
            log.error("spool: fsync of usage events failed (%s); a power loss may lose them", exc)

    async def _send_loop(self) -> None:
        while True:
            # A cadence, not a wait for something: batching is what keeps the control
            # plane's ingest cost per event low.
            await self._sleep(self.interval)
            if self._backoff:
                await self._sleep(self._backoff)
            await self._send_pending()

    async def _spool(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one spool operation in a worker thread, never two at once, callers served in
        order (a busy persist loop cannot starve the sender's acknowledgements)."""
        async with self._spool_lock:
            await self._io_done()
            self._spool_io = asyncio.ensure_future(asyncio.to_thread(fn, *args))
            return await asyncio.shield(self._spool_io)

    async def _io_done(self) -> None:
        """Wait for an operation a cancelled caller left running in its thread: never race it
        on the same spool."""
        if self._spool_io is not None and not self._spool_io.done():
            await asyncio.wait([self._spool_io])

    async def _persist(self, sync: bool = True) -> bool:
        """Write the queue to the spool (fsync'd unless ``sync`` is False); False if empty."""
        if not self._queue:
            return False
        async with self._spool_lock:
            await self._io_done()
            if not self._queue:
                return False
            # Taken off the queue only now, with the write starting at once: a cancellation from
            # here on cannot drop them (the write goes on in its thread).
            batch = list(self._queue)
            self._queue.clear()
            self._persisting += len(batch)  # still counted in the backlog while being written
            io = asyncio.ensure_future(asyncio.to_thread(self.spool.append, batch, sync=sync))
            io.add_done_callback(lambda _: self._written(len(batch)))
            self._spool_io = io
            await asyncio.shield(io)
        self.persists += 1
        return True

    def _written(self, count: int) -> None:
        self._persisting -= count

    async def _send_pending(self) -> bool:
        """Send what was spooled when the pass began; False if it must wait (control plane
        unwell). Events spooled during the pass wait for the next one: chasing them would turn
        a steady trickle into a stream of small batches."""
        upto = self.spool.last_seq
        while True:
            records = await self._spool(self.spool.pending, self.batch_size, self.batch_bytes)
            records = [r for r in records if r[0] <= upto]
            if not records:
                self._backoff = 0.0
                return True
            outcome: Outcome = {}
            try:
                await self._bisect(records, outcome)
                settled = await self._settle(records, outcome, confirm=True)
            except _Retry as exc:
                await self._settle(records, outcome, confirm=False)
                self._retry_later(exc.cause)
                return False
            if not settled:
                self._retry_later(None)
                return False

    async def _send(
        self,
        records: list[tuple[int, bytes]],
        events: list[telemetry_pb2.UsageEvent] | None = None,
    ) -> int:
        """One ReportUsage; raises AioRpcError for a PER_EVENT status, _Retry for the rest."""
        request = telemetry_pb2.ReportUsageRequest(
            node_id=self.node_id,
            events=events or [telemetry_pb2.UsageEvent.FromString(p) for _, p in records],
            last_seq=records[-1][0],
        )
        self.batches += 1
        try:
            acked = await self.send_batch(request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in PER_EVENT:
                raise
            raise _Retry(exc) from exc
        except Exception as exc:
            raise _Retry(exc) from exc
        if acked < request.last_seq:  # not made durable: nothing to settle, try again later
            raise _Retry(RuntimeError(f"acknowledged up to #{acked} of #{request.last_seq}"))
        return acked

    async def _bisect(self, records: list[tuple[int, bytes]], outcome: Outcome) -> None:
        """Deliver ``records`` in order, splitting on refusals that may be one event's fault.

        Fills ``outcome``. Raises _Retry to end the pass (a transient failure, or MAX_SUSPECTS
        single-event refusals and nothing accepted)."""
        if len(records) == 1:
            outcome[records[0][0]] = await self._send_alone(*records[0])
            kinds = [kind for kind, _ in outcome.values()]
            if kinds.count("suspect") >= MAX_SUSPECTS and "ok" not in kinds:
                raise _Retry(RuntimeError(f"{kinds.count('suspect')} events refused alone"))
            return
        try:
            await self._send(records)
        except grpc.aio.AioRpcError as exc:
            log.info(
                "control plane refused a batch of %d usage events (%s: %s); splitting it",
                len(records),
                exc.code().name,
                exc.details(),
            )
            mid = len(records) // 2
            await self._bisect(records[:mid], outcome)
            await self._bisect(records[mid:], outcome)
            return
        for seq, _ in records:
            outcome[seq] = ("ok", "")

    async def _send_alone(self, seq: int, payload: bytes) -> tuple[str, str]:
        event = telemetry_pb2.UsageEvent.FromString(payload)
        repaired = False
        if len(payload) > SINGLE_MAX_BYTES:  # would be refused for its size: fit it first
            repaired = repair_event(event)
        try:
            await self._send([(seq, payload)], [event])
        except grpc.aio.AioRpcError as exc:
            if repaired or not repair_event(event):
                return _verdict(exc)
            try:
                await self._send([(seq, payload)], [event])
            except grpc.aio.AioRpcError as again:
                return _verdict(again)
            repaired = True
        if repaired:
            self.repaired += 1
            log.warning(
                "usage event #%d (%s) was delivered after cleaning its strings and fitting its "
                "logged bodies",
                seq,
                event.request_id[:128],
            )
        return "ok", ""

    async def _settle(
        self, records: list[tuple[int, bytes]], outcome: Outcome, *, confirm: bool
    ) -> bool:
        """Set aside what the pass condemned and acknowledge the settled prefix; True if every
        record was settled. A suspect is set aside only with ``confirm`` (the pass ended
        normally) and only if, now that another event was accepted, it is refused alone once
        more: a glitch of the connection that happened to hit it is not its fault."""
        accepted = any(kind == "ok" for kind, _ in outcome.values())
        settled = 0
        try:
            for seq, payload in records:
                kind, detail = outcome.get(seq, ("", ""))
                if kind == "suspect" and accepted and confirm:
                    kind, detail = outcome[seq] = await self._send_alone(seq, payload)
                    if kind == "suspect":
                        kind = "bad"
                if kind == "bad":
                    await self._quarantine(seq, payload, detail)
                    outcome[seq] = ("aside", detail)  # never twice, should this pass be resumed
                    kind = "aside"
                if kind not in ("ok", "aside"):
                    break
                settled = seq
        finally:
            if settled:
                await self._spool(self.spool.ack, settled)
        return settled == records[-1][0]

    async def _quarantine(self, seq: int, payload: bytes, detail: str) -> None:
        try:
            request_id = telemetry_pb2.UsageEvent.FromString(payload).request_id[:128]
        except Exception:
            request_id = "?"
        log.error(
            "control plane refused usage event #%d (%s) for good: %s; set aside in "
            "%s/rejected.log (%d so far)",
            seq,
            request_id,
            detail,
            self.spool.dir,
            self.spool.quarantined + 1,
        )
        await self._spool(self.spool.reject, seq, payload)

    def _retry_later(self, exc: BaseException | None) -> None:
        self._backoff = min(5.0, max(0.2, self._backoff * 2)) * random.uniform(0.8, 1.2)
        log.debug("usage report failed (%s); %d events wait in the spool", exc, self.spool.backlog)

    async def drain(self) -> None:
        """Wait until every event recorded before the call is written to the spool (not yet
        fsync'd nor sent, both of which follow as usual) and no spool operation (a write, an
        acknowledgement) is under way: whoever reads the spool directory afterwards, a
        restarted data plane for one, finds what this process has."""
        if await self._persist(sync=False):
            self._sync_wake.set()
        async with self._spool_lock:  # an operation the loops have under way
            await self._io_done()

    async def flush(self, timeout: float = 5.0) -> bool:
        """Persist the queue and try once to deliver everything; True if nothing is left."""
        try:
            async with asyncio.timeout(timeout):
                await self.drain()
                await self._sync()  # and whatever the persist loop wrote unsynced
                return await self._send_pending()
        except TimeoutError:
            return False

    @property
    def backlog(self) -> int:
        return len(self._queue) + self._persisting + self.spool.backlog

    @property
    def quarantined(self) -> int:
        return self.spool.quarantined


def _verdict(exc: grpc.aio.AioRpcError) -> tuple[str, str]:
    kind = "bad" if exc.code() == grpc.StatusCode.INVALID_ARGUMENT else "suspect"
    return kind, f"{exc.code().name}: {exc.details()}"
