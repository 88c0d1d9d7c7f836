"""Real servers for the ``gwctl doctor`` tests, each on its own event-loop thread, so that
``gwctl.main.main`` (which runs doctor synchronously) can be called on the test thread: a data
plane (:func:`threaded_dataplane`), a TLS-terminating forwarder in front of one
(:func:`tls_front`), a socket that accepts connections and never answers (:func:`silent_port`),
and a fake Claude Code (:func:`fake_claude`) printing a chosen version."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import socket
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import httpx
import orjson
import pytest

from dataplane.server import DataPlane, Settings
from gwctl.main import main
from tests.gwctl import cli
from tests.gwctl.cli import ADMIN, DATAPLANE
from tests.gwctl.signin_support import MASTER_KEY
from tests.gwctl.threaded_cp import threaded_control_plane

T = TypeVar("T")


class LoopThread:
    """An asyncio loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class ThreadedDataPlane:
    def __init__(self, dp: DataPlane, runner: LoopThread) -> None:
        self.dp = dp
        self.runner = runner

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.dp.port}"

    def wait_for(self, predicate: Callable[[DataPlane], bool], timeout: float = 15) -> None:
        """Until ``predicate(dp)`` holds (e.g. a change reached its snapshot)."""
        deadline = time.monotonic() + timeout
        while not predicate(self.dp):
            if time.monotonic() > deadline:
                raise AssertionError("the data plane did not reach the expected state")
            time.sleep(0.05)


@contextlib.contextmanager
def threaded_dataplane(settings: Settings) -> Iterator[ThreadedDataPlane]:
    runner = LoopThread()

    async def start() -> DataPlane:
        dp = DataPlane(settings)
        await dp.start()
        return dp

    dp = runner.call(start())
    try:
        yield ThreadedDataPlane(dp, runner)
    finally:
        runner.call(dp.stop())
        runner.close()


@contextlib.contextmanager
def tls_front(target_port: int, cert: Path, key: Path) -> Iterator[int]:
    """A TLS listener on 127.0.0.1 (``cert``/``key``) forwarding each connection's bytes to
    ``target_port`` in plain TCP; yields its port."""
    runner = LoopThread()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def start() -> asyncio.Server:
        return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)

    server = runner.call(start())
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:

        async def stop() -> None:
            server.close()

        runner.call(stop())
        runner.close()


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A listening socket that never accepts: connections complete, nothing ever answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fake_claude(directory: Path, version: str) -> Path:
    """An executable ``claude`` in ``directory`` that prints ``version`` like Claude Code."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "claude"
    path.write_text(
        f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo "{version} (Claude Code)"; fi\n'
    )
    path.chmod(0o755)
    return path


# --- a whole gateway: control plane and data plane, for gwctl doctor ---------------------------

# Variables that would change what doctor reads: cleared for every test.
CLEARED = (
    "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_MODEL",
    "ANTHROPIC_CUSTOM_HEADERS", "ANTHROPIC_BEDROCK_BASE_URL", "ANTHROPIC_VERTEX_BASE_URL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_SKIP_BEDROCK_AUTH", "CLAUDE_CODE_SKIP_VERTEX_AUTH", "NODE_EXTRA_CA_CERTS",
    "TOLLGATE_ADMIN_TOKEN", "TOLLGATE_ADMIN_TOKEN_FILE", "TOLLGATE_CONTROL_PLANE",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
)  # fmt: skip


def developer_shell(monkeypatch: pytest.MonkeyPatch, home: Path) -> Path:
    """A developer's shell: none of :data:`CLEARED` set, PATH with a Claude Code 2.1.197 on it,
    and a Claude Code config directory of its own (``home/claude-config``, returned, not made)."""
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    config = home / "claude-config"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(config))
    fake_claude(home / "bin", "2.1.197")
    monkeypatch.setenv("PATH", f"{home / 'bin'}:/usr/bin:/bin")
    return config


class Gateway:
    """A control plane (admin through gwctl) and a data plane connected to it."""

    def __init__(self, address: str, dp: ThreadedDataPlane, tmp: Path) -> None:
        self.address = address
        self.dp = dp
        self.tmp = tmp

    @property
    def url(self) -> str:
        return self.dp.url

    def admin(self, *argv: str, stdin: str = "") -> Any:
        """``gwctl ARGV -o json`` as the admin; its JSON answer (AssertionError on failure)."""
        out, saved = io.StringIO(), (sys.stdin, sys.stdout)
        env = {"TOLLGATE_CONTROL_PLANE": self.address, "TOLLGATE_ADMIN_TOKEN": ADMIN}
        with mock.patch.dict(os.environ, env):
            sys.stdin, sys.stdout = io.StringIO(stdin), out
            try:
                code = main([*argv, "-o", "json"])
            finally:
                sys.stdin, sys.stdout = saved
        assert code == 0, (argv, out.getvalue())
        text = out.getvalue().strip()
        return orjson.loads(text) if text else None

    def key(self, workspace: str, *flags: str) -> tuple[str, str]:
        """A new key (``flags``: --provider P, limits…) once the data plane knows it: (id, secret)."""
        made = self.admin("keys", "create", "--workspace", workspace, "--name",
                          "k-" + uuid.uuid4().hex[:6], *flags)  # fmt: skip
        secret = made["key"]
        digest = hashlib.sha256(secret.encode()).hexdigest()
        self.dp.wait_for(lambda dp: dp.holder.current is not None and digest in dp.holder.current.keys_by_hash)  # fmt: skip
        return made["id"], secret

    def key_state(self, secret: str) -> Any:
        digest = hashlib.sha256(secret.encode()).hexdigest()
        snapshot = self.dp.dp.holder.current
        return snapshot.keys_by_hash.get(digest) if snapshot is not None else None

    def message(self, secret: str, model: str = "claude-opus-4-8") -> httpx.Response:
        """One real request through the data plane."""
        return httpx.post(
            self.url + "/v1/messages",
            headers={"authorization": f"Bearer {secret}", "anthropic-version": "2023-06-01"},
            json={
                "model": model,
                "max_tokens": 16,
                "messages": [{"role": "user", "content": "hi"}],
            },
            timeout=30,
        )

    def whoami(self, secret: str) -> Any:
        r = httpx.get(
            self.url + "/v1/tollgate/whoami", headers={"authorization": f"Bearer {secret}"}
        )
        assert r.status_code == 200, r.text
        return r.json()


@contextlib.contextmanager
def gateway(tmp: Path, master_key: str) -> Iterator[Gateway]:
    """A control plane (SQLite, ``master_key`` for stored secrets and sign-in) with a simulator
    provider ``sim``, and a data plane connected to it."""
    settings = cli.settings(f"sqlite:///{tmp / 'tollgate.db'}", master_key=master_key)
    with threaded_control_plane(settings) as address:
        dp_settings = Settings(
            listen="127.0.0.1:0",
            control_plane=address,
            token=DATAPLANE,
            state_dir=tmp / "dp",
            env={"DOWN_KEY": "sk-ant-down-provider-key"},
            graceful_s=2,
        )
        with threaded_dataplane(dp_settings) as dp:
            gw = Gateway(address, dp, tmp)
            gw.admin("providers", "create", "sim", "--kind", "simulator")
            yield gw


@contextlib.contextmanager
def team_gateway(tmp: Path) -> Iterator[Gateway]:
    """:func:`gateway` with workspace ``team``, which needs Claude Code 2.1.0 or newer."""
    with gateway(tmp, MASTER_KEY) as running:
        running.admin("workspaces", "create", "team", "--min-client-version", "2.1.0")
        yield running


def run_doctor(capsys: Any, *argv: str) -> tuple[int, dict[str, list[dict[str, str]]], Any]:
    """``gwctl doctor -o json ARGV``: exit code, the checks by name, the whole document."""
    capsys.readouterr()
    code = main(["doctor", "-o", "json", *argv])
    captured = capsys.readouterr()
    doc = orjson.loads(captured.out)
    checks: dict[str, list[dict[str, str]]] = {}
    for check in doc["checks"]:
        checks.setdefault(check["name"], []).append(check)
    return code, checks, doc


def statuses(checks: dict[str, list[dict[str, str]]]) -> dict[str, str]:
    """The worst status per check name."""
    order = ["OK", "SKIP", "WARN", "FAIL"]
    return {
        name: max((c["status"] for c in found), key=order.index) for name, found in checks.items()
    }
