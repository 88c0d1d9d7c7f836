"""Sign in with Claude Code, end to end, with the real interactive CLI (P1's acceptance).

Everything is real but the identity provider and Anthropic, which are the strict fakes
(:mod:`tests.fakes.oidc` checks PKCE, nonce, client secret and redirect URI;
:mod:`tests.fakes.anthropic` checks the provider key and body). The pieces:

* a control plane (in this process, SQLite, a master key) with SSO set to the fake IdP, a
  workspace ``platform`` for the IdP group ``platform-eng`` whose developers use the fake
  Anthropic;
* two data-plane processes (``gwctl dataplane serve --public-url``, counters shared in Redis)
  behind one address: a small
  HTTP router that sends ``/oauth/device_authorization`` to the first and ``/oauth/token`` to the
  second (so one sign-in spans both replicas), everything else alternately;
* Claude Code in tmux (:mod:`tests.e2e.claude_tmux`): the machine's managed-settings file points
  it at the gateway; the test types ``/login``, trusts the gateway, and plays the browser:
  the verification page, the code, the IdP, the callback.

This module is long because the real interactive CLI is driven in tmux through the whole sign-in
(IdP, consent, token, refresh, sign-out) and each step's checks depend on the state the previous
one left.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from controlplane.server import running
from controlplane.settings import Settings as ControlPlaneSettings
from gwapi.v1 import admin_pb2, common_pb2
from gwclient.client import GatewayClient
from tests.dataplane.redis_support import REDIS_URL, redis_namespace
from tests.e2e.claude_tmux import ClaudeTerminal, browser_sign_in, managed_settings, new_home
from tests.e2e.dataplane_process import DataPlaneProcess
from tests.e2e.test_gateway import ROOT, free_port
from tests.fakes.anthropic import (
    DEFAULT_USAGE,
    UPSTREAM_KEY,
    FakeAnthropic,
    Scripted,
    stream_frames,
)
from tests.fakes.oidc import CLIENT_ID, CLIENT_SECRET, FakeOidc, Login
from tests.fakes.otlp_collector import FakeCollector
from tests.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

ADMIN = "admin-token-signin-e2e"
DP_TOKEN = "dataplane-token-signin-e2e"
MASTER_KEY = base64.b64encode(b"s" * 32).decode()
KEY_ENV = "TOLLGATE_E2E_UPSTREAM_KEY"
ANSWER = "Signed-in greetings from the strict fake upstream."
ALICE = Login(sub="idp-sub-alice", email="alice@example.com", name="Alice", groups=["platform-eng"])
PRICES = ROOT / "controlplane" / "domain" / "prices.json"
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}


class Router:
    """One public address in front of two data planes, routing by path (recorded per path)."""

    def __init__(self, one: str, two: str) -> None:
        self.one, self.two = one, two
        self.served: list[tuple[str, str]] = []  # (path, "one" | "two")
        self._alternate = itertools.cycle(("one", "two"))
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def choose(self, path: str) -> str:
        if path == "/oauth/device_authorization":
            return "one"
        if path == "/oauth/token":
            return "two"
        return next(self._alternate)

    async def start(self, port: int) -> None:
        """Listen on ``port``, chosen before the data planes needed the public URL."""
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._proxy)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.port = port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        which = self.choose(request.path)
        self.served.append((request.path, which))
        base = self.one if which == "one" else self.two
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = await request.read()
        async with self._session.request(
            request.method, base + request.path_qs, headers=headers, data=body,
            allow_redirects=False,
        ) as upstream:  # fmt: skip
            out = web.StreamResponse(status=upstream.status)
            for k, v in upstream.headers.items():
                if k.lower() not in _HOP:
                    out.headers.add(k, v)
            await out.prepare(request)
            async for chunk in upstream.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out


class DataPlane(DataPlaneProcess):
    """One of the gateway's replicas: they share their counters through Redis, as a multi-replica
    gateway must."""

    def __init__(
        self, control_plane: str, state_dir: Path, public_url: str, redis_prefix: str
    ) -> None:
        env = {KEY_ENV: UPSTREAM_KEY, "TOLLGATE_DATAPLANE_TOKEN": DP_TOKEN}
        redis = ["--redis", REDIS_URL, "--redis-prefix", redis_prefix]
        super().__init__(control_plane, state_dir, public_url, free_port(), env, redis)


@dataclass
class Stack:
    admin: GatewayClient
    idp: FakeOidc
    upstream: FakeAnthropic
    router: Router
    planes: list[DataPlane]
    tmp: Path
    logs: list[Path] = field(default_factory=list)

    def diagnostics(self) -> str:
        parts = [f"router served: {self.router.served[-40:]}"]
        for dp in self.planes:
            parts.append(f"--- {dp.log.name}\n" + dp.log.read_text()[-2500:])
        return "\n".join(parts)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    upstream = FakeAnthropic(text=ANSWER)
    await upstream.start()
    idp = FakeOidc()
    await idp.start()
    settings = ControlPlaneSettings(
        listen="127.0.0.1:0",
        db_url=f"sqlite:///{tmp_path / 'tollgate.db'}",
        admin_token=ADMIN,
        dataplane_token=DP_TOKEN,
        master_key=MASTER_KEY,
    )
    planes: list[DataPlane] = []
    router: Router | None = None
    try:
        async with (
            redis_namespace() as prefix,
            running(settings) as cp,
            GatewayClient(cp.address, ADMIN) as admin,
        ):
            await admin.create_provider(
                common_pb2.Provider(
                    name="anthropic-fake", kind="anthropic", base_url=upstream.base_url,
                    api_key_env=KEY_ENV,
                )
            )  # fmt: skip
            await admin.set_sso(
                admin_pb2.SsoConfig(issuer=idp.issuer, client_id=CLIENT_ID),
                client_secret=CLIENT_SECRET,
            )
            await admin.create_workspace(
                common_pb2.Workspace(
                    name="platform", sso_groups=["platform-eng"],
                    member_provider="anthropic-fake",
                )
            )  # fmt: skip
            port = free_port()
            public = f"http://127.0.0.1:{port}"
            planes = [
                DataPlane(cp.address, tmp_path / "dp-one", public, prefix),
                DataPlane(cp.address, tmp_path / "dp-two", public, prefix),
            ]
            for dp in planes:
                await dp.start()
            router = Router(planes[0].url, planes[1].url)
            await router.start(port)
            idp.register_redirect_uri(public + "/oauth/callback")
            yield Stack(admin, idp, upstream, router, planes, tmp_path)
    finally:
        if router is not None:
            await router.stop()
        for dp in planes:
            dp.stop()
        await idp.stop()
        with contextlib.suppress(OSError):
            await upstream.stop()


def expected_cost_micros(model: str, output_tokens: int = 42) -> int:
    """What the fake's default usage costs at the shipped price entry for ``model`` (longest
    matching prefix), computed here from the table's numbers (not by the gateway's code)."""
    table = orjson.loads(PRICES.read_bytes())
    entries = table["prices"] if isinstance(table, dict) else table
    entry = max(
        (e for e in entries if model.startswith(e["model_prefix"])),
        key=lambda e: len(e["model_prefix"]),
    )
    rate = {k: Decimal(str(v)) for k, v in entry["rates"].items()}  # USD per million tokens
    u = DEFAULT_USAGE
    usd = (
        u["input_tokens"] * rate["input"]
        + u["cache_creation"]["ephemeral_5m_input_tokens"] * rate["cache_write_5m"]
        + u["cache_creation"]["ephemeral_1h_input_tokens"] * rate["cache_write_1h"]
        + u["cache_read_input_tokens"] * rate["cache_read"]
        + output_tokens * rate["output"]
    ) / 1_000_000
    return int((usd * 1_000_000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


async def until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():  # type: ignore[misc]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_sign_in_prompt_usage_and_offboarding_with_the_real_cli(stack: Stack) -> None:
    stack.idp.next_login(ALICE)
    gateway = stack.router.url
    with managed_settings(gateway):
        home = new_home(stack.tmp)
        term = ClaudeTerminal(home, stack.tmp / "project")
        try:
            # The interactive CLI blocks (tmux round trips, sleeps): run it off the event loop
            # that serves the control plane.
            await asyncio.to_thread(term.start)
            await asyncio.to_thread(term.trust_folder)
            await asyncio.to_thread(term.wait_ready, 60)
            code = await asyncio.to_thread(term.begin_gateway_login)
            page = await asyncio.to_thread(browser_sign_in, gateway, code)
            assert page.status_code == 200, page.text
            assert "alice@example.com" in page.text and "platform" in page.text, page.text
            await asyncio.to_thread(term.finish_gateway_login, 60)
            await asyncio.to_thread(term.wait_for, r"Login successful", 30)

            # One sign-in, two replicas: the device code was issued by one, polled on the other.
            served = stack.router.served
            assert ("/oauth/device_authorization", "one") in served, stack.diagnostics()
            assert ("/oauth/token", "two") in served, stack.diagnostics()

            # A prompt goes through the gateway to the fake Anthropic and back.
            await asyncio.to_thread(term.wait_ready, 60)
            await asyncio.to_thread(term.type, "Say hello to the gateway")
            await asyncio.to_thread(term.keys, "Enter")
            await asyncio.to_thread(term.wait_for, r"Signed-in greetings", 90)

            developers = await stack.admin.list_developers(workspace="platform")
            assert [d.email for d in developers] == ["alice@example.com"], developers
            alice = developers[0]

            seen: dict[str, Any] = {}

            async def usage_arrived() -> bool:
                # A prompt may be more than one request (Claude Code also asks for a title), and
                # their events may reach the ledger in different batches: the ledger and the
                # request log are compared once they hold the same requests.
                rows = await stack.admin.query_usage(workspace="platform", group_by="developer")
                logs = [e async for e in stack.admin.tail_logs(workspace="platform", limit=50)]
                seen.update(rows=rows, logs=logs)
                return bool(rows) and bool(logs) and rows[0].requests == len(logs)

            await until(usage_arrived, 20, "the prompt's requests in both the ledger and the log")
            rows, logs = seen["rows"], seen["logs"]
            assert [r.developer_email for r in rows] == ["alice@example.com"], rows
            messages = [e for e in logs if e.path == "/v1/messages"]
            assert messages, logs
            for event in messages:
                assert event.developer_id == alice.id and event.developer_email == alice.email
                assert event.key_id == "" and event.status == 200, event
                assert event.usage.cost_micros == expected_cost_micros(event.model_served), event
            assert rows[0].cost_micros == sum(e.usage.cost_micros for e in messages)

            # Offboarding: disabled, the next prompt is refused and nothing reaches upstream.
            before = len(stack.upstream.requests)
            version_before = (await stack.admin.list_dataplanes()).current_version
            await stack.admin.disable_developer(alice.email)

            async def both_serve_it() -> bool:  # each worker ACKs a snapshot once swapped in
                status = await stack.admin.list_dataplanes()
                return (
                    status.current_version != version_before
                    and len({d.listen for d in status.dataplanes}) == 2  # both data planes
                    and all(
                        d.connected and d.acked_version == status.current_version
                        for d in status.dataplanes
                    )
                )

            await eventually(both_serve_it, "the snapshot without alice on both data planes")
            await asyncio.to_thread(term.wait_ready, 30)
            await asyncio.to_thread(term.type, "Say hello again")
            await asyncio.to_thread(term.keys, "Enter")
            # The CLI shows the gateway's 401 and asks for a new /login.
            await asyncio.to_thread(term.wait_for, r"Your sign-in was revoked", 60)
            await asyncio.to_thread(term.wait_for, r"Please run /login", 5)
            assert len(stack.upstream.requests) == before, "a disabled developer reached upstream"
        except BaseException:
            print(term.screen())
            print(stack.diagnostics())
            raise
        finally:
            term.close()


async def sign_in_home(
    stack: Stack, home: Path, workdir: Path, *, exits_after_sign_in: bool = False
) -> None:
    """One laptop: the interactive CLI signs in through the gateway, then is closed. With a
    policy that carries ``env``, the CLI exits by itself after the sign-in screen (observed)."""
    stack.idp.next_login(ALICE)
    term = ClaudeTerminal(home, workdir)
    try:
        await asyncio.to_thread(term.start)
        await asyncio.to_thread(term.trust_folder)
        await asyncio.to_thread(term.wait_ready, 60)
        code = await asyncio.to_thread(term.begin_gateway_login)
        page = await asyncio.to_thread(browser_sign_in, stack.router.url, code)
        assert page.status_code == 200, page.text
        await asyncio.to_thread(term.finish_gateway_login, 60)
        if not exits_after_sign_in:
            await asyncio.to_thread(term.wait_for, r"Login successful", 30)
    except BaseException:
        print(term.screen())
        raise
    finally:
        term.close()


async def claude_print(home: Path, workdir: Path, prompt: str) -> tuple[int, str]:
    """``claude -p PROMPT`` on a signed-in laptop (its HOME holds the gateway session)."""
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        str(ROOT / "node_modules" / ".bin" / "claude"), "-p", prompt,
        env=env, cwd=workdir, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        return -9, out.decode(errors="replace")
    return proc.returncode or 0, out.decode(errors="replace")


async def test_a_developers_budget_holds_across_two_laptops(stack: Stack) -> None:
    output_tokens = 20_000  # each answer costs about $0.53 at Opus rates
    cost = expected_cost_micros("claude-opus-4-8", output_tokens)

    def costly(req: object) -> object:
        body = orjson.loads(req.body)  # type: ignore[attr-defined]
        words = [w + " " for w in ANSWER.split()]
        return Scripted(
            headers=[(b"content-type", b"text/event-stream; charset=utf-8")],
            frames=stream_frames(body["model"], words, output_tokens=output_tokens),
            delay=0.05,  # answers take a moment, so the two laptops' requests overlap
        )

    budget = 3_000_000  # $3 for the developer, lifetime
    await stack.admin.update_workspace(
        common_pb2.Workspace(
            name="platform",
            member_limits=common_pb2.Limits(
                budgets=[common_pb2.Budget(amount_micros=budget, period=common_pb2.PERIOD_LIFETIME)]
            ),
        ),
        ["member_limits.budgets"],
    )
    laptops = [(new_home(stack.tmp), stack.tmp / f"project-{i}") for i in range(2)]
    with managed_settings(stack.router.url):
        for home, workdir in laptops:
            workdir.mkdir(parents=True, exist_ok=True)
            await sign_in_home(stack, home, workdir)
        stack.upstream.on_request = costly  # type: ignore[assignment]
        outcomes: list[tuple[int, int, str]] = []

        async def laptop(i: int, home: Path, workdir: Path) -> None:
            for _ in range(6):
                code, out = await claude_print(home, workdir, "Write a long answer")
                outcomes.append((i, code, out))
                if code != 0:
                    return

        await asyncio.gather(
            *(laptop(i, home, workdir) for i, (home, workdir) in enumerate(laptops) for _ in (0, 1))
        )
    served = [o for o in outcomes if o[1] == 0]
    refused = [o for o in outcomes if o[1] != 0]
    detail = "\n".join(f"laptop {i} exit {c}: {out[-300:]}" for i, c, out in outcomes)
    assert {i for i, _, _ in outcomes} == {0, 1}, detail  # both laptops ran at once
    assert len(served) >= budget // cost - 1, detail  # the budget was usable
    assert refused, detail  # and then it ran out
    for _, _, out in refused:
        assert "Budget of $3.00" in out and "alice@example.com" in out, detail

    async def settled() -> bool:
        rows = await stack.admin.query_usage(workspace="platform", group_by="developer")
        n = sum(1 for e in stack.upstream.requests if e.path == "/v1/messages")
        return bool(rows) and rows[0].requests >= n

    await until(settled, 30, "every request in the ledger")
    rows = await stack.admin.query_usage(workspace="platform", group_by="developer")
    spent = rows[0].cost_micros
    assert spent <= budget + cost, (spent, budget, cost, detail)  # overshoot ≤ one request
    assert spent >= budget - 2 * cost, (spent, budget, cost)  # and the budget was usable
    print(
        f"served {len(served)}, refused {len(refused)}, spent {spent} of {budget} (one request {cost})"
    )
    developer = (await stack.admin.list_developers(workspace="platform"))[0]
    assert [b.spent_micros for b in developer.budget_status] == [spent]


async def test_policy_and_telemetry_reach_the_real_cli_and_come_back_attributed(
    stack: Stack,
) -> None:
    """The workspace's managed settings turn Claude Code's telemetry on; signed in, the CLI
    fetches the policy from the gateway, exports OTLP to the gateway with its bearer token, the
    data plane stamps the developer's identity on it and forwards it to the collector, and the
    activity (Claude Code's own cost and token counts) shows next to the metered spend."""
    collector = FakeCollector(required_headers={"x-collector-key": "collector-secret-1"})
    await collector.start()
    try:
        await stack.admin.add_telemetry_destination(
            admin_pb2.TelemetryDestination(name="collector", url=collector.base_url),
            {"x-collector-key": "collector-secret-1"},
        )
        policy = {
            "env": {
                "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
                # Without a protocol Claude Code's exporter setup fails (silently): it is needed
                # even though, signed in to a gateway, the endpoint is the gateway's.
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_METRICS_EXPORTER": "otlp",
                "OTEL_LOGS_EXPORTER": "otlp",
                "OTEL_METRIC_EXPORT_INTERVAL": "1000",
                "OTEL_LOGS_EXPORT_INTERVAL": "1000",
            }
        }
        await stack.admin.update_workspace(
            common_pb2.Workspace(
                name="platform", managed_settings_json=orjson.dumps(policy).decode()
            ),
            ["managed_settings_json"],
        )
        home, workdir = new_home(stack.tmp), stack.tmp / "project-telemetry"
        workdir.mkdir()
        with managed_settings(stack.router.url):
            await sign_in_home(stack, home, workdir, exits_after_sign_in=True)
            code, out = await claude_print(home, workdir, "Say hello to the collector")
        assert code == 0 and "Signed-in greetings" in out, out
        served = [path for path, _ in stack.router.served]
        assert "/managed/settings" in served, stack.diagnostics()
        assert "/v1/metrics" in served or "/v1/logs" in served, stack.diagnostics()
        await collector.wait_for(1, timeout=20)
        alice = (await stack.admin.list_developers(workspace="platform"))[0]
        for export in collector.received:
            for attributes in export.resource_attributes():
                assert attributes["tollgate.developer.id"] == alice.id, attributes
                assert attributes["tollgate.developer.email"] == "alice@example.com"
                assert attributes["enduser.id"] == "alice@example.com"
                assert attributes["tollgate.workspace"] == "platform"

        async def activity_arrived() -> bool:
            # The two halves travel apart (OTLP through the forwarder, the metered request
            # through the reporter): wait until the row holds both, then check it.
            rows = await stack.admin.query_usage(workspace="platform", group_by="developer")
            return bool(rows) and rows[0].client_cost_micros > 0 and rows[0].requests >= 1

        await until(activity_arrived, 30, "Claude Code's own cost next to the metered one")
        [row] = await stack.admin.query_usage(workspace="platform", group_by="developer")
        assert row.group == alice.id and row.requests >= 1 and row.cost_micros > 0, row
    finally:
        await collector.stop()
