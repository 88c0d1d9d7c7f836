"""Workspace settings beyond limits: the Redis failure mode, the alert webhook URL and format,
the minimum Claude Code version and the request-log policy (bodies, cap, retention)."""

from __future__ import annotations

import re

from controlplane.domain.destinations import literal_internal_kind, split_url
from controlplane.domain.errors import InvalidArgument, shown
from gwapi import vocab

REDIS_FAILURE_MODES = vocab.choices(vocab.REDIS_FAILURE)
DEFAULT_REDIS_FAILURE = "closed"
MAX_WEBHOOK_CHARS = 2048
ALERT_FORMATS = ("generic", "slack")
DEFAULT_ALERT_FORMAT = "generic"
LOG_BODIES = vocab.choices(vocab.LOG_BODIES)
DEFAULT_LOG_BODY_MAX_BYTES = 256 * 1024
MAX_LOG_BODY_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_LOG_RETENTION_DAYS = 30
MAX_LOG_RETENTION_DAYS = 3650
_VERSION = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,6}){0,3}$")


def validate_min_client_version(value: str) -> str:
    """``""`` (any version) or dotted numbers such as ``2.1.0`` (at most four parts)."""
    value = value.strip()
    if value and not _VERSION.fullmatch(value):
        raise InvalidArgument(
            f"invalid min_client_version {value[:40]!r}: use dotted numbers such as 2.1.0"
        )
    return value


def validate_redis_failure(value: str) -> str:
    """``""`` (the default, fail closed), ``"closed"`` or ``"open"`` → ``"closed"``/``"open"``.

    What data planes do when the shared counter store is unreachable: ``closed`` refuses requests
    that have a budget to enforce; ``open`` serves them, enforcing nothing shared.
    """
    mode = value.strip().lower() or DEFAULT_REDIS_FAILURE
    if mode not in REDIS_FAILURE_MODES:
        raise InvalidArgument(
            f"invalid redis_failure {shown(value)}: use 'closed' (refuse budgeted requests while Redis "
            "is unreachable; the default) or 'open' (serve them without shared limits)"
        )
    return mode


def validate_alert_webhook(url: str, *, allow_internal: bool = False) -> str:
    """``""`` (no webhook) or an absolute ``http``/``https`` URL with a host and no credentials.

    Credentials in the URL (``https://user:pass@host/…``) are refused: the URL is shown by
    ``gwctl workspaces show``. Put a secret in the path or query instead if the receiver needs one.
    A host that is an internal IP literal (:mod:`controlplane.domain.destinations`) is refused
    unless ``allow_internal`` (the control plane's ``--allow-internal-webhooks``); names are
    checked at each delivery, after they are resolved.
    """
    url = url.strip()
    if not url:
        return ""
    parts, port = split_url(url, "alert_webhook", MAX_WEBHOOK_CHARS, "; use a URL without them")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(
            f"invalid alert_webhook {shown(url)}: use an http:// or https:// URL such as "
            "https://hooks.example.com/tollgate"
        )
    if port == 0:
        raise InvalidArgument(f"invalid alert_webhook {shown(url)}: port 0")
    kind = None if allow_internal else literal_internal_kind(parts.hostname)
    if kind is not None:
        raise InvalidArgument(
            f"invalid alert_webhook {shown(url)}: {parts.hostname} is a {kind} address, and this "
            "control plane delivers alerts to public addresses only (an operator can allow "
            "internal ones with `gwctl controlplane serve --allow-internal-webhooks`)"
        )
    return url


def validate_alert_format(value: str) -> str:
    """``""`` → ``"generic"``; otherwise ``generic`` (Tollgate's JSON document with a readable
    ``text``) or ``slack`` (a Slack incoming-webhook message)."""
    fmt = value.strip().lower() or DEFAULT_ALERT_FORMAT
    if fmt not in ALERT_FORMATS:
        raise InvalidArgument(
            f"invalid alert_format {shown(value)}: use 'generic' (Tollgate's JSON document; the "
            "default) or 'slack' (a Slack incoming-webhook message)"
        )
    return fmt


def validate_log_bodies(value: str) -> str:
    """``""`` → ``"none"``; otherwise one of none | metadata | full."""
    mode = value.strip().lower() or "none"
    if mode not in LOG_BODIES:
        raise InvalidArgument(
            f"invalid log_bodies {value[:40]!r}: use none (no headers or bodies; the default), "
            "metadata (redacted request headers and sizes) or full (also the bodies)"
        )
    return mode


def validate_log_body_max_bytes(value: int) -> int:
    """0 → the default (256 KiB); otherwise 1 byte … 16 MiB."""
    return _count_or_default(
        value, "log_body_max_bytes", DEFAULT_LOG_BODY_MAX_BYTES, MAX_LOG_BODY_MAX_BYTES, " (16 MiB)"
    )


def validate_log_retention_days(value: int) -> int:
    """0 → the default (30 days); otherwise 1 … 3650."""
    return _count_or_default(
        value, "log_retention_days", DEFAULT_LOG_RETENTION_DAYS, MAX_LOG_RETENTION_DAYS
    )


def _count_or_default(value: int, field: str, default: int, most: int, note: str = "") -> int:
    """0 → ``default``; otherwise ``value`` when it is 1 … ``most`` (``note`` glosses ``most``)."""
    if value == 0:
        return default
    if not 0 < value <= most:
        raise InvalidArgument(f"invalid {field} {value}: use 1 to {most}{note}")
    return value
