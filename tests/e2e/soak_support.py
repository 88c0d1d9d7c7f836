"""Pieces of the usage soak (``test_soak_usage.py``): the data plane as a real process, what it
holds (RSS, spool) sampled while the soak runs, the strict fakes answering what each kind of
traffic needs, what the ledger must hold for each request, and ``gwctl`` run as a command.

The fakes decide their answer from the request itself (never from a shared queue, which
concurrent traffic would consume out of order): the prompt names the scenario.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from tests.e2e.test_gateway import ADMIN, DP_TOKEN, ROOT, free_port, stop_process, wait_for
from tests.fakes import bedrock as fake_bedrock
from tests.fakes.anthropic import FakeAnthropic, Received, Scripted, message_body, stream_frames

MIB = 1024 * 1024
SONNET = "claude-sonnet-4-5-20250929"  # through the fakes: $3 input, $15 output per MTok
SEARCH_MICROS = 10_000  # a web search: $10 per 1,000
UPSTREAM_USAGE = {"input_tokens": 20, "output_tokens": 1}
SSE = [(b"content-type", b"text/event-stream")]
JSON = [(b"content-type", b"application/json")]
# A stream the client closes once it has the whole text: 30 chunks, then a final message_delta
# that comes only after a long pause (never, for this client).
EARLY_TEXTS = [f"Chunk {i:02d} of a long answer about Mars. " for i in range(30)]
EARLY_ESTIMATE = -(-sum(len(t) for t in EARLY_TEXTS) // 3)  # relayed bytes at 3 bytes a token
ABANDONED_OUTPUT = 500
ACCOUNT = "123456789012"
DENIED = (
    f"User: arn:aws:sts::{ACCOUNT}:assumed-role/BedrockInvoke/tollgate-dp is not authorized to"
    f" perform: bedrock:InvokeModel on resource: arn:aws:bedrock:us-east-1:{ACCOUNT}:"
    "inference-profile/us.anthropic.claude because no identity-based policy allows it"
)


def sonnet_cost(input_tokens: int, output_tokens: int, searches: int = 0) -> int:
    return input_tokens * 3 + output_tokens * 15 + searches * SEARCH_MICROS


def haiku_cost(input_tokens: int, output_tokens: int) -> int:
    return input_tokens * 1 + output_tokens * 5  # claude-haiku-4-5: $1 input, $5 output per MTok


def fallback_cost(input_tokens: int, output_tokens: int) -> int:
    """A model of no family the table knows: priced at its most expensive entry (claude-opus-4-1,
    $15 input, $75 output per MTok)."""
    return input_tokens * 15 + output_tokens * 75


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


class DataPlaneProcess:
    """``gwctl dataplane serve`` as a child process on a free loopback port."""

    def __init__(
        self,
        control_plane: str,
        state: Path,
        log: Path,
        env: dict[str, str],
        args: Sequence[str] = (),  # more `dataplane serve` flags
    ) -> None:
        self.port = free_port()
        self.state = state
        self.spool = state / "spool"
        self.log = log
        self.url = f"http://127.0.0.1:{self.port}"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "gwctl.main", "dataplane", "serve",
                    "--listen", f"127.0.0.1:{self.port}", "--control-plane", control_plane,
                    "--state-dir", str(state), *args,
                ],
                cwd=ROOT,
                env={**os.environ, "TOLLGATE_DATAPLANE_TOKEN": DP_TOKEN, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    async def wait_healthy(self, client: httpx.AsyncClient) -> None:
        async def healthy() -> bool:
            try:
                return (await client.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        try:
            await wait_for(healthy, timeout=20, interval=0.05)
        except AssertionError:
            raise AssertionError(f"data plane not healthy:\n{self.tail_log()}") from None

    def rss(self) -> int:
        return rss(self.proc.pid)

    def tail_log(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        stop_process(self.proc, 15)


class Peaks:
    """Samples the data plane's RSS and its spool directory's size every 50 ms."""

    def __init__(self, dp: DataPlaneProcess) -> None:
        self.dp = dp
        self.rss = 0
        self.spool = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.rss = max(self.rss, self.dp.rss())
            self.spool = max(self.spool, dir_bytes(self.dp.spool))
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class SoakAnthropic(FakeAnthropic):
    """The strict fake Anthropic; the last user message says what to answer:

    * ``search N [stream]`` — an answer whose usage reports N web searches (``server_tool_use``);
    * ``early`` — a stream whose final ``message_delta`` is 30 s late (its client leaves first);
    * ``abandon`` — a plain answer that takes 2 s; the client is told (``arrived``) as soon as
      the request is here and hangs up at once, so that the answer is under way when the data
      plane sees it go (2 s is ample for that on loopback, and costs the soak nothing: the
      client does not wait for it).
    """

    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[str, asyncio.Event] = {}  # session id -> the request is here

    def default_answer(self, req: Received) -> Scripted:
        obj = orjson.loads(req.body)
        if req.path.endswith("/count_tokens"):
            return super().default_answer(req)
        words = obj["messages"][-1]["content"].split()
        if words[0] == "search":
            return search_answer(int(words[1]), stream=bool(obj.get("stream")))
        if words[0] == "early":
            frames = stream_frames(SONNET, EARLY_TEXTS, usage=UPSTREAM_USAGE, output_tokens=400)
            return Scripted(headers=SSE, frames=frames, pauses={len(frames) - 2: 30.0})
        if words[0] == "abandon":
            session = req.header("x-claude-code-session-id") or ""
            self.arrived.setdefault(session, asyncio.Event()).set()
            answer = message_body(SONNET, "A long answer.", UPSTREAM_USAGE, ABANDONED_OUTPUT)
            return Scripted(headers=JSON, frames=[answer], wait=2.0)
        return super().default_answer(req)

    async def wait_arrived(self, session: str) -> None:
        await asyncio.wait_for(self.arrived.setdefault(session, asyncio.Event()).wait(), 30)


def search_output(searches: int) -> int:
    return 50 + searches


def search_answer(searches: int, stream: bool) -> Scripted:
    """Answers reporting web searches as the API does: in the final usage."""
    out = search_output(searches)
    tools = {"server_tool_use": {"web_search_requests": searches}}
    if not stream:
        return Scripted(
            headers=JSON,
            frames=[message_body(SONNET, "Found it.", {**UPSTREAM_USAGE, **tools}, out)],
        )
    frames = stream_frames(SONNET, ["Searching", " done."], usage=UPSTREAM_USAGE, output_tokens=out)
    final = orjson.loads(frames[-2].split(b"data: ", 1)[1])
    final["usage"].update(tools)
    frames[-2] = b"event: message_delta\ndata: " + orjson.dumps(final) + b"\n\n"
    return Scripted(headers=SSE, frames=frames)


class DeniedBedrock(fake_bedrock.FakeBedrock):
    """The strict fake Bedrock, refusing every (correctly signed) call with an error that names
    the AWS account, as AWS writes it."""

    def default_answer(self, req: fake_bedrock.Received) -> fake_bedrock.Scripted:
        return fake_bedrock.error(403, "AccessDeniedException", DENIED)


@dataclass(frozen=True, slots=True)
class Expect:
    """What the ledger row of one request must say (``None``: not checked)."""

    status: int
    cost: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    estimated: bool = False
    disconnected: bool = False
    searches: int = 0
    count_tokens: bool = False
    model: str | None = None


LEDGER_COLUMNS = (
    "request_id, session_id, status, error_type, error_message, path, model_requested, "
    "input_tokens, output_tokens, cost_micros, output_estimated, client_disconnected, "
    "web_search_requests"
)


def ledger_rows(db_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        cur = conn.execute(f"SELECT {LEDGER_COLUMNS} FROM usage_event")
        names = [d.name for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def ledger_count(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM usage_event").fetchone()
        return int(row[0]) if row else 0


def mismatch(row: dict[str, Any], want: Expect) -> str | None:
    """Why ``row`` is not what ``want`` says, or None."""
    got = {
        "status": row["status"],
        "cost": row["cost_micros"],
        "input_tokens": row["input_tokens"],
        "output_tokens": row["output_tokens"],
        "estimated": bool(row["output_estimated"]),
        "disconnected": bool(row["client_disconnected"]),
        "searches": row["web_search_requests"],
        "count_tokens": row["path"].endswith("/count_tokens"),
        "model": row["model_requested"],
    }
    wrong = [
        f"{name} {got[name]!r} (expected {value!r})"
        for name, value in (
            ("status", want.status),
            ("cost", want.cost),
            ("input_tokens", want.input_tokens),
            ("output_tokens", want.output_tokens),
            ("estimated", want.estimated),
            ("disconnected", want.disconnected),
            ("searches", want.searches),
            ("count_tokens", want.count_tokens),
            ("model", want.model),
        )
        if value is not None and got[name] != value
    ]
    if not wrong:
        return None
    what = f"{row['status']} {row['path'][:60]} {row['model_requested'][:40]!r} {row['error_type']}"
    return f"{row['request_id']} ({what}): " + ", ".join(wrong)


def usage_seen(content: bytes, stream: bool) -> tuple[int, int]:
    """(input, output) tokens of an answer as its client saw them."""
    if not stream:
        usage = orjson.loads(content)["usage"]
        return usage["input_tokens"], usage["output_tokens"]
    start = content.split(b"event: message_start\ndata: ", 1)[1].split(b"\n", 1)[0]
    final = content.rsplit(b"event: message_delta\ndata: ", 1)[1].split(b"\n", 1)[0]
    return (
        orjson.loads(start)["message"]["usage"]["input_tokens"],
        orjson.loads(final)["usage"]["output_tokens"],
    )


def gwctl(control_plane: str, *argv: str) -> subprocess.CompletedProcess[bytes]:
    """``gwctl`` as an operator runs it, its output captured as bytes (as a terminal gets it)."""
    return subprocess.run(
        [sys.executable, "-m", "gwctl.main", *argv],
        cwd=ROOT,
        env={**os.environ, "TOLLGATE_ADMIN_TOKEN": ADMIN, "TOLLGATE_CONTROL_PLANE": control_plane},
        capture_output=True,
        timeout=60,
        check=False,
    )
