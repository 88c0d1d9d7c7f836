"""The data plane's side of the snapshot protocol (``Discovery.DeltaWatch``, else ``Watch``); the
files it keeps on disk are :mod:`dataplane.disk_cache`'s.

The data plane prefers the incremental stream (``DeltaWatch``, :mod:`dataplane.delta`): it
announces the resource versions it holds, receives only differences, applies them to the
immutable snapshot copy-on-write, and ACKs/NACKs each response. Its disk cache is then
``<state-dir>/resources.pb`` (:func:`dataplane.delta.to_cache`: no secrets, signing keys or
collector header values), written by a background task off the request path and coalesced (a
burst of responses is one write, of the latest state). A control plane of the previous version
answers ``DeltaWatch`` with UNIMPLEMENTED: the data plane then uses ``Watch`` (state of the
world, below) on that connection and every later one, until it restarts.

On start the last good snapshot is loaded from ``<state-dir>/snapshot.pb`` so the data plane
serves at once, even with the control plane down (the file never holds provider secrets nor
access-token signing keys: see :func:`dataplane.disk_cache.save_cached`). The watch loop then sends the version it runs;
the control plane answers with a snapshot only when it differs. Each snapshot is validated
(``Snapshot.from_proto``): a good one is swapped in, saved to disk and ACKed; a bad one is NACKed
and the last good one keeps serving. Lost streams reconnect with jittered exponential backoff.

The same stream carries the data plane's status upstream: its circuit breakers that are not
closed (``status()``, provider name → ``open`` | ``half_open``) and the number of usage events
it set aside (``quarantined()``, see :mod:`dataplane.reporter`) go in the first request, in every
ACK/NACK, and in a status-only request (no nonce) whenever they change, checked every
``status_interval`` seconds by a small task beside the read loop. gRPC allows one writer at a
time on a call, so every write goes through one lock.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import grpc

from dataplane import delta
from dataplane.delta import DeltaState
from dataplane.disk_cache import (
    load_cached,
    load_resources,
    save_cached,
    save_resources,
    saved_at,
)
from dataplane.runtime import SnapshotHolder
from dataplane.snapshot import Snapshot, SnapshotError
from gwapi.v1 import discovery_pb2, discovery_pb2_grpc
from gwcommon.tls import describe_failure

log = logging.getLogger("tollgate.subscriber")

SAVE_INTERVAL_S = 1.0
WatchCall: TypeAlias = grpc.aio.StreamStreamCall[Any, Any]  # Watch or DeltaWatch


class Subscriber:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        token: str,
        holder: SnapshotHolder,
        state_dir: Path,
        node_id: str,
        listen: str,
        status: Callable[[], dict[str, str]] | None = None,
        status_interval: float = 1.0,
        tls: bool = False,
        quarantined: Callable[[], int] | None = None,
    ) -> None:
        self.stub = discovery_pb2_grpc.DiscoveryStub(channel)
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.holder = holder
        self.state_dir = state_dir
        self.node_id = node_id
        self.listen = listen
        self.status = status
        self.quarantined = quarantined or (lambda: 0)
        self.status_interval = status_interval
        self.tls = tls
        self.connected = asyncio.Event()
        self.last_error = ""
        self._write_lock = asyncio.Lock()
        self._sent_breakers: dict[str, str] = {}
        self._sent_quarantined = 0
        self.delta: DeltaState | None = None  # what the delta stream delivered
        self.use_delta = True  # False once the control plane answered UNIMPLEMENTED
        self._to_save: DeltaState | None = None
        self._save_wanted = asyncio.Event()
        self._saver: asyncio.Task[None] | None = None

    def breakers(self) -> dict[str, str]:
        """The breakers to report: every one that is not closed."""
        if self.status is None:
            return {}
        try:
            states = self.status()
        except Exception:  # status is best effort; never let it break the snapshot stream
            log.exception("cannot read the breaker states")
            return dict(self._sent_breakers)
        return {name: state for name, state in states.items() if state != "closed"}

    def load_cached(self, fallbacks: Sequence[Path] = ()) -> bool:
        """Serve the cached state until the control plane answers: our state directory's
        resources (the delta stream's cache), else its older state-of-the-world snapshot; without
        either, the newest of those in ``fallbacks`` (a new worker of ``--workers N``: the data
        plane's own directory and its sibling workers')."""
        for directory in [self.state_dir, *self._newest_first(fallbacks)]:
            state = load_resources(directory)
            if state is not None:
                self.delta = state
                self.holder.swap(state.snapshot)
                log.info(
                    "serving cached resources %s until the control plane answers",
                    state.system_version,
                )
                return True
            snapshot = load_cached(directory)
            if snapshot is not None:
                self.holder.swap(snapshot)
                log.info(
                    "serving cached snapshot %s until the control plane answers", snapshot.version
                )
                return True
        return False

    @staticmethod
    def _newest_first(directories: Sequence[Path]) -> list[Path]:
        found = [d for d in directories if saved_at(d) >= 0]
        return sorted(found, key=saved_at, reverse=True)

    async def run(self) -> None:
        """Watch forever; cancel to stop."""
        self._saver = asyncio.create_task(self._save_forever(), name="resource-cache-writer")
        try:
            await self._run()
        finally:
            self._saver.cancel()
            if self._to_save is not None:  # stopping: keep the latest state (one write)
                try:
                    save_resources(self.state_dir, self._to_save)
                except OSError as exc:
                    log.error("cannot save the resources to %s: %s", self.state_dir, exc)

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                if self.use_delta:
                    try:
                        await self._delta_once()
                    except grpc.aio.AioRpcError as exc:
                        if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                            raise
                        self.use_delta = False
                        log.info("the control plane has no DeltaWatch; using Watch")
                        await self._watch_once()
                else:
                    await self._watch_once()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                self.last_error = f"{exc.code().name}: {exc.details()}"
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    log.error("control plane refused this data plane: %s", exc.details())
                elif exc.code() == grpc.StatusCode.UNAVAILABLE and self.holder.current is None:
                    # Never connected yet: say why (a TLS mismatch reads as "Socket closed").
                    advice = describe_failure(exc.details() or "", self.tls)
                    log.warning(
                        "cannot reach the control plane (%s)%s; retrying",
                        exc.details(),
                        f": {advice}" if advice else "",
                    )
                else:
                    log.warning("snapshot stream lost (%s); reconnecting", exc.code().name)
            except Exception as exc:
                self.last_error = repr(exc)
                log.exception("snapshot stream failed; reconnecting")
            finally:
                self.connected.clear()
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 5.0)

    def running_version(self) -> str:
        """The version to announce on connect: "" (send me everything) while the snapshot lacks
        a provider secret the control plane stores or the sign-in keys, e.g. after a start from
        the disk cache — the control plane only sends a snapshot whose version differs from the
        announced one."""
        current = self.holder.current
        if current is None:
            return ""
        if any(p.has_secret and not p.api_key for p in current.providers.values()):
            return ""
        if current.signing_keys_missing:
            return ""
        if any(d.headers_missing for d in current.telemetry_destinations):
            return ""
        return current.version

    async def _watch_once(self) -> None:
        call = self.stub.Watch(metadata=self.metadata)
        reporter: asyncio.Task[None] | None = None
        try:
            await self._write(
                call,
                discovery_pb2.WatchRequest(
                    node_id=self.node_id,
                    version_info=self.running_version(),
                    hostname=socket.gethostname(),
                    listen=self.listen,
                ),
            )
            self.connected.set()
            reporter = asyncio.create_task(
                self._report_status(call, self._watch_status), name="status-report"
            )
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    return
                assert isinstance(response, discovery_pb2.WatchResponse)
                await self._write(call, await self._apply(response))
        finally:
            if reporter is not None:
                reporter.cancel()
            call.cancel()

    async def _delta_once(self) -> None:
        call = self.stub.DeltaWatch(metadata=self.metadata)
        reporter: asyncio.Task[None] | None = None
        try:
            await self._write(
                call,
                discovery_pb2.DeltaWatchRequest(
                    node_id=self.node_id,
                    hostname=socket.gethostname(),
                    listen=self.listen,
                    initial_resource_versions=delta.initial_versions(self.delta),
                    system_version=self.delta.system_version if self.delta else "",
                ),
            )
            response = await call.read()  # UNIMPLEMENTED from an older control plane, here
            self.connected.set()
            reporter = asyncio.create_task(
                self._report_status(call, self._delta_status), name="status-report"
            )
            while response is not grpc.aio.EOF:
                assert isinstance(response, discovery_pb2.DeltaWatchResponse)
                await self._write(call, self._apply_delta(response))
                response = await call.read()
        finally:
            if reporter is not None:
                reporter.cancel()
            call.cancel()

    def _apply_delta(
        self, response: discovery_pb2.DeltaWatchResponse
    ) -> discovery_pb2.DeltaWatchRequest:
        """Apply one response (copy-on-write) and swap it in; the request ACKs or NACKs it."""
        previous = self.delta
        try:
            state = delta.apply(previous, response)
        except SnapshotError as exc:
            log.error("rejecting resources of %s: %s", response.system_version, exc)
            return discovery_pb2.DeltaWatchRequest(
                node_id=self.node_id,
                system_version=previous.system_version if previous else "",
                response_nonce=response.nonce,
                error_detail=str(exc),
            )
        self.delta = state
        self.holder.swap(state.snapshot)
        self._to_save = state
        self._save_wanted.set()
        return discovery_pb2.DeltaWatchRequest(
            node_id=self.node_id, system_version=state.system_version, response_nonce=response.nonce
        )

    async def _save_forever(self) -> None:
        """Write the latest delta state to disk: at most one write per ``SAVE_INTERVAL_S`` (a
        burst of responses, e.g. a bulk apply, is one write of the latest state; the write
        serialises every resource, so it must not follow each one-key change)."""
        while True:
            await self._save_wanted.wait()
            await asyncio.sleep(SAVE_INTERVAL_S)
            self._save_wanted.clear()
            state, self._to_save = self._to_save, None
            if state is None:
                continue
            try:
                await asyncio.to_thread(save_resources, self.state_dir, state)
            except OSError as exc:  # serving matters more than the cache; say so and go on
                log.error("cannot save the resources to %s: %s", self.state_dir, exc)

    def _watch_status(self) -> discovery_pb2.WatchRequest:
        current = self.holder.current
        return discovery_pb2.WatchRequest(
            node_id=self.node_id, version_info=current.version if current else ""
        )

    def _delta_status(self) -> discovery_pb2.DeltaWatchRequest:
        return discovery_pb2.DeltaWatchRequest(
            node_id=self.node_id, system_version=self.delta.system_version if self.delta else ""
        )

    async def _write(self, call: WatchCall, request: Any) -> None:
        """Send one request with the current status (one writer at a time)."""
        async with self._write_lock:
            breakers = self.breakers()
            quarantined = self.quarantined()
            request.breakers.clear()
            request.breakers.update(breakers)
            request.quarantined_events = quarantined
            await call.write(request)
            self._sent_breakers = breakers
            self._sent_quarantined = quarantined

    async def _report_status(self, call: WatchCall, status_request: Callable[[], Any]) -> None:
        """Send a status-only request whenever the breaker states or the number of usage
        events set aside change."""
        try:
            while True:
                await asyncio.sleep(self.status_interval)
                if (
                    self.breakers() == self._sent_breakers
                    and self.quarantined() == self._sent_quarantined
                ):
                    continue
                await self._write(call, status_request())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stream is gone; the read loop notices and reconnects
            log.debug("status report stopped: %r", exc)

    async def _apply(self, response: discovery_pb2.WatchResponse) -> discovery_pb2.WatchRequest:
        """Validate and swap in a snapshot; the returned request ACKs or NACKs it."""
        previous = self.holder.current
        try:
            snapshot = Snapshot.from_proto(response.snapshot)
        except SnapshotError as exc:
            log.error("rejecting snapshot %s: %s", response.version, exc)
            return discovery_pb2.WatchRequest(
                node_id=self.node_id,
                version_info=previous.version if previous else "",
                response_nonce=response.nonce,
                error_detail=str(exc),
            )
        self.holder.swap(snapshot)
        try:
            await asyncio.to_thread(save_cached, self.state_dir, response.snapshot)
        except OSError as exc:  # serving matters more than the cache; say so and go on
            log.error("cannot save the snapshot to %s: %s", self.state_dir, exc)
        return discovery_pb2.WatchRequest(
            node_id=self.node_id, version_info=snapshot.version, response_nonce=response.nonce
        )
