"""Fleet-scale configuration: bulk ``gwctl apply``, one key's propagation, data-plane memory.

``python -m bench.fleet_apply [--keys 20000] [--workspaces 50]`` (``make bench-fleet``)

On a throw-away PostgreSQL database (``TOLLGATE_BENCH_PG``, default the local server's ``test``
database's server; dropped at the end) it runs one control plane and two data planes
(``bench.dp_main``, the delta stream), then:

1. applies a file with a simulator provider and the workspaces, and measures each data plane's
   RSS with no keys;
2. creates 10 keys, then times one key creation (``CreateKey`` until both data planes know the
   key: ``GET /v1/tollgate/whoami`` answers 200 with it), median of 5;
3. ``gwctl apply`` of a file with 5,000 keys (timed; acceptance ≤ 30 s), then of files with
   10,000 and ``--keys`` keys (each apply creates only the keys the previous file lacked; the
   time for ``--keys`` from scratch is reported as the sum, acceptance ≤ 120 s for 20,000;
   ``--sizes ''`` applies the ``--keys`` file at once instead),
   measuring RSS after each;
4. times one key creation again at the full size.

Prints one JSON object. Every child is stopped by its pid, the database dropped, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import yaml

from bench.procs import (
    REPO,
    Child,
    kib,
    proc_status,
    spawn,
    start_controlplane,
    wait_for_json,
)
from gwapi.v1 import admin_pb2
from gwclient.client import GatewayClient

PG_ADMIN_URL = os.environ.get("TOLLGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
VISIBLE_TIMEOUT_S = 30.0


def gateway_file(path: Path, workspaces: int, keys: int) -> None:
    doc: dict[str, Any] = {
        "version": 1,
        "providers": [{"name": "sim", "kind": "simulator"}],
        "workspaces": [
            {"name": f"team-{w:03d}", "limits": {"budgets": ["100/month"]}}
            for w in range(workspaces)
        ],
        "keys": [
            {
                "workspace": f"team-{i % workspaces:03d}",
                "name": f"dev-{i:06d}",
                "provider": "sim",
                "limits": {"budgets": ["10/day"], "rpm": 60},
            }
            for i in range(keys)
        ],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def apply(cp_addr: str, token: str, path: Path, work: Path) -> float:
    started = time.perf_counter()
    gwctl = "from gwctl.main import main; raise SystemExit(main())"
    with (work / "apply.out").open("wb") as out:  # every new key's secret: a private temp dir
        done = subprocess.run(
            [sys.executable, "-c", gwctl, "-o", "json", "apply", "-f", str(path), "--yes"],
            cwd=REPO,
            env={**os.environ, "TOLLGATE_CONTROL_PLANE": cp_addr, "TOLLGATE_ADMIN_TOKEN": token},
            stdout=out,
            stderr=subprocess.PIPE,
        )
    if done.returncode != 0:
        raise RuntimeError(f"gwctl apply failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return time.perf_counter() - started


async def key_visible(session: aiohttp.ClientSession, port: int, secret: str) -> None:
    deadline = time.monotonic() + VISIBLE_TIMEOUT_S
    url = f"http://127.0.0.1:{port}/v1/tollgate/whoami"
    while True:
        async with session.get(url, headers={"x-api-key": secret}) as resp:
            await resp.read()
            if resp.status == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"a new key is still unknown on :{port} after {VISIBLE_TIMEOUT_S}s")
        await asyncio.sleep(0.002)


async def one_key_latency(cp_addr: str, token: str, ports: list[int], label: str) -> float:
    """Median seconds from CreateKey to the key being known on every data plane."""
    times = []
    async with GatewayClient(cp_addr, token) as client, aiohttp.ClientSession() as session:
        for i in range(5):
            started = time.perf_counter()
            resp = await client.create_key(
                admin_pb2.CreateKeyRequest(
                    workspace="team-000", name=f"probe-{label}-{i}", provider="sim"
                )
            )
            await asyncio.gather(*(key_visible(session, p, resp.secret) for p in ports))
            times.append(time.perf_counter() - started)
            await client.revoke_key(resp.key.id)
    return statistics.median(times)


def cpu_s(child: Child) -> float:
    """User + system CPU seconds the child has used so far."""
    fields = Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(children: list[Child]) -> list[float]:
    return [round(kib(proc_status(c.pid)["VmRSS"]) / 1024, 1) for c in children]


def run(args: argparse.Namespace) -> dict[str, Any]:
    dbname = f"tollgate_bench_{secrets.token_hex(6)}"
    base = PG_ADMIN_URL.rpartition("/")[0]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    children: list[Child] = []
    result: dict[str, Any] = {"keys": args.keys, "workspaces": args.workspaces}
    with tempfile.TemporaryDirectory(prefix="tollgate-fleet-") as tmp:
        try:
            work = Path(tmp)
            token, dp_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
            _, cp_addr = start_controlplane(work, children, f"{base}/{dbname}", (token, dp_token))
            dps: list[Child] = []
            ports: list[int] = []
            for n in range(2):
                dp = spawn(
                    f"dataplane-{n}",
                    [
                        "-m", "bench.dp_main",
                        "--ready-file", str(work / f"dp{n}.ready"),
                        "--control-plane", cp_addr,
                        "--state-dir", str(work / f"dp{n}-state"),
                    ],
                    work,
                    env={"TOLLGATE_DATAPLANE_TOKEN": dp_token},
                )  # fmt: skip
                children.append(dp)
                dps.append(dp)
                ports.append(int(wait_for_json(dp, work / f"dp{n}.ready")["port"]))
            files = work / "files"
            files.mkdir()

            def step(keys: int) -> float:
                path = files / f"gateway-{keys}.yaml"
                gateway_file(path, args.workspaces, keys)
                return apply(cp_addr, token, path, work)

            step(0)
            result["rss_mib_0_keys"] = rss_mib(dps)
            step(10)
            result["one_key_s_at_10"] = round(
                asyncio.run(one_key_latency(cp_addr, token, ports, "small")), 4
            )
            sizes = sorted(
                {min(int(s), args.keys) for s in args.sizes.split(",") if s} | {args.keys}
            )
            applied = 10
            total = 0.0
            for size in sizes:
                cpu = [cpu_s(c) for c in children]
                seconds = step(size)
                total += seconds
                result[f"apply_s_{applied}_to_{size}"] = round(seconds, 2)
                result[f"cpu_s_{applied}_to_{size}"] = {
                    c.name: round(cpu_s(c) - before, 1)
                    for c, before in zip(children, cpu, strict=True)
                }
                result[f"rss_mib_{size}_keys"] = rss_mib(dps)
                applied = size
            result[f"apply_s_0_to_{args.keys}_sum"] = round(total, 2)
            result[f"one_key_s_at_{args.keys}"] = round(
                asyncio.run(one_key_latency(cp_addr, token, ports, "large")), 4
            )
            for child in children:
                child.check_alive()
        finally:
            for child in reversed(children):
                child.stop()
            with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--workspaces", type=int, default=50)
    parser.add_argument(
        "--sizes",
        default="5000,10000",
        help="fleet sizes applied one after the other before --keys (comma-separated; '' applies "
        "--keys in one file from scratch)",
    )
    args = parser.parse_args(argv)
    print(json.dumps(run(args), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
