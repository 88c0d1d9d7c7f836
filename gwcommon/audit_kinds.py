"""The kinds of object the audit log records (``AuditEvent.resource_kind``): one list for the
control plane, which writes them, and gwctl, which filters by them (stdlib only)."""

RESOURCE_KINDS = (
    "workspace",
    "key",
    "provider",
    "route",
    "token",
    "telemetry_destination",
    "sso",
    "developer",
)
