"""The usage spool: nothing acknowledged is lost across restarts, nothing acked is kept."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import dataplane.sync.spool
from dataplane.private import open_append
from dataplane.process.server import DataPlane, Settings
from dataplane.sync.disk_cache import save_cached
from dataplane.sync.spool import Spool, sync_files
from gwapi.v1 import discovery_pb2


def test_append_pending_ack_and_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool.append([b"a", b"b", b"c"]) == 3
    assert spool.pending(10) == [(1, b"a"), (2, b"b"), (3, b"c")]
    spool.ack(2)
    assert spool.pending(10) == [(3, b"c")]
    # A restart finds exactly the unacknowledged record, and numbering continues after it.
    again = Spool(tmp_path)
    assert again.pending(10) == [(3, b"c")]
    assert again.append([b"d"]) == 4
    again.ack(4)
    assert again.pending(10) == [] and again.backlog == 0
    assert Spool(tmp_path).pending(10) == []
    assert list(tmp_path.glob("seg-*.log")) == []  # fully delivered segments are deleted


def test_torn_tail_record_is_dropped_not_fatal(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([b"first", b"second"])
    (segment,) = tmp_path.glob("seg-*.log")
    data = segment.read_bytes()
    segment.write_bytes(data[:-3])  # a crash in the middle of writing the last record
    assert Spool(tmp_path).pending(10) == [(1, b"first")]


def test_memory_window_reloads_from_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path, memory_records=3)
    spool.append([str(i).encode() for i in range(10)])
    assert [s for s, _ in spool.pending(100)] == [1, 2, 3]
    spool.ack(3)
    assert [s for s, _ in spool.pending(100)] == [4, 5, 6]
    spool.ack(9)
    assert spool.pending(100) == [(10, b"9")]


def test_disk_failure_keeps_events_in_memory(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    # Root ignores permission bits, so make the segment path unwritable another way.
    (tmp_path / f"seg-{1:020d}.log").mkdir()
    spool.append([b"x"])
    assert spool.pending(10) == [(1, b"x")]


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what most shells set: new files 0644, directories 0755
    yield
    os.umask(old)


def test_spool_directory_and_files_are_private(tmp_path: Path, loose_umask: None) -> None:
    """P2 finding 8: with full body logging the spool holds prompts."""
    directory = tmp_path / "state" / "spool"
    spool = Spool(directory)
    spool.append([b"a", b"b"])
    spool.ack(1)
    spool.reject(2, b"b")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["acked", "rejected.log", f"seg-{1:020d}.log"]
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_files_left_wider_by_an_older_version_are_made_private(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([b"a"])
    os.chmod(tmp_path, 0o755)
    for path in tmp_path.iterdir():
        os.chmod(path, 0o644)
    Spool(tmp_path)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in tmp_path.iterdir())


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths ``os.fsync`` is called on from now, in order (each call still syncs)."""
    paths: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return paths


def test_a_new_segment_is_made_durable_with_its_directory(
    tmp_path: Path, synced: list[str]
) -> None:
    spool = Spool(tmp_path)
    spool.append([b"a"])
    segment = str(tmp_path / f"seg-{1:020d}.log")
    assert synced == [segment, str(tmp_path)]  # the file, then the directory entry
    synced.clear()
    spool.append([b"b"])  # same segment: no new directory entry to sync
    assert synced == [segment]


def test_an_unsynced_append_is_written_now_and_fsynced_by_sync_files(
    tmp_path: Path, synced: list[str]
) -> None:
    """The reporter writes at once (a process crash loses nothing written) and fsyncs apart."""
    spool = Spool(tmp_path)
    spool.append([b"a"], sync=False)
    spool.append([b"b"], sync=False)
    assert synced == []
    assert [p for _, p in Spool(tmp_path).pending(10)] == [b"a", b"b"]  # written
    segment = tmp_path / f"seg-{1:020d}.log"
    todo = spool.unsynced()
    assert todo == ([segment], tmp_path) and spool.unsynced() == ([], None)
    sync_files(*todo)
    assert synced == [str(segment), str(tmp_path)]
    spool.ack(2)  # the segment is deleted: an fsync handed out before that skips it
    synced.clear()
    sync_files([segment], None)
    assert synced == []


def test_memory_is_bounded_in_bytes_and_order_is_kept(tmp_path: Path) -> None:
    """Full body logging: 50,000 events of megabytes must not all wait in memory."""
    spool = Spool(tmp_path, memory_bytes=1000)
    payloads = [bytes([65 + i]) * 300 for i in range(10)]
    spool.append(payloads)
    assert [s for s, _ in spool.pending(100)] == [1, 2, 3]  # 900 bytes of 1000
    spool.ack(3)
    assert [s for s, _ in spool.pending(100)] == [4, 5, 6]  # read back from disk, in order
    spool.ack(9)
    assert spool.pending(100) == [(10, payloads[9])]
    big = Spool(tmp_path / "big", memory_bytes=10)
    big.append([b"x" * 100])  # one event larger than the window still gets through
    assert big.pending(10) == [(1, b"x" * 100)]


def test_pending_is_bounded_in_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([b"x" * 100] * 10)
    assert len(spool.pending(100, max_bytes=350)) == 3  # 3 × (100 + overhead) fit
    assert len(spool.pending(100, max_bytes=10)) == 1  # always at least one
    assert len(spool.pending(2, max_bytes=10_000)) == 2


def test_big_appends_are_split_into_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dataplane.sync.spool, "SEGMENT_BYTES", 1000)
    spool = Spool(tmp_path)
    spool.append([b"y" * 300] * 10)
    assert len(list(tmp_path.glob("seg-*.log"))) >= 3
    assert [s for s, _ in Spool(tmp_path).pending(100)] == list(range(1, 11))
    spool.ack(4)  # segments holding only acknowledged records are deleted
    assert all(int(p.name[4:-4]) >= 4 for p in tmp_path.glob("seg-*.log")), (
        "a fully acknowledged segment was kept"
    )


def test_a_segment_is_opened_once_for_many_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usage reporter appends a few events every few milliseconds from a worker thread:
    each append is one write to the segment held open, not an open and a close (each a round
    trip for the GIL). Delivered and deleted, the segment is let go: the next append opens a
    new one."""
    opened: list[Path] = []

    def counting_open(path: Path) -> int:
        opened.append(path)
        return open_append(path)

    monkeypatch.setattr(dataplane.sync.spool, "open_append", counting_open)
    spool = Spool(tmp_path)
    for i in range(50):
        spool.append([f"e{i}".encode()], sync=False)
    assert len(opened) == 1
    assert [p for _, p in Spool(tmp_path).pending(100)] == [f"e{i}".encode() for i in range(50)]
    spool.ack(50)
    assert list(tmp_path.glob("seg-*.log")) == []
    spool.append([b"after"], sync=False)
    assert len(opened) == 2 and opened[1] != opened[0] and opened[1].exists()
    assert Spool(tmp_path).pending(10) == [(51, b"after")]


def test_set_aside_events_are_counted_across_restarts(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([b"a", b"b", b"c"])
    spool.reject(2, b"b")
    spool.reject(3, b"c")
    assert spool.quarantined == 2
    assert Spool(tmp_path).quarantined == 2  # counted from rejected.log itself


def test_the_whole_state_directory_is_private(tmp_path: Path, loose_umask: None) -> None:
    """Snapshot cache, node id and spool: 0700 directories, 0600 files (P2 finding 8)."""
    state = tmp_path / "state"
    dp = DataPlane(Settings(state_dir=state))
    save_cached(state, discovery_pb2.Snapshot(version="v1"))
    dp.spool.append([b"event"])
    for path in [state, *state.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert {p.name for p in state.iterdir()} == {"node-id", "snapshot.pb", "spool"}
