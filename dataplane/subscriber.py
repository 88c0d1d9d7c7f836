"""The data plane's side of the snapshot protocol (``Discovery.Watch``), and its disk cache.

On start the last good snapshot is loaded from ``<state-dir>/snapshot.pb`` so the data plane
serves at once, even with the control plane down (the file never holds provider secrets nor
access-token signing keys: see :func:`save_cached`). The watch loop then sends the version it runs;
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
from typing import TypeAlias

import grpc

from dataplane.private import private_dir, write_atomic
from dataplane.snapshot import Snapshot, SnapshotError, SnapshotHolder
from dataplane.telemetry.destinations import strip_secrets as strip_destination_secrets
from gwapi.v1 import discovery_pb2, discovery_pb2_grpc
from gwcommon.tls import describe_failure

log = logging.getLogger("tollgate.subscriber")

SNAPSHOT_FILE = "snapshot.pb"
WatchCall: TypeAlias = grpc.aio.StreamStreamCall[
    discovery_pb2.WatchRequest, discovery_pb2.WatchResponse
]


def load_cached(state_dir: Path) -> Snapshot | None:
    path = state_dir / SNAPSHOT_FILE
    try:
        msg = discovery_pb2.Snapshot.FromString(path.read_bytes())
        return Snapshot.from_proto(msg)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a corrupt cache is not fatal: the control plane will resend
        log.warning("ignoring unreadable cached snapshot %s: %s", path, exc)
        return None


def save_cached(state_dir: Path, msg: discovery_pb2.Snapshot) -> None:
    """Write the snapshot WITHOUT its provider secrets and access-token signing keys: they live
    in memory only, so a stolen state directory yields no upstream key and cannot mint a
    developer's token. After a restart, providers whose key is stored on the control plane
    answer 503 until the stream delivers it (``ProviderConfig.has_secret``), and so do signed-in
    developers' requests until the signing keys arrive (``Snapshot.signing_keys_missing``)."""
    private_dir(state_dir)
    clean = discovery_pb2.Snapshot()
    clean.CopyFrom(msg)
    clean.ClearField("secrets")
    clean.ClearField("signing_keys")
    strip_destination_secrets(clean)  # telemetry collectors' header values: names kept, no value
    write_atomic(state_dir / SNAPSHOT_FILE, clean.SerializeToString())


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
        """Serve the cached snapshot until the control plane answers. Without one in our state
        directory, the newest in ``fallbacks`` (a new worker of ``--workers N``: the data
        plane's own directory and its sibling workers')."""
        snapshot = load_cached(self.state_dir)
        if snapshot is None:
            candidates = [d for d in fallbacks if (d / SNAPSHOT_FILE).is_file()]
            candidates.sort(key=lambda d: (d / SNAPSHOT_FILE).stat().st_mtime, reverse=True)
            for directory in candidates:
                if (snapshot := load_cached(directory)) is not None:
                    break
        if snapshot is None:
            return False
        self.holder.swap(snapshot)
        log.info("serving cached snapshot %s until the control plane answers", snapshot.version)
        return True

    async def run(self) -> None:
        """Watch forever; cancel to stop."""
        delay = 0.1
        while True:
            try:
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
            reporter = asyncio.create_task(self._report_status(call), name="status-report")
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

    async def _write(self, call: WatchCall, request: discovery_pb2.WatchRequest) -> None:
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

    async def _report_status(self, call: WatchCall) -> None:
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
                current = self.holder.current
                await self._write(
                    call,
                    discovery_pb2.WatchRequest(
                        node_id=self.node_id, version_info=current.version if current else ""
                    ),
                )
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
