"""A durable, append-only spool of usage events awaiting the control plane's acknowledgement.

Layout under ``DIR``: segment files ``seg-<first seq>.log`` and ``acked`` (the highest sequence
the control plane has made durable, written atomically). A record is
``length u32 | seq u64 | crc32 u32 | payload`` (big-endian), the CRC covering seq and payload, so
a record torn by a crash is detected and dropped on reopen instead of poisoning the file.

Contract: :meth:`append` assigns consecutive sequence numbers and writes the records (fsync'd)
before returning; :meth:`pending` returns unacknowledged records oldest first; :meth:`ack`
forgets records up to a sequence and deletes segments that hold nothing newer. Events survive a
data-plane restart; an event is only forgotten after the control plane acknowledged it.
Blocking file I/O: call it from a worker thread, never from the event loop's request path.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections import deque
from pathlib import Path

log = logging.getLogger("tollgate.spool")

_HEAD = struct.Struct(">IQI")
SEGMENT_BYTES = 8 * 1024 * 1024
MEMORY_RECORDS = 50_000


class Spool:
    def __init__(self, directory: Path, memory_records: int = MEMORY_RECORDS) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.memory_records = memory_records
        self.acked = self._read_acked()
        self.last_seq = self.acked
        self._pending: deque[tuple[int, bytes]] = deque()
        self._on_disk_only = False  # records beyond the in-memory window wait on disk
        self._segment: Path | None = None
        self._segment_size = 0
        self._segment_last: dict[Path, int] = {}
        # Disk refusing writes (full, read-only): events wait in memory only, up to
        # memory_records; past that they are dropped and counted (see append).
        self.write_failing = False
        self.dropped = 0
        self._unwritten: set[int] = set()
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

    def _remember(self, seq: int, payload: bytes) -> None:
        if len(self._pending) < self.memory_records and not self._on_disk_only:
            self._pending.append((seq, payload))
        else:
            self._on_disk_only = True

    # -- writing -------------------------------------------------------------------------------

    def append(self, payloads: list[bytes]) -> int:
        """Persist payloads with new sequence numbers; returns the last one assigned.

        If the disk refuses (full, read-only), the records are still kept in memory so that a
        healthy control plane receives them; they are lost only if the process also dies. Memory
        is bounded: when the in-memory window is full (or older records wait on disk only, which
        must be sent first), a record the disk refused is dropped and counted in ``dropped``.
        """
        if not payloads:
            return self.last_seq
        buf = bytearray()
        first = self.last_seq + 1
        for payload in payloads:
            self.last_seq += 1
            seq_bytes = struct.pack(">Q", self.last_seq)
            crc = zlib.crc32(payload, zlib.crc32(seq_bytes))
            buf += _HEAD.pack(len(payload), self.last_seq, crc)
            buf += payload
        try:
            if self._segment is None or self._segment_size >= SEGMENT_BYTES:
                self._segment = self.dir / f"seg-{first:020d}.log"
                self._segment_size = 0
            with open(self._segment, "ab") as f:
                f.write(buf)
                f.flush()
                os.fsync(f.fileno())
            self._segment_size += len(buf)
            self._segment_last[self._segment] = self.last_seq
        except OSError as exc:
            self._segment = None
            self._keep_unwritten(first, payloads, exc)
            return self.last_seq
        if self.write_failing:
            self.write_failing = False
            log.warning("spool: writing usage events to disk again")
        for seq, payload in enumerate(payloads, first):
            self._remember(seq, payload)
        return self.last_seq

    def _keep_unwritten(self, first: int, payloads: list[bytes], exc: OSError) -> None:
        if not self.write_failing:  # once per episode, not once per batch
            self.write_failing = True
            log.error("spool: cannot write usage events to disk (%s); keeping them in memory", exc)
        lost = 0
        for seq, payload in enumerate(payloads, first):
            if self._on_disk_only or len(self._pending) >= self.memory_records:
                lost += 1
                continue
            self._pending.append((seq, payload))
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

    def pending(self, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` unacknowledged records, oldest first."""
        if not self._pending and self._on_disk_only:
            self._reload()
        return [self._pending[i] for i in range(min(limit, len(self._pending)))]

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
            self._unwritten.discard(self._pending.popleft()[0])
        try:
            tmp = self.dir / "acked.tmp"
            tmp.write_text(str(seq))
            os.replace(tmp, self.dir / "acked")
        except OSError as exc:
            log.error("spool: cannot record the acknowledgement (%s)", exc)
        self._drop_acked_segments()

    def _drop_acked_segments(self) -> None:
        for path, last in list(self._segment_last.items()):
            if last <= self.acked:
                if path == self._segment:  # fully delivered: start afresh on the next append
                    self._segment = None
                path.unlink(missing_ok=True)
                del self._segment_last[path]

    def reject(self, seq: int, payload: bytes) -> None:
        """Keep an event the control plane refused, for an operator to inspect (never replayed)."""
        seq_bytes = struct.pack(">Q", seq)
        record = _HEAD.pack(len(payload), seq, zlib.crc32(payload, zlib.crc32(seq_bytes))) + payload
        with open(self.dir / "rejected.log", "ab") as f:
            f.write(record)

    @property
    def backlog(self) -> int:
        return self.last_seq - self.acked

    @property
    def memory_only(self) -> int:
        """Unacknowledged events the disk refused: held only in this process's memory."""
        return len(self._unwritten)
