"""``GET /managed/settings``: the Claude Code policy of a signed-in developer's workspace.

Claude Code polls it about hourly with ``If-None-Match``. Everything is rendered when the snapshot
is parsed (:class:`dataplane.config.members.ManagedSettings`): a request compares one header and sends
bytes. ``404`` means "no managed policy" (a workspace without one, or a virtual key, which has no
sign-in and no policy); ``200 {…, "settings": {}}`` would be an empty policy — not the same.
"""

from __future__ import annotations

from dataplane.asgi import Scope, Send, header, send_error, send_response
from dataplane.errors import not_found
from dataplane.policy.auth import PRINCIPAL, Principal

PATH = "/managed/settings"


async def send_managed_settings(scope: Scope, send: Send, request_id: str) -> None:
    principal: Principal = scope[PRINCIPAL]
    if not principal.member.sees_managed_settings:
        err = not_found(
            "Managed settings are served to developers signed in with /login; a virtual key "
            "has none."
        )
        await send_error(send, err, request_id)
        return
    settings = principal.workspace.managed_settings
    if settings is None:
        err = not_found(f"No managed settings apply to workspace '{principal.workspace.name}'.")
        await send_error(send, err, request_id)
        return
    headers = [(b"etag", settings.etag), (b"cache-control", b"no-cache")]
    if settings.matches(header(scope, b"if-none-match")):
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    await send_response(send, 200, settings.body, headers)
