"""``make bench-workers``: ``gwctl dataplane serve --workers 1`` against ``--workers 2``.

Processes (loopback, each its own interpreter): ``bench.upstream`` (the fast fake upstream), the
control plane on a throw-away SQLite database (provisioned as ``bench.run`` does), and three
data planes started exactly as an operator would (``python -m gwctl.main dataplane serve``), all
with the same Redis for their counters (``--workers N`` > 1 needs it; the 1-worker data plane
uses it too, so both pay the same admission cost):

* ``w1``: ``--workers 1`` (one process, no supervisor);
* ``w2``: ``--workers 2`` (SO_REUSEPORT, the default);
* ``w2-shared``: ``--workers 2`` with the supervisor's listening socket inherited by both
  workers (``TOLLGATE_WORKER_SOCKET=shared``), to compare how connections are spread.

The key has a (never reached) budget and rate limits, so every request is admitted through the
counters in Redis, as in a deployment with limits. ``bench.workers_load`` then runs paired rounds (see there) of the Claude-Code-shaped streamed
request. Reported: requests/s per data plane and the w2/w1 ratio (median of the per-round
ratios), CPU per request of each process group, how busy the whole machine was, and how the
requests were spread over the workers (their ``tollgate_requests_total``, per ``worker`` label).

Flags: ``--quick`` (2 rounds of 3 s), ``--conns`` (default 32), ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.procs import (
    Child,
    spawn,
    start_controlplane,
    start_upstream,
)
from bench.run import PROVIDER_KEY_ENV, fixture_path, provision
from gwapi.v1 import admin_pb2, common_pb2
from gwclient.client import GatewayClient

TARGET_RATIO = 1.7
TIME_LIMIT_S = 300
REDIS_ENV = "TOLLGATE_BENCH_REDIS"
DATAPLANES = (("w1", 1, "reuseport"), ("w2", 2, "reuseport"), ("w2-shared", 2, "shared"))


async def limited_key(cp_addr: str, admin_token: str) -> str:
    """A key with a budget and rate limits far above what the run spends: every request then
    takes the whole admission path (reserve, then settle) through the counters in Redis."""
    limits = common_pb2.Limits(
        budgets=[common_pb2.Budget(amount_micros=10**12, period=common_pb2.PERIOD_DAY)],
        rpm=10**7,
        tpm=2_000_000_000,
    )
    async with GatewayClient(cp_addr, admin_token) as client:
        created = await client.create_key(
            admin_pb2.CreateKeyRequest(
                workspace="bench", name="bench-workers", provider="fake-upstream", limits=limits
            )
        )
    return str(created.secret)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def wait_serving(child: Child, port: int, workers: int, timeout: float = 60.0) -> None:
    """Until every worker of the data plane holds a snapshot (``tollgate_snapshot_info``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.check_alive()
        try:
            text = scrape(port)
        except OSError:
            text = ""
        if len(re.findall(r"^tollgate_snapshot_info\{", text, re.M)) >= workers:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{child.name} not serving after {timeout:.0f} s:\n{child.tail()}")


def requests_by_worker(port: int) -> dict[str, float]:
    """Requests each worker served (``tollgate_requests_total`` summed per ``worker``)."""
    out: dict[str, float] = {}
    for m in re.finditer(r"^tollgate_requests_total\{(.*)\} (\S+)$", scrape(port), re.M):
        w = re.search(r'worker="(\d+)"', m.group(1))
        key = w.group(1) if w else "0"
        out[key] = out.get(key, 0.0) + float(m.group(2))
    return out


def log_problems(path: Path, keep: int = 3) -> list[str]:
    """A data plane's distinct WARNING/ERROR messages (timestamps dropped), with their counts."""
    seen: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        if " WARNING " in line or " ERROR " in line:
            message = line.split(" ", 2)[-1][:200]
            seen[message] = seen.get(message, 0) + 1
    return [f"{n} x {m}" for m, n in sorted(seen.items(), key=lambda kv: -kv[1])[:keep]]


def clean_redis(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    rounds = result["rounds"]
    out: dict[str, Any] = {}
    for name in rounds[0]:
        phases = [r[name] for r in rounds]
        n = sum(p["n"] for p in phases)
        cpu = {k: sum(p["cpu_s"][k] for p in phases) for k in phases[0]["cpu_s"]}
        elapsed = sum(p["elapsed_s"] for p in phases)
        out[name] = {
            "rps_per_round": [round(p["rps"], 1) for p in phases],
            "rps": n / elapsed,
            "errors": sum(p["errors"] for p in phases),
            "first_error": next((p["first_error"] for p in phases if p["first_error"]), ""),
            "ttlb_p50_ms": statistics.median(p["ttlb_p50_ms"] for p in phases),
            "cpu_ms_per_request": {k: 1000 * v / max(n, 1) for k, v in cpu.items()},
            "cores_used": {k: v / elapsed for k, v in cpu.items()},
            "machine_busy": sum(p["machine_busy_s"] for p in phases)
            / max(sum(p["machine_total_s"] for p in phases), 1e-9),
            # Busy CPU that none of the benchmark's processes used: neighbours (and Redis).
            "others_cores": (sum(p["machine_busy_s"] for p in phases) - sum(cpu.values()))
            / elapsed,
        }
    for name in ("w2", "w2-shared"):
        ratios = [r[name]["rps"] / r["w1"]["rps"] for r in rounds if r["w1"]["rps"]]
        out[name]["ratio_vs_w1"] = statistics.median(ratios) if ratios else 0.0
        out[name]["ratio_per_round"] = [round(x, 2) for x in ratios]
    return out


def render(s: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "Tollgate data plane: --workers 1 vs --workers 2",
        f"  machine: {meta['cpus']} CPUs, SHARED (load avg before {meta['load_before']}, after "
        f"{meta['load_after']}); {meta['rounds']} paired rounds x {meta['seconds']} s, "
        f"{meta['conns']} connections; a key with a budget and rate limits, counted in Redis "
        "by all three",
        "  request: Claude Code fixture, stream=true; answer: 200 SSE events",
        "",
        f"  {'':10} {'req/s':>8} {'ratio':>6} {'p50 ms':>7}  CPU ms/request (cores used)"
        f"{'':30} machine busy (others' cores)",
    ]
    for name, row in s.items():
        cpu = "  ".join(
            f"{k[:4]} {row['cpu_ms_per_request'][k]:.2f} ({row['cores_used'][k]:.2f})"
            for k in ("dataplane", "upstream", "loadgen", "controlplane", "redis")
        )
        ratio = f"{row['ratio_vs_w1']:5.2f}x" if "ratio_vs_w1" in row else "    - "
        lines.append(
            f"  {name:10} {row['rps']:8.0f} {ratio:>6} {row['ttlb_p50_ms']:7.1f}  {cpu}"
            f"  {100 * row['machine_busy']:.0f} % ({row['others_cores']:.2f})"
        )
        lines.append(
            f"  {'':10} per round: {row['rps_per_round']}"
            + (f"  ratios {row['ratio_per_round']}" if "ratio_per_round" in row else "")
            + (f"  ERRORS {row['errors']}: {row['first_error']}" if row["errors"] else "")
        )
    lines.append("")
    for name, spread in meta["spread"].items():
        total = sum(spread.values()) or 1
        parts = ", ".join(f"worker {w}: {100 * v / total:.0f} %" for w, v in sorted(spread.items()))
        lines.append(f"  requests per worker, {name}: {parts}")
    dp1, dp2 = (s[n]["cpu_ms_per_request"]["dataplane"] for n in ("w1", "w2"))
    others = sum(v for k, v in s["w1"]["cpu_ms_per_request"].items() if k != "dataplane")
    path_only = others - s["w1"]["cpu_ms_per_request"]["controlplane"]

    def ceiling(rest: float) -> float:
        """What the CPU per request allows on 2 idle cores: 1 worker is held to one core (or to
        both, shared with the rest, if that binds first); 2 workers share both with the rest."""
        return float((2 / (dp2 + rest)) / min(1 / dp1, 2 / (dp1 + rest)))

    lines.append(
        f"  data-plane CPU per request: {dp1:.2f} ms with 1 worker, {dp2:.2f} ms with 2; the "
        f"other processes here add {others:.2f} ms per request on the same {meta['cpus']} cores"
    )
    lines.append(
        f"  ceiling on this box without neighbours: {ceiling(others):.2f}x with every process "
        f"above on the 2 cores; {ceiling(path_only):.2f}x with the control plane elsewhere "
        "(upstream, load generator and Redis still here)"
    )
    lines.append(
        f"  projected on 2 cores for the data plane alone (2 x {dp1:.2f} / {dp2:.2f}): "
        f"{2 * dp1 / dp2:.2f}x  (a projection from CPU per request, not a measurement)"
    )
    ratio = s["w2"]["ratio_vs_w1"]
    verdict = "MET" if ratio >= TARGET_RATIO else "NOT MET"
    lines.append(f"  target: --workers 2 >= {TARGET_RATIO}x --workers 1: {ratio:.2f}x {verdict}")
    return "\n".join(lines)


def _overrun(signum: int, frame: object) -> None:
    raise TimeoutError(f"the benchmark overran its {TIME_LIMIT_S} s limit")


def run(args: argparse.Namespace) -> int:
    fixture = fixture_path()
    redis_url = os.environ.get(REDIS_ENV, "redis://127.0.0.1:6379/0")
    prefix = f"tollgate-bench-workers-{secrets.token_hex(4)}:"
    signal.signal(signal.SIGALRM, _overrun)
    signal.alarm(TIME_LIMIT_S)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rounds, seconds = (2, 3.0) if args.quick else (args.rounds, args.seconds)
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-workers-") as tmp:
        work = Path(tmp)
        admin_token, dp_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        provider_key = "sk-ant-bench-" + secrets.token_hex(8)
        try:
            upstream, upstream_port = start_upstream(work, children)
            # At nice 19: in production the control plane runs elsewhere; here it takes only
            # CPU the request path leaves idle (its ingest catches up between phases).
            cp, cp_addr = start_controlplane(
                work, children, f"sqlite:///{work / 'tollgate.db'}", (admin_token, dp_token),
                python_args=["-c", "import os, runpy; os.nice(19); "
                             "runpy.run_module('controlplane', run_name='__main__')"],
            )  # fmt: skip
            asyncio.run(provision(cp_addr, admin_token, upstream_port))
            key = asyncio.run(limited_key(cp_addr, admin_token))
            dps: dict[str, dict[str, Any]] = {}
            started: list[tuple[Child, int, int]] = []
            for name, workers, mode in DATAPLANES:
                port = free_port()
                child = spawn(
                    name,
                    ["-m", "gwctl.main", "dataplane", "serve",
                     "--listen", f"127.0.0.1:{port}", "--control-plane", cp_addr,
                     "--state-dir", str(work / name), "--workers", str(workers),
                     "--redis", redis_url, "--redis-prefix", prefix,
                     "--drain-seconds", "0", "--log-level", "WARNING"],
                    work,
                    env={PROVIDER_KEY_ENV: provider_key, "TOLLGATE_DATAPLANE_TOKEN": dp_token,
                         "TOLLGATE_WORKER_SOCKET": mode},
                )  # fmt: skip
                children.append(child)
                started.append((child, port, workers))
                dps[name] = {"port": port, "pid": child.pid, "workers": workers}
            for child, port, workers in started:
                wait_serving(child, port, workers)
            plan = {
                "fixture": str(fixture),
                "key": key,
                "dataplanes": dps,
                "upstream_pid": upstream.pid,
                "controlplane_pid": cp.pid,
                "conns": args.conns,
                "seconds": seconds,
                "rounds": rounds,
                "warmup": 1.0,
            }
            (work / "plan.json").write_text(json.dumps(plan))
            lg = spawn("loadgen", ["-m", "bench.workers_load", str(work / "plan.json")], work)
            children.append(lg)
            lg.proc.wait(rounds * seconds * len(DATAPLANES) * 3 + 60)
            if lg.proc.returncode != 0:
                raise RuntimeError(f"load generator failed:\n{lg.tail(40)}")
            result = json.loads(lg.log.read_text().strip().splitlines()[-1])
            spread = {name: requests_by_worker(dps[name]["port"]) for name in ("w2", "w2-shared")}
            errors = {child.name: log_problems(child.log) for child, _, _ in started}
        finally:
            for child in reversed(children):
                child.stop()
            clean_redis(redis_url, prefix)
    signal.alarm(0)
    s = summarize(result)
    meta = {
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "rounds": rounds,
        "seconds": seconds,
        "conns": args.conns,
        "spread": spread,
    }
    print(render(s, meta))
    for name, lines in errors.items():
        for line in lines:
            print(f"  {name} logged: {line}")
    if args.json:
        print(json.dumps({"summary": s, "meta": meta, "raw": result}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.workers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
