"""``--workers N`` without processes: how many workers and why, the refusal without Redis, which
spools a worker adopts, the gathered ``/metrics`` text, the settings a worker receives, and an
adopted spool replayed by a data plane (the multi-process behaviour is in tests/e2e/test_workers.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from dataplane.process import server
from dataplane.process.metrics_peers import label_worker, merge
from dataplane.process.server import DataPlane, Settings
from dataplane.process.settings import settings_from_json, settings_to_json
from dataplane.process.workerrole import WorkerRole
from dataplane.process.workers import CRASH_LOOP, Supervisor, decide_workers, orphan_spools
from dataplane.sync.disk_cache import SNAPSHOT_FILE, save_cached
from dataplane.sync.spool import Spool
from gwcommon.prometheus import Counter, Gauge, Histogram, Registry
from tests.dataplane.conftest import build_snapshot
from tests.dataplane.sync.test_reporter import ControlPlane, record


def test_default_is_every_core_with_redis_and_one_without() -> None:
    assert decide_workers(None, redis=True, ncores=4)[0] == 4
    assert decide_workers(3, redis=True, ncores=4)[0] == 3
    n, why = decide_workers(None, redis=False, ncores=4)
    assert n == 1
    assert "without --redis" in why and "cannot be shared between processes" in why
    assert "pass --redis redis://… to run one worker per core (4 here)" in why
    assert decide_workers(1, redis=False, ncores=4)[0] == 1


def test_several_workers_without_redis_are_refused() -> None:
    with pytest.raises(ValueError) as info:
        decide_workers(2, redis=False, ncores=2)
    assert "--workers 2 needs --redis" in str(info.value)
    assert "each allow the whole limit" in str(info.value)
    with pytest.raises(ValueError, match="at least 1"):
        decide_workers(0, redis=True, ncores=2)


@pytest.fixture
def started(served: list[Any], monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    monkeypatch.setenv("TOLLGATE_DATAPLANE_TOKEN", "dp-token")
    monkeypatch.delenv("TOLLGATE_REDIS", raising=False)
    monkeypatch.delenv("TOLLGATE_WORKERS", raising=False)
    return served


def test_serve_refuses_workers_without_redis_and_says_why_it_runs_one(
    started: list[Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(SystemExit) as info:
        server.main(["--state-dir", str(tmp_path / "dp"), "--workers", "2"])
    assert info.value.code == 2
    assert "--workers 2 needs --redis" in capsys.readouterr().err
    assert started == []
    with caplog.at_level(logging.INFO, logger="tollgate.dataplane"):
        server.main(["--state-dir", str(tmp_path / "dp")])
    assert len(started) == 1 and started[0].worker is None
    assert "running 1 worker: without --redis" in caplog.text


def test_orphaned_spools_are_adopted(tmp_path: Path) -> None:
    for d in ("spool", "workers/0/spool", "workers/1/spool", "workers/2/spool", "workers/5/spool"):
        (tmp_path / d).mkdir(parents=True)
    # Two workers: the single-process spool goes to worker 0, workers 2 and 5 to 0 and 1.
    assert orphan_spools(tmp_path, 2) == {
        0: [tmp_path / "spool", tmp_path / "workers/2/spool"],
        1: [tmp_path / "workers/5/spool"],
    }
    # One process (no supervisor): it owns STATE/spool and replays every worker's.
    assert orphan_spools(tmp_path, 1) == {
        0: [tmp_path / f"workers/{i}/spool" for i in (0, 1, 2, 5)]
    }
    assert orphan_spools(tmp_path / "nothing", 3) == {0: [], 1: [], 2: []}


def registry() -> Registry:
    r = Registry()
    c = r.add(Counter("t_requests_total", "Requests.", ("workspace",)))
    c.inc(('a "b" {c}',), 2)
    h = r.add(Histogram("t_seconds", "Latency.", ("ws",), (0.1, 1.0)))
    h.observe(("x",), 0.5)
    r.add(Gauge("t_up", "Up.", (), lambda: [((), 1.0)]))
    return r


def test_merge_labels_every_sample_with_its_worker() -> None:
    text = registry().render()
    families = label_worker(text, 1)
    assert list(families) == ["t_requests_total", "t_seconds", "t_up"]
    assert families["t_requests_total"][1] == [
        't_requests_total{worker="1",workspace="a \\"b\\" {c}"} 2'
    ]
    assert 't_seconds_bucket{worker="1",ws="x",le="1"} 1' in families["t_seconds"][1]
    assert families["t_up"][1] == ['t_up{worker="1"} 1']
    merged = merge({0: text, 1: text}, 3).decode()
    assert merged.count("# HELP t_requests_total") == 1
    assert merged.count("# TYPE t_seconds histogram") == 1
    assert 't_up{worker="0"} 1\nt_up{worker="1"} 1' in merged
    assert 'tollgate_worker_up{worker="2"} 0' in merged  # a worker that did not answer shows


def test_a_workers_settings_travel_whole(tmp_path: Path) -> None:
    role = WorkerRole(index=1, count=2, run_id="abc", base_node_id="dp-x", listen_fd=7)
    s = Settings(
        token="dp-secret",
        state_dir=tmp_path / "w1",
        redis_url="redis://127.0.0.1:6379/0",
        otlp_headers={"x-api-key": "k"},
        worker=role,
        adopt_spools=(tmp_path / "spool",),
    )
    back, level = settings_from_json(settings_to_json(s, "DEBUG"))
    assert back == s and level == "DEBUG"
    assert back.worker is not None and back.worker.node_id == "dp-x-w1"


async def test_an_adopted_spool_is_replayed(tmp_path: Path) -> None:
    orphan = Spool(tmp_path / "workers" / "3" / "spool")
    orphan.append([record(i).to_event().SerializeToString() for i in range(5)])
    dp = DataPlane(
        Settings(
            listen="127.0.0.1:0",
            control_plane="127.0.0.1:1",
            token="dp-token",
            state_dir=tmp_path,
            adopt_spools=(tmp_path / "workers" / "3" / "spool",),
        )
    )
    cp = ControlPlane()
    dp.adopted[0].send_batch = cp.send
    assert dp.adopted[0].backlog == 5
    await dp.start()
    try:
        deadline = asyncio.get_running_loop().time() + 5
        while dp.adopted[0].backlog and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
    finally:
        await dp.stop()
    assert cp.delivered == [f"r{i}" for i in range(5)]
    assert Spool(tmp_path / "workers" / "3" / "spool").backlog == 0


def stand_in(code: str) -> list[str]:
    """A worker stand-in: reads its settings line like dataplane.process.worker, then runs ``code``."""
    return ["-c", f"import sys, time\nsys.stdin.readline()\n{code}"]


async def supervised(tmp_path: Path, code: str) -> tuple[Supervisor, int]:
    sup = Supervisor(Settings(listen="127.0.0.1:0", state_dir=tmp_path, token="t"), 2, "reuseport")
    sup.worker_argv = stand_in(code)
    sup.first_delay = 0.01
    return sup, await asyncio.wait_for(sup.run(), 30)


async def test_a_worker_that_cannot_start_stops_the_rest_with_exit_1(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tollgate.workers"):
        _, code = await supervised(tmp_path, "sys.exit(3)")
    assert code == 1
    assert "data plane not started: worker 0 exited with code 3 before it was ready" in caplog.text


async def test_a_crash_loop_is_reported_backed_off_and_ends_in_exit_1(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Ready at once, then dead: every worker dies within HEALTHY_AFTER_S of every start.
    with caplog.at_level(logging.INFO, logger="tollgate.workers"):
        sup, code = await supervised(tmp_path, "print('ready', flush=True)\nsys.exit(5)")
    assert code == 1
    assert all(slot.quick_deaths >= CRASH_LOOP for slot in sup.slots)
    assert "worker 0 is crash-looping: it died 5 times in a row" in caplog.text
    assert "every worker is crash-looping: giving up" in caplog.text
    # Backed off, not spun: each slot was restarted only until the loop was declared.
    restarts = caplog.text.count("restarted (pid")
    assert restarts <= 2 * CRASH_LOOP, restarts


async def test_one_dead_worker_is_restarted_and_sigterm_stops_all(tmp_path: Path) -> None:
    # Worker 0 of the first generation exits once; everything else runs until told to stop.
    marker = tmp_path / "died-once"
    code = (
        "import os, pathlib, signal\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "print('ready', flush=True)\n"
        f"m = pathlib.Path({str(marker)!r})\n"
        "if not m.exists():\n"
        "    try:\n"
        "        fd = os.open(m, os.O_CREAT | os.O_EXCL)\n"
        "        sys.exit(4)\n"
        "    except FileExistsError:\n"
        "        pass\n"
        "while True: time.sleep(1)\n"
    )
    sup = Supervisor(Settings(listen="127.0.0.1:0", state_dir=tmp_path, token="t"), 2, "reuseport")
    sup.worker_argv = stand_in(code)
    sup.first_delay = 0.01
    run = asyncio.create_task(sup.run())
    deadline = asyncio.get_running_loop().time() + 20
    restarted: list[int] = []
    while asyncio.get_running_loop().time() < deadline and not restarted:
        # A replacement is running and ready (the dead one's returncode is set until then).
        restarted = [
            s.index
            for s in sup.slots
            if s.quick_deaths == 1
            and s.proc is not None
            and s.proc.returncode is None
            and s.ready.is_set()
        ]
        await asyncio.sleep(0.02)
    assert len(restarted) == 1, "no worker was restarted"
    sup.stopping.set()
    assert await asyncio.wait_for(run, 20) == 0
    assert [s.proc.returncode for s in sup.slots if s.proc is not None] == [0, 0]


def test_workers_from_the_environment_and_a_bad_value(
    started: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TOLLGATE_WORKERS", "3")
    with pytest.raises(SystemExit):  # 3 workers, no Redis: refused like the flag
        server.main(["--state-dir", str(tmp_path / "dp")])
    assert "--workers 3 needs --redis" in capsys.readouterr().err
    monkeypatch.setenv("TOLLGATE_WORKERS", "many")
    with pytest.raises(SystemExit):
        server.main(["--state-dir", str(tmp_path / "dp")])
    assert "--workers: invalid int value: 'many'" in capsys.readouterr().err


async def test_a_new_worker_serves_the_newest_cached_snapshot_of_the_data_plane(
    tmp_path: Path,
) -> None:
    """A worker with an empty directory (N raised while the control plane is down) starts from
    the data plane's or a sibling worker's cache, the newest first."""
    old, new = build_snapshot("http://127.0.0.1:1"), build_snapshot("http://127.0.0.1:2")
    new.version = "newer"
    save_cached(tmp_path, old)  # a one-process run's cache
    save_cached(tmp_path / "workers" / "0", new)
    stamp = (tmp_path / "workers" / "0" / SNAPSHOT_FILE).stat().st_mtime + 5
    os.utime(tmp_path / "workers" / "0" / SNAPSHOT_FILE, (stamp, stamp))
    role = WorkerRole(index=1, count=2, run_id=secrets.token_hex(4), base_node_id="dp-t")
    dp = DataPlane(
        Settings(
            listen="127.0.0.1:0",
            control_plane="127.0.0.1:1",
            token="dp-token",
            state_dir=tmp_path / "workers" / "1",
            worker=role,
        )
    )
    await dp.start()
    try:
        assert dp.holder.current is not None and dp.holder.current.version == "newer"
        assert dp.node_id == "dp-t-w1"
    finally:
        await dp.stop()
