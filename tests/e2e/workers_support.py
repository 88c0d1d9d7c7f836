"""``gwctl dataplane serve --workers N`` as a real process tree for the e2e tests.

:class:`WorkersProcess` starts the command an operator runs (``python -m gwctl.main dataplane
serve``), reads the workers' pids from ``STATE/workers/<i>/pid``, waits until every worker holds
a snapshot (its ``tollgate_snapshot_info`` in the gathered ``/metrics``), and stops it with
SIGTERM like a process manager does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx

from dataplane.sync.spool import _HEAD
from tests.dataplane.redis_support import REDIS_URL, redis_namespace
from tests.e2e.test_gateway import ROOT, free_port, stop_process
from tests.fakes.anthropic import UPSTREAM_KEY

SAMPLE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", re.M)


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of metric ``name``: (labels, value)."""
    out = []
    for m in SAMPLE.finditer(text):
        if m.group(1) == name:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out.append((labels, float(m.group(3))))
    return out


def per_worker(text: str, name: str) -> dict[str, float]:
    """``name`` summed per ``worker`` label."""
    out: dict[str, float] = {}
    for labels, value in samples(text, name):
        out[labels.get("worker", "")] = out.get(labels.get("worker", ""), 0.0) + value
    return out


def spooled_records(spool_dir: Path) -> int:
    """Records in a spool's segment files beyond its ``acked`` mark (read, not opened as a
    Spool: the worker owns that directory)."""
    acked_file = spool_dir / "acked"
    acked = int(acked_file.read_text()) if acked_file.exists() else 0
    n = 0
    for seg in spool_dir.glob("seg-*.log"):
        data = seg.read_bytes()
        pos = 0
        while pos + _HEAD.size <= len(data):
            length, seq, _crc = _HEAD.unpack_from(data, pos)
            if pos + _HEAD.size + length > len(data):
                break
            n += seq > acked
            pos += _HEAD.size + length
    return n


class WorkersProcess:
    def __init__(
        self,
        state_dir: Path,
        control_plane: str,
        token: str,
        workers: int,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        self.workers = workers
        self.log = state_dir.with_suffix(".log")
        self.args = [
            sys.executable, "-m", "gwctl.main", "dataplane", "serve",
            "--listen", f"127.0.0.1:{self.port}", "--control-plane", control_plane,
            "--state-dir", str(state_dir), "--workers", str(workers), "--drain-seconds", "0",
            *extra,
        ]  # fmt: skip
        self.env = {
            **os.environ,
            "TOLLGATE_DATAPLANE_TOKEN": token,
            "UPSTREAM_KEY": UPSTREAM_KEY,
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pid_of(self, index: int) -> int:
        return int((self.state_dir / "workers" / str(index) / "pid").read_text())

    def alive(self, pid: int) -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return False
        return stat.rpartition(")")[2].split()[0] != "Z"

    async def metrics(self) -> str:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as c:
            r = await c.get("/metrics")
            r.raise_for_status()
            return r.text

    async def wait_serving(self, timeout: float = 30.0) -> None:
        """Until every worker answers the scrape holding a snapshot."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"data plane exited:\n{self.output()[-3000:]}")
            try:
                text = await self.metrics()
                up = per_worker(text, "tollgate_worker_up")
                snaps = per_worker(text, "tollgate_snapshot_info")
                if sum(up.values()) == self.workers and len(snaps) == self.workers:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"workers not all serving:\n{self.output()[-3000:]}")
            await asyncio.sleep(0.05)

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        stop_process(self.proc, timeout)
        return self.proc.returncode


@contextlib.asynccontextmanager
async def workers_on_redis(
    state_dir: Path, control_plane: str, token: str, workers: int = 2
) -> AsyncIterator[WorkersProcess]:
    """``gwctl dataplane serve --workers N`` sharing its counters in a throw-away Redis
    namespace, once every worker serves; stopped on the way out."""
    async with redis_namespace() as prefix:
        dp = WorkersProcess(
            state_dir,
            control_plane,
            token,
            workers,
            extra=["--redis", REDIS_URL, "--redis-prefix", prefix],
        )
        dp.start()
        try:
            await dp.wait_serving()
            yield dp
        finally:
            dp.stop()
