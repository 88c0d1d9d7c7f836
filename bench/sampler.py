"""A stdlib-only statistical profiler for the data plane (no py-spy here; cProfile distorts).

``ITIMER_PROF`` sends the process ``SIGPROF`` every ``interval`` seconds of CPU time (user +
system, all threads); the handler runs on the main thread and records its Python stack. So
samples are proportional to CPU time spent, and a sample taken while a C call (a ``send``, an
``orjson.loads``) ran is attributed to the Python function that made the call. Samples whose top
frame is the event loop's ``select`` mean the CPU went to another thread (gRPC's poller, the
spool's worker) or to the kernel while the loop waited. The rest are attributed to their top
function (self), to every distinct function on the stack (inclusive), and per package
(hypercorn, h11, httpx, httpcore, anyio, asyncio, dataplane, …). Unlike cProfile, the cost of
each Python call is not inflated; the handler itself costs a few percent.

A thread-based sampler (``sys._current_frames()`` from a second thread) does not work here: it
only gets the GIL when the main thread releases it, i.e. in system calls, so it sees little
else.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

_IDLE = {("selectors.py", "select")}


def _where(frame: FrameType) -> tuple[str, str, int]:
    code = frame.f_code
    return code.co_filename, code.co_name, code.co_firstlineno


def _package(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for pkg in ("dataplane", "gwapi", "bench"):
        if f"/{pkg}/" in filename:
            return pkg
    if filename.startswith("<frozen"):
        return "importlib" if "importlib" in filename else "stdlib"
    name = filename.rsplit("/", 2)
    return "stdlib:" + (
        name[-2] if len(name) > 1 and name[-2] not in ("lib", "python3.11") else name[-1]
    )


class Sampler:
    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.self_counts: Counter[tuple[str, str, int]] = Counter()
        self.incl_counts: Counter[tuple[str, str, int]] = Counter()
        self.pkg_counts: Counter[str] = Counter()
        self.callers: Counter[tuple[tuple[str, str, int], tuple[str, str, int]]] = Counter()
        self.busy = 0
        self.idle = 0

    def start(self) -> None:
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_IGN)

    def _sample(self, signum: int, frame: FrameType | None) -> None:
        if frame is None:
            return
        top = _where(frame)
        if (top[0].rsplit("/", 1)[-1], top[1]) in _IDLE:
            self.idle += 1
            return
        self.busy += 1
        self.self_counts[top] += 1
        self.pkg_counts[_package(top[0])] += 1
        if frame.f_back is not None:
            self.callers[top, _where(frame.f_back)] += 1
        seen: set[tuple[str, str, int]] = set()
        f: FrameType | None = frame
        while f is not None:
            w = _where(f)
            if w not in seen:
                seen.add(w)
                self.incl_counts[w] += 1
            f = f.f_back

    def dump(self, path: Path) -> None:
        def rows(c: Counter[tuple[str, str, int]]) -> list[list[Any]]:
            return [[f, n, line, k] for (f, n, line), k in c.most_common(150)]

        path.write_text(
            json.dumps(
                {
                    "busy": self.busy,
                    "idle": self.idle,
                    "self": rows(self.self_counts),
                    "inclusive": rows(self.incl_counts),
                    "packages": self.pkg_counts.most_common(),
                    "callers": [[*a, *b, k] for (a, b), k in self.callers.most_common(150)],
                }
            )
        )


def short_path(filename: str) -> str:
    """A source file's path from its package (``dataplane/edge/app.py``, ``h11/_util.py``,
    ``asyncio/streams.py``)."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1]
    for pkg in ("dataplane/", "gwapi/", "bench/"):
        if pkg in filename:
            return pkg + filename.split(pkg, 1)[1]
    return "/".join(filename.rsplit("/", 2)[-2:])  # stdlib: asyncio/streams.py


def render(path: Path, top: int = 25) -> str:
    d = json.loads(path.read_text())
    busy = d["busy"] or 1
    out = [
        f"data plane CPU profile (SIGPROF every 1 ms of CPU): {d['busy']} samples on the event"
        f" loop, {d['idle']} while it waited in epoll (other threads, kernel); % of loop samples"
    ]
    out.append("  self time by package:")
    for pkg, k in d["packages"][:14]:
        out.append(f"    {k / busy * 100:5.1f}%  {pkg}")
    out.append(f"  top {top} functions by self time:")
    for f, name, line, k in d["self"][:top]:
        callers = [c for c in d["callers"] if c[:3] == [f, name, line]][:2]
        via = "; ".join(f"{c[4]} {short_path(c[3])}:{c[5]} {c[6] / k * 100:.0f}%" for c in callers)
        out.append(f"    {k / busy * 100:5.1f}%  {name}  ({short_path(f)}:{line})  <- {via}")
    out.append(f"  top {top + 15} functions by inclusive time (below the request handler):")
    inclusive = [r for r in d["inclusive"] if r[3] / busy < 0.80]
    for f, name, line, k in inclusive[: top + 15]:
        out.append(f"    {k / busy * 100:5.1f}%  {name}  ({short_path(f)}:{line})")
    return "\n".join(out)
