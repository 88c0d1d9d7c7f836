"""What every sign-in endpoint shares: the snapshot, the control plane's SignIn client, the
public URL, the per-address limits and metrics; and the bounded form and query parsing."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from dataplane.asgi import Receive, Scope, header, read_body
from dataplane.edge.signin.client import SignInClient
from dataplane.edge.signin.metrics import SignInMetrics
from dataplane.edge.signin.publicurl import PublicUrl
from dataplane.edge.signin.ratelimit import PerIpLimiter
from dataplane.errors import GatewayError
from dataplane.policy.runtime import SnapshotHolder

FORM = b"application/x-www-form-urlencoded"
MAX_FORM_BYTES = 4 * 1024  # device codes and refresh tokens are ~43 characters
MAX_FIELDS = 16
MAX_QUERY_BYTES = 8 * 1024  # the identity provider's callback: state, code, iss, error…

# RFC 8628 §5.1: new device grants and code submissions per client address.
DEVICE_PER_MINUTE, DEVICE_BURST = 6.0, 10
CODE_PER_MINUTE, CODE_BURST = 6.0, 10


class FormError(Exception):
    """A malformed form or query: ``status`` and a readable description."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


@dataclass
class SignInContext:
    holder: SnapshotHolder
    client: SignInClient
    public_url: PublicUrl
    metrics: SignInMetrics | None = None
    device_limit: PerIpLimiter = field(
        default_factory=lambda: PerIpLimiter(DEVICE_PER_MINUTE, DEVICE_BURST)
    )
    code_limit: PerIpLimiter = field(
        default_factory=lambda: PerIpLimiter(CODE_PER_MINUTE, CODE_BURST)
    )


def client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def user_agent(scope: Scope) -> str:
    return (header(scope, b"user-agent") or b"").decode("latin-1")[:256]


def _pairs(raw: bytes) -> dict[str, str]:
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise FormError(400, "The parameters are malformed.") from None
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:  # RFC 6749 §3.1: parameters must not be repeated
            raise FormError(400, f"Parameter '{name[:40]}' appears more than once.")
        out[name] = value
    return out


async def read_form(receive: Receive, scope: Scope, limit: int = MAX_FORM_BYTES) -> dict[str, str]:
    """A form-encoded body of at most ``limit`` bytes (an empty body needs no content type).

    Raises FormError (400 malformed or not a form, 413 too large); ClientDisconnected passes."""
    try:
        body = await read_body(receive, scope, limit)
    except GatewayError as err:
        words = {413: "The form is too large.", 408: "The form did not arrive in time."}
        raise FormError(err.status, words.get(err.status, "The form is malformed.")) from None
    if not body:
        return {}
    content_type = (header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type != FORM:
        raise FormError(400, "Send the parameters as application/x-www-form-urlencoded.")
    return _pairs(body)


def read_query(scope: Scope) -> dict[str, str]:
    raw: bytes = scope.get("query_string", b"")
    if len(raw) > MAX_QUERY_BYTES:
        raise FormError(400, "The address is too long.")
    return _pairs(raw)
