"""``make bench-replicas``: two control-plane replicas on one PostgreSQL, under traffic.

``python -m bench.replicas [--keys N] [--active 1000] [--workspaces 10] [--conns 16]
[--seconds 10] [--revocations 5] [--pg URL] [--redis URL] [--json]``

Processes (loopback): ``bench.upstream`` (the fast fake upstream), control-plane replicas A and
B (``python -m controlplane``) on one PostgreSQL database in a throw-away schema, two data planes
(``bench.dp_main``) on Redis (a throw-away key prefix), both connected to A.

1. ``--keys`` keys (budget $1,000/month each) in ``--workspaces`` workspaces are created
   through A (8 at a time; the rate is printed: it is the incremental-snapshot work's figure).
2. Traffic over ``--active`` of them (round robin, ``--conns`` keep-alive connections spread
   over both data planes): spend changes every second, so snapshots carry new seeds.
3. Ingest cost: over ``--seconds``, the CPU time of A + B (``/proc``) against the usage rows
   that reached the ledger (counted in PostgreSQL directly, not through a replica): CPU per
   1,000 req/s of ingest, in % of one core. Acceptance: <= 25 %.
4. ``--revocations`` times, under that traffic: a key is revoked through **B**, and both data
   planes are probed (every 5 ms each) until both refuse it (401); the time from sending the
   RevokeKey call to the last refusal. Acceptance: <= 1 s. Then as many admin tokens, used on
   A and revoked through B: the time until A refuses one is the fleet bus's own latency (no
   snapshot involved). The snapshot builds each replica made in the window (count, mean, from
   its ``/metrics``) show how much of the rest is the whole-snapshot rebuild.

Everything is removed afterwards (schema dropped, Redis keys deleted, children stopped).

This module is long (~440 lines) because it is one scenario (set-up, traffic, the three
measurements, tear-down), read top to bottom; what it shares with the other benchmarks (processes,
the raw client) is in :mod:`bench.procs` and :mod:`bench.rawclient`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import psycopg
from psycopg.conninfo import make_conninfo

from bench import pyspy
from bench.loadgen import cpu_seconds
from bench.procs import (
    Child,
    spawn,
    start_controlplane,
    start_upstream,
    wait_for_json,
    wait_for_log,
)
from bench.rawclient import Conn, Target, build_request
from bench.run import PROVIDER_KEY_ENV, upstream_provider
from gwapi.v1 import admin_pb2, common_pb2
from gwclient.client import GatewayClient

BUDGET = common_pb2.Limits(
    budgets=[common_pb2.Budget(amount_micros=1_000_000_000, period=common_pb2.PERIOD_MONTH)]
)
BODY = orjson.dumps(
    {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
)


async def create_keys(
    address: str, token: str, n: int, workspaces: int, upstream_port: int
) -> tuple[list[tuple[str, str]], float]:
    """Workspaces, the provider and ``n`` keys through ``address``; (id, secret) and seconds."""
    async with GatewayClient(address, token) as client:
        for w in range(workspaces):
            await client.create_workspace(common_pb2.Workspace(name=f"ws-{w:03d}"))
        await client.create_provider(upstream_provider("fake-upstream", upstream_port))
        keys: list[tuple[str, str]] = []
        todo = iter(range(n))
        started = time.monotonic()

        async def worker() -> None:
            for i in todo:
                created = await client.create_key(
                    admin_pb2.CreateKeyRequest(
                        workspace=f"ws-{i % workspaces:03d}",
                        name=f"key-{i:06d}",
                        provider="fake-upstream",
                        limits=BUDGET,
                    )
                )
                keys.append((created.key.id, created.secret))
                if len(keys) % 500 == 0:
                    print(f"  {len(keys)} keys, {time.monotonic() - started:.0f} s", flush=True)

        await asyncio.gather(*(worker() for _ in range(8)))
        return keys, time.monotonic() - started


class Traffic:
    """Closed-loop traffic over the active keys, round robin, over both data planes."""

    def __init__(self, ports: list[int], keys: list[tuple[str, str]], conns: int) -> None:
        from bench.upstream import render_body

        self.expected = render_body()
        self.ports = ports
        self.active = {key_id: secret for key_id, secret in keys}
        self.order = itertools.cycle(list(self.active))
        self.conns = conns
        self.completed = 0
        self.errors = 0
        self.first_error = ""
        self._targets: dict[tuple[int, str], Target] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def target(self, port: int, key_id: str) -> Target:
        t = self._targets.get((port, key_id))
        if t is None:
            auth = ("x-api-key", self.active[key_id])
            request = build_request("127.0.0.1", port, BODY, auth)
            t = self._targets[(port, key_id)] = Target(
                key_id, "127.0.0.1", port, request, self.expected
            )
        return t

    def retire(self, key_id: str) -> None:
        """Stop sending with a key (it is about to be revoked)."""
        self.active.pop(key_id, None)
        self.order = itertools.cycle(list(self.active))

    async def _worker(self, port: int) -> None:
        conn: Conn | None = None
        while not self._stop.is_set():
            key_id = next(self.order)
            if key_id not in self.active:
                continue
            target = self.target(port, key_id)
            if conn is None:
                conn = Conn(target)
            conn.target = target
            try:
                await asyncio.wait_for(conn.request(), 30)
                self.completed += 1
            except Exception as exc:
                self.errors += 1
                self.first_error = self.first_error or str(exc) or type(exc).__name__
                conn.close()
                conn = None
                await asyncio.sleep(0.01)
        if conn is not None:
            conn.close()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for i in range(self.conns):
            port = self.ports[i % len(self.ports)]
            self._tasks.append(loop.create_task(self._worker(port)))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def builds(url: str) -> tuple[int, float]:
    """(count, total seconds) of a replica's snapshot builds, from its /metrics."""
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(url)).text
    count = total = 0.0
    for line in text.splitlines():
        if line.startswith("tollgate_cp_snapshot_build_seconds_count"):
            count = float(line.split()[-1])
        elif line.startswith("tollgate_cp_snapshot_build_seconds_sum"):
            total = float(line.split()[-1])
    return int(count), total


async def ledger_rows(conninfo: str) -> int:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        cur = await conn.execute("SELECT count(*) FROM usage_event")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def time_revocation(
    b_address: str, token: str, key_id: str, secret: str, ports: list[int]
) -> float:
    """Revoke through B; seconds until every data plane refuses the key."""
    headers = {
        "x-api-key": secret,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    async with GatewayClient(b_address, token) as admin, httpx.AsyncClient(timeout=5) as http:

        async def refused_by(port: int) -> float:
            while True:
                r = await http.post(
                    f"http://127.0.0.1:{port}/v1/messages", content=BODY, headers=headers
                )
                if r.status_code == 401:
                    return time.monotonic()
                if time.monotonic() - sent > 10:
                    raise RuntimeError(f"data plane :{port} still accepts a revoked key after 10 s")
                await asyncio.sleep(0.005)

        sent = time.monotonic()
        await admin.revoke_key(key_id)
        done = await asyncio.gather(*(refused_by(p) for p in ports))
        return max(done) - sent


async def time_token_revocation(a_address: str, b_address: str, token: str) -> float:
    """An admin token used on A, revoked through B: seconds until A refuses it. No snapshot is
    involved, so this is the fleet bus's own latency (notice + one token lookup)."""
    async with GatewayClient(a_address, token) as admin_a, GatewayClient(b_address, token) as b:
        created = await admin_a.create_token(f"bench-{secrets.token_hex(3)}", "admin")
        async with GatewayClient(a_address, created.secret) as as_token:
            await as_token.whoami()  # cached on A
            sent = time.monotonic()
            await b.revoke_token(created.token.id)
            while True:
                try:
                    await as_token.whoami()
                except Exception:
                    return time.monotonic() - sent
                if time.monotonic() - sent > 10:
                    raise RuntimeError("A still accepts a token revoked on B after 10 s")
                await asyncio.sleep(0.002)


async def measure(args: argparse.Namespace, plan: dict[str, Any]) -> dict[str, Any]:
    keys = plan["keys"]
    active = keys[: args.active]
    ports = plan["dp_ports"]
    traffic = Traffic(ports, active, args.conns)
    traffic.start()
    try:
        await asyncio.sleep(3.0)  # warm-up: pools, first spend refreshes
        spies = (
            [
                pyspy.start(pid, args.profile, f"replica-{name}")
                for name, pid in plan["cp_pids"].items()
            ]
            if args.profile
            else []
        )
        cpu0 = {name: cpu_seconds(pid) for name, pid in plan["cp_pids"].items()}
        b0 = {name: await builds(url) for name, url in plan["metrics"].items()}
        rows0, done0, t0 = await ledger_rows(plan["conninfo"]), traffic.completed, time.monotonic()
        await asyncio.sleep(args.seconds)
        cpu1 = {name: cpu_seconds(pid) for name, pid in plan["cp_pids"].items()}
        b1 = {name: await builds(url) for name, url in plan["metrics"].items()}
        rows1, done1, t1 = await ledger_rows(plan["conninfo"]), traffic.completed, time.monotonic()
        for spy in spies:
            print(spy.stop(), file=sys.stderr, flush=True)
        elapsed = t1 - t0
        ingest_rps = (rows1 - rows0) / elapsed
        cpu = {name: (cpu1[name] - cpu0[name]) / elapsed for name in cpu0}
        total_cpu = sum(cpu.values())
        per_1k = total_cpu / (ingest_rps / 1000) if ingest_rps else float("nan")
        revocations = []
        for key_id, secret in active[: args.revocations]:
            traffic.retire(key_id)
            revocations.append(
                await time_revocation(plan["b"], plan["token"], key_id, secret, ports)
            )
        token_revocations = [
            await time_token_revocation(plan["a"], plan["b"], plan["token"])
            for _ in range(args.revocations)
        ]
    finally:
        await traffic.stop()
    return {
        "keys": len(keys),
        "active_keys": len(active),
        "key_creation_s": round(plan["create_s"], 1),
        "keys_per_s": round(len(keys) / plan["create_s"], 1),
        "window_s": round(elapsed, 1),
        "client_rps": round((done1 - done0) / elapsed, 1),
        "ingest_rps": round(ingest_rps, 1),
        "cp_cpu_core_share": {k: round(v, 3) for k, v in cpu.items()},
        "cp_cpu_per_1k_rps_pct": round(per_1k * 100, 1),
        "snapshot_builds": {
            name: {
                "count": b1[name][0] - b0[name][0],
                "mean_ms": round(
                    (b1[name][1] - b0[name][1]) / max(1, b1[name][0] - b0[name][0]) * 1000, 1
                ),
            }
            for name in b0
        },
        "revocation_s": [round(r, 3) for r in revocations],
        "revocation_max_s": round(max(revocations), 3) if revocations else None,
        "revocation_median_s": round(statistics.median(revocations), 3) if revocations else None,
        "token_revocation_s": [round(r, 3) for r in token_revocations],
        "traffic_errors": traffic.errors,
        "first_traffic_error": traffic.first_error,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    schema = f"bench_replicas_{secrets.token_hex(4)}"
    prefix = f"bench-replicas-{secrets.token_hex(4)}:"
    sep = "&" if "?" in args.pg else "?"
    db_url = f"{args.pg}{sep}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(args.pg, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    token, dp_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    env = {"TOLLGATE_ADMIN_TOKEN": token, "TOLLGATE_DATAPLANE_TOKEN": dp_token}
    children: list[Child] = []
    try:
        with tempfile.TemporaryDirectory(prefix="tollgate-replicas-") as tmp:
            work = Path(args.logs or tmp)
            work.mkdir(parents=True, exist_ok=True)
            _, upstream_port = start_upstream(work, children)
            cps: dict[str, Child] = {}
            metrics: dict[str, str] = {}
            addresses: dict[str, str] = {}
            for name in ("a", "b"):
                cp, addresses[name] = start_controlplane(
                    work, children, db_url, (token, dp_token), name=f"cp-{name}",
                    extra_args=["--metrics-listen", "127.0.0.1:0"], timeout=60,
                )  # fmt: skip
                cps[name] = cp
                metrics[name] = wait_for_log(cp, r"metrics on (http://\S+/metrics)").group(1)
            print(f"creating {args.keys} keys through replica A ...", flush=True)
            keys, create_s = asyncio.run(
                create_keys(addresses["a"], token, args.keys, args.workspaces, upstream_port)
            )
            ports = []
            for i in range(2):
                dp = spawn(
                    f"dp-{i}",
                    [
                        "-m", "bench.dp_main",
                        "--ready-file", str(work / f"dp{i}.ready"),
                        "--control-plane", addresses["a"],
                        "--state-dir", str(work / f"dp{i}"),
                        "--redis", args.redis,
                        "--redis-prefix", prefix,
                    ],
                    work,
                    env={PROVIDER_KEY_ENV: "sk-ant-bench-" + secrets.token_hex(8), **env},
                )  # fmt: skip
                children.append(dp)
                ports.append(int(wait_for_json(dp, work / f"dp{i}.ready", timeout=120)["port"]))
            plan = {
                "keys": keys,
                "create_s": create_s,
                "dp_ports": ports,
                "cp_pids": {name: cp.pid for name, cp in cps.items()},
                "a": addresses["a"],
                "b": addresses["b"],
                "metrics": metrics,
                "token": token,
                "conninfo": make_conninfo(args.pg, options=f"-csearch_path={schema}"),
            }
            print(f"traffic over {min(args.active, len(keys))} keys ...", flush=True)
            result = asyncio.run(measure(args, plan))
            result["cp_log_errors"] = [
                line
                for cp in cps.values()
                for line in cp.log.read_text(errors="replace").splitlines()
                if "ERROR" in line or "Traceback" in line
            ][:5]
            for child in reversed(children):
                child.stop()
            children.clear()
            return result
    finally:
        for child in reversed(children):
            child.stop()
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        asyncio.run(_drop_redis(args.redis, prefix))


async def _drop_redis(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--keys", type=int, default=1000, help="keys in the fleet (target 20,000)")
    ap.add_argument("--active", type=int, default=1000, help="keys carrying traffic")
    ap.add_argument("--workspaces", type=int, default=10)
    ap.add_argument("--conns", type=int, default=16, help="client connections (both planes)")
    ap.add_argument("--seconds", type=float, default=10.0, help="ingest measurement window")
    ap.add_argument("--revocations", type=int, default=5)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--logs", default="", help="keep the processes' logs in this directory")
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON only")
    ap.add_argument(
        "--profile",
        metavar="DIR",
        type=Path,
        help="py-spy both replicas during the ingest window; stacks and top functions to DIR",
    )
    args = ap.parse_args(argv)
    if args.keys < 1 or args.active < 1 or args.revocations < 1:
        ap.error("--keys, --active and --revocations must be at least 1")
    if args.revocations > min(args.active, args.keys):
        ap.error("--revocations cannot exceed the active keys")
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    ok_revoke = (result["revocation_max_s"] or 99) <= 1.0
    ok_cpu = result["cp_cpu_per_1k_rps_pct"] <= 25.0
    print(
        f"\n{result['keys']} keys ({result['keys_per_s']} keys/s created through A), traffic "
        f"over {result['active_keys']}: {result['client_rps']} req/s served, "
        f"{result['ingest_rps']} req/s ingested\n"
        f"control-plane CPU: A {result['cp_cpu_core_share']['a']:.0%} + "
        f"B {result['cp_cpu_core_share']['b']:.0%} of a core = "
        f"{result['cp_cpu_per_1k_rps_pct']} % of a core per 1,000 req/s of ingest "
        f"({'ok' if ok_cpu else 'OVER'} <= 25 %)\n"
        f"snapshot builds in the window: {result['snapshot_builds']}\n"
        f"revocation through B refused by both data planes on A: "
        f"max {result['revocation_max_s']} s, median {result['revocation_median_s']} s "
        f"({'ok' if ok_revoke else 'OVER'} <= 1 s) {result['revocation_s']}\n"
        f"admin token revoked through B refused by A (the bus alone, no snapshot): "
        f"{result['token_revocation_s']}\n"
        f"traffic errors: {result['traffic_errors']} {result['first_traffic_error']}\n"
        f"control-plane log errors: {result['cp_log_errors'] or 'none'}"
    )
    return 0 if ok_revoke and ok_cpu else 1


if __name__ == "__main__":
    sys.exit(main())
