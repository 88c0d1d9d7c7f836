"""No secret at rest or in output: an end-to-end run, then a search of everything it left behind.

Real processes: a control plane (TLS, master key file, Prometheus endpoint) and a data plane
(``gwctl dataplane serve``, TLS to the control plane), both at DEBUG with stdout/stderr captured;
``gwctl`` as a subprocess for the provider secret (``--api-key-stdin``, ``rotate``). Upstreams are
the strict fakes: Anthropic expecting exactly the stored key, Vertex with its OAuth token
endpoint, an OTLP collector expecting the telemetry destination's API key (given to gwctl
through its environment). Traffic: good requests on both providers, a wrong virtual key, a spent budget, an
upstream error, a rotation applied without restart, and a data-plane restart while the control
plane is down (the stored key is not on disk, so the provider answers 503 until the control plane
is back); Claude-Code-shaped OTLP exports forwarded before and after that restart.

Then every secret — provider keys (before and after rotation), virtual keys, Vertex OAuth tokens,
the bootstrap and data-plane tokens, a created admin token, the master key — is searched for, raw
and base64-encoded, in: both processes' stdout and stderr, gwctl's output, this process's log
records, the SQLite file (and WAL) bytes and a dump of every row of every table, every file under
the data plane's state directory, both /metrics outputs, and every error body received. A planted
sentinel proves the search finds what it looks for.

This module is long because its one test is an end-to-end run followed by a search of everything
the run left behind (logs, databases, spool, process output), and the run and the search must share
one set of secrets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
import sqlite3
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import orjson
import pytest

from gwapi.v1 import admin_pb2, admin_pb2_grpc, common_pb2
from gwclient.client import GatewayClient
from tests.e2e.providers_support import vertex_at
from tests.e2e.test_gateway import free_port
from tests.fakes.anthropic import FakeAnthropic, Scripted
from tests.fakes.otlp_collector import FakeCollector
from tests.fakes.vertex import FakeVertex, write_service_account
from tests.tls_support import make_pki

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MODEL = "claude-sonnet-4-5-20250929"
JSON = {"content-type": "application/json"}


def b64_forms(secret: bytes) -> set[bytes]:
    """The base64 (standard and URL-safe) text of ``secret`` as it appears inside any larger
    base64 blob, whatever its alignment there: the encoding of each 3-byte-aligned run."""
    forms: set[bytes] = set()
    for skip in range(3):
        run = secret[skip:]
        run = run[: len(run) // 3 * 3]
        if len(run) >= 12:
            forms.add(base64.b64encode(run))
            forms.add(base64.urlsafe_b64encode(run))
    return forms


def find_leaks(secrets_by_name: dict[str, str], corpus: dict[str, bytes]) -> list[str]:
    """``"<secret name> in <place> (<form>)"`` for every hit."""
    hits: list[str] = []
    for name, value in secrets_by_name.items():
        raw = value.encode()
        forms = [("raw", raw)] + [("base64", f) for f in sorted(b64_forms(raw))]
        for place, data in corpus.items():
            for label, form in forms:
                if form in data:
                    hits.append(f"{name} in {place} ({label})")
                    break
    return hits


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    out: Path
    err: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.out, "ab") as out, open(self.err, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gwctl.main", *self.argv],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=err,
            )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def logs(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")


@dataclass
class Run:
    tmp: Path
    error_bodies: list[bytes] = field(default_factory=list)
    gwctl_output: list[bytes] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env["TOLLGATE_LOG_LEVEL"] = "DEBUG"
    return env


async def _wait(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await predicate():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout} s")
        await asyncio.sleep(0.1)


def _gwctl(run: Run, args: list[str], stdin: str = "", env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "gwctl.main", *args],
        cwd=ROOT,
        env=env,
        input=stdin.encode(),
        capture_output=True,
        timeout=60,
    )
    run.gwctl_output += [result.stdout, result.stderr]
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


PROTOBUF = "application/x-protobuf"
OTLP_EXPORT = (ROOT / "tests" / "fixtures" / "otlp" / "metrics-delta-01.pb").read_bytes()


def _body(stream: bool = False) -> bytes:
    return orjson.dumps(
        {
            "model": MODEL,
            "max_tokens": 50,
            "stream": stream,
            "messages": [{"role": "user", "content": "hello"}],
        }
    )


def _walk(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            yield path


def _dump_sqlite(path: Path) -> bytes:
    """Every row of every table, as text; compressed columns (logged bodies) also inflated."""
    lines: list[str] = []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):
                lines.append(f"{table}: {row!r}")
                for value in row:
                    if isinstance(value, bytes):
                        with contextlib.suppress(zlib.error):
                            lines.append(f"{table} (inflated): {zlib.decompress(value)!r}")
    finally:
        con.close()
    assert any(line.startswith("provider:") for line in lines)
    assert any(" (inflated): " in line for line in lines), "no logged body was stored"
    return "\n".join(lines).encode()


async def test_no_secret_is_left_anywhere(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    run = Run(tmp_path)
    provider_key = "sk-ant-api03-LEAKCHECK-" + secrets.token_urlsafe(24)
    rotated_key = "sk-ant-api03-LEAKCHECK-ROTATED-" + secrets.token_urlsafe(24)
    admin_token = "bootstrap-admin-" + secrets.token_urlsafe(24)
    dp_token = "dataplane-" + secrets.token_urlsafe(24)
    master_key = base64.b64encode(os.urandom(32)).decode()
    collector_key = "otlp-LEAKCHECK-" + secrets.token_urlsafe(24)
    run.secrets.update(
        {
            "telemetry collector key": collector_key,
            "provider key": provider_key,
            "rotated provider key": rotated_key,
            "bootstrap admin token": admin_token,
            "data-plane token": dp_token,
            "master key": master_key,
        }
    )

    pki = make_pki(tmp_path / "pki")
    master_file = tmp_path / "master.key"
    master_file.write_text(master_key + "\n")
    master_file.chmod(0o600)
    db_path = tmp_path / "tollgate.db"
    state_dir = tmp_path / "dp-state"
    cp_port, cp_metrics, dp_port = free_port(), free_port(), free_port()
    cp_addr = f"127.0.0.1:{cp_port}"
    cp_env = _base_env() | {
        "TOLLGATE_ADMIN_TOKEN": admin_token,
        "TOLLGATE_DATAPLANE_TOKEN": dp_token,
    }
    cp = Proc(
        "controlplane",
        [
            "controlplane",
            "serve",
            "--listen",
            cp_addr,
            "--db",
            f"sqlite:///{db_path}",
            "--master-key-file",
            str(master_file),
            "--metrics-listen",
            f"127.0.0.1:{cp_metrics}",
            "--tls-cert",
            str(pki.cert),
            "--tls-key",
            str(pki.key),
        ],
        cp_env,
        tmp_path / "cp.out",
        tmp_path / "cp.err",
    )
    dp = Proc(
        "dataplane",
        [
            "dataplane",
            "serve",
            "--listen",
            f"127.0.0.1:{dp_port}",
            "--control-plane",
            cp_addr,
            "--state-dir",
            str(state_dir),
            "--tls-ca",
            str(pki.ca),
            "--log-level",
            "DEBUG",
            "--drain-seconds",
            "0",
        ],
        _base_env() | {"TOLLGATE_DATAPLANE_TOKEN": dp_token},
        tmp_path / "dp.out",
        tmp_path / "dp.err",
    )
    gwctl_env = _base_env() | {
        "TOLLGATE_CONTROL_PLANE": cp_addr,
        "TOLLGATE_ADMIN_TOKEN": admin_token,
        "TOLLGATE_TLS_CA": str(pki.ca),
    }

    anthropic = FakeAnthropic(api_key=provider_key)
    vertex = FakeVertex()
    collector = FakeCollector(required_headers={"x-api-key": collector_key})
    await anthropic.start()
    await vertex.start()
    await collector.start()
    sa_file = write_service_account(tmp_path, vertex.token_uri)
    admin = GatewayClient(cp_addr, admin_token, tls_ca=str(pki.ca))
    dp_url = f"http://127.0.0.1:{dp_port}"
    http = httpx.AsyncClient(base_url=dp_url, timeout=30)

    async def send(key: str, stream: bool = False) -> httpx.Response:
        """One Messages request with virtual key ``key``; an error's body is kept for the scan."""
        r = await http.post(
            "/v1/messages",
            content=_body(stream),
            headers={"x-api-key": key, "anthropic-version": "2023-06-01", **JSON},
        )
        if r.status_code >= 400:
            run.error_bodies.append(r.content)
        return r

    async def post(key: str, expect: int, stream: bool = False) -> httpx.Response:
        r = await send(key, stream)
        assert r.status_code == expect, r.text
        return r

    try:
        cp.start()
        await _wait(lambda: _serving(admin), "control plane health")

        # A created admin token, used for real.
        channel = grpc.aio.secure_channel(
            cp_addr, grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
        )
        async with channel:
            stub = admin_pb2_grpc.AdminStub(channel)
            created_token = await stub.CreateToken(
                admin_pb2.CreateTokenRequest(name="ops", role="admin"),
                metadata=(("authorization", f"Bearer {admin_token}"),),
            )
        run.secrets["created admin token"] = created_token.secret
        _gwctl(run, ["workspaces", "create", "team-a", "--log-bodies", "full"], env=gwctl_env)
        listed = _gwctl(
            run,
            ["workspaces", "list", "-o", "json"],
            env=gwctl_env | {"TOLLGATE_ADMIN_TOKEN": created_token.secret},
        )
        assert "team-a" in listed

        # The provider key goes in on stdin, never as a flag.
        shown = _gwctl(
            run,
            [
                "providers",
                "create",
                "anthropic",
                "--kind",
                "anthropic",
                "--base-url",
                anthropic.base_url,
                "--api-key-stdin",
            ],
            stdin=provider_key + "\n",
            env=gwctl_env,
        )
        assert "stored on the control plane" in shown
        await admin.create_provider(vertex_at(vertex.api_base, vertex.project, sa_file))
        keys = {}
        for name, provider, budget in (
            ("alice", "anthropic", 0),
            ("vera", "vertex", 0),
            ("tiny", "anthropic", 1),  # one micro-dollar: spent by the first request
        ):
            limits = common_pb2.Limits()
            if budget:
                limits.budgets.append(
                    common_pb2.Budget(amount_micros=budget, period=common_pb2.PERIOD_DAY)
                )
            made = await admin.create_key(
                admin_pb2.CreateKeyRequest(
                    workspace="team-a", name=name, provider=provider, limits=limits
                )
            )
            keys[name] = made.secret
            run.secrets[f"virtual key {name}"] = made.secret

        # A telemetry destination whose API key goes in through gwctl's environment.
        _gwctl(
            run,
            [
                "telemetry",
                "destinations",
                "add",
                "collector",
                "--url",
                collector.base_url,
                "--header-env",
                "x-api-key=OTLP_KEY",
            ],
            env=gwctl_env | {"OTLP_KEY": collector_key},
        )

        async def otlp(key: str) -> None:
            r = await http.post(
                "/v1/metrics",
                content=OTLP_EXPORT,
                headers={"authorization": f"Bearer {key}", "content-type": PROTOBUF},
            )
            assert r.status_code == 200, r.text

        dp.start()
        await _wait(lambda: _dp_ready(http), "data plane ready")
        await otlp(keys["alice"])
        await collector.wait_for(1)

        # Good traffic on both providers (the stored key; a Vertex OAuth token).
        await post(keys["alice"], 200)
        await post(keys["alice"], 200, stream=True)
        await post(keys["vera"], 200)
        assert vertex.issued, "the Vertex provider never fetched a token"
        # Refusals: an unknown virtual key, a spent budget, an upstream error.
        await post("gw-" + secrets.token_urlsafe(24), 401)
        await post(keys["tiny"], 200)

        async def budget_refused() -> bool:
            return (await send(keys["tiny"])).status_code == 429

        await _wait(budget_refused, "budget refusal")
        anthropic.script.append(
            Scripted(
                status=500,
                headers=[(b"content-type", b"application/json")],
                frames=[
                    orjson.dumps(
                        {"type": "error", "error": {"type": "api_error", "message": "boom"}}
                    )
                ],
            )
        )
        await post(keys["alice"], 500)

        # Rotation reaches the data plane without a restart.
        anthropic.api_key = rotated_key
        _gwctl(
            run,
            ["providers", "rotate", "anthropic", "--api-key-stdin", "--yes"],
            stdin=rotated_key + "\n",
            env=gwctl_env,
        )

        async def rotated() -> bool:
            return (await send(keys["alice"])).status_code == 200

        await _wait(rotated, "the rotated key in use", timeout=10)
        shown = _gwctl(run, ["providers", "list"], env=gwctl_env)
        assert "stored (" in shown

        # Restart the data plane with the control plane down: the disk cache has no key.
        cp_metrics_text = (await _get(f"http://127.0.0.1:{cp_metrics}/metrics")).content
        dp_metrics_text = (await http.get("/metrics")).content
        assert b"tollgate_" in cp_metrics_text and b"tollgate_" in dp_metrics_text
        dp.stop()
        cp.stop()
        dp.start()
        await _wait(lambda: _dp_ready(http), "data plane ready from its cache")
        r = await post(keys["alice"], 503)
        assert b"has not received it yet" in r.content
        cp.start()
        await _wait(rotated, "the key delivered after the control plane is back")
        await post(keys["vera"], 200)
        await otlp(keys["alice"])  # forwarded again once the header value is back
        await collector.wait_for(2, timeout=10)
        dp_metrics_text += (await http.get("/metrics")).content
        cp_metrics_text += (await _get(f"http://127.0.0.1:{cp_metrics}/metrics")).content
    finally:
        await http.aclose()
        await admin.close()
        dp.stop()
        cp.stop()
        await anthropic.stop()
        await vertex.stop()
        await collector.stop()

    for i, token in enumerate(sorted(vertex.issued)):
        run.secrets[f"vertex oauth token {i}"] = token

    corpus: dict[str, bytes] = {}
    for proc in (cp, dp):
        corpus[f"{proc.name} stdout"] = proc.out.read_bytes()
        corpus[f"{proc.name} stderr"] = proc.err.read_bytes()
    corpus["gwctl output"] = b"\n".join(run.gwctl_output)
    corpus["test-process log records"] = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    ).encode()
    for path in sorted(tmp_path.glob("tollgate.db*")):
        corpus[f"database file {path.name}"] = path.read_bytes()
    corpus["database rows"] = _dump_sqlite(db_path)
    for path in _walk(state_dir):
        corpus[f"data-plane state {path.relative_to(state_dir)}"] = path.read_bytes()
    corpus["control-plane /metrics"] = cp_metrics_text
    corpus["data-plane /metrics"] = dp_metrics_text
    corpus["error bodies"] = b"\n".join(run.error_bodies)

    # The search is not vacuous: the places hold what they should, and a planted secret is found.
    assert any(place.endswith("resources.pb") for place in corpus)  # the delta cache
    assert b"secret rotated" in corpus["controlplane stderr"]
    assert b"serving snapshot" in corpus["dataplane stderr"] + corpus["dataplane stdout"]
    assert b"DEBUG" in corpus["dataplane stderr"] + corpus["dataplane stdout"]
    assert b"v1:" in corpus["database rows"]  # the ciphertext is there
    assert len(run.error_bodies) >= 4
    sentinel = "sk-ant-api03-SENTINEL-" + secrets.token_urlsafe(24)
    control = {
        "control raw": b"log line ... " + sentinel.encode() + b" ...",
        "control base64": b"blob:" + base64.b64encode(b"xy" + sentinel.encode() + b"z"),
    }
    assert find_leaks({"sentinel": sentinel}, control) == [
        "sentinel in control raw (raw)",
        "sentinel in control base64 (base64)",
    ]

    leaks = find_leaks(run.secrets, corpus)
    assert leaks == [], "secrets found:\n" + "\n".join(leaks)


async def _serving(admin: GatewayClient) -> bool:
    return await admin.health(wait_s=0.5) == "SERVING"


async def _dp_ready(http: httpx.AsyncClient) -> bool:
    r = await http.get("/healthz")
    return r.status_code == 200


async def _get(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(url)
