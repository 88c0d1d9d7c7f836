"""``gwctl dataplane serve``: flags, checks, and how many processes to run.

Imports only light modules: with ``--workers N`` > 1 this process is the supervisor
(:mod:`dataplane.process.workers`) and never loads the server's libraries; with one worker it imports
:mod:`dataplane.process.server` and serves in-process.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import replace
from pathlib import Path

from dataplane.edge.signin.publicurl import PUBLIC_URL_ENV, parse_public_url
from dataplane.process.settings import (
    DEFAULT_MAX_BODY,
    OTLP_ENDPOINT_ENV,
    Settings,
    otlp_headers_from_env,
    parse_otlp_endpoint,
)
from gwcommon.secret_files import read_secret_file
from gwcommon.tls import TLS_CA_ENV, read_ca

log = logging.getLogger("tollgate.dataplane")

SERVE_DOC = """Run a data plane: Hypercorn serving the ASGI app, plus the snapshot and usage loops.

``gwctl dataplane serve --listen HOST:PORT --control-plane HOST:PORT [--state-dir DIR]
[--public-url https://…]`` calls :func:`main` (``--public-url``: the URL developers sign in to
with Claude Code, see :mod:`dataplane.edge.signin`). Tests and benchmarks use :class:`DataPlane` directly (``await dp.start()``; port 0
picks a free port, read back from ``dp.port``).
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gwctl dataplane serve", description=SERVE_DOC)
    parser.add_argument("--listen", default=os.environ.get("TOLLGATE_LISTEN", "127.0.0.1:8080"))
    parser.add_argument(
        "--control-plane", default=os.environ.get("TOLLGATE_CONTROL_PLANE", "127.0.0.1:50051")
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        default=os.environ.get("TOLLGATE_DATAPLANE_TOKEN_FILE", ""),
        help="file (mode 0600) holding the data-plane token (env TOLLGATE_DATAPLANE_TOKEN_FILE, "
        "or the token itself in TOLLGATE_DATAPLANE_TOKEN)",
    )
    # The old value-taking flag: refused, since `ps` and shell history would show the token.
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", type=Path, default=Path(".tollgate/dataplane"))
    parser.add_argument(
        "--tls-ca",
        default=os.environ.get(TLS_CA_ENV, ""),
        help=f"connect to the control plane over TLS, trusting this PEM CA (env {TLS_CA_ENV})",
    )
    parser.add_argument("--max-body-mb", type=int, default=DEFAULT_MAX_BODY // (1024 * 1024))
    parser.add_argument("--drain-seconds", type=float, default=2.0)
    parser.add_argument(
        "--keep-alive-s",
        type=float,
        default=75.0,
        help="close a connection idle this long, or whose request headers are still incomplete",
    )
    parser.add_argument(
        "--body-timeout-s",
        type=float,
        default=60.0,
        help="answer 408 and close when a request body is not complete this long after its start",
    )
    parser.add_argument(
        "--graceful-s",
        type=float,
        default=30.0,
        help="on SIGTERM, how long in-flight requests may finish after the listener closed",
    )
    parser.add_argument(
        "--redis",
        default=os.environ.get("TOLLGATE_REDIS", ""),
        help="redis://… shared by all data planes for budgets and rate limits "
        "(env TOLLGATE_REDIS; default: in-process counters, for a single data plane)",
    )
    parser.add_argument("--redis-prefix", default="tollgate:")
    parser.add_argument(
        "--public-url",
        default=os.environ.get(PUBLIC_URL_ENV, ""),
        help="the URL developers sign in to with Claude Code, e.g. https://gw.example.com "
        f"(env {PUBLIC_URL_ENV}); its /oauth/callback is the redirect URI to register at the "
        "identity provider. Without it, only a data plane listening on loopback serves sign-in",
    )
    parser.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        default=os.environ.get(OTLP_ENDPOINT_ENV, ""),
        help="trace the gateway itself: export one span tree per request over OTLP/HTTP to this "
        f"collector, e.g. http://127.0.0.1:4318 (env {OTLP_ENDPOINT_ENV}; default: no tracing)",
    )
    parser.add_argument(
        "--otlp-headers-env",
        metavar="VAR",
        default="",
        help="the environment variable holding the collector's headers, name=value[,…] "
        "(e.g. an API key; OTEL_EXPORTER_OTLP_HEADERS is read too)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.environ.get("TOLLGATE_WORKERS") or None,  # a string: argparse converts it
        metavar="N",
        help="data-plane processes on the one listening port (env TOLLGATE_WORKERS; default: one "
        "per core with --redis, else 1: without Redis, limits cannot be exact across processes)",
    )
    parser.add_argument("--log-level", default=os.environ.get("TOLLGATE_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.token is not None:
        parser.error(
            "--token no longer takes the token on the command line (`ps` and shell history show "
            "it): set TOLLGATE_DATAPLANE_TOKEN or pass --token-file PATH (mode 0600)"
        )
    # Never the admin token: a data plane needs only Watch and ReportUsage.
    token = os.environ.get("TOLLGATE_DATAPLANE_TOKEN", "")
    if args.token_file:
        try:
            token = read_secret_file(args.token_file, "data-plane token")
        except ValueError as exc:
            parser.error(str(exc))
    if not token:
        parser.error(
            "a data-plane token is required: set TOLLGATE_DATAPLANE_TOKEN or pass --token-file "
            "PATH (the control plane's data-plane token, not the admin token)"
        )
    try:
        read_ca(args.tls_ca)  # a bad --tls-ca is a usage error, not a traceback
        public_url = parse_public_url(args.public_url) if args.public_url else ""
        otlp_endpoint = parse_otlp_endpoint(args.otlp_endpoint) if args.otlp_endpoint else ""
        otlp_headers = (
            otlp_headers_from_env(args.otlp_headers_env, os.environ)
            if args.otlp_headers_env
            else {}
        )
        if otlp_headers and not otlp_endpoint:
            raise ValueError("--otlp-headers-env needs --otlp-endpoint")
    except ValueError as exc:
        parser.error(str(exc))
    from dataplane.process.workers import cores, decide_workers, orphan_spools, run_workers

    try:
        workers, why = decide_workers(args.workers, bool(args.redis), cores())
    except ValueError as exc:
        parser.error(str(exc))
    settings = Settings(
        listen=args.listen,
        control_plane=args.control_plane,
        token=token,
        state_dir=args.state_dir,
        tls_ca=args.tls_ca,
        max_body=args.max_body_mb * 1024 * 1024,
        drain_seconds=args.drain_seconds,
        keep_alive_s=args.keep_alive_s,
        body_timeout_s=args.body_timeout_s,
        graceful_s=args.graceful_s,
        redis_url=args.redis,
        redis_prefix=args.redis_prefix,
        public_url=public_url,
        otlp_endpoint=otlp_endpoint,
        otlp_headers=otlp_headers,
    )
    log.info("running %s", why)
    if workers > 1:
        code = run_workers(settings, workers, args.log_level)
        if code:
            raise SystemExit(code)
        return
    # One process, no supervisor; it also replays spools a --workers N run left behind.
    settings = replace(settings, adopt_spools=tuple(orphan_spools(settings.state_dir, 1)[0]))
    from dataplane.process import server  # looked up here: tests replace server.run

    server.run_loop(server.run(settings))
