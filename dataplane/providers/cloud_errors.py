"""Errors from the clouds' own layers (Amazon Bedrock, Vertex AI's Google front end), told to the
client without the cloud account in them.

AWS and Google write account ids, ARNs, role, user and project names into their error messages
("User: arn:aws:sts::123456789012:assumed-role/… is not authorized…", "Permission … denied on
resource '//aiplatform.googleapis.com/projects/acme-prod/…'"). A developer behind the gateway must
not learn them, but Claude Code still needs the status and error type to decide about retrying.

Contract of :func:`client_message`: the adapter keeps the mapped status and Anthropic error type
and uses this text as the message. It names the cloud, the gateway's provider, the upstream's
error code when that is a bare identifier (``ThrottlingException``, ``PERMISSION_DENIED``; never
free text) and the gateway request id under which the operator finds the original, which
:func:`log_original` writes to the data plane's log at WARNING. The upstream message itself is
kept only when it is one of Anthropic's own request-validation messages that the cloud relayed
(:func:`safe_detail`): they describe the request, not the account, and Claude Code acts on their
wording (``prompt is too long: N tokens > M`` compacts, ``input length and `max_tokens` exceed
context limit: …`` lowers max_tokens, ``messages.N…: … tool_use …`` repairs the history).
Anthropic-shaped errors from Vertex (Anthropic's model server, not Google's front end) and the
Anthropic provider's errors are not touched: they pass byte for byte.
"""

from __future__ import annotations

import logging
import re

CLOUDS = {"bedrock": "Amazon Bedrock", "vertex": "Vertex AI"}

_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_FIELDS = (
    "messages|system|tools|tool_choice|thinking|max_tokens|temperature|top_[pk]|stop_sequences"
)
_ANTHROPIC = re.compile(
    r"prompt is too long: \d+ tokens > \d+ maximum"
    r"|input length and `max_tokens` exceed context limit: \d+ \+ \d+ > \d+, decrease input"
    r" length or `max_tokens` and try again"
    r"|Input is too long for requested model\."
    rf"|(?:{_FIELDS})(?:\.[A-Za-z0-9_.]+)?: [^\r\n]+"
)
# Belt and braces for the field-path messages: nothing that looks like an account survives.
_ACCOUNTISH = re.compile(r"arn:|\d{12}|projects/|gserviceaccount|@", re.IGNORECASE)
MAX_DETAIL = 1000


def safe_detail(message: str) -> str:
    """``message`` when it is one of Anthropic's relayed validation messages, else ``""``."""
    text = message.strip()
    if len(text) <= MAX_DETAIL and _ANTHROPIC.fullmatch(text) and _ACCOUNTISH.search(text) is None:
        return text
    return ""


def client_message(
    kind: str,
    provider: str,
    request_id: str,
    status: int,
    code: str,
    message: str,
    *,
    mid_stream: bool = False,
) -> str:
    """The message the client gets instead of the upstream's (see the module contract)."""
    cloud = CLOUDS.get(kind, kind)
    if mid_stream:
        what = "failed mid-answer"
    else:
        what = "refused the request" if 400 <= status < 500 else "failed"
    name = code if _CODE.fullmatch(code) else f"HTTP {status}" if status else "an error"
    detail = safe_detail(message)
    if detail:
        return f"{cloud} (provider '{provider}') {what}: {name}: {detail} (request id {request_id})"
    return (
        f"{cloud} (provider '{provider}') {what}: {name}. The cloud's own message can name"
        f" accounts, so it is not passed on: your platform team can find it in the gateway's"
        f" data-plane log under request id {request_id}."
    )


def log_original(
    kind: str,
    provider: str,
    request_id: str,
    status: int,
    code: str,
    message: str,
    upstream_id: str = "",
) -> None:
    """The upstream's untouched error, for the operator (WARNING on ``tollgate.providers.KIND``).

    ``%r`` keeps a multi-line or control-laden message on one log line."""
    logging.getLogger(f"tollgate.providers.{kind}").warning(
        "provider %s: upstream error %s %s for request %s%s: %r",
        provider,
        status or "in-stream",
        code or "-",
        request_id,
        f" (upstream request id {upstream_id})" if upstream_id else "",
        message[:4000],
    )
