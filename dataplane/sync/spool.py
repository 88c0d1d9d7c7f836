"""A durable, append-only spool of usage events awaiting the control plane's acknowledgement.

Layout under ``DIR``: segment files ``seg-<first seq>.log`` and ``acked`` (the highest sequence
the control plane has made durable, written atomically). A record is
``length u32 | seq u64 | crc32 u32 | payload`` (big-endian), the CRC covering seq and payload, so
a record torn by a crash is detected and dropped on reopen instead of poisoning the file.

Contract: :meth:`append` assigns consecutive sequence numbers and writes the records (fsync'd,
and the directory too when a segment is created) before returning — or, with ``sync=False``,
writes them (a process crash can no longer lose them) and leaves the fsync to
:func:`sync_files`, which touches no spool state and so may run in another thread while the
spool writes more (:meth:`unsynced` says what to fsync); :meth:`pending` returns
unacknowledged records oldest first, bounded in count and bytes; :meth:`ack` forgets records up
to a sequence and deletes segments that hold nothing newer. Events survive a data-plane restart;
an event is only forgotten after the control plane acknowledged it, or after it was set aside
(:meth:`reject`, ``rejected.log``). Memory is bounded in records and bytes: beyond the window,
records wait on disk only and are read back in order. The directory is 0700, its files 0600
(:mod:`dataplane.private`): with full body logging they hold prompts.
Blocking file I/O: call it from a worker thread, never from the event loop's request path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from collections import deque
from io import FileIO
from pathlib import Path

from dataplane.private import fsync_dir, make_private, open_append, private_dir, write_atomic

log = logging.getLogger("tollgate.spool")

_HEAD = struct.Struct(">IQI")
SEGMENT_BYTES = 8 * 1024 * 1024
MEMORY_RECORDS = 50_000
MEMORY_BYTES = 64 * 1024 * 1024
# rejected.log keeps set-aside events up to this size; later ones are logged and counted only.
REJECTED_BYTES = 256 * 1024 * 1024
REJECTED = "rejected.log"
# What one record adds to a ReportUsage request besides its payload (field tag, length varint).
RECORD_OVERHEAD = 6


class Spool:
    def __init__(
        self,
        directory: Path,
        memory_records: int = MEMORY_RECORDS,
        memory_bytes: int = MEMORY_BYTES,
    ) -> None:
        self.dir = directory
        private_dir(self.dir)
        for path in self.dir.iterdir():
            if path.is_file():
                make_private(path)
        self.memory_records = memory_records
        self.memory_bytes = memory_bytes
        self.acked = self._read_acked()
        self.last_seq = self.acked
        self._pending: deque[tuple[int, bytes]] = deque()
        self._pending_bytes = 0
        self._on_disk_only = False  # records beyond the in-memory window wait on disk
        self._segment: Path | None = None
        # The segment being appended to, held open: one write() per batch, not open, write and
        # close (each a GIL round trip for the worker thread that runs the append). Unbuffered,
        # so nothing is lost if the process ends without closing it.
        self._file: FileIO | None = None
        self._segment_size = 0
        self._segment_last: dict[Path, int] = {}
        self._unsynced: set[Path] = set()  # written with sync=False, not yet handed out
        self._dir_unsynced = False
        # Disk refusing writes (full, read-only): events wait in memory only, up to
        # memory_records; past that they are dropped and counted (see append).
        self.write_failing = False
        self.dropped = 0
        self._unwritten: set[int] = set()
        # Events the control plane refused for good (see Reporter): kept in rejected.log.
        self._rejected_bytes, self.quarantined = self._scan_rejected()
        for path in self._segments():
            last = self.acked
            for seq, payload in self._read_segment(path):
                last = max(last, seq)
                if seq > self.acked:
                    self._remember(seq, payload)
            self._segment_last[path] = last
            self.last_seq = max(self.last_seq, last)
        self._drop_acked_segments()

    # -- reading -------------------------------------------------------------------------------

    def _segments(self) -> list[Path]:
        return sorted(self.dir.glob("seg-*.log"))

    def _read_acked(self) -> int:
        try:
            return int((self.dir / "acked").read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _read_segment(self, path: Path) -> list[tuple[int, bytes]]:
        data = path.read_bytes()
        out: list[tuple[int, bytes]] = []
        pos = 0
        while pos + _HEAD.size <= len(data):
            length, seq, crc = _HEAD.unpack_from(data, pos)
            start = pos + _HEAD.size
            payload = data[start : start + length]
            if (
                len(payload) < length
                or zlib.crc32(payload, zlib.crc32(data[pos + 4 : pos + 12])) != crc
            ):
                log.warning("spool %s: dropping a torn record at offset %d", path.name, pos)
                break
            out.append((seq, payload))
            pos = start + length
        return out

    def _scan_rejected(self) -> tuple[int, int]:
        """(bytes, records) of rejected.log, reading only the record headers."""
        path = self.dir / REJECTED
        count = 0
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                pos = 0
                while pos + _HEAD.size <= size:
                    f.seek(pos)
                    length = _HEAD.unpack(f.read(_HEAD.size))[0]
                    pos += _HEAD.size + length
                    count += pos <= size
        except FileNotFoundError:
            return 0, 0
        return size, count

    def _fits_in_memory(self, payload: bytes) -> bool:
        # The first record always fits: a single huge event must not wait on disk forever.
        return not self._pending or (
            len(self._pending) < self.memory_records
            and self._pending_bytes + len(payload) <= self.memory_bytes
        )

    def _remember(self, seq: int, payload: bytes) -> None:
        if not self._on_disk_only and self._fits_in_memory(payload):
            self._pending.append((seq, payload))
            self._pending_bytes += len(payload)
        else:
            self._on_disk_only = True

    # -- writing -------------------------------------------------------------------------------

    def append(self, payloads: list[bytes], *, sync: bool = True) -> int:
        """Persist payloads with new sequence numbers; returns the last one assigned. With
        ``sync`` False they are written but not fsync'd (see :meth:`unsynced`).

        If the disk refuses (full, read-only), the records are still kept in memory so that a
        healthy control plane receives them; they are lost only if the process also dies. Memory
        is bounded: when the in-memory window is full (or older records wait on disk only, which
        must be sent first), a record the disk refused is dropped and counted in ``dropped``.
        """
        if not payloads:
            return self.last_seq
        first = self.last_seq + 1
        self.last_seq += len(payloads)
        try:
            self._write(first, payloads, sync)
        except OSError as exc:
            self._close_segment()  # the next write starts a new segment
            self._keep_unwritten(first, payloads, exc)
            return self.last_seq
        if self.write_failing:
            self.write_failing = False
            log.warning("spool: writing usage events to disk again")
        for seq, payload in enumerate(payloads, first):
            self._remember(seq, payload)
        return self.last_seq

    def _write(self, first: int, payloads: list[bytes], sync: bool) -> None:
        """Write records ``first``… to segments of about SEGMENT_BYTES each, fsync'd if
        ``sync``, else noted for :meth:`unsynced`."""
        seq = first
        i = 0
        while i < len(payloads):
            created = self._segment is None or self._segment_size >= SEGMENT_BYTES
            if created:
                self._close_segment()
                self._segment = self.dir / f"seg-{seq:020d}.log"
                self._segment_size = 0
            segment = self._segment
            assert segment is not None
            buf = bytearray()
            while i < len(payloads) and (not buf or self._segment_size + len(buf) < SEGMENT_BYTES):
                buf += _record(seq, payloads[i])
                seq += 1
                i += 1
            if self._file is None:
                self._file = FileIO(open_append(segment), "ab", closefd=True)
            written = self._file.write(buf)  # one write(2): unbuffered
            if written != len(buf):  # a torn record: dropped on reopen (its CRC), never read
                raise OSError(f"short write to {segment.name}: {written} of {len(buf)} bytes")
            if sync:
                os.fsync(self._file.fileno())
            if not sync:
                self._unsynced.add(segment)
                self._dir_unsynced |= created
            elif created:  # the new file's directory entry must survive a crash too
                fsync_dir(self.dir)
            self._segment_size += len(buf)
            self._segment_last[segment] = seq - 1

    def _close_segment(self) -> None:
        """Stop appending to the current segment (the next write creates a new one)."""
        self._segment = None
        if self._file is not None:
            with contextlib.suppress(OSError):  # nothing is buffered: nothing to lose
                self._file.close()
            self._file = None

    def _keep_unwritten(self, first: int, payloads: list[bytes], exc: OSError) -> None:
        if not self.write_failing:  # once per episode, not once per batch
            self.write_failing = True
            log.error("spool: cannot write usage events to disk (%s); keeping them in memory", exc)
        lost = 0
        for seq, payload in enumerate(payloads, first):
            if self._on_disk_only or not self._fits_in_memory(payload):
                lost += 1
                continue
            self._pending.append((seq, payload))
            self._pending_bytes += len(payload)
            self._unwritten.add(seq)
        if lost:
            self.dropped += lost
            log.error(
                "spool: disk refuses writes and %d events already wait in memory: "
                "dropped %d usage events (%d so far)",
                len(self._pending),
                lost,
                self.dropped,
            )

    def pending(self, limit: int, max_bytes: int | None = None) -> list[tuple[int, bytes]]:
        """Up to ``limit`` unacknowledged records, oldest first; with ``max_bytes``, only as many
        as fit in that many bytes of a ``ReportUsage`` request (but always at least one)."""
        if not self._pending and self._on_disk_only:
            self._reload()
        out: list[tuple[int, bytes]] = []
        size = 0
        for record in self._pending:
            if len(out) >= limit:
                break
            size += len(record[1]) + RECORD_OVERHEAD
            if max_bytes is not None and out and size > max_bytes:
                break
            out.append(record)
        return out

    def _reload(self) -> None:
        self._on_disk_only = False
        for path in self._segments():
            if self._segment_last.get(path, self.last_seq) <= self.acked:
                continue
            for seq, payload in self._read_segment(path):
                if seq > self.acked:
                    self._remember(seq, payload)

    def ack(self, seq: int) -> None:
        """The control plane made everything up to ``seq`` durable."""
        if seq <= self.acked:
            return
        self.acked = seq
        while self._pending and self._pending[0][0] <= seq:
            done, payload = self._pending.popleft()
            self._pending_bytes -= len(payload)
            self._unwritten.discard(done)
        try:
            write_atomic(self.dir / "acked", str(seq).encode())
        except OSError as exc:
            log.error("spool: cannot record the acknowledgement (%s)", exc)
        self._drop_acked_segments()

    def _drop_acked_segments(self) -> None:
        for path, last in list(self._segment_last.items()):
            if last <= self.acked:
                if path == self._segment:  # fully delivered: start afresh on the next append
                    self._close_segment()
                path.unlink(missing_ok=True)
                del self._segment_last[path]

    def reject(self, seq: int, payload: bytes) -> None:
        """Set aside an event the control plane refused for good: appended to ``rejected.log``
        (same record format; never replayed, never deleted: an operator inspects it) and
        counted in ``quarantined``. Past REJECTED_BYTES the event is counted but not kept."""
        self.quarantined += 1
        record = _record(seq, payload)
        if self._rejected_bytes + len(record) > REJECTED_BYTES:
            log.error(
                "spool: %s is full (%d bytes); usage event #%d is counted but not kept",
                REJECTED,
                self._rejected_bytes,
                seq,
            )
            return
        try:
            with os.fdopen(open_append(self.dir / REJECTED), "ab") as f:
                f.write(record)
                f.flush()
                os.fsync(f.fileno())
            self._rejected_bytes += len(record)
        except OSError as exc:
            log.error("spool: cannot keep usage event #%d in %s (%s)", seq, REJECTED, exc)

    def unsynced(self) -> tuple[list[Path], Path | None]:
        """The segments written with ``sync=False`` since the last call, and the directory if
        one was created: what :func:`sync_files` must fsync to make those records survive a
        power loss too."""
        files = sorted(self._unsynced)
        self._unsynced.clear()
        directory = self.dir if self._dir_unsynced else None
        self._dir_unsynced = False
        return files, directory

    @property
    def backlog(self) -> int:
        return self.last_seq - self.acked

    @property
    def memory_only(self) -> int:
        """Unacknowledged events the disk refused: held only in this process's memory."""
        return len(self._unwritten)


def _record(seq: int, payload: bytes) -> bytes:
    seq_bytes = struct.pack(">Q", seq)
    return _HEAD.pack(len(payload), seq, zlib.crc32(payload, zlib.crc32(seq_bytes))) + payload


def sync_files(files: list[Path], directory: Path | None) -> None:
    """fsync what :meth:`Spool.unsynced` returned. Reads no spool state: it may run in one thread
    while the spool appends in another. A segment deleted meanwhile was acknowledged: nothing
    in it needs keeping. Raises OSError if the disk refuses."""
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if directory is not None:
        fsync_dir(directory)
