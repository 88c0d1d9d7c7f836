"""``make bench``: the data plane against a fast local upstream, and the same upstream directly.

Processes (all on loopback, each its own interpreter):

* ``bench.upstream`` — a minimal asyncio HTTP/1.1 fake of ``POST /v1/messages`` answering a
  pre-rendered 200-event SSE stream;
* the control plane (``python -m controlplane``) on a throw-away SQLite database; the workspace,
  the provider (kind ``anthropic``, ``base_url`` = the fake, ``api_key_env`` set only in the
  data plane's environment) and the virtual key are created through its Admin gRPC API;
* one data plane (``bench.dp_main``: ``dataplane.process.server.DataPlane``), which gets its snapshot
  from that control plane and reports usage back to it;
* a second, identical data plane with tracing on (``--otlp-endpoint``) exporting to
  ``bench.otlp_sink``, a minimal OTLP/HTTP receiver that counts the spans it gets;
* ``bench.bare_relay`` — the frameworks' floor: the data plane's process shell (uvloop, Hypercorn,
  the aiohttp transport) relaying to the same upstream with no gateway in between, driven in the
  throughput phase too, so the data plane's CPU per request is also given as a multiple of it;
* ``bench.loadgen`` — a raw asyncio client sending the Claude Code fixture body.

In one run the load generator drives the gateway and the upstream directly, interleaved (request
by request at 1 connection, in 0.5 s slices at 8) so machine noise hits both sides alike, then
measures saturated throughput. "Added latency" is a gateway percentile minus the same direct
percentile, on time to last byte (TTFB shown too). Peak RSS is the data plane's ``VmHWM``.
Tracing's cost is the traced data plane against the plain one, request by request at 1
connection (both through the gateway, same key and upstream).

Flags: ``--quick`` (shorter phases), ``--profile`` (sample the data plane's stacks and print
where its CPU goes), ``--cprofile`` (the same under cProfile: exact call counts, inflated
per-call costs), ``--json`` (also print the raw results).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import sampler
from bench.procs import (
    Child,
    kib,
    proc_status,
    spawn,
    start_bare_relay,
    start_controlplane,
    start_upstream,
    wait_for_file,
    wait_for_json,
    wait_for_log,
)
from bench.report import render
from gwapi.v1 import admin_pb2, common_pb2
from gwclient.client import GatewayClient

REPO = Path(__file__).resolve().parent.parent
# The realistic Claude Code request body, the same one the tests send.
FIXTURE_CANDIDATES = (REPO / "tests" / "fixtures" / "claude_code_request.json",)
PROVIDER_KEY_ENV = "BENCH_UPSTREAM_KEY"

DURATIONS = {"warmup": 2.0, "c1": 8.0, "c8": 8.0, "throughput": 10.0}
TIME_LIMIT_S = 170
QUICK = {"warmup": 1.0, "c1": 3.0, "c8": 3.0, "throughput": 4.0}


def upstream_provider(name: str, upstream_port: int) -> common_pb2.Provider:
    """A provider at the fake upstream on ``upstream_port`` (its key from PROVIDER_KEY_ENV)."""
    return common_pb2.Provider(
        name=name,
        kind="anthropic",
        base_url=f"http://127.0.0.1:{upstream_port}",
        api_key_env=PROVIDER_KEY_ENV,
    )


async def provision(cp_addr: str, admin_token: str, upstream_port: int) -> tuple[str, str]:
    """Workspace, providers, a fallback route and two keys through the Admin API; returns the
    secrets of the key on the plain provider and of the key on the route."""
    async with GatewayClient(cp_addr, admin_token) as client:
        await client.create_workspace(common_pb2.Workspace(name="bench", description="make bench"))
        await client.create_provider(upstream_provider("fake-upstream", upstream_port))
        # A second, healthy provider behind the same upstream: the route's fallback target.
        await client.create_provider(upstream_provider("fake-backup", upstream_port))
        await client.create_route(
            common_pb2.Route(
                name="bench-fallback",
                mode="fallback",
                targets=[
                    common_pb2.RouteTarget(provider="fake-upstream"),
                    common_pb2.RouteTarget(provider="fake-backup"),
                ],
            )
        )
        created = await client.create_key(
            admin_pb2.CreateKeyRequest(workspace="bench", name="bench", provider="fake-upstream")
        )
        routed = await client.create_key(
            admin_pb2.CreateKeyRequest(
                workspace="bench", name="bench-route", route="bench-fallback"
            )
        )
        return created.secret, routed.secret


async def usage_total(
    cp_addr: str, admin_token: str, expected: int, wait_s: float = 8.0
) -> dict[str, int]:
    """Usage rows the control plane ingested for the bench workspace (polls until ``expected``)."""
    deadline = time.monotonic() + wait_s
    row: dict[str, int] = {}
    async with GatewayClient(cp_addr, admin_token) as client:
        while True:
            rows = await client.query_usage(workspace="bench")
            if rows:
                r = rows[0]
                row = {
                    "requests": r.requests,
                    "errors": r.errors,
                    "input_tokens": r.input_tokens,
                    "output_tokens": r.output_tokens,
                    "cost_micros": r.cost_micros,
                }
            if row.get("requests", 0) >= expected or time.monotonic() > deadline:
                return row
            await asyncio.sleep(0.25)


def fixture_path() -> Path:
    explicit = os.environ.get("TOLLGATE_BENCH_FIXTURE")
    candidates = (Path(explicit),) if explicit else FIXTURE_CANDIDATES
    for p in candidates:
        if p.exists():
            return p
    raise SystemExit(
        f"benchmark fixture not found in {', '.join(map(str, candidates))}"
        " (set TOLLGATE_BENCH_FIXTURE to a Messages request body)"
    )


def print_profile(path: Path, top: int = 30) -> None:
    stats = pstats.Stats(str(path))
    stats.strip_dirs()
    print(f"\n--- data plane cProfile, top {top} by own time (tottime) ---")
    stats.sort_stats("tottime").print_stats(top)
    print(f"--- top {top} by cumulative time ---")
    stats.sort_stats("cumulative").print_stats(top)


def _overrun(signum: int, frame: object) -> None:
    raise TimeoutError(f"the benchmark overran its {TIME_LIMIT_S} s limit")


def run(args: argparse.Namespace) -> int:
    fixture = fixture_path()
    # Bounded whatever happens: SIGALRM raises here, and the finally below stops every child.
    signal.signal(signal.SIGALRM, _overrun)
    signal.alarm(TIME_LIMIT_S)
    load_before = os.getloadavg()
    durations = QUICK if args.quick else DURATIONS
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as tmp:
        work = Path(tmp)
        admin_token = secrets.token_urlsafe(16)
        dp_token = secrets.token_urlsafe(16)
        provider_key = "sk-ant-bench-" + secrets.token_hex(8)
        try:
            upstream, upstream_port = start_upstream(work, children)
            db_url = f"sqlite:///{work / 'tollgate.db'}"
            _, cp_addr = start_controlplane(work, children, db_url, (admin_token, dp_token))
            secret, route_secret = asyncio.run(provision(cp_addr, admin_token, upstream_port))

            dp_args = [
                "-m", "bench.dp_main",
                "--ready-file", str(work / "dp.ready"),
                "--control-plane", cp_addr,
                "--state-dir", str(work / "dp-state"),
            ]  # fmt: skip
            profile = work / "dp.prof"
            if args.profile:
                dp_args += ["--sample", str(profile)]
            elif args.cprofile:
                dp_args += ["--profile", str(profile)]
            dp = spawn(
                "dataplane",
                dp_args,
                work,
                env={PROVIDER_KEY_ENV: provider_key, "TOLLGATE_DATAPLANE_TOKEN": dp_token},
            )
            children.append(dp)
            ready = wait_for_json(dp, work / "dp.ready")
            rss_idle = kib(proc_status(dp.pid)["VmRSS"])

            sink = spawn(
                "otlp-sink",
                ["-m", "bench.otlp_sink", "--ready-file", str(work / "sink.ready")],
                work,
            )
            children.append(sink)
            sink_port = int(wait_for_file(sink, work / "sink.ready"))
            traced = spawn(
                "dataplane-traced",
                [
                    "-m", "bench.dp_main",
                    "--ready-file", str(work / "traced.ready"),
                    "--control-plane", cp_addr,
                    "--state-dir", str(work / "traced-state"),
                    "--otlp-endpoint", f"http://127.0.0.1:{sink_port}",
                ],
                work,
                env={PROVIDER_KEY_ENV: provider_key, "TOLLGATE_DATAPLANE_TOKEN": dp_token},
            )  # fmt: skip
            children.append(traced)
            traced_ready = wait_for_json(traced, work / "traced.ready")
            bare, bare_port = start_bare_relay(work, children, upstream_port)

            plan = {
                "fixture": str(fixture),
                "gateway_port": ready["port"],
                "upstream_port": upstream_port,
                "virtual_key": secret,
                "route_key": route_secret,
                "provider_key": provider_key,
                "dataplane_pid": dp.pid,
                "traced_port": traced_ready["port"],
                "traced_pid": traced.pid,
                "upstream_pid": upstream.pid,
                "bare_port": bare_port,
                "bare_pid": bare.pid,
                "durations": durations,
                "throughput_conns": args.conns,
            }
            (work / "plan.json").write_text(json.dumps(plan))
            lg = spawn("loadgen", ["-m", "bench.loadgen", str(work / "plan.json")], work)
            children.append(lg)
            budget = sum(durations.values()) * 2 + 60
            try:
                lg.proc.wait(budget)
            except Exception:
                lg.stop()
                raise
            if lg.proc.returncode != 0:
                raise RuntimeError(f"load generator failed:\n{lg.tail(40)}")
            result: dict[str, Any] = json.loads(lg.log.read_text().strip().splitlines()[-1])
            status = proc_status(dp.pid)
            result["dataplane_rss_kib"] = {
                "idle": rss_idle,
                "hwm": kib(status["VmHWM"]),
                "now": kib(status["VmRSS"]),
            }
            result["usage"] = asyncio.run(
                usage_total(
                    cp_addr,
                    admin_token,
                    result["completed"]["gateway"]
                    + result["completed"]["route"]
                    + result["completed"]["traced"],
                )
            )
            result["machine"] = {
                "cpus": os.cpu_count(),
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
            }
            result["durations"] = durations
            dp.stop()
            children.remove(dp)
            dp_violations = [
                line
                for line in dp.log.read_text().splitlines()
                if "ERROR" in line or "Traceback" in line
            ]
            result["dataplane_log_errors"] = dp_violations[:5]
            traced.stop()  # flushes its span queue to the sink
            children.remove(traced)
            sink.stop()
            children.remove(sink)
            got = wait_for_log(sink, r"otlp sink: (\d+) exports, (\d+) spans, (\d+) undecodable")
            result["tracing"]["exports"] = int(got.group(1))
            result["tracing"]["spans"] = int(got.group(2))
            result["tracing"]["undecodable"] = int(got.group(3))
            result["tracing"]["log_errors"] = [
                line
                for line in traced.log.read_text().splitlines()
                if "ERROR" in line or "Traceback" in line or "WARNING" in line
            ][:5]
        finally:
            for child in reversed(children):
                child.stop()
        print(render(result, profiled=args.profile or args.cprofile))
        signal.alarm(0)
        if args.json:
            print(json.dumps(result, indent=2))
        if args.profile and profile.exists():
            print()
            print(sampler.render(profile))
        elif args.cprofile and profile.exists():
            print_profile(profile)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="shorter phases (~20 s)")
    parser.add_argument(
        "--profile", action="store_true", help="sample the data plane's stacks (bench.sampler)"
    )
    parser.add_argument("--cprofile", action="store_true", help="run the data plane under cProfile")
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    parser.add_argument(
        "--conns", type=int, default=32, help="connections for the throughput phase"
    )
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
