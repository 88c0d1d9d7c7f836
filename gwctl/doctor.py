"""``gwctl doctor``: why does my Claude Code not work through the gateway?

For the developer, with no admin token: it reads the gateway URL, credential and model the way
Claude Code does (:mod:`gwctl.doctor_env`), checks them against the data plane
(:mod:`gwctl.doctor_checks`) and prints one line per check — ``OK``, ``WARN`` or ``FAIL`` with
the fix, ``SKIP`` when an earlier failure makes it moot. Exit code 1 when anything FAILs, else 0;
``-o json`` prints the same as JSON. With an admin token (``TOLLGATE_ADMIN_TOKEN`` or
``--token-file``) it also asks the control plane whether the data plane that answered is
connected and serves the current configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from typing import Any

from gwclient.client import GatewayClient
from gwclient.errors import ClientError
from gwcommon.secret_files import read_secret_file
from gwctl.cli import Subparsers, UsageError, is_json, leaf
from gwctl.doctor_checks import Doctor, Options
from gwctl.doctor_env import Finding, discover, environ
from gwctl.output import print_json, printable

KEY_FLAG_WARNING = (
    "warning: --key puts your key on the command line, where `ps` and your shell history see "
    "it; prefer ANTHROPIC_AUTH_TOKEN or --key-file PATH"
)


def register(subparsers: Subparsers) -> None:
    p = leaf(
        subparsers,
        "doctor",
        "check why Claude Code does not work through the gateway (no admin token needed)",
        epilog="Reads ANTHROPIC_BASE_URL, ANTHROPIC_AUTH_TOKEN / ANTHROPIC_API_KEY, ANTHROPIC_MODEL "
        "and Claude Code's sign-in like Claude Code does. Exit code 1 when a check fails.",
    )
    p.add_argument("--url", default="", help="the data plane's URL (default: ANTHROPIC_BASE_URL)")
    p.add_argument("--key", default="", help=argparse.SUPPRESS)  # works, with a warning
    p.add_argument(
        "--key-file",
        metavar="PATH",
        default="",
        help="file holding the virtual key or access token (default: ANTHROPIC_AUTH_TOKEN, "
        "ANTHROPIC_API_KEY, then Claude Code's /login)",
    )
    p.add_argument(
        "--model", default="", help="the model to check (default: what Claude Code would use)"
    )
    p.add_argument(
        "--claude", metavar="PATH", default="", help="the claude executable (default: on PATH)"
    )
    p.add_argument(
        "--ca-file",
        metavar="PEM",
        default="",
        help="also trust this CA for the gateway's https (NODE_EXTRA_CA_CERTS is read too)",
    )
    p.add_argument(
        "--timeout", type=float, default=5.0, metavar="S", help="per network step (default 5)"
    )
    p.add_argument(
        "--send",
        action="store_true",
        help="also send one real request (max_tokens 1): it costs a little",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    env = environ()
    key, source = args.key, "--key"
    if key:
        print(KEY_FLAG_WARNING, file=sys.stderr)
    elif args.key_file:
        try:
            key, source = read_secret_file(args.key_file, "key"), args.key_file
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    setup = discover(env, url=args.url, key=key, key_source=source, model=args.model)
    claude = args.claude or shutil.which("claude", path=env.get("PATH")) or ""
    options = Options(timeout=args.timeout, ca_file=args.ca_file, claude=claude, send=args.send)
    try:
        doctor = Doctor(setup, options, env)
    except OSError as exc:  # an unreadable --ca-file
        raise UsageError(f"--ca-file {args.ca_file}: {exc}") from None
    findings = doctor.run()
    if args.token and doctor.whoami is not None:
        findings.append(_operator(args, doctor.whoami))
    failed = sum(f.status == "FAIL" for f in findings)
    if is_json(args):
        print_json(_as_json(setup, findings, failed))
    else:
        _print(setup, findings, failed)
    return 1 if failed else 0


def _operator(args: argparse.Namespace, whoami: dict[str, Any]) -> Finding:
    """With an admin token: is the data plane that answered connected, on the current config?"""
    node = str(whoami.get("dataplane_id") or "")
    serving = str((whoami.get("snapshot") or {}).get("version") or "")

    async def ask() -> Any:
        async with GatewayClient(
            args.control_plane, args.token, timeout=args.timeout, tls_ca=args.tls_ca
        ) as client:
            return await client.list_dataplanes()

    try:
        listing = asyncio.run(ask())
    except (ClientError, ValueError) as exc:
        return Finding(
            "control plane",
            "WARN",
            f"{args.control_plane}: {exc}",
            "check TOLLGATE_CONTROL_PLANE and the admin token",
        )
    plane = next((d for d in listing.dataplanes if d.node_id == node), None)
    current = listing.current_version
    if plane is None:
        return Finding(
            "control plane",
            "WARN",
            f"data plane {node} is unknown to the control plane at {args.control_plane}",
            "is it connected to another control plane? (gwctl dataplanes list)",
        )
    if not plane.connected:
        return Finding(
            "control plane",
            "WARN",
            f"data plane {node} is not connected to the control plane: changes do not reach it",
            "check the data plane's --control-plane, its token and the network; its log says why",
        )
    if serving != current:
        return Finding(
            "control plane",
            "WARN",
            f"data plane {node} serves configuration {serving}, the control plane is at {current}",
            "wait a second and retry; if it stays behind, its log says why (a NACK: gwctl dataplanes list)",
        )
    return Finding(
        "control plane",
        "OK",
        f"data plane {node} is connected and serves the current configuration ({current})",
    )


def _as_json(setup: Any, findings: list[Finding], failed: int) -> dict[str, Any]:
    credential = setup.credential
    return {
        "url": setup.url,
        "url_source": setup.url_source,
        "credential": None
        if credential is None
        else {"source": credential.source, "kind": credential.kind, "shown": credential.shown},
        "model": {"id": setup.model, "source": setup.model_source},
        "checks": [
            {"name": f.name, "status": f.status, "detail": f.detail, "fix": f.fix} for f in findings
        ],
        "ok": failed == 0,
    }


def _print(setup: Any, findings: list[Finding], failed: int) -> None:
    credential = setup.credential
    who = f"{credential.shown} ({credential.kind})" if credential is not None else "no credential"
    out = sys.stdout
    out.write(
        printable(f"gwctl doctor: {setup.url or '(no URL)'} with {who}, model {setup.model}") + "\n"
    )
    width = max(len(f.name) for f in findings)
    for f in findings:
        out.write(f"{f.status:<5} {f.name:<{width}}  {printable(f.detail)}\n")
        if f.fix and f.status != "OK":
            out.write(f"{'':<5} {'':<{width}}  fix: {printable(f.fix)}\n")
    warned = sum(f.status == "WARN" for f in findings)
    if failed:
        out.write(
            f"{failed} check(s) failed" + (f", {warned} warning(s)" if warned else "") + ".\n"
        )
    else:
        out.write("All good" + (f" ({warned} warning(s))" if warned else "") + ".\n")
