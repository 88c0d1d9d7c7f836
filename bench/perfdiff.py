"""``make bench-perfdiff``: where the data plane's CPU goes beyond the frameworks' floor, by C
function (issue #14).

The processes of ``bench.run`` (the fast upstream, a control plane on a throw-away SQLite
database, one data plane ``bench.dp_main``) and ``bench.bare_relay`` (uvloop, Hypercorn and the
aiohttp transport relaying with no gateway in between). Each of the two is driven in turn by the
same closed loop (``--conns`` connections sending the Claude Code fixture, for ``--seconds``)
while ``perf record -e cpu-clock -F HZ -p PID`` samples every thread of it. ``perf report`` gives
the samples per thread, shared object and symbol; a sample is 1/HZ s of CPU, so divided by the
requests the process served they are µs of CPU per request. The table is data plane minus floor,
largest first, then the same by shared object and by thread.

Why perf beside py-spy (``bench.run --profile``, ``bench.sampler``): py-spy names the Python
functions, but samples without stopping the process and misplaces time in async code (a write
charged to the wrong coroutine, threads waiting on a queue counted as busy); perf sees the
process from below and misattributes nothing, but shows Python's own code as one function, the
interpreter's loop (``_PyEval_EvalFrameDefault``). Together: what kind of work (bytecode,
allocation, regex, JSON, protobuf, the event loop, the kernel), then py-spy for which Python.
``cpu-clock`` because virtual machines such as this one often expose no hardware counters.

Needs ``perf`` and the right to trace a child process (``kernel.perf_event_paranoid`` ≤ 2 for
one's own processes, or root).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from bench.loadgen import closed_loop
from bench.procs import (
    Child,
    spawn,
    start_bare_relay,
    start_controlplane,
    start_upstream,
    wait_for_json,
)
from bench.rawclient import Target, build_request
from bench.run import PROVIDER_KEY_ENV, fixture_path, provision
from bench.upstream import render_body

Key = tuple[str, str, str]  # (thread, shared object, symbol)

# `perf report --stdio -F overhead,sample,comm,dso,sym`: "  12.34%  1234  python  libx.so  [.] f"
_ROW = re.compile(r"\s*[\d.]+%\s+(\d+)\s+(\S+)\s+(\S+)\s+\[[.k]\]\s+(.+?)\s*$")


def parse_report(text: str) -> collections.Counter[Key]:
    """Samples per (thread, shared object's file name, symbol) from ``perf report``'s table."""
    counts: collections.Counter[Key] = collections.Counter()
    for line in text.splitlines():
        match = _ROW.match(line)
        if match:
            samples, comm, dso, sym = match.groups()
            counts[(comm, dso.rsplit("/", 1)[-1], sym)] += int(samples)
    return counts


def _by(counts: Mapping[Key, int], label: Callable[[Key], str]) -> collections.Counter[str]:
    """``counts`` summed under ``label(key)``."""
    out: collections.Counter[str] = collections.Counter()
    for key, n in counts.items():
        out[label(key)] += n
    return out


def _symbol(key: Key) -> str:
    return f"{key[2]} ({key[1]})"


def render(
    gateway: Mapping[Key, int],
    gateway_requests: int,
    floor: Mapping[Key, int],
    floor_requests: int,
    hz: int,
    top: int = 40,
) -> str:
    """The tables: µs of CPU per request, data plane − floor, by symbol, shared object, thread."""

    def us(samples: int, requests: int) -> float:
        return samples * 1e6 / hz / requests

    total_g = us(sum(gateway.values()), gateway_requests)
    total_f = us(sum(floor.values()), floor_requests)
    lines = [
        f"data plane: {gateway_requests} requests, {total_g:.0f} µs of CPU each; "
        f"floor: {floor_requests} requests, {total_f:.0f} µs each; "
        f"difference {total_g - total_f:+.0f} µs ({total_g / total_f:.2f}x)",
    ]
    tables: list[tuple[str, Mapping[str, int], Mapping[str, int], int]] = [
        ("by symbol (shared object)", _by(gateway, _symbol), _by(floor, _symbol), top),
        ("by shared object", _by(gateway, lambda k: k[1]), _by(floor, lambda k: k[1]), 12),
        ("by thread", _by(gateway, lambda k: k[0]), _by(floor, lambda k: k[0]), 8),
    ]
    for title, g, f, limit in tables:
        rows = sorted(
            (
                (us(g.get(k, 0), gateway_requests), us(f.get(k, 0), floor_requests), k)
                for k in {*g, *f}
            ),
            key=lambda row: row[0] - row[1],
            reverse=True,
        )
        lines += ["", f"µs per request {title}: data plane − floor, data plane, floor"]
        lines += [f"{a - b:+8.1f} {a:8.1f} {b:8.1f}  {k}" for a, b, k in rows[:limit]]
    return "\n".join(lines)


def _record(pid: int, path: Path, hz: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["perf", "record", "-e", "cpu-clock", "-F", str(hz), "-p", str(pid), "-o", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _report(path: Path) -> collections.Counter[Key]:
    cmd = ["perf", "report", "-i", str(path), "--stdio", "--no-children"]
    cmd += ["--sort", "comm,dso,sym", "-F", "overhead,sample,comm,dso,sym"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return parse_report(done.stdout)


def _measure(target: Target, pid: int, path: Path, args: argparse.Namespace) -> int:
    """Warm ``target`` up, then drive it under perf; the requests served while recorded."""
    asyncio.run(closed_loop(target, args.conns, 2.0))
    recorder = _record(pid, path, args.hz)
    time.sleep(0.5)  # perf attaches to every thread before the load starts
    samples, _ = asyncio.run(closed_loop(target, args.conns, args.seconds))
    recorder.send_signal(signal.SIGINT)  # perf writes its file when interrupted
    if recorder.wait(30) not in (0, -signal.SIGINT, 130):
        raise RuntimeError(f"perf record failed (exit {recorder.returncode})")
    return len(samples.ttlb)


def run(args: argparse.Namespace) -> str:
    if shutil.which("perf") is None:
        raise SystemExit("bench.perfdiff needs perf (linux-tools) on PATH")
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="tollgate-perfdiff-") as tmp:
        work = Path(tmp)
        try:
            admin, dp_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
            provider_key = "sk-ant-bench-" + secrets.token_hex(8)
            _, upstream_port = start_upstream(work, children)
            db = f"sqlite:///{work / 'tollgate.db'}"
            _, cp = start_controlplane(work, children, db, (admin, dp_token))
            secret, _ = asyncio.run(provision(cp, admin, upstream_port))
            dp = spawn(
                "dataplane",
                ["-m", "bench.dp_main", "--ready-file", str(work / "dp.ready"),
                 "--control-plane", cp, "--state-dir", str(work / "dp-state")],
                work,
                env={PROVIDER_KEY_ENV: provider_key, "TOLLGATE_DATAPLANE_TOKEN": dp_token},
            )  # fmt: skip
            children.append(dp)
            dp_port = wait_for_json(dp, work / "dp.ready")["port"]
            bare, bare_port = start_bare_relay(work, children, upstream_port)
            body, answer = fixture_path().read_bytes(), render_body()

            def target(name: str, port: int, auth: tuple[str, str]) -> Target:
                return Target(
                    name, "127.0.0.1", port, build_request("127.0.0.1", port, body, auth), answer
                )

            gw = target("gateway", dp_port, ("authorization", f"Bearer {secret}"))
            floor = target("bare", bare_port, ("x-api-key", provider_key))
            gw_n = _measure(gw, dp.pid, work / "gateway.data", args)
            floor_n = _measure(floor, bare.pid, work / "floor.data", args)
            return render(
                _report(work / "gateway.data"), gw_n, _report(work / "floor.data"), floor_n,
                args.hz, args.top,
            )  # fmt: skip
        finally:
            for child in reversed(children):
                child.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conns", type=int, default=32, help="closed-loop connections")
    parser.add_argument("--seconds", type=float, default=6.0, help="recorded per process")
    parser.add_argument("--hz", type=int, default=4000, help="perf's sampling rate")
    parser.add_argument("--top", type=int, default=40, help="rows of the symbol table")
    print(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
