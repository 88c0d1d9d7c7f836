"""A bounded soak of usage reporting (P2 findings 1 and 3), under a minute: a PostgreSQL-backed
control plane and a data plane, both real processes, the built-in simulator as provider.

Thousands of good requests are mixed with every bad input of the findings: multi-MB and NUL
model ids (in the body and in Vertex/Bedrock paths), odd and huge metadata, huge session ids
and user agents, and — with ``--log-bodies full`` — 3 MB bodies sent during a short control-plane
outage, so the backlog is larger than the control plane's 32 MiB message limit. Then:

* every request the data plane answered is in the ledger exactly once (request ids compared
  with the rows in PostgreSQL), refused ones included;
* every bad input was refused readably (400, the Anthropic or Bedrock error shape, a message
  saying what to fix, never echoing the value);
* the data plane's RSS and its spool stayed bounded, and the spool is empty at the end;
* the usage reporter is alive: never restarted, nothing set aside, backlog 0, and a request
  made at the end is delivered.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson
import psycopg
import pytest

from gwapi.v1 import admin_pb2, common_pb2
from tests.conftest import _reset_pg_schema
from tests.e2e.test_gateway import ADMIN, DP_TOKEN, ROOT, ControlPlaneProcess, free_port, wait_for
from tui.client import GatewayClient

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

GOOD = 2400
WORKERS = 12
MODEL = "claude-haiku-4-5"
BIG_BODY = 3_000_000  # bytes of prompt per logged request during the outage
LOGGED = 12  # 12 x 3 MB = 36 MB waiting: more than one 32 MiB message
MIB = 1024 * 1024
# Bounds. Measured with the fixes: RSS grows by ~65 MiB (the 36 MB of logged bodies pass
# through memory: request, event, spool window) and the spool peaks at ~35 MiB. Without them the
# 40 distinct 1 MiB model ids alone were kept in the price caches and in every queued event,
# twice each (~160 MiB more), and the spool never emptied.
RSS_GROWTH_MAX = 160 * MIB
SPOOL_MAX = 64 * MIB


def body(model: str = MODEL, text: str = "hi") -> bytes:
    return orjson.dumps(
        {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": text}]}
    )


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def dir_bytes(path: Path) -> int:
    try:
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    except FileNotFoundError:
        return 0


class Traffic:
    """Sends requests and keeps what the data plane answered: request id, status, body."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.c = client
        self.ids: list[str] = []
        self.good: list[str] = []

    async def post(self, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        r = await self.c.post(path, content=content, headers=headers)
        self.ids.append(r.headers["x-tollgate-request-id"])
        return r


async def test_soak_usage_reporting_stays_whole_and_bounded(
    pg_database: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    _reset_pg_schema(pg_database)
    cp = ControlPlaneProcess(pg_database, tmp_path / "cp.log")
    await cp.start()
    admin = GatewayClient(cp.address, ADMIN)
    await admin.create_provider(common_pb2.Provider(name="sim", kind="simulator"))
    await admin.create_workspace(common_pb2.Workspace(name="team-a"))
    await admin.create_workspace(
        common_pb2.Workspace(name="logged", log_bodies="full", log_body_max_bytes=16 * MIB)
    )
    alice = await admin.create_key(
        admin_pb2.CreateKeyRequest(workspace="team-a", name="alice", provider="sim")
    )
    bob = await admin.create_key(
        admin_pb2.CreateKeyRequest(workspace="logged", name="bob", provider="sim")
    )
    port = free_port()
    state = tmp_path / "dp"
    spool = state / "spool"
    dp_log = tmp_path / "dp.log"
    args = ["--listen", f"127.0.0.1:{port}", "--control-plane", cp.address]
    with open(dp_log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gwctl.main",
                "dataplane",
                "serve",
                *args,
                "--state-dir",
                str(state),
            ],
            cwd=ROOT,
            env={**os.environ, "TOLLGATE_DATAPLANE_TOKEN": DP_TOKEN},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    limits = httpx.Limits(max_connections=WORKERS + 8)
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, limits=limits)
    peak = {"rss": 0, "spool": 0}
    sampling = True

    async def sample() -> None:
        while sampling:
            peak["rss"] = max(peak["rss"], rss(proc.pid))
            peak["spool"] = max(peak["spool"], dir_bytes(spool))
            await asyncio.sleep(0.05)

    sampler: asyncio.Task[None] | None = None
    try:

        async def healthy() -> bool:
            try:
                return (await client.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(healthy, timeout=20, interval=0.05)
        t = Traffic(client)
        a_headers = {
            "x-api-key": alice.secret,
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        }
        b_headers = {**a_headers, "x-api-key": bob.secret}
        for i in range(100):  # warm up, then take the baseline
            r = await t.post("/v1/messages", body(text=f"warm {i}"), a_headers)
            assert r.status_code == 200, r.text
            t.good.append(t.ids[-1])
        baseline = rss(proc.pid)
        sampler = asyncio.create_task(sample())

        # --- good traffic: GOOD requests from WORKERS concurrent clients ---
        numbers = itertools.count()
        done = asyncio.Event()
        served = [0]

        async def worker(w: int) -> None:
            while (i := next(numbers)) < GOOD:
                headers = {**a_headers, "x-claude-code-session-id": f"good-{w}"}
                r = await t.post("/v1/messages", body(text=f"good {i}"), headers)
                assert r.status_code == 200, r.text
                t.good.append(t.ids[-1])
                served[0] += 1
            done.set()

        # --- bad inputs of findings 1 and 3, each refused readably (or accepted and cut) ---
        refusals: list[tuple[httpx.Response, str]] = []

        async def bad_inputs() -> None:
            for i in range(40):  # distinct multi-MB model ids (finding 3: the price caches)
                huge = f"claude-opus-zz{i}-" + "x" * (MIB + i)
                refusals.append(
                    (await t.post("/v1/messages", body(huge), a_headers), "at most 256")
                )
                nul = f"claude-sonnet-4-5\x00{i}"
                refusals.append(
                    (await t.post("/v1/messages", body(nul), a_headers), "not a model id")
                )
            for i in range(20):
                headers = {**a_headers, "x-tollgate-metadata": f'{{"team":"a\\u0000{i}"}}'}
                refusals.append(
                    (await t.post("/v1/messages", body(), headers), "control character")
                )
                many = orjson.dumps({f"k{n}": "v" for n in range(17)}).decode()
                headers = {**a_headers, "x-tollgate-metadata": many}
                refusals.append((await t.post("/v1/messages", body(), headers), "more than 16"))
            vertex = "/vertex/v1/projects/p/locations/r/publishers/anthropic/models/"
            for i in range(5):
                path = f"{vertex}claude-{'v' * 20_000}{i}:rawPredict"
                content = orjson.dumps({"anthropic_version": "vertex-2023-10-16", "max_tokens": 5})
                headers = {**a_headers, "authorization": f"Bearer {alice.secret}"}
                refusals.append((await t.post(path, content, headers), "at most 256"))
                path = f"/bedrock/model/{quote(f'claude-x{i}' + chr(0), safe='')}/invoke"
                refusals.append((await t.post(path, content, a_headers), "not a model id"))
            for i in range(20):  # odd but acceptable: served, and cut in the event
                headers = {
                    **a_headers,
                    "x-claude-code-session-id": f"{i}-" + "s" * 20_000,
                    "user-agent": "claude-cli/2.1.197 " + "u" * 20_000,
                    "x-tollgate-metadata": orjson.dumps(
                        {f"k{n}": "m" * 2000 for n in range(16)}
                    ).decode(),
                }
                r = await t.post("/v1/messages", body(text=f"odd {i}"), headers)
                assert r.status_code == 200, r.text
                t.good.append(t.ids[-1])

        # --- full body logging with big bodies during a short control-plane outage ---
        async def outage() -> None:
            while served[0] < GOOD // 3:
                await asyncio.sleep(0.05)
            cp.kill()
            big = "z" * BIG_BODY
            for i in range(LOGGED):
                r = await t.post("/v1/messages", body(text=f"{i} {big}"), b_headers)
                assert r.status_code == 200, r.text
                t.good.append(t.ids[-1])
            await asyncio.sleep(1.0)
            await cp.start()

        await asyncio.gather(*(worker(w) for w in range(WORKERS)), bad_inputs(), outage())
        assert done.is_set()

        for r, needle in refusals:
            assert r.status_code == 400, (r.status_code, r.text[:200])
            doc = r.json()
            error = doc.get("error") or {}
            message = doc.get("message") or error.get("message", "")
            assert error.get("type") == "invalid_request_error", doc
            assert needle in message, message
            assert len(r.content) < 1024  # readable, and never the value echoed back

        # --- every answered request in the ledger, exactly once ---
        expected = set(t.ids)
        assert len(expected) == len(t.ids)  # unique request ids
        total_sent = len(t.ids)

        def ledger() -> list[str]:
            with psycopg.connect(pg_database, autocommit=True) as conn:
                return [row[0] for row in conn.execute("SELECT request_id FROM usage_event")]

        async def all_in() -> bool:
            return len(await asyncio.to_thread(ledger)) >= total_sent

        try:
            await wait_for(all_in, timeout=30, interval=0.25)
        except AssertionError:
            have = len(await asyncio.to_thread(ledger))
            raise AssertionError(
                f"{have} of {total_sent} in the ledger; dp log:\n{dp_log.read_text()[-3000:]}"
            ) from None
        rows = await asyncio.to_thread(ledger)
        assert len(rows) == total_sent and set(rows) == expected
        assert set(t.good) <= set(rows)

        # --- the reporter is alive and nothing was set aside ---
        async def drained() -> bool:
            text = (await client.get("/metrics")).text
            return "tollgate_usage_backlog 0\n" in text

        await wait_for(drained, timeout=10, interval=0.1)
        r = await t.post("/v1/messages", body(text="the last one"), a_headers)
        assert r.status_code == 200
        last = t.ids[-1]

        async def last_delivered() -> bool:
            return last in await asyncio.to_thread(ledger)

        await wait_for(last_delivered, timeout=5, interval=0.1)
        metrics = (await client.get("/metrics")).text
        assert 'tollgate_task_restarts{task="usage-reporter"} 0' in metrics
        assert "tollgate_usage_quarantined 0" in metrics
        assert not (spool / "rejected.log").exists()

        # --- bounded ---
        sampling = False
        await sampler
        growth = peak["rss"] - baseline
        print(
            f"soak: {total_sent + 1} requests in {time.monotonic() - started:.1f} s; data plane "
            f"RSS {baseline / MIB:.0f} MiB -> peak {peak['rss'] / MIB:.0f} MiB; spool peak "
            f"{peak['spool'] / MIB:.1f} MiB"
        )
        assert growth < RSS_GROWTH_MAX, f"data plane RSS grew by {growth / MIB:.0f} MiB"
        assert LOGGED * BIG_BODY <= peak["spool"] < SPOOL_MAX  # the backlog did wait on disk
        assert dir_bytes(spool) < 64 * 1024  # delivered segments are gone
        assert proc.poll() is None
        assert "Traceback" not in dp_log.read_text()
    finally:
        sampling = False
        if sampler is not None and not sampler.done():
            sampler.cancel()
        await client.aclose()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        await admin.close()
        cp.stop()
