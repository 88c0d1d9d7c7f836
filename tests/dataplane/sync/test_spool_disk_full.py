"""The spool when the disk refuses writes: events wait in memory, bounded and counted, in order."""

from __future__ import annotations

import errno
from io import FileIO
from pathlib import Path

import pytest

import dataplane.sync.spool
from dataplane.private import open_append
from dataplane.sync.spool import Spool


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Appends fail with ENOSPC while the returned flag is set: opening a new segment, and
    writing to the one the spool holds open."""
    state = [True]

    def open_(path: Path) -> int:
        if state[0]:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return open_append(path)

    class FullFile(FileIO):
        def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
            if state[0]:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

    monkeypatch.setattr(dataplane.sync.spool, "open_append", open_)
    monkeypatch.setattr(dataplane.sync.spool, "FileIO", FullFile)
    return state


def test_refused_writes_wait_in_memory_and_are_delivered(
    tmp_path: Path, full_disk: list[bool]
) -> None:
    spool = Spool(tmp_path)
    spool.append([b"a", b"b"])
    spool.append([b"c"])
    assert spool.write_failing and spool.memory_only == 3 and spool.dropped == 0
    assert spool.pending(10) == [(1, b"a"), (2, b"b"), (3, b"c")]
    full_disk[0] = False  # space again: new events go to disk, old ones are still delivered
    spool.append([b"d"])
    assert not spool.write_failing
    assert [s for s, _ in spool.pending(10)] == [1, 2, 3, 4]
    spool.ack(4)
    assert spool.memory_only == 0 and spool.backlog == 0


def test_memory_is_bounded_and_losses_are_counted(
    tmp_path: Path, full_disk: list[bool], caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path, memory_records=3)
    spool.append([b"1", b"2"])
    spool.append([b"3", b"4", b"5"])
    assert spool.memory_only == 3 and spool.dropped == 2
    assert [s for s, _ in spool.pending(10)] == [1, 2, 3]
    assert sum("cannot write usage events to disk" in m for m in caplog.messages) == 1
    assert any("dropped 2 usage events" in m for m in caplog.messages)


def test_records_waiting_on_disk_keep_their_order(tmp_path: Path, full_disk: list[bool]) -> None:
    full_disk[0] = False
    spool = Spool(tmp_path, memory_records=2)
    spool.append([b"1", b"2", b"3"])  # 3 waits on disk only
    full_disk[0] = True
    spool.append([b"4"])  # cannot jump ahead of 3: dropped rather than delivered out of order
    assert spool.dropped == 1 and spool.memory_only == 0
    spool.ack(2)
    assert spool.pending(10) == [(3, b"3")]
