"""py-spy around a benchmark phase: sample a running process, then rank its functions.

``start(pid, out_dir, name)`` runs ``py-spy record --format raw`` on the process (collapsed
stacks, one line per distinct stack with its sample count) until :meth:`Spy.stop`, which returns a
short report: the ten functions with the most samples on top of the stack (self) and anywhere in
it (total), as percentages of all samples. The raw stacks stay in ``out_dir`` for flame graphs.
py-spy needs ptrace rights over the process: a child of this user on a box without Yama
restrictions, or root.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TOP = 10


def _frame_name(frame: str) -> str:
    # py-spy raw frames read "function (path/to/module.py:line)"; the line is dropped so that
    # one function's samples add up.
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"


def rank(collapsed: str, top: int = TOP) -> str:
    """The report for collapsed stacks (``frame;frame;… count`` per line)."""
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            anywhere[name] += count
    if not total:
        return "py-spy: no samples"
    lines = [f"py-spy: {total:,} samples"]
    for title, counter in (("self", own), ("total", anywhere)):
        lines.append(f"  top {top} by {title}:")
        for name, count in counter.most_common(top):
            lines.append(f"    {count * 100 / total:5.1f} %  {name}")
    return "\n".join(lines)


@dataclass
class Spy:
    proc: subprocess.Popen[bytes]
    path: Path

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if not self.path.exists():
            return f"py-spy wrote nothing (exit {self.proc.returncode})"
        report = rank(self.path.read_text())
        (self.path.with_suffix(".top.txt")).write_text(report + "\n")
        return f"{report}\n  stacks: {self.path}"


def start(pid: int, out_dir: Path, name: str, rate: int = 200) -> Spy:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.collapsed.txt"
    exe = Path(sys.executable).with_name("py-spy")
    cmd = [str(exe), "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate)]
    cmd += ["--nonblocking", "-o", str(path)]
    # e.g. TOLLGATE_PYSPY_ARGS=--gil: only the thread holding the GIL (Python's own CPU, not
    # the driver's waits, which py-spy cannot always tell from work).
    cmd += os.environ.get("TOLLGATE_PYSPY_ARGS", "").split()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ
    )
    return Spy(proc, path)
