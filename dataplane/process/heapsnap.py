"""Heap snapshots on demand, for hunting memory growth (``make bench-soak``): off unless asked.

``TOLLGATE_TRACEMALLOC=<frames>`` in a data-plane process's environment makes it start
:mod:`tracemalloc` (``frames`` frames kept per allocation, 1 to 100) when it starts, and write a
snapshot each time it gets ``SIGUSR2``; nothing else (the admin API, the HTTP listener) can trigger
one. Snapshots go to ``TOLLGATE_TRACEMALLOC_DIR``, or the data plane's state directory, as
``tracemalloc-<pid>-<n>.pickle`` (n = 1, 2, … per process; load with
``tracemalloc.Snapshot.load``), each with a ``.json`` beside it holding tracemalloc's counters at
that moment (traced bytes now and at peak, tracemalloc's own bytes, how long the snapshot took).
Both are renamed into place whole, the pickle first: once the JSON exists, both are complete.

Unset or empty, the data plane reads the variable once at start and does nothing more: tracemalloc
is not imported, no signal handler is installed, ``SIGUSR2`` keeps its default action. Set, every
allocation pays for its trace (tens of percent of CPU, and tracemalloc's own memory), which is why
it is a diagnostic and never a default. A snapshot is taken on the event loop: it holds the loop
for as long as copying every trace and pickling it takes (reported in the JSON).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

TRACEMALLOC_ENV = "TOLLGATE_TRACEMALLOC"
TRACEMALLOC_DIR_ENV = "TOLLGATE_TRACEMALLOC_DIR"
SNAPSHOT_SIGNAL = signal.SIGUSR2
MAX_FRAMES = 100  # beyond this a snapshot is mostly the server's own stack, and costly

log = logging.getLogger("tollgate.dataplane")


@dataclass
class HeapSnapshots:
    """Traces allocations from :meth:`install` and writes a snapshot per ``SIGUSR2``."""

    frames: int
    directory: Path
    written: int = 0
    _started_tracing: bool = field(default=False, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str], state_dir: Path) -> HeapSnapshots | None:
        """The hook ``env`` asks for, or None when ``TOLLGATE_TRACEMALLOC`` is unset or empty.
        Raises ValueError (a readable reason) for anything but a frame count of 1 to 100."""
        raw = env.get(TRACEMALLOC_ENV, "").strip()
        if not raw:
            return None
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_FRAMES:
            raise ValueError(
                f"{TRACEMALLOC_ENV} must be a number of frames from 1 to {MAX_FRAMES} "
                f"(got {raw[:40]!r}); unset it to leave tracemalloc off"
            )
        return cls(int(raw), Path(env.get(TRACEMALLOC_DIR_ENV) or state_dir))

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start tracing (unless something already traces) and take ``SIGUSR2`` on ``loop``."""
        import tracemalloc  # only a process that asked for it loads it

        if not tracemalloc.is_tracing():
            tracemalloc.start(self.frames)
            self._started_tracing = True
        loop.add_signal_handler(SNAPSHOT_SIGNAL, self._on_signal)
        log.warning(
            "%s=%d: tracing allocations (slower); SIGUSR2 writes a snapshot to %s",
            TRACEMALLOC_ENV,
            self.frames,
            self.directory,
        )

    def uninstall(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give ``SIGUSR2`` back its default action; stop tracing if :meth:`install` started it."""
        import tracemalloc

        loop.remove_signal_handler(SNAPSHOT_SIGNAL)
        if self._started_tracing:
            tracemalloc.stop()
            self._started_tracing = False

    def _on_signal(self) -> None:
        try:
            self.write()
        except OSError as exc:  # a full or unwritable directory must not take the server down
            log.error("tracemalloc snapshot not written to %s: %s", self.directory, exc)

    def write(self) -> Path:
        """Take a snapshot now and write it, then its counters; returns the pickle's path."""
        import tracemalloc

        t0 = time.perf_counter()
        snapshot = tracemalloc.take_snapshot()
        traced, peak = tracemalloc.get_traced_memory()
        self.written += 1
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"tracemalloc-{os.getpid()}-{self.written}.pickle"
        tmp = path.with_suffix(".tmp")
        snapshot.dump(str(tmp))
        del snapshot  # its copy of every trace; the pickle is all that is needed now
        os.replace(tmp, path)
        counters = {
            "traced_bytes": traced,
            "traced_peak_bytes": peak,
            "tracemalloc_bytes": tracemalloc.get_tracemalloc_memory(),
            "frames": self.frames,
            "seconds": time.perf_counter() - t0,
        }
        tmp.write_text(json.dumps(counters))
        os.replace(tmp, path.with_suffix(".json"))
        log.warning("tracemalloc snapshot %d written to %s", self.written, path)
        return path
