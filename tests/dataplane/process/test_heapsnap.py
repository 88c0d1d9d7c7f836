"""Heap snapshots on SIGUSR2 (TOLLGATE_TRACEMALLOC): a loadable snapshot when asked, nothing when
not."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tracemalloc
from pathlib import Path

import pytest

from dataplane.process.heapsnap import (
    SNAPSHOT_SIGNAL,
    TRACEMALLOC_DIR_ENV,
    TRACEMALLOC_ENV,
    HeapSnapshots,
)
from dataplane.process.server import DataPlane, Settings


@pytest.fixture(autouse=True)
def _not_already_tracing() -> None:
    # A run under PYTHONTRACEMALLOC would make "install starts tracing" vacuous.
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is already on in this interpreter")


def test_unset_or_empty_means_off(tmp_path: Path) -> None:
    assert HeapSnapshots.from_env({}, tmp_path) is None
    assert HeapSnapshots.from_env({TRACEMALLOC_ENV: " "}, tmp_path) is None


@pytest.mark.parametrize("value", ["0", "101", "-1", "ten", "5:/tmp"])
def test_a_bad_frame_count_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError, match="number of frames from 1 to 100"):
        HeapSnapshots.from_env({TRACEMALLOC_ENV: value}, tmp_path)


def test_the_directory_defaults_to_the_state_dir(tmp_path: Path) -> None:
    hook = HeapSnapshots.from_env({TRACEMALLOC_ENV: "3"}, tmp_path / "state")
    assert hook is not None and (hook.frames, hook.directory) == (3, tmp_path / "state")
    told = HeapSnapshots.from_env(
        {TRACEMALLOC_ENV: "1", TRACEMALLOC_DIR_ENV: str(tmp_path / "snaps")}, tmp_path
    )
    assert told is not None and told.directory == tmp_path / "snaps"


async def test_sigusr2_writes_a_loadable_snapshot_and_uninstall_restores_everything(
    tmp_path: Path,
) -> None:
    hook = HeapSnapshots.from_env(
        {TRACEMALLOC_ENV: "2", TRACEMALLOC_DIR_ENV: str(tmp_path / "snaps")}, tmp_path
    )
    assert hook is not None
    loop = asyncio.get_running_loop()
    hook.install(loop)
    try:
        assert tracemalloc.is_tracing() and tracemalloc.get_traceback_limit() == 2
        kept = [bytearray(4096) for _ in range(64)]  # traced: allocated after install
        path = tmp_path / "snaps" / f"tracemalloc-{os.getpid()}-1.pickle"
        os.kill(os.getpid(), SNAPSHOT_SIGNAL)
        async with asyncio.timeout(10):
            while not path.with_suffix(".json").exists():  # written last
                await asyncio.sleep(0.01)
    finally:
        hook.uninstall(loop)
    assert not tracemalloc.is_tracing()
    snapshot = tracemalloc.Snapshot.load(str(path))
    here = [t for t in snapshot.traces if t.traceback[0].filename == __file__]
    assert sum(t.size for t in here) >= 64 * 4096
    counters = json.loads(path.with_suffix(".json").read_text())
    assert counters["frames"] == 2 and counters["traced_bytes"] >= 64 * 4096
    assert len(kept) == 64
    # Uninstalled: SIGUSR2 is back to its default action (it would end the process).
    assert signal.getsignal(SNAPSHOT_SIGNAL) == signal.SIG_DFL


async def test_a_running_data_plane_without_the_variable_traces_nothing(
    dataplane: DataPlane,
) -> None:
    assert dataplane.port and dataplane.heap is None
    assert not tracemalloc.is_tracing()
    assert signal.getsignal(SNAPSHOT_SIGNAL) == signal.SIG_DFL


def test_a_data_plane_with_the_variable_snapshots_to_its_state_dir(tmp_path: Path) -> None:
    dp = DataPlane(Settings(state_dir=tmp_path / "dp", env={TRACEMALLOC_ENV: "1"}))
    assert dp.heap is not None and dp.heap.directory == tmp_path / "dp"
    with pytest.raises(ValueError, match=TRACEMALLOC_ENV):
        DataPlane(Settings(state_dir=tmp_path / "dp2", env={TRACEMALLOC_ENV: "lots"}))
