"""Control-plane settings: command-line flags over environment variables over defaults.

Environment: ``TOLLGATE_ADMIN_TOKEN``, ``TOLLGATE_DATAPLANE_TOKEN`` (both required, and
different: a data plane holding the admin token could administer the gateway), ``TOLLGATE_DB``
(database URL), ``TOLLGATE_LISTEN`` (host:port). Tokens are read from the environment or from
files (``--admin-token-file`` / ``TOLLGATE_ADMIN_TOKEN_FILE``, ``--dataplane-token-file`` /
``TOLLGATE_DATAPLANE_TOKEN_FILE``; mode 0600), never from a flag's value, which ``ps`` and shell
history would show; they never appear in ``repr()`` or logs.

Secrets at rest: ``TOLLGATE_MASTER_KEY`` (base64 of 32 bytes) or ``TOLLGATE_MASTER_KEY_FILE`` /
``--master-key-file`` (see :mod:`controlplane.secrets`); decrypt-only previous keys, whose
secrets are re-encrypted under the master key at start: ``TOLLGATE_PREVIOUS_MASTER_KEY``
(base64), ``TOLLGATE_PREVIOUS_MASTER_KEY_FILE`` / ``--previous-master-key-file`` (repeatable).
TLS: ``TOLLGATE_TLS_CERT`` and
``TOLLGATE_TLS_KEY`` / ``--tls-cert`` ``--tls-key`` (PEM files; both or neither).

Audit retention: ``TOLLGATE_AUDIT_RETENTION_DAYS`` / ``--audit-retention-days`` (whole days;
default 0 = keep the audit log forever, see :mod:`controlplane.audit_retention`).

Schema: a database behind this release's migrations is refused unless ``--migrate`` /
``TOLLGATE_MIGRATE=1`` (see :mod:`controlplane.store.schema`).

Usage retention: ``TOLLGATE_USAGE_RETENTION_DAYS`` / ``--usage-retention-days`` (0 = keep raw
usage events forever, else at least :data:`MIN_USAGE_RETENTION_DAYS`; spend totals and usage
rollups are kept, see :mod:`controlplane.usage.rebuild`).

Alert webhooks go to public addresses only unless ``--allow-internal-webhooks`` /
``TOLLGATE_ALLOW_INTERNAL_WEBHOOKS=1`` (see :mod:`controlplane.usage.webhooks`).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gwcommon.secret_files import read_secret_file

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_DB_URL = "sqlite:///.tollgate/tollgate.db"
# 100 years: beyond that the cutoff is meaningless (and would overflow a BIGINT timestamp).
MAX_AUDIT_RETENTION_DAYS = 36_500
# Raw events of the current budget windows stay: a time-zone change recomputes them from raw rows.
MIN_USAGE_RETENTION_DAYS = 35
_DAYS = re.compile(r"-?[0-9]+")  # ASCII only: int() would also take "١٢" or "1_0"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")
# Flags that used to take a token as their value: now refused, saying what to use instead.
_TOKEN_FLAGS = {
    "admin_token_flag": ("--admin-token", "TOLLGATE_ADMIN_TOKEN", "--admin-token-file"),
    "dataplane_token_flag": (
        "--dataplane-token",
        "TOLLGATE_DATAPLANE_TOKEN",
        "--dataplane-token-file",
    ),
}


def _flag(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(f"invalid {name} {str(value)[:20]!r}: use 1 or 0")


@dataclass(frozen=True)
class Settings:
    listen: str = DEFAULT_LISTEN
    db_url: str = DEFAULT_DB_URL
    admin_token: str = field(default="", repr=False)
    dataplane_token: str = field(default="", repr=False)
    # Re-read the database this often even without local mutations, so changes made through
    # another control-plane replica (shared PostgreSQL) still reach this one's data planes.
    snapshot_refresh_s: float = 10.0
    # After usage is ingested the snapshot (which carries spend seeds) is rebuilt at most this
    # often: spend reaches data planes within this delay under steady traffic.
    spend_refresh_s: float = 2.0
    # Every scope's spend is re-read this often, a safety net: ingest (this replica's, and other
    # replicas' through the fleet bus) already refreshes the scopes it touched, and a data plane
    # starts a new period's count by itself. At 20,000 keys a sweep is ~0.3 s of work.
    spend_sweep_s: float = 60.0
    # Several replicas on PostgreSQL: how often a follower tries to take the leader lock (and
    # the leader checks it still holds it): a dead leader's jobs resume within this delay.
    leader_retry_s: float = 1.0
    shutdown_grace_s: float = 5.0
    # Budget alert webhooks: per-attempt timeout, attempts, first backoff (doubling, jittered),
    # and the longest wait between attempts (also caps a receiver's Retry-After).
    webhook_timeout_s: float = 5.0
    webhook_attempts: int = 5
    webhook_backoff_s: float = 1.0
    webhook_max_delay_s: float = 60.0
    # HOST:PORT for a plain-HTTP Prometheus /metrics endpoint; "" = off.
    metrics_listen: str = ""
    # Master key for provider secrets at rest (base64 text, or a file holding it); "" = none.
    master_key: str = field(default="", repr=False)
    master_key_file: str = ""
    # Previous master keys (decrypt-only; stored secrets are re-encrypted under the master key
    # at start): base64 text, and files (mode 0600). Empty = none.
    previous_master_key: str = field(default="", repr=False)
    previous_master_key_files: tuple[str, ...] = ()
    # PEM certificate chain and private key: serve gRPC over TLS when both are set.
    tls_cert: str = ""
    tls_key: str = ""
    # Delete audit events older than this many days; 0 = keep forever (audit logs are evidence:
    # how long to keep them is the operator's call, so nothing is deleted unless asked).
    # From text (env/flag) it is parsed in from_env; a non-integer stays text for validate().
    audit_retention_days: int = 0
    # Delete raw usage events older than this many days (0 = never); totals and rollups stay.
    usage_retention_days: int = 0
    # Let alert webhooks reach loopback, private and link-local addresses. Off by default: a
    # workspace-admin chooses the URL and can trigger a delivery at will.
    allow_internal_webhooks: bool = False
    # Apply pending schema migrations at start instead of refusing to start (see
    # controlplane.store.schema); an empty database is initialised either way.
    migrate: bool = False

    def __post_init__(self) -> None:
        # argparse gives a list (append action); keep the frozen settings hashable.
        object.__setattr__(self, "previous_master_key_files", tuple(self.previous_master_key_files))

    def validate(self) -> None:
        """Raise ``ValueError`` with an actionable message when the settings cannot work."""
        if not self.admin_token:
            raise ValueError(
                "an admin token is required: set TOLLGATE_ADMIN_TOKEN or pass "
                "--admin-token-file PATH"
            )
        if not self.dataplane_token:
            raise ValueError(
                "a data-plane token is required (data planes authenticate with it; it no longer "
                "defaults to the admin token): set TOLLGATE_DATAPLANE_TOKEN or pass "
                "--dataplane-token-file PATH, e.g. from `openssl rand -hex 24`"
            )
        if self.dataplane_token == self.admin_token:
            raise ValueError(
                "the data-plane token must differ from the admin token (data planes would "
                "otherwise hold full admin rights): give TOLLGATE_DATAPLANE_TOKEN its own value"
            )
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(
                f"invalid --listen {self.listen!r}: use HOST:PORT, e.g. 127.0.0.1:50051"
            )
        if not 0 < self.leader_retry_s <= 60:
            raise ValueError(
                f"leader_retry_s must be between 0 and 60 seconds (got {self.leader_retry_s})"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError(
                "TLS needs both --tls-cert and --tls-key (env TOLLGATE_TLS_CERT, TOLLGATE_TLS_KEY)"
            )
        days: object = self.audit_retention_days
        if (
            isinstance(days, bool)
            or not isinstance(days, int)
            or not 0 <= days <= MAX_AUDIT_RETENTION_DAYS
        ):
            raise ValueError(
                f"invalid --audit-retention-days {days!r} (env TOLLGATE_AUDIT_RETENTION_DAYS): "
                f"use a whole number of days from 0 to {MAX_AUDIT_RETENTION_DAYS} "
                "(0 = keep the audit log forever)"
            )

        usage: object = self.usage_retention_days
        if (
            isinstance(usage, bool)
            or not isinstance(usage, int)
            or not (usage == 0 or MIN_USAGE_RETENTION_DAYS <= usage <= MAX_AUDIT_RETENTION_DAYS)
        ):
            raise ValueError(
                f"invalid --usage-retention-days {usage!r} (env TOLLGATE_USAGE_RETENTION_DAYS): "
                f"use 0 (keep raw usage events forever) or a whole number of days from "
                f"{MIN_USAGE_RETENTION_DAYS} to {MAX_AUDIT_RETENTION_DAYS}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {
            "listen": env.get("TOLLGATE_LISTEN") or DEFAULT_LISTEN,
            "db_url": env.get("TOLLGATE_DB") or DEFAULT_DB_URL,
            "admin_token": env.get("TOLLGATE_ADMIN_TOKEN", ""),
            "dataplane_token": env.get("TOLLGATE_DATAPLANE_TOKEN", ""),
            "metrics_listen": env.get("TOLLGATE_METRICS_LISTEN", ""),
            "master_key": env.get("TOLLGATE_MASTER_KEY", ""),
            "master_key_file": env.get("TOLLGATE_MASTER_KEY_FILE", ""),
            "previous_master_key": env.get("TOLLGATE_PREVIOUS_MASTER_KEY", ""),
            "previous_master_key_files": tuple(
                f for f in [env.get("TOLLGATE_PREVIOUS_MASTER_KEY_FILE", "")] if f
            ),
            "tls_cert": env.get("TOLLGATE_TLS_CERT", ""),
            "tls_key": env.get("TOLLGATE_TLS_KEY", ""),
            "audit_retention_days": env.get("TOLLGATE_AUDIT_RETENTION_DAYS", ""),
            "usage_retention_days": env.get("TOLLGATE_USAGE_RETENTION_DAYS", ""),
            "allow_internal_webhooks": env.get("TOLLGATE_ALLOW_INTERNAL_WEBHOOKS", ""),
            "migrate": env.get("TOLLGATE_MIGRATE", ""),
            "admin_token_file": env.get("TOLLGATE_ADMIN_TOKEN_FILE", ""),
            "dataplane_token_file": env.get("TOLLGATE_DATAPLANE_TOKEN_FILE", ""),
        }
        values.update({k: v for k, v in overrides.items() if v is not None and v != ""})
        for attr, (flag, env_name, file_flag) in _TOKEN_FLAGS.items():
            if values.pop(attr, None):
                raise ValueError(
                    f"{flag} no longer takes the token on the command line (`ps` and shell "
                    f"history show it): set {env_name} or pass {file_flag} PATH (mode 0600)"
                )
        for field_name, what in (
            ("admin_token", "admin token"),
            ("dataplane_token", "data-plane token"),
        ):
            path = str(values.pop(f"{field_name}_file", "") or "")
            if path:
                values[field_name] = read_secret_file(path, what)
        values["allow_internal_webhooks"] = _flag(
            values["allow_internal_webhooks"], "TOLLGATE_ALLOW_INTERNAL_WEBHOOKS"
        )
        values["migrate"] = _flag(values["migrate"], "TOLLGATE_MIGRATE")
        for name in ("audit_retention_days", "usage_retention_days"):
            days = values[name]
            if isinstance(days, str):
                days = days.strip()
                # Not a number: kept as text so validate() refuses it with the flag's name.
                values[name] = int(days) if _DAYS.fullmatch(days) else days or 0
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def from_args(
        cls, argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        parser = argparse.ArgumentParser(
            prog="tollgate-controlplane", description="Tollgate control plane (gRPC)."
        )
        parser.add_argument("--listen", help=f"HOST:PORT to serve on (default {DEFAULT_LISTEN})")
        parser.add_argument(
            "--db",
            dest="db_url",
            help="database URL: sqlite:///path.db or postgresql://… "
            f"(env TOLLGATE_DB, default {DEFAULT_DB_URL})",
        )
        parser.add_argument(
            "--admin-token-file",
            metavar="PATH",
            help="file (mode 0600) holding the bootstrap admin token (env "
            "TOLLGATE_ADMIN_TOKEN_FILE, or the token itself in TOLLGATE_ADMIN_TOKEN)",
        )
        parser.add_argument(
            "--dataplane-token-file",
            metavar="PATH",
            help="file (mode 0600) holding the token data planes authenticate with, different "
            "from the admin token (env TOLLGATE_DATAPLANE_TOKEN_FILE, or the token itself in "
            "TOLLGATE_DATAPLANE_TOKEN)",
        )
        # The old value-taking flags, refused with a readable message (see from_env).
        parser.add_argument("--admin-token", dest="admin_token_flag", help=argparse.SUPPRESS)
        parser.add_argument(
            "--dataplane-token", dest="dataplane_token_flag", help=argparse.SUPPRESS
        )
        parser.add_argument(
            "--metrics-listen",
            help="HOST:PORT serving Prometheus /metrics over HTTP (env TOLLGATE_METRICS_LISTEN; "
            "default off)",
        )
        parser.add_argument(
            "--master-key-file",
            help="file (mode 0600) holding the base64 master key that encrypts provider secrets "
            "(env TOLLGATE_MASTER_KEY_FILE; or the key itself in TOLLGATE_MASTER_KEY)",
        )
        parser.add_argument(
            "--previous-master-key-file",
            dest="previous_master_key_files",
            action="append",
            metavar="PATH",
            help="file (mode 0600) holding a previous master key, decrypt-only: stored secrets "
            "under it are re-encrypted under the master key at start; repeatable (env "
            "TOLLGATE_PREVIOUS_MASTER_KEY_FILE, or the key itself in TOLLGATE_PREVIOUS_MASTER_KEY)",
        )
        parser.add_argument("--tls-cert", help="PEM certificate chain: serve gRPC over TLS")
        parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
        parser.add_argument(
            "--audit-retention-days",
            metavar="N",
            help="delete audit events older than N days, checked hourly "
            "(env TOLLGATE_AUDIT_RETENTION_DAYS; default 0 = keep forever)",
        )
        parser.add_argument(
            "--usage-retention-days",
            metavar="N",
            help="delete raw usage events older than N days (whole UTC days), checked hourly; "
            "spend totals and usage rollups are kept (env TOLLGATE_USAGE_RETENTION_DAYS; "
            f"default 0 = keep forever; else at least {MIN_USAGE_RETENTION_DAYS})",
        )
        parser.add_argument(
            "--allow-internal-webhooks",
            action="store_true",
            default=None,
            help="let workspace alert webhooks reach loopback, private (RFC 1918, ULA) and "
            "link-local addresses (env TOLLGATE_ALLOW_INTERNAL_WEBHOOKS=1; default: public "
            "addresses only)",
        )
        parser.add_argument(
            "--migrate",
            action="store_true",
            default=None,
            help="apply pending schema migrations at start instead of refusing to start "
            "(env TOLLGATE_MIGRATE=1; or run `gwctl controlplane migrate` first)",
        )
        args = parser.parse_args(argv)
        return cls.from_env(env, **vars(args))
