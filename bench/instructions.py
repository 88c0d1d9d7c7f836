"""``make bench-instructions``: the data plane's CPU cost per request, counted in instructions.

What it measures: the instructions the data plane's process (every thread of it) executes per
request of ``make bench`` (the Claude-Code-shaped 22 KB request, a 200-event streamed answer
from ``bench.upstream``, a virtual key on a plain ``anthropic`` provider, no tracing). Wall-clock
and CPU-time benchmarks on this shared 2-core box move by tens of per cent with the neighbours;
an instruction count does not, so a change of a few per cent in the request path's cost shows.

How: the processes of ``bench.run`` (control plane on a throw-away SQLite database, the fast
upstream, data planes ``bench.dp_main``), but each data plane runs under
``valgrind --tool=callgrind --cache-sim=no`` (instructions only; ~50x slower: start-up takes
minutes on a busy box). Two fresh data planes are started together; one client connection to
each sends ``--warmup`` requests, then N more, one at a time (N = small to one, big to the
other); when both are done both get SIGTERM, drain and exit, and callgrind writes their totals.

    instructions per request = (I(big) - I(small)) / (big - small)

so start-up, warm-up and shutdown cancel. A process counts only if it exited 0 and callgrind's
file has its ``totals:`` line, equal to the ``Collected :`` of valgrind's log (a killed or
truncated run is refused, never reported). ``--repeat`` measures another pair. Each data plane
prints where it imports ``dataplane`` from (run from another worktree, it is that tree's).

What would differ from run to run, and what is done about it:

* the chunking of the answer: the upstream writes it in 8 slices by default, and a slice that
  arrives on its own costs the data plane one more read and relay step, so the count would
  follow the timing. Here the upstream answers in one write (``--writes 1``), which loopback
  delivers in one read: the figure is for a 200-event answer that arrives at once, per-chunk
  costs counted once;
* hash randomisation: ``PYTHONHASHSEED=0`` in the data plane (set and dict layouts repeat);
* GC: runs on allocation counts, so it repeats, and it is part of the cost;
* work driven by the clock rather than by requests. Under callgrind a request holds the event
  loop ~0.1-0.3 s, so a periodic task wakes fewer times per second in a busy data plane than in
  an idle one, by how much depending on the machine's load; the difference of two processes
  then moved by 2.5 % between runs (busy 400 against mostly idle 100). The two loops woken
  many times a second are therefore made quiet in the data plane under test (``QUIET`` below,
  the same patch for any tree: their intervals set to 10^6 s): the loop-lag sampler (20
  wake-ups a second) and the usage reporter's send cadence (every 0.2 s, one gRPC call per
  batch; natively a batch holds dozens of events, under callgrind one or two). The usage is
  then sent in one batch at shutdown (flush timeout raised from 5 s to 600 s), and the run
  checks that the control plane got usage for every request. Still driven by the clock: the
  snapshot subscriber's status check (1 s), telemetry (5 s), gRPC keep-alives (20 s) and gRPC's
  own threads; the two processes of a pair live the same wall time, so they mostly cancel;
* the usage events' persistence: each request's event is written to the spool and fsync'd in
  a worker thread right after it; requests one at a time keep that one write per request.

How repeatable: two runs each of two commits (load average 2.5-4, four data planes under
callgrind at once): 5,107,278 and 5,111,180 instructions per request (0.08 % apart), 5,091,350
and 5,107,484 (0.32 %). Before the quieting above, the same runs were 2.5 % and 0.8 % apart.
``--repeat 2`` prints the spread between runs.

``--keep DIR`` keeps callgrind's files and a ``result.json``; ``--diff OLD NEW`` then compares
two kept runs function by function (``callgrind_annotate``, self cost, per request as above).
Functions are the interpreter's C functions (``_PyEval_EvalFrameDefault``, dict lookups, ...),
not Python ones: callgrind sees CPython 3.11 from below.

``--direct`` also counts the fake upstream's instructions per direct request, for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.callgrind import callgrind_total, diff
from bench.procs import REPO, Child, start_controlplane, start_upstream, wait_for_file
from bench.rawclient import Conn, Target, build_request
from bench.run import PROVIDER_KEY_ENV, fixture_path, provision, usage_total
from bench.upstream import render_body

DP = "bench.dp_main"
READY_TIMEOUT_S = 900.0  # a data plane's start-up under callgrind: ~1 minute idle, more if busy
REQUEST_TIMEOUT_S = 120.0  # the first request under callgrind compiles and imports a lot
STOP_TIMEOUT_S = 600.0
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
# In the child, before the module runs as ``-m`` would run it: say which tree's code it imports.
SHIM = """
import importlib.util, runpy, dataplane
print("dataplane from", dataplane.__file__, flush=True)
print("{m} from", importlib.util.find_spec("{m}").origin, flush=True)
{quiet}
runpy.run_module("{m}", run_name="__main__", alter_sys=True)
"""
# For the data plane: its two loops woken by the clock many times a second go quiet (module
# docstring), and the usage it then sends in one batch at shutdown gets the time it needs.
QUIET = """
from dataplane.process.looplag import LoopLag
from dataplane.sync.reporter import Reporter
def quiet(cls):
    init = cls.__init__
    def quiet_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.interval = 1e6
    cls.__init__ = quiet_init
quiet(LoopLag)
quiet(Reporter)
flush = Reporter.flush
Reporter.flush = lambda self, timeout=5.0: flush(self, timeout=600.0)
"""


@dataclass
class Count:
    """One process under callgrind: requests sent after warm-up, its instructions, wall times."""

    n: int
    instructions: int
    requests_s: float  # wall time of warm-up + the n requests
    until_term_s: float  # wall time from spawn to SIGTERM (the same for both of a pair)
    out_file: str


def spawn_under_callgrind(
    name: str, module: str, args: list[str], work: Path, env: Mapping[str, str]
) -> tuple[Child, Path, Path]:
    """``python -m module args`` under callgrind (cwd: this tree), output to files in ``work``:
    the child, callgrind's output file and valgrind's log."""
    out, vlog = work / f"{name}.callgrind", work / f"{name}.valgrind.log"
    log = work / f"{name}.log"
    cmd = [
        "valgrind", "--tool=callgrind", "--cache-sim=no", "--branch-sim=no",
        f"--callgrind-out-file={out}", f"--log-file={vlog}",
        sys.executable, "-c", SHIM.format(m=module, quiet=QUIET if module == DP else ""), *args,
    ]  # fmt: skip
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1", "PYTHONHASHSEED": "0"}
    with log.open("wb") as f:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    return Child(name, proc, log), out, vlog


async def send(port: int, request: bytes, expected: bytes, count: int) -> None:
    """``count`` requests one after another on one connection; each must be a 200 with the
    upstream's exact body length (the first, byte for byte): ``bench.rawclient`` checks."""
    conn = Conn(Target("target", "127.0.0.1", port, request, expected))
    try:
        for _ in range(count):
            await asyncio.wait_for(conn.request(), REQUEST_TIMEOUT_S)
    finally:
        conn.close()


def finish(child: Child, out: Path, vlog: Path) -> int:
    """After SIGTERM: wait for a clean exit, and the checked instruction total."""
    try:
        code = child.proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.proc.kill()
        child.proc.wait(10)
        raise RuntimeError(
            f"{child.name} did not exit {STOP_TIMEOUT_S:.0f} s after SIGTERM"
        ) from None
    if code != 0:
        raise RuntimeError(f"{child.name} exited with code {code}:\n{child.tail()}")
    total = callgrind_total(out.read_text())
    collected = COLLECTED.search(vlog.read_text())
    if collected is None or int(collected.group(1)) != total:
        raise RuntimeError(f"{child.name}: callgrind's file and log disagree ({vlog})")
    return total


def count_pair(
    name: str,
    module: str,
    args: Callable[[int], list[str]],
    env: Mapping[str, str],
    work: Path,
    traffic: tuple[bytes, tuple[str, str], bytes],
    ns: tuple[int, int],
    warmup: int,
) -> tuple[Count, Count]:
    """Two fresh processes of ``module`` under callgrind, side by side: ``warmup`` + ``ns[i]``
    requests to process i, then both stopped at the same moment, so both lived the same wall
    time and the clock-driven background work (module docstring) costs them alike."""
    t0 = time.monotonic()
    started = []
    try:
        for n in ns:
            ready = work / f"{name}-n{n}.ready"
            child, out, vlog = spawn_under_callgrind(
                f"{name}-n{n}", module, [*args(n), "--ready-file", str(ready)], work, env
            )
            started.append((child, out, vlog, ready))
        ports = []
        for child, _, _, ready in started:
            announced = json.loads(wait_for_file(child, ready, READY_TIMEOUT_S))
            ports.append(announced["port"] if isinstance(announced, dict) else int(announced))
            print(f"  {child.name}: {child.tail(3).replace(chr(10), '; ')}", flush=True)
        body, auth, expected = traffic

        async def both() -> list[float]:
            async def timed(port: int, n: int) -> float:
                t = time.monotonic()
                await send(port, build_request("127.0.0.1", port, body, auth), expected, warmup + n)
                return time.monotonic() - t

            return list(
                await asyncio.gather(*(timed(p, n) for p, n in zip(ports, ns, strict=True)))
            )

        walls = asyncio.run(both())
        life = time.monotonic() - t0
        for child, _, _, _ in started:
            child.proc.send_signal(signal.SIGTERM)
        totals = [finish(child, out, vlog) for child, out, vlog, _ in started]
    finally:
        for child, _, _, _ in started:
            child.stop()  # a no-op once exited; a SIGKILL'd run never gets here with a total
    small, big = (
        Count(n, total, wall, life, str(out))
        for n, total, wall, (_, out, _, _) in zip(ns, totals, walls, started, strict=True)
    )
    return small, big


def per_request(small: Count, big: Count) -> float:
    return (big.instructions - small.instructions) / (big.n - small.n)


def run(args: argparse.Namespace) -> int:
    body = fixture_path().read_bytes()
    expected = render_body()
    small, big = sorted(args.n)
    result: dict[str, object] = {
        "tree": str(REPO),
        "n": [small, big],
        "warmup": args.warmup,
        "loadavg_before": os.getloadavg(),
    }
    pairs: list[tuple[Count, Count]] = []
    direct: list[tuple[Count, Count]] = []
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="tollgate-instr-") as tmp:
        work = Path(tmp)
        admin_token, dp_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        provider_key = "sk-ant-bench-" + secrets.token_hex(8)
        try:
            # The answer in one write: a 30 KB write on loopback arrives in one read, where 8
            # slices arrive in as many reads as the timing allows, and each read costs the data
            # plane a relay step (seen: a run 60 M instructions short of its twin for that).
            _, upstream_port = start_upstream(work, children, "--writes", "1")
            db = f"sqlite:///{work / 'tollgate.db'}"
            _, cp_addr = start_controlplane(work, children, db, (admin_token, dp_token))
            secret, _ = asyncio.run(provision(cp_addr, admin_token, upstream_port))
            env = {PROVIDER_KEY_ENV: provider_key, "TOLLGATE_DATAPLANE_TOKEN": dp_token}
            gw_traffic = (body, ("authorization", f"Bearer {secret}"), expected)
            up_traffic = (body, ("x-api-key", provider_key), expected)
            for rep in range(args.repeat):

                def dp_args(n: int, rep: int = rep) -> list[str]:
                    state = str(work / f"dp-n{n}-r{rep}")
                    return ["--control-plane", cp_addr, "--state-dir", state]

                pair = count_pair(
                    f"dataplane-r{rep}", DP, dp_args, env, work, gw_traffic,
                    (small, big), args.warmup,
                )  # fmt: skip
                print(f"  instructions: {pair[0].instructions:,}, {pair[1].instructions:,}")
                pairs.append(pair)
                if args.direct:
                    pair = count_pair(
                        f"upstream-r{rep}", "bench.upstream", lambda n: ["--writes", "1"], {},
                        work, up_traffic, (small, big), args.warmup,
                    )  # fmt: skip
                    direct.append(pair)
            # Every request's usage reached the control plane: the final flush sent it all.
            sent = len(pairs) * (2 * args.warmup + small + big)
            usage = asyncio.run(usage_total(cp_addr, admin_token, sent))
            if usage.get("requests") != sent:
                raise RuntimeError(f"control plane has usage for {usage}, not {sent} requests")
        finally:
            for child in reversed(children):
                child.stop()
        result["loadavg_after"] = os.getloadavg()
        if args.keep is not None:
            keep(args.keep, pairs + direct)
        result["dataplane"] = [[asdict(c) for c in p] for p in pairs]
        result["direct"] = [[asdict(c) for c in p] for p in direct]
        if args.keep is not None:
            (args.keep / "result.json").write_text(json.dumps(result, indent=2))
    print(render(result, pairs, direct))
    return 0


def keep(dest: Path, pairs: list[tuple[Count, Count]]) -> None:
    """Copy callgrind's files to ``dest`` (the temporary directory goes) and point the counts
    at the copies."""
    dest.mkdir(parents=True, exist_ok=True)
    for pair in pairs:
        for c in pair:
            target = dest / Path(c.out_file).name
            shutil.copy(c.out_file, target)
            c.out_file = str(target)


def render(
    result: Mapping[str, object],
    pairs: list[tuple[Count, Count]],
    direct: list[tuple[Count, Count]],
) -> str:
    lines = [
        f"Instructions per request (callgrind), tree {result['tree']}",
        f"  N = {pairs[0][0].n} and {pairs[0][1].n} after {result['warmup']} warm-up requests,"
        f" each N in a fresh process; load avg before {result['loadavg_before']},"
        f" after {result['loadavg_after']}",
        f"  {'process':<12} {'run':>3} {'I(small)':>16} {'I(big)':>16} {'instr/request':>14}"
        f" {'big-run wall s':>14}",
    ]
    for label, rows in (("data plane", pairs), ("upstream", direct)):
        figures = []
        for i, (s, b) in enumerate(rows):
            figures.append(per_request(s, b))
            lines.append(
                f"  {label:<12} {i + 1:>3} {s.instructions:>16,} {b.instructions:>16,}"
                f" {figures[-1]:>14,.0f} {b.requests_s:>14.1f}"
            )
        if len(figures) > 1:
            spread = (max(figures) - min(figures)) / min(figures) * 100
            lines.append(f"  {label:<12} spread between runs: {spread:.2f} %")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.instructions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--n", type=int, nargs=2, default=[100, 400], metavar=("SMALL", "BIG"),
        help="requests after warm-up in the two processes (default 100 400)",
    )  # fmt: skip
    parser.add_argument("--warmup", type=int, default=20, help="requests before the counted ones")
    parser.add_argument("--repeat", type=int, default=1, help="measure the pair this many times")
    parser.add_argument("--direct", action="store_true", help="also the upstream, for scale")
    parser.add_argument("--keep", type=Path, help="keep callgrind's files and result.json here")
    parser.add_argument(
        "--diff", type=Path, nargs=2, metavar=("OLD", "NEW"),
        help="compare two --keep directories by function (runs nothing)",
    )  # fmt: skip
    parser.add_argument("--top", type=int, default=15, help="functions shown by --diff")
    args = parser.parse_args(argv)
    if args.diff:
        return diff(args.diff[0], args.diff[1], args.top)
    if args.n[0] == args.n[1] or min(args.n) < 0 or args.warmup < 0 or args.repeat < 1:
        parser.error("--n needs two different counts >= 0, --warmup >= 0, --repeat >= 1")
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
