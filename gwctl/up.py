"""``gwctl up`` / ``gwctl up --status`` / ``gwctl down`` — a local gateway in one command.

State lives in ``./.tollgate/`` (``--state-dir``): ``admin-token`` and ``dataplane-token``
(generated once, 0600), ``master.key`` (0600, the base64 key that encrypts provider secrets
stored with ``--api-key-stdin``; losing it means storing those secrets again), ``tollgate.db``
(SQLite), ``controlplane.{pid,log}``,
``dataplane.{pid,log}``, ``dataplane/`` (the data plane's snapshot cache and usage spool),
``virtual-key`` (the "make-up" key's secret, 0600) with ``virtual-key.id``, and ``up.json``
(ports in use).

``up`` is idempotent: a server whose pid is alive is not started again, the workspace
``default``, the provider and the key ``make-up`` are created only when missing, and the stored
key is reused while it is still active (what it creates: :mod:`gwctl.up_config`). It then prints three ``export`` lines on stdout (and
everything else on stderr, so ``eval "$(gwctl up)"`` works).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import time
from pathlib import Path

import httpx

from gwclient.client import GatewayClient
from gwclient.errors import ClientError
from gwctl import output as out
from gwctl import parse
from gwctl.cli import CommandError, Subparsers
from gwctl.procs import (
    Layout,
    ensure_secret,
    log_tail,
    port_free,
    read_text,
    running_pid,
    spawn,
    write_private,
)
from gwctl.procs import stop as stop_service
from gwctl.up_config import (
    DEV_IDP_CLIENT,
    ensure_dev_sign_in,
    ensure_key,
    ensure_provider,
    ensure_workspace,
    sign_in_hint,
)

DEFAULT_GRPC_PORT = 50051
DEFAULT_PORT = 8080
DEFAULT_DEV_IDP_PORT = 9180
CP, DP, IDP = "controlplane", "dataplane", "dev-idp"


def register(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "up",
        help="start a local gateway (control plane + data plane) and print its env",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--state-dir", default=".tollgate", metavar="DIR", help="default ./.tollgate")
    p.add_argument("--port", type=_port, metavar="PORT", help="data plane HTTP port (8080)")
    p.add_argument("--grpc-port", type=_port, metavar="PORT", help="control plane port (50051)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for health")
    p.add_argument("--status", action="store_true", help="show what is running and exit")
    p.add_argument(
        "--dev-idp",
        action="store_true",
        help="also start the development identity provider (NOT for production) and turn on "
        "sign-in with Claude Code against it",
    )
    p.add_argument(
        "--dev-idp-port", type=_port, metavar="PORT", help=f"its port ({DEFAULT_DEV_IDP_PORT})"
    )
    p.set_defaults(run=run_up)

    p = subparsers.add_parser("down", help="stop the local gateway started by `gwctl up`")
    p.add_argument("--state-dir", default=".tollgate", metavar="DIR")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before SIGKILL")
    p.set_defaults(run=run_down)


def _port(text: str) -> int:
    value = parse.parse_count(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: expected 1..65535")
    return value


def _load_state(layout: Layout) -> dict[str, int]:
    try:
        data = json.loads(layout.state_file.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {k: int(v) for k, v in data.items() if isinstance(v, int | bool)}


def _ports(layout: Layout, args: argparse.Namespace) -> tuple[int, int]:
    """(grpc_port, http_port): flags, else what the running gateway uses, else the defaults."""
    state = _load_state(layout)
    grpc_port = args.grpc_port or state.get("grpc_port") or DEFAULT_GRPC_PORT
    http_port = args.port or state.get("port") or DEFAULT_PORT
    for name, flag, wanted, key in (
        (CP, "--grpc-port", args.grpc_port, "grpc_port"),
        (DP, "--port", args.port, "port"),
    ):
        if wanted and state.get(key) and wanted != state[key] and running_pid(layout, name):
            raise CommandError(
                f"the {name} already runs on port {state[key]}, not {wanted}: "
                f"run `gwctl down` first to change {flag}"
            )
    return grpc_port, http_port


def run_up(args: argparse.Namespace, extra: list[str]) -> int:
    layout = Layout.at(args.state_dir)
    if args.status:
        return asyncio.run(status(layout))
    layout.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    layout.dataplane_dir.mkdir(mode=0o700, exist_ok=True)
    grpc_port, http_port = _ports(layout, args)
    idp_port = (args.dev_idp_port or DEFAULT_DEV_IDP_PORT) if args.dev_idp else 0
    return asyncio.run(bring_up(layout, grpc_port, http_port, args.timeout, idp_port))


def run_down(args: argparse.Namespace, extra: list[str]) -> int:
    layout = Layout.at(args.state_dir)
    # The data plane first: on SIGTERM it flushes its last usage events to the control plane.
    for name in (DP, CP, IDP):
        if name == IDP and not layout.pid_file(IDP).exists():
            continue  # never started: nothing to say
        pid = stop_service(layout, name, timeout=args.timeout)
        out.info(f"{name}: stopped (pid {pid})" if pid else f"{name}: not running")
    return 0


async def _cp_health(target: str, token: str) -> str:
    # A fresh channel per probe: a channel that failed to connect backs off for seconds.
    async with GatewayClient(target, token, timeout=2.0) as client:
        return await client.health()


async def _dp_health(port: int) -> int:
    # trust_env=False: a proxy from the environment must not intercept loopback traffic.
    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as http:
        response = await http.get(f"http://127.0.0.1:{port}/healthz")
        return response.status_code


async def _wait_healthy(layout: Layout, name: str, port: int, token: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    log = layout.display(layout.log_file(name))
    last = "no answer"
    while True:
        try:
            if name == CP:
                last = await _cp_health(f"127.0.0.1:{port}", token)
                if last in ("SERVING", "UNIMPLEMENTED"):
                    return
            else:
                code = await _dp_health(port)
                if code == 200:
                    return
                last = f"GET /healthz answered {code}"
        except (ClientError, httpx.HTTPError) as exc:
            last = getattr(exc, "message", None) or type(exc).__name__
        if running_pid(layout, name) is None:
            tail = log_tail(layout.log_file(name))
            raise CommandError(
                f"the {name} exited during startup; see {log}"
                + (f"; its last lines:\n{tail}" if tail else "")
            )
        if time.monotonic() >= deadline:
            raise CommandError(
                f"the {name} on 127.0.0.1:{port} is not healthy after {wait_s:g}s ({last}); "
                f"see {log}"
            )
        await asyncio.sleep(0.2)


def _start(
    layout: Layout, name: str, port: int, argv: list[str], env: dict[str, str | None]
) -> None:
    pid = running_pid(layout, name)
    if pid is not None:
        out.info(f"{name}: already running (pid {pid}, 127.0.0.1:{port})")
        return
    if not port_free(port):
        raise CommandError(
            f"port 127.0.0.1:{port} is already in use by another program: stop it or choose "
            f"another port ({ {CP: '--grpc-port', DP: '--port'}.get(name, '--dev-idp-port') })"
        )
    proc = spawn(layout, name, argv, env)
    out.info(
        f"{name}: started (pid {proc.pid}, 127.0.0.1:{port}, "
        f"log {layout.display(layout.log_file(name))})"
    )


def ensure_master_key(layout: Layout) -> Path:
    """``<state>/master.key``: 32 random bytes, base64, 0600; made on first use, kept after."""
    path = layout.root / "master.key"
    if read_text(path):
        if path.stat().st_mode & 0o077:  # the control plane refuses a key others can read
            path.chmod(0o600)
        return path
    write_private(path, base64.b64encode(os.urandom(32)).decode() + "\n")
    return path


async def bring_up(
    layout: Layout, grpc_port: int, http_port: int, wait_s: float, idp_port: int = 0
) -> int:
    """Start (or find) both servers, converge the local configuration, print the env lines.
    With ``idp_port``, also the development IdP there, and sign-in configured against it."""
    admin_token = ensure_secret(layout.admin_token)
    dp_token = ensure_secret(layout.dataplane_token)
    master_key = ensure_master_key(layout)
    target = f"127.0.0.1:{grpc_port}"
    has_api_key = bool(os.environ.get("ANTHROPIC_API_KEY"))

    # Tokens travel in the environment the servers read, never in argv (visible in `ps`).
    # --migrate: this one local control plane owns its database, so a newer gwctl upgrades it.
    _start(layout, CP, grpc_port, [
        "controlplane", "serve", "--listen", target, "--db", layout.db_url,
        "--master-key-file", str(master_key), "--migrate",
    ], env={"TOLLGATE_ADMIN_TOKEN": admin_token, "TOLLGATE_DATAPLANE_TOKEN": dp_token,
            "TOLLGATE_MASTER_KEY": None, "TOLLGATE_MASTER_KEY_FILE": None})  # fmt: skip
    await _wait_healthy(layout, CP, grpc_port, admin_token, wait_s)

    async with GatewayClient(target, admin_token) as client:
        await ensure_workspace(client)
        provider = await ensure_provider(client, has_api_key)
        secret = await ensure_key(client, layout, provider)
        if idp_port:
            await _ensure_dev_idp(layout, client, idp_port, provider, wait_s)

    state = _load_state(layout)
    dp_was_running = running_pid(layout, DP) is not None
    _start(layout, DP, http_port, [
        "dataplane", "serve", "--listen", f"127.0.0.1:{http_port}", "--control-plane", target,
        "--state-dir", str(layout.dataplane_dir),
        # One local replica has no load balancer to drain away from: stop at once.
        "--drain-seconds", "0",
        # One worker: the local stack has no Redis, and without it limits are exact only in one
        # process (a TOLLGATE_WORKERS in the caller's environment must not change that).
        "--workers", "1",
    ], env={"TOLLGATE_DATAPLANE_TOKEN": dp_token, "TOLLGATE_ADMIN_TOKEN": None})  # fmt: skip
    if not dp_was_running:
        state["anthropic_key"] = has_api_key
    state.update(grpc_port=grpc_port, port=http_port)
    if idp_port:
        state["dev_idp_port"] = idp_port
    layout.state_file.write_text(json.dumps(state) + "\n")
    await _wait_healthy(layout, DP, http_port, admin_token, wait_s)
    await _wait_synced(target, admin_token, min(wait_s, 10.0))

    if has_api_key and not state.get("anthropic_key"):
        out.info(
            "note: the running data plane was started without ANTHROPIC_API_KEY; "
            "run `make down && make up` so it can read it"
        )
    if provider == "simulator":
        out.info(
            "provider: simulator: answers are SIMULATED (ANTHROPIC_API_KEY is not set); "
            "export it and run `make down && make up` for real Claude answers"
        )
    else:
        out.info("provider: anthropic (the data plane reads ANTHROPIC_API_KEY)")
    print(f"export ANTHROPIC_BASE_URL=http://127.0.0.1:{http_port}")
    print(f"export ANTHROPIC_AUTH_TOKEN={secret}")
    print(f"export TOLLGATE_CONTROL_PLANE={target} TOLLGATE_ADMIN_TOKEN={admin_token}")
    out.info('then: claude -p "hello"  ·  gwctl usage  ·  gwctl logs tail -f  ·  make down')
    if has_api_key:
        out.info("(in that shell, `unset ANTHROPIC_API_KEY` so Claude Code uses the virtual key)")
    sign_in_hint(http_port, idp_port)
    return 0


async def _ensure_dev_idp(
    layout: Layout, client: GatewayClient, port: int, provider: str, wait_s: float
) -> None:
    """The development IdP running on ``port`` and the gateway's sign-in pointed at it
    (:func:`gwctl.up_config.ensure_dev_sign_in`)."""
    secret_file = layout.root / "dev-idp-secret"
    secret = ensure_secret(secret_file)
    _start(layout, IDP, port, [
        "dev-idp", "serve", "--listen", f"127.0.0.1:{port}", "--client-id", DEV_IDP_CLIENT,
        "--client-secret-file", str(secret_file),
    ], env={"TOLLGATE_ADMIN_TOKEN": None, "TOLLGATE_DATAPLANE_TOKEN": None})  # fmt: skip
    issuer = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=2.0) as http:
                r = await http.get(issuer + "/.well-known/openid-configuration")
                if r.status_code == 200:
                    break
        except httpx.HTTPError:
            pass
        if running_pid(layout, IDP) is None or time.monotonic() >= deadline:
            tail = log_tail(layout.log_file(IDP))
            raise CommandError(
                f"the development IdP on {issuer} did not start; see "
                f"{layout.display(layout.log_file(IDP))}" + (f":\n{tail}" if tail else "")
            )
        await asyncio.sleep(0.2)
    await ensure_dev_sign_in(client, issuer, secret, provider)


async def _wait_synced(target: str, token: str, wait_s: float) -> None:
    """Wait until a data plane ACKed the current snapshot, so the key works when pasted.

    Only a warning on timeout: the gateway is up, the snapshot is on its way.
    """
    deadline = time.monotonic() + wait_s
    async with GatewayClient(target, token) as client:
        while time.monotonic() < deadline:
            response = await client.list_dataplanes()
            if any(dp.acked_version == response.current_version for dp in response.dataplanes):
                return
            await asyncio.sleep(0.2)
    out.info(
        "warning: the data plane has not confirmed the latest configuration yet; "
        "check `gwctl dataplanes list`"
    )


async def status(layout: Layout) -> int:
    """Print what runs; exit 0 when both servers are running and healthy, else 1."""
    state = _load_state(layout)
    ports = {CP: state.get("grpc_port", DEFAULT_GRPC_PORT), DP: state.get("port", DEFAULT_PORT)}
    token = read_text(layout.admin_token)
    rows, ok = [], True
    for name in (CP, DP, IDP):
        pid = running_pid(layout, name)
        if name == IDP:  # optional (--dev-idp): listed only while it runs
            if pid is not None:
                port = state.get("dev_idp_port", DEFAULT_DEV_IDP_PORT)
                rows.append(
                    [
                        name,
                        pid,
                        "running",
                        f"127.0.0.1:{port}",
                        layout.display(layout.log_file(name)),
                    ]
                )
            continue
        health = "stopped"
        if pid is not None:
            try:
                if name == CP:
                    health = (await _cp_health(f"127.0.0.1:{ports[name]}", token)).lower()
                    health = "healthy" if health in ("serving", "unimplemented") else health
                else:
                    code = await _dp_health(ports[name])
                    health = "healthy" if code == 200 else f"unhealthy ({code})"
            except (ClientError, httpx.HTTPError):
                health = "not answering"
        ok = ok and health == "healthy"
        rows.append(
            [
                name,
                pid or "-",
                health,
                f"127.0.0.1:{ports[name]}",
                layout.display(layout.log_file(name)),
            ]
        )
    out.print_table(["SERVICE", "PID", "STATE", "ADDRESS", "LOG"], rows)
    return 0 if ok else 1
