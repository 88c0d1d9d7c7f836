"""Sizes both planes agree on for usage events (stdlib only).

The control plane accepts gRPC messages up to :data:`MAX_MESSAGE_BYTES`. A data plane keeps every
``ReportUsage`` well below that: a batch stops at :data:`BATCH_BYTES`, and one event's logged
bodies together never exceed :data:`EVENT_BODY_BYTES`, so any single event fits alone.

:data:`TEXT_CHARS` caps, in characters, every string a client (or an upstream) can put into an
event. The data plane cuts to these when it builds an event; the control plane cuts again at
ingest (and replaces NUL, which PostgreSQL refuses in text), for older data planes and spools.
The caps also keep indexed columns (``session_id``) far below PostgreSQL's B-tree entry limit.
"""

from __future__ import annotations

MAX_MESSAGE_BYTES = 32 * 1024 * 1024
BATCH_BYTES = 4 * 1024 * 1024
EVENT_BODY_BYTES = 16 * 1024 * 1024

MODEL_CHARS = 256
TEXT_CHARS: dict[str, int] = {
    "workspace": 256,
    "key_id": 256,
    "key_name": 256,
    "session_id": 256,
    "model_requested": MODEL_CHARS,
    "model_served": MODEL_CHARS,
    "provider": 256,
    "error_type": 128,
    "error_message": 1000,
    "path": 1024,
    "user_agent": 256,
    "client_version": 64,
    "dataplane_id": 256,
    "upstream_request_id": 256,
    "cache_status": 32,
    "developer_id": 64,
    "developer_email": 320,  # from the identity provider's ID token (RFC 5321's bound)
}
ELLIPSIS = "…"  # ends a string that was cut


def cut(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and ``…`` (``limit`` in all)."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS
