"""``gwctl dataplane serve --workers N``: N data-plane processes on one listening port.

The supervisor (this module, the process ``serve`` started) binds the port, starts N workers
(``python -m dataplane.process.worker``, each a whole :class:`~dataplane.process.server.DataPlane` with Hypercorn)
and then only watches them:

* **One port.** By default (``reuseport``) the supervisor binds the port without listening, to
  hold it, and every worker binds its own listening socket to it with ``SO_REUSEPORT``: the
  kernel spreads new connections evenly over the workers. With ``shared`` the supervisor's
  listening socket is inherited by all workers and each connection goes to whichever worker
  accepts first (measured to balance worse under Hypercorn: see docs/architecture.md).
* **Per worker state.** Worker ``i`` keeps its snapshot cache and usage spool in
  ``STATE/workers/<i>/`` and reports as ``<node id>-w<i>``: a restarted worker replays the spool
  its predecessor left, so nothing is lost and (the control plane's ingest being idempotent)
  nothing counted twice. Spools no running worker owns (``STATE/spool`` of a single-process run,
  or ``workers/<j>`` for j >= N) are adopted: replayed by worker ``j mod N``.
* **Restarts.** A worker that exits is started again after a backoff doubling from 0.5 s to 30 s
  (reset once a run lasted ``HEALTHY_AFTER_S``). :data:`CRASH_LOOP` quick deaths in a row are
  reported at ERROR on every further death; when every worker is crash-looping at once the
  supervisor gives up and exits 1. A worker that dies before it was first ready makes the
  supervisor stop the others and exit 1 (a configuration problem: its own log line says which).
* **Shutdown.** SIGTERM/SIGINT are forwarded to every worker (SIGTERM), which drain as one data
  plane does; workers still running ``graceful_s + drain_seconds + 15`` s later are killed.

Limits must be exact across workers: counters are per process unless shared in Redis, so
:func:`decide_workers` allows N > 1 only with ``--redis``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from dataplane.private import private_dir, write_atomic
from dataplane.process.settings import Settings, settings_to_json
from dataplane.process.settings import node_id as _node_id
from dataplane.process.workerrole import WorkerRole, bind_listener

log = logging.getLogger("tollgate.workers")

MODES = ("reuseport", "shared")
HEALTHY_AFTER_S = 10.0
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
CRASH_LOOP = 5
READY_TIMEOUT_S = 60.0
SOCKET_MODE_ENV = "TOLLGATE_WORKER_SOCKET"


def cores() -> int:
    """CPUs this process may run on (the affinity mask: a container's cpuset, taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def decide_workers(requested: int | None, redis: bool, ncores: int) -> tuple[int, str]:
    """The worker count to run and a line saying why. ``requested`` None = the default: every
    core with Redis, else 1. Raises ValueError for N > 1 without Redis, or N < 1."""
    if requested is not None and requested < 1:
        raise ValueError(f"--workers must be at least 1 (got {requested})")
    if redis:
        n = requested if requested is not None else ncores
        return n, f"{n} worker(s) ({'as asked' if requested else f'one per core, {ncores}'})"
    if requested is not None and requested > 1:
        raise ValueError(
            f"--workers {requested} needs --redis: budgets and rate limits are counted in each "
            "process without it, so N workers would each allow the whole limit. Pass --redis "
            "redis://… (shared, exact counters) or run --workers 1"
        )
    return 1, (
        "1 worker: without --redis, budgets and rate limits are counted in-process and cannot "
        f"be shared between processes; pass --redis redis://… to run one worker per core "
        f"({ncores} here), or --workers N"
    )


def worker_dir(state_dir: Path, index: int) -> Path:
    return state_dir / "workers" / str(index)


def orphan_spools(state_dir: Path, count: int) -> dict[int, list[Path]]:
    """Spools no worker of this run owns, by the worker that replays them: ``STATE/spool`` (a
    single-process run) by worker 0, ``workers/<j>/spool`` for j >= count by worker j mod count.
    With ``count`` 1 and no supervisor, the single process replays ``workers/*/spool``."""
    plan: dict[int, list[Path]] = {i: [] for i in range(count)}
    if count > 1 and (state_dir / "spool").is_dir():
        plan[0].append(state_dir / "spool")
    root = state_dir / "workers"
    if root.is_dir():
        for d in sorted(root.iterdir(), key=lambda p: p.name):
            first = 0 if count == 1 else count
            if d.name.isdigit() and int(d.name) >= first and (d / "spool").is_dir():
                plan[int(d.name) % count].append(d / "spool")
    return plan


@dataclass
class Slot:
    index: int
    settings: Settings
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    quick_deaths: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class Supervisor:
    def __init__(self, settings: Settings, count: int, mode: str, log_level: str = "INFO") -> None:
        if mode not in MODES:
            raise ValueError(f"{SOCKET_MODE_ENV} must be one of {', '.join(MODES)} (got {mode!r})")
        self.settings = settings
        self.count = count
        self.mode = mode
        self.log_level = log_level
        self.slots: list[Slot] = []
        # What a worker runs (tests start stand-ins that crash on cue).
        self.worker_argv: list[str] = ["-m", "dataplane.process.worker"]
        self.first_delay = FIRST_DELAY_S
        self.stopping = asyncio.Event()
        self.port = 0
        self._sock: socket.socket | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        self._spawning = asyncio.Lock()  # held while a worker starts: shutdown waits for it
        self._given_up = asyncio.Event()

    def _plan(self) -> None:
        s = self.settings
        private_dir(s.state_dir)
        if self.mode == "shared":
            self._sock = bind_listener(s.listen)
        else:  # held, not listening: only the workers' sockets are in the SO_REUSEPORT group
            self._sock = bind_listener(s.listen, reuse_port=True, listen_now=False)
        self.port = self._sock.getsockname()[1]
        host = s.listen.rpartition(":")[0]
        run_id = secrets.token_hex(6)
        base = _node_id(s.state_dir)
        adopt = orphan_spools(s.state_dir, self.count)
        for i in range(self.count):
            role = WorkerRole(
                index=i,
                count=self.count,
                run_id=run_id,
                base_node_id=base,
                listen_fd=self._sock.fileno() if self.mode == "shared" else -1,
            )
            self.slots.append(
                Slot(
                    i,
                    replace(
                        s,
                        listen=f"{host}:{self.port}",
                        state_dir=worker_dir(s.state_dir, i),
                        worker=role,
                        adopt_spools=tuple(adopt[i]),
                    ),
                )
            )

    async def _spawn(self, slot: Slot) -> None:
        fds = (self._sock.fileno(),) if self.mode == "shared" and self._sock else ()
        slot.ready = asyncio.Event()
        slot.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *self.worker_argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            pass_fds=fds,
        )
        slot.started = time.monotonic()
        assert slot.proc.stdin is not None
        # The pipe stays open for the worker's life: its end of file tells the worker we died.
        slot.proc.stdin.write(settings_to_json(slot.settings, self.log_level).encode() + b"\n")
        await slot.proc.stdin.drain()
        private_dir(slot.settings.state_dir)
        write_atomic(slot.settings.state_dir / "pid", f"{slot.proc.pid}\n".encode())
        task = asyncio.create_task(self._read_stdout(slot, slot.proc))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _read_stdout(self, slot: Slot, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            if line == b"ready\n" and not slot.ready.is_set():
                slot.ready.set()
            else:  # anything else a worker prints goes where ours goes
                sys.stdout.buffer.write(line)
                sys.stdout.flush()

    async def _first_start(self) -> str | None:
        """Start every worker; None once all are ready, else why one could not start."""
        for slot in self.slots:
            await self._spawn(slot)
        for slot in self.slots:
            assert slot.proc is not None
            ready = asyncio.create_task(slot.ready.wait())
            died = asyncio.create_task(slot.proc.wait())
            await asyncio.wait(
                {ready, died}, timeout=READY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
            ready.cancel()
            died.cancel()
            if not slot.ready.is_set():
                code = slot.proc.returncode
                return (
                    f"worker {slot.index} exited with code {code} before it was ready (its log "
                    "lines above say why)"
                    if code is not None
                    else f"worker {slot.index} was not ready after {READY_TIMEOUT_S:.0f} s"
                )
        return None

    async def run(self) -> int:
        try:
            self._plan()
        except OSError as exc:
            log.error("cannot listen on %s: %s", self.settings.listen, exc)
            return 1
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        problem = await self._first_start()
        if problem is not None:
            log.error("data plane not started: %s", problem)
            await self._stop_all()
            return 1
        host = self.settings.listen.rpartition(":")[0]
        log.info(
            "data plane listening on %s:%d with %d workers (%s socket), pids %s",
            host,
            self.port,
            self.count,
            self.mode,
            " ".join(str(s.proc.pid) for s in self.slots if s.proc),
        )
        code = await self._watch()
        await self._stop_all()
        return code

    async def _watch(self) -> int:
        """One keeper per worker (a crash-looping worker's 30 s backoff delays no other
        worker's restart) until SIGTERM/SIGINT (0) or every worker is crash-looping (1)."""
        keepers = [asyncio.create_task(self._keep(slot)) for slot in self.slots]
        stop = asyncio.create_task(self.stopping.wait())
        give_up = asyncio.create_task(self._given_up.wait())
        await asyncio.wait({stop, give_up}, return_when=asyncio.FIRST_COMPLETED)
        async with self._spawning:  # no worker is half started while the keepers are cancelled
            for task in (*keepers, stop, give_up):
                task.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)
        return 1 if self._given_up.is_set() else 0

    async def _keep(self, slot: Slot) -> None:
        while True:
            assert slot.proc is not None
            await slot.proc.wait()
            if self.stopping.is_set() or not await self._restart(slot):
                return

    async def _restart(self, slot: Slot) -> bool:
        """Restart a worker that exited; False when every worker is crash-looping."""
        assert slot.proc is not None
        lived = time.monotonic() - slot.started
        slot.quick_deaths = slot.quick_deaths + 1 if lived < HEALTHY_AFTER_S else 1
        delay = min(self.first_delay * 2 ** (slot.quick_deaths - 1), MAX_DELAY_S)
        code = slot.proc.returncode
        how = f"signal {-code}" if code is not None and code < 0 else f"code {code}"
        if slot.quick_deaths >= CRASH_LOOP:
            log.error(
                "worker %d is crash-looping: it died %d times in a row within %.0f s of starting "
                "(last: %s); restarting it in %.0f s (its log lines above say why)",
                slot.index, slot.quick_deaths, HEALTHY_AFTER_S, how, delay,
            )  # fmt: skip
            if all(self._looping(s) for s in self.slots):
                log.error("every worker is crash-looping: giving up")
                self._given_up.set()
                return False
        else:
            log.warning(
                "worker %d (pid %d) exited with %s after %.1f s; restarting it in %.1f s",
                slot.index, slot.proc.pid, how, lived, delay,
            )  # fmt: skip
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):  # not wait_for: see gwcommon.tasks
                await self.stopping.wait()
        async with self._spawning:
            if self.stopping.is_set() or self._given_up.is_set():
                return False
            await self._spawn(slot)
        log.info("worker %d restarted (pid %d)", slot.index, slot.proc.pid)
        return True

    def _looping(self, slot: Slot) -> bool:
        """Crash-looping: died CRASH_LOOP times quickly and not running healthily since."""
        proc = slot.proc
        running_well = (
            proc is not None
            and proc.returncode is None
            and time.monotonic() - slot.started >= HEALTHY_AFTER_S
        )
        return slot.quick_deaths >= CRASH_LOOP and not running_well

    async def _stop_all(self) -> None:
        """SIGTERM every live worker (each drains), wait, then SIGKILL stragglers."""
        live = [s.proc for s in self.slots if s.proc is not None and s.proc.returncode is None]
        if live:
            log.info("shutting down: draining %d worker(s)", len(live))
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        grace = self.settings.graceful_s + self.settings.drain_seconds + 15
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in live)), grace)
        except TimeoutError:
            for proc in live:
                if proc.returncode is None:
                    log.error("worker pid %d did not drain in %.0f s: killing it", proc.pid, grace)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            await asyncio.gather(*(p.wait() for p in live))
        for slot in self.slots:
            if slot.proc is not None and slot.proc.stdin is not None:
                slot.proc.stdin.close()
            with contextlib.suppress(OSError):  # STATE/workers/<i>/pid names running workers only
                (slot.settings.state_dir / "pid").unlink()
        for task in list(self._watchers):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 2)
        if self._sock is not None:
            self._sock.close()


def run_workers(settings: Settings, count: int, log_level: str = "INFO") -> int:
    """Supervise ``count`` workers until SIGTERM/SIGINT; the process's exit code."""
    mode = os.environ.get(SOCKET_MODE_ENV, "reuseport")
    try:
        supervisor = Supervisor(settings, count, mode, log_level)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    return asyncio.run(supervisor.run())
