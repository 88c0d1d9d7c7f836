"""The browser half of a sign-in: the verification page and the identity provider's callback.

* ``GET /device[?user_code=]`` — a form to type the code, or the pre-filled code shown with a
  button to confirm it; never submitted by itself (RFC 8628 §5.4, and no script runs anyway).
* ``POST /device`` — only from the gateway's own page (``Sec-Fetch-Site: same-origin``, or an
  ``Origin`` equal to the public URL's: a page elsewhere must not be able to walk a victim into
  approving the attacker's device), rate-limited per address, then ``SignIn.BeginBrowser``: a
  302 to the identity provider plus the browser-binding cookie (HttpOnly, SameSite=Lax, only for
  ``/oauth/callback``, Secure on https), or the form again saying what was wrong with the code.
* ``GET /oauth/callback`` — ``SignIn.CompleteBrowser`` with the cookie; the result page says who
  signed in and where, or why not. The cookie is cleared either way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from dataplane.asgi import ClientDisconnected, Header, Receive, Scope, Send, header, send_response
from dataplane.config.snapshot import Snapshot
from dataplane.edge.signin import pages
from dataplane.edge.signin.client import SignInUnavailable
from dataplane.edge.signin.context import FormError, SignInContext, client_ip, read_form, read_query
from dataplane.edge.signin.publicurl import MISSING
from gwapi.v1 import signin_pb2

CALLBACK = "/oauth/callback"
COOKIE = "tollgate_signin"
DEFAULT_COOKIE_AGE_S = 600
MAX_FORM_BYTES = 2 * 1024

# RFC 8628 §6.1 base-20 alphabet, 8 characters; the dash and case are the user's choice.
_USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-?[BCDFGHJKLMNPQRSTVWXZ]{4}$")
_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_-]{16,512}$")
_URL_CHARS = re.compile(r"^[\x21-\x7e]{1,8192}$")  # printable ASCII: nothing to split a header

UNAVAILABLE = (
    "The gateway cannot reach its control plane right now. Wait a minute, then reload this page. "
    "If this persists, tell your platform team."
)
CODE_ERRORS = {
    "invalid_code": "That code is not valid. Check the code Claude Code shows and type it again.",
    "expired_code": (
        "That code has expired or was already used. Run /login in Claude Code again for a new code."
    ),
}


def display_code(value: str) -> str | None:
    """``wdjbmjht`` → ``WDJB-MJHT``; None when it is not a user code."""
    code = value.strip().upper()
    if not _USER_CODE.match(code):
        return None
    code = code.replace("-", "")
    return f"{code[:4]}-{code[4:]}"


def same_origin(scope: Scope, base: str) -> bool:
    """The form was posted by the gateway's own page. Our pages send no referrer, so a browser
    sends ``Origin: null`` with their forms: ``Sec-Fetch-Site`` (every current browser) decides;
    without it only an ``Origin`` equal to ours passes."""
    site = header(scope, b"sec-fetch-site")
    if site is not None:
        return site == b"same-origin"
    origin = header(scope, b"origin")
    return origin is not None and origin.decode("latin-1") == pages.origin_of(base)


def read_cookie(scope: Scope, name: str) -> str:
    prefix = name + "="
    for key, value in scope["headers"]:
        if key != b"cookie":
            continue
        text: str = value.decode("latin-1")
        for part in text.split(";"):
            part = part.strip()
            if part.startswith(prefix):
                return part[len(prefix) :]
    return ""


def _cookie(value: str, max_age: int, secure: bool) -> bytes:
    attrs = f"{COOKIE}={value}; Max-Age={max_age}; Path={CALLBACK}; HttpOnly; SameSite=Lax"
    return (attrs + ("; Secure" if secure else "")).encode()


class BrowserPages:
    def __init__(self, ctx: SignInContext) -> None:
        self.ctx = ctx

    async def _page(
        self,
        send: Send,
        status: int,
        body: bytes,
        snapshot: Snapshot | None,
        extra: Iterable[Header] = (),
    ) -> None:
        idp = pages.origin_of(snapshot.sso.issuer) if snapshot is not None else ""
        headers = [*pages.headers(idp), *extra]
        await send_response(send, status, body, headers, content_type=pages.HTML)

    async def _ready(self, scope: Scope, send: Send) -> tuple[Snapshot, str] | None:
        """The snapshot and public URL when sign-in can run; otherwise answer the page."""
        snapshot = self.ctx.holder.current
        if snapshot is None:
            body = pages.message("Not ready", "The gateway is starting; reload in a few seconds.")
            await self._page(send, 503, body, None, [(b"retry-after", b"2")])
            return None
        if not snapshot.sso.enabled:
            body = pages.message(
                "Sign-in is not enabled",
                "Sign-in with Claude Code is not enabled on this gateway. Ask your platform team.",
            )
            await self._page(send, 404, body, snapshot)
            return None
        base = self.ctx.public_url.resolve(scope)
        if base is None:
            await self._page(send, 500, pages.message("Sign-in is not set up", MISSING), snapshot)
            return None
        return snapshot, base

    async def device(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "POST"):
            body = pages.message("Method not allowed", "Open this page in a browser.")
            await self._page(send, 405, body, None, [(b"allow", b"GET, POST")])
            return
        ready = await self._ready(scope, send)
        if ready is None:
            return
        snapshot, base = ready
        if method == "GET":
            await self._show(scope, send, snapshot)
        else:
            await self._submit(scope, receive, send, snapshot, base)

    async def _show(self, scope: Scope, send: Send, snapshot: Snapshot) -> None:
        issuer = snapshot.sso.issuer
        try:
            given = read_query(scope).get("user_code", "")
        except FormError:
            given = ""
        if not given:
            await self._page(send, 200, pages.device_form(issuer), snapshot)
            return
        code = display_code(given)
        if code is None:
            body = pages.device_form(
                issuer,
                "The link's code does not look like a sign-in code. Type the code Claude Code "
                "shows.",
                given[:32],
            )
            await self._page(send, 400, body, snapshot)
            return
        await self._page(send, 200, pages.device_confirm(issuer, code), snapshot)

    async def _submit(
        self, scope: Scope, receive: Receive, send: Send, snapshot: Snapshot, base: str
    ) -> None:
        ctx = self.ctx
        issuer = snapshot.sso.issuer
        if not same_origin(scope, base):
            self._count("cross_origin")
            body = pages.message(
                "Open the sign-in page",
                f"This form must be sent from the gateway's own sign-in page. Open {base}/device "
                "(or the link Claude Code shows) and try again.",
            )
            await self._page(send, 403, body, snapshot)
            return
        ip = client_ip(scope)
        wait = ctx.code_limit.take(ip)
        if wait:
            self._count("rate_limited")
            if ctx.metrics is not None:
                ctx.metrics.limited("device")
            body = pages.message(
                "Too many attempts",
                f"Too many codes were tried from this address. Wait {wait} seconds, then try "
                "again.",
            )
            await self._page(send, 429, body, snapshot, [(b"retry-after", str(wait).encode())])
            return
        try:
            typed = (await read_form(receive, scope, MAX_FORM_BYTES)).get("user_code", "")
        except ClientDisconnected:
            return
        except FormError as err:
            self._count("invalid_request")
            body = pages.device_form(issuer, err.description)
            await self._page(send, err.status, body, snapshot)
            return
        if not typed.strip():
            self._count("invalid_request")
            body = pages.device_form(issuer, "Type the code Claude Code shows.")
            await self._page(send, 400, body, snapshot)
            return
        code = display_code(typed)
        if code is None:  # not even the shape of a code: no need to ask the control plane
            self._count("invalid_code")
            body = pages.device_form(issuer, CODE_ERRORS["invalid_code"], typed[:32])
            await self._page(send, 400, body, snapshot)
            return
        try:
            response = await ctx.client.begin_browser(
                signin_pb2.BeginBrowserRequest(user_code=code, public_url=base, client_ip=ip)
            )
        except SignInUnavailable:
            self._count("unavailable")
            body = pages.message("Try again shortly", UNAVAILABLE)
            await self._page(send, 503, body, snapshot, [(b"retry-after", b"30")])
            return
        if response.error.error:
            self._count(response.error.error)
            text = CODE_ERRORS.get(response.error.error) or response.error.error_description
            body = pages.device_form(issuer, text or "That code cannot be used.", code)
            await self._page(send, 400, body, snapshot)
            return
        location = response.authorization_url
        secret = response.browser_secret
        if (
            not pages.origin_of(location)
            or not _URL_CHARS.match(location)
            or not _COOKIE_VALUE.match(secret)
        ):
            self._count("internal")
            body = pages.message("Sign-in failed", "The gateway's sign-in answer was malformed.")
            await self._page(send, 502, body, snapshot)
            return
        self._count("ok")
        max_age = response.max_age_s if response.max_age_s > 0 else DEFAULT_COOKIE_AGE_S
        cookie = _cookie(secret, min(max_age, 3600), base.startswith("https://"))
        extra = [(b"location", location.encode()), (b"set-cookie", cookie)]
        await self._page(send, 302, b"", snapshot, extra)

    async def callback(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "GET":
            body = pages.message("Method not allowed", "Open this page in a browser.")
            await self._page(send, 405, body, None, [(b"allow", b"GET")])
            return
        ready = await self._ready(scope, send)
        if ready is None:
            return
        snapshot, base = ready
        clear = [(b"set-cookie", _cookie("", 0, base.startswith("https://")))]
        try:
            query = read_query(scope)
        except FormError as err:
            await self._fail(send, snapshot, clear, err.status, "Sign-in failed", err.description)
            return
        if not query.get("state"):
            await self._fail(
                send,
                snapshot,
                clear,
                400,
                "Sign-in failed",
                "Your identity provider opens this page after you sign in there; run /login in "
                "Claude Code to start.",
            )
            return
        request = signin_pb2.CompleteBrowserRequest(
            state=query["state"],
            code=query.get("code", ""),
            iss=query.get("iss", ""),
            error=query.get("error", ""),
            error_description=query.get("error_description", ""),
            browser_secret=read_cookie(scope, COOKIE),
            client_ip=client_ip(scope),
            public_url=base,
        )
        try:
            response = await self.ctx.client.complete_browser(request)
        except SignInUnavailable:
            self._count("unavailable", "complete")
            await self._fail(send, snapshot, clear, 503, "Try again shortly", UNAVAILABLE)
            return
        if not response.ok:
            self._count(response.reason or "internal", "complete")
            status = 500 if response.reason == "internal" else 400
            body = pages.failed(response.title, response.message or "Sign-in did not succeed.")
            await self._page(send, status, body, snapshot, clear)
            return
        self._count("ok", "complete")
        body = pages.signed_in(response.developer_email, response.workspace)
        await self._page(send, 200, body, snapshot, clear)

    async def _fail(
        self,
        send: Send,
        snapshot: Snapshot,
        extra: list[Header],
        status: int,
        title: str,
        text: str,
    ) -> None:
        await self._page(send, status, pages.message(title, text), snapshot, extra)

    def _count(self, outcome: str, step: str = "begin") -> None:
        if self.ctx.metrics is not None:
            self.ctx.metrics.browser_step(step, outcome)
