"""The arithmetic of :mod:`bench.instructions` (the benchmark itself runs valgrind and is not
run here)."""

from __future__ import annotations

from bench.instructions import Count, per_request


def test_per_request_cancels_what_both_processes_share() -> None:
    small = Count(100, 4_000_000_000 + 100 * 5_000_000, 10.0, 100.0, "s")
    big = Count(400, 4_000_000_000 + 400 * 5_000_000, 40.0, 100.0, "b")
    assert per_request(small, big) == 5_000_000
