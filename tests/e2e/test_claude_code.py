"""The real Claude Code CLI through the gateway to the strict fake Anthropic upstream.

``claude -p hello`` (``node_modules/.bin/claude``, installed by ``make install``) runs with
``ANTHROPIC_BASE_URL`` pointing at a data plane and ``ANTHROPIC_AUTH_TOKEN`` set to a virtual key
created through the control plane's Admin API. The control plane runs in-process (SQLite in the
test's tmp dir), the data plane is :class:`dataplane.process.server.DataPlane`, the upstream is
:class:`tests.fakes.anthropic.FakeAnthropic`.

Between Claude Code and the data plane sits a byte-recording TCP tap, so the test can compare the
body Claude Code sent with the body the upstream received, byte for byte.

What Claude Code 2.1.197 sends in ``-p`` mode with ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``
(observed against the fake): ``HEAD /`` (connectivity probe, answered by the data plane itself),
then one ``POST /v1/messages?beta=true`` (~78 KB, ``stream: true``, model ``claude-opus-4-8``).
The test asserts no more than that shape, so a later version adding calls keeps passing as long
as the gateway forwards them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from controlplane.server import running
from controlplane.settings import Settings as ControlPlaneSettings
from dataplane.process.server import DataPlane
from dataplane.process.server import Settings as DataPlaneSettings
from gwapi.v1 import admin_pb2, common_pb2
from gwclient.client import GatewayClient
from tests.ci import claude_code_path
from tests.e2e.balancer import relay
from tests.e2e.claude_tmux import cli_lock_async
from tests.fakes.anthropic import UPSTREAM_KEY, FakeAnthropic, Received

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CLAUDE = claude_code_path()
ADMIN_TOKEN = "admin-token-claude-code-e2e"
DP_TOKEN = "dataplane-token-claude-code-e2e"
KEY_ENV = "TOLLGATE_E2E_ANTHROPIC_KEY"
WORKSPACE = "claude-code-e2e"
CLAUDE_TIMEOUT_S = 90.0


class TcpTap:
    """A loopback TCP relay that records every byte clients send through it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sent: list[bytearray] = []  # one buffer per client connection
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record = bytearray()
        self.sent.append(record)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, rec: bytearray | None
        ) -> None:
            try:
                await relay(src, dst, rec)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        tasks = [
            asyncio.create_task(pump(reader, up_writer, record)),
            asyncio.create_task(pump(up_reader, writer, None)),
        ]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)

    def requests(self) -> list[tuple[bytes, bytes]]:
        """(request line, body) of every request recorded (content-length or chunked bodies)."""
        out = []
        for stream in self.sent:
            buf = bytes(stream)
            while (end := buf.find(b"\r\n\r\n")) >= 0:
                head, buf = buf[:end], buf[end + 4 :]
                lines = head.split(b"\r\n")
                fields = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (x.partition(b":") for x in lines[1:])
                }
                if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
                    body = bytearray()
                    while True:
                        eol = buf.find(b"\r\n")
                        size = int(buf[:eol].split(b";")[0], 16)
                        body += buf[eol + 2 : eol + 2 + size]
                        buf = buf[eol + 4 + size :]
                        if size == 0:
                            break
                    out.append((lines[0], bytes(body)))
                else:
                    length = int(fields.get(b"content-length", b"0"))
                    out.append((lines[0], buf[:length]))
                    buf = buf[length:]
        return out


class ThroughTap:
    """A setup where Claude Code connects through ``tap``, a :class:`TcpTap` in front of the
    data plane."""

    tap: TcpTap

    @property
    def base_url(self) -> str:
        """Where Claude Code connects: the tap in front of the data plane."""
        return f"http://127.0.0.1:{self.tap.port}"


@dataclass
class Gateway(ThroughTap):
    fake: FakeAnthropic
    dataplane: DataPlane
    admin: GatewayClient
    tap: TcpTap
    secret: str
    key_id: str


async def key_on_fake(
    admin: GatewayClient, workspace: str, fake_url: str, name: str
) -> admin_pb2.CreateKeyResponse:
    """Workspace ``workspace``, provider ``anthropic-fake`` at ``fake_url`` (its key from the data
    plane's ``KEY_ENV``), and key ``name`` on it."""
    await admin.create_workspace(common_pb2.Workspace(name=workspace))
    await admin.create_provider(
        common_pb2.Provider(
            name="anthropic-fake", kind="anthropic", base_url=fake_url, api_key_env=KEY_ENV
        )
    )
    return await admin.create_key(
        admin_pb2.CreateKeyRequest(workspace=workspace, name=name, provider="anthropic-fake")
    )


@contextlib.asynccontextmanager
async def tapped_dataplane(
    cp_port: int, token: str, state_dir: Path
) -> AsyncIterator[tuple[DataPlane, TcpTap]]:
    """A data plane of the control plane on ``cp_port`` (the fake's key in ``KEY_ENV``), once it
    has its snapshot, behind a :class:`TcpTap` (where Claude Code connects)."""
    dp = DataPlane(
        DataPlaneSettings(
            listen="127.0.0.1:0",
            control_plane=f"127.0.0.1:{cp_port}",
            token=token,
            state_dir=state_dir,
            env={KEY_ENV: UPSTREAM_KEY},
        )
    )
    await dp.start()
    tap = TcpTap(dp.port)
    try:
        await dp.wait_for_snapshot()
        await tap.start()
        yield dp, tap
    finally:
        await tap.stop()
        await dp.stop()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    fake = FakeAnthropic(text="Greetings from the strict fake upstream via Tollgate.")
    await fake.start()
    settings = ControlPlaneSettings(
        listen="127.0.0.1:0",
        db_url=f"sqlite:///{tmp_path / 'tollgate.db'}",
        admin_token=ADMIN_TOKEN,
        dataplane_token=DP_TOKEN,
    )
    try:
        async with running(settings) as cp:
            async with GatewayClient(f"127.0.0.1:{cp.port}", ADMIN_TOKEN) as admin:
                created = await key_on_fake(admin, WORKSPACE, fake.base_url, "claude-code")
                async with tapped_dataplane(cp.port, DP_TOKEN, tmp_path / "dataplane") as (dp, tap):
                    yield Gateway(fake, dp, admin, tap, created.secret, created.key.id)
    finally:
        # FakeAnthropic.stop() closes a listening socket that Hypercorn already closed (EBADF).
        with contextlib.suppress(OSError):
            await fake.stop()


def claude_env(home: Path, base_url: str, token: str) -> dict[str, str]:
    """A clean environment: nothing of the developer's own Claude Code set-up leaks in."""
    node = shutil.which("node")
    path = [str(Path(node).parent)] if node else []
    path += ["/usr/local/bin", "/usr/bin", "/bin"]
    return {
        "HOME": str(home),
        "PATH": os.pathsep.join(dict.fromkeys(path)),
        "LANG": "C.UTF-8",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_AUTH_TOKEN": token,
    }


async def run_claude(
    env: dict[str, str], cwd: Path, timeout: float = CLAUDE_TIMEOUT_S
) -> tuple[int, str, str]:
    """``claude -p hello``; returns (exit code, stdout, stderr), exit code -9 when killed.

    Holds the machine-wide CLI lock: a sign-in test's managed-settings file must not be in place
    while this runs (it would turn this CLI to the gateway login)."""
    async with cli_lock_async():
        return await _run_claude(env, cwd, timeout)


async def _run_claude(env: dict[str, str], cwd: Path, timeout: float) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(CLAUDE),
        "-p",
        "hello",
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        return -9, out.decode(errors="replace"), err.decode(errors="replace")
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def describe(requests: list[Received]) -> str:
    """What the upstream saw, for failure messages (never the credentials)."""
    lines = []
    for r in requests:
        names = sorted({k.decode().lower() for k, _ in r.headers})
        lines.append(f"{r.method} {r.path}?{r.query.decode()} ({len(r.body)} B) headers={names}")
    return "\n".join(lines) or "(no requests reached the upstream)"


async def wait_for_usage(
    gw: Gateway, timeout: float = 15.0
) -> list[tuple[str, int, int, int, int]]:
    """Usage rows grouped by session, once the data plane's reporter has delivered them."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await gw.admin.query_usage(workspace=WORKSPACE, group_by="session")
        if sum(r.requests for r in rows) > 0 or time.monotonic() > deadline:
            return [
                (
                    r.group,
                    r.requests,
                    r.input_tokens + r.cache_creation_input_tokens + r.cache_read_input_tokens,
                    r.output_tokens,
                    r.cost_micros,
                )
                for r in rows
            ]
        await asyncio.sleep(0.2)


@pytest.mark.usefixtures("claude_code")  # missing: a skip here, a failure under CI
async def test_claude_code_prints_the_upstream_answer_through_the_gateway(
    gateway: Gateway, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    workdir = tmp_path / "project"
    workdir.mkdir()
    env = claude_env(home, gateway.base_url, gateway.secret)
    assert "ANTHROPIC_API_KEY" not in env

    code, out, err = await run_claude(env, workdir)
    seen = describe(gateway.fake.requests)
    assert code == 0, f"claude exited {code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}\n{seen}"
    assert gateway.fake.text in out, f"stdout: {out[-2000:]}\n{seen}"

    # The upstream only ever saw the provider key; the virtual key never left the gateway.
    fake = gateway.fake
    assert fake.requests, seen
    for r in fake.requests:
        assert r.header("x-api-key") == UPSTREAM_KEY, seen
        assert r.header("authorization") is None, seen
        assert all(gateway.secret.encode() not in v for _, v in r.headers), seen
        assert gateway.secret.encode() not in r.body

    messages = [r for r in fake.requests if r.method == "POST" and r.path == "/v1/messages"]
    assert messages, f"Claude Code's Messages call never reached the upstream\n{seen}"
    first = messages[0]
    assert first.query.startswith(b"beta=true"), seen  # the query string is forwarded as is

    # Claude Code's headers pass through.
    assert first.header("anthropic-version") == "2023-06-01"
    betas = (first.header("anthropic-beta") or "").split(",")
    assert "claude-code-20250219" in betas, betas
    assert (first.header("user-agent") or "").startswith("claude-cli/"), first.header("user-agent")
    assert first.header("x-app") == "cli"
    session_id = first.header("x-claude-code-session-id")
    assert session_id, seen
    assert int(first.header("content-length") or -1) == len(first.body)

    # The body arrives byte for byte as Claude Code wrote it.
    sent = [b for line, b in gateway.tap.requests() if line.startswith(b"POST /v1/messages?")]
    assert len(sent) == len(messages), [line for line, _ in gateway.tap.requests()]
    assert sent[0] == first.body, "the upstream body differs from what Claude Code sent"
    body = orjson.loads(first.body)
    assert body["stream"] is True
    assert isinstance(body["max_tokens"], int) and body["max_tokens"] > 0
    assert isinstance(body["model"], str) and body["model"].startswith("claude-")
    system = body["system"]
    assert isinstance(system, list) and system, system
    assert any(isinstance(b, dict) and "cache_control" in b for b in system), system
    assert isinstance(body["tools"], list) and len(body["tools"]) >= 5
    assert all("name" in t for t in body["tools"])
    # Claude Code 2.1.x ends the first turn with a mid-conversation `role: "system"` message,
    # which the real API accepts (beta mid-conversation-system-…): it must arrive unchanged.
    roles = [m["role"] for m in body["messages"]]
    assert "user" in roles, roles
    assert "hello" in orjson.dumps(body["messages"]).decode()
    user_id = body["metadata"]["user_id"]
    assert isinstance(user_id, str) and user_id
    # metadata.user_id is a JSON string carrying the same session id as the header.
    assert session_id in user_id, (session_id, user_id)
    for key in ("thinking", "context_management", "output_config"):
        if key in body:
            assert isinstance(body[key], dict), (key, body[key])

    # Usage reached the control plane, with tokens, a cost and Claude Code's session id.
    rows = await wait_for_usage(gateway)
    assert rows, "no usage reached the control plane"
    by_session = {
        group: (n, tokens_in, tokens_out, cost) for group, n, tokens_in, tokens_out, cost in rows
    }
    assert session_id in by_session, by_session
    n, tokens_in, tokens_out, cost = by_session[session_id]
    assert n >= 1
    assert tokens_in > 0 and tokens_out > 0, by_session
    assert cost > 0, by_session
    totals = await gateway.admin.query_usage(workspace=WORKSPACE)
    assert totals and totals[0].requests == sum(v[0] for v in by_session.values())
    assert totals[0].output_tokens > 0 and totals[0].cost_micros > 0

    # `gwctl sessions show` finds the Claude Code session and its requests and cost.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gwctl.main", "--control-plane", gateway.admin.target,
        "sessions", "show", session_id, "-o", "json",
        env={**os.environ, "TOLLGATE_ADMIN_TOKEN": ADMIN_TOKEN},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    shown, problem = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, problem.decode()
    doc = orjson.loads(shown)
    assert doc["session_id"] == session_id
    assert len(doc["requests"]) == n
    cost_usd = Decimal(doc["cost_usd"])
    assert cost_usd * 1_000_000 == cost > 0


@pytest.mark.usefixtures("claude_code")  # missing: a skip here, a failure under CI
async def test_claude_code_gives_up_at_once_on_an_unknown_virtual_key(
    gateway: Gateway, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = claude_env(home, gateway.base_url, "gw-this-key-does-not-exist-0123456789")
    code, out, err = await run_claude(env, tmp_path, timeout=20)
    assert code not in (0, -9), f"claude exited {code} (-9: killed after 20 s)\n{out}\n{err}"
    assert "not a valid Tollgate virtual key" in out + err
    assert gateway.fake.requests == [], describe(gateway.fake.requests)
