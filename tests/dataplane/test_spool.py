"""The usage spool: nothing acknowledged is lost across restarts, nothing acked is kept."""

from __future__ import annotations

from pathlib import Path

from dataplane.spool import Spool


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
