"""The sign-in pages a developer's browser sees: small, plain HTML, no script.

Every value that reaches a page is escaped here (:func:`html.escape`), whoever supplied it: the
user code from the query string, the identity provider's error text, a developer's email. The
headers forbid everything the pages do not need — no script, no frames, forms may only post to
the gateway itself and to the identity provider (where ``POST /device`` redirects) — and keep
the pages out of caches and referrers. A pre-filled code is *shown* for the user to compare with
the one Claude Code displays, and sent only when they press the button (RFC 8628 §5.4).
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlsplit

from dataplane.asgi import Header

HTML = b"text/html; charset=utf-8"

_STYLE = (
    "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:34rem;"
    "margin:3rem auto;padding:0 1rem;line-height:1.5;color:#1b1b1b}"
    "h1{font-size:1.4rem}.code{font:600 2rem ui-monospace,monospace;letter-spacing:.15em}"
    "input[type=text]{font:1.4rem ui-monospace,monospace;width:11ch;padding:.3rem;"
    "text-transform:uppercase;letter-spacing:.1em}"
    "button{font-size:1rem;padding:.5rem 1.2rem;margin-top:1rem}"
    ".error{color:#a00000;font-weight:600}.muted{color:#555;font-size:.9rem}"
)


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an absolute http(s) URL; "" when it is not one (or holds
    anything that cannot go into a header)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    netloc = parts.netloc.rpartition("@")[2]
    if any(c in netloc for c in " ;,'\"\\\r\n\t"):
        return ""
    return f"{parts.scheme}://{netloc}"


def headers(idp_origin: str) -> list[Header]:
    """The security headers of every page; ``idp_origin`` may receive the form's redirect."""
    form_action = "'self'" + (f" {idp_origin}" if idp_origin else "")
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; "
        f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )
    return [
        (b"content-security-policy", csp.encode()),
        (b"cache-control", b"no-store"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-content-type-options", b"nosniff"),
    ]


def _page(title: str, body: str) -> bytes:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)} · Tollgate</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>\n"
    ).encode()


def _idp(issuer: str) -> str:
    host = urlsplit(issuer).hostname if issuer else None
    idp = "your company's identity provider"
    return f"{idp} ({escape(host)})" if host else idp


def device_form(issuer: str, error: str = "", value: str = "") -> bytes:
    """Type the code Claude Code shows; ``error`` says what went wrong with the last one."""
    err = f"<p class=error role=alert>{escape(error)}</p>" if error else ""
    return _page(
        "Sign in to Claude Code",
        f"{err}<p>Enter the code shown in Claude Code after <code>/login</code>.</p>"
        '<form method=post action="/device">'
        "<label for=user_code>Code</label><br>"
        f'<input type=text id=user_code name=user_code value="{escape(value)}" '
        "autocomplete=off autocapitalize=characters spellcheck=false maxlength=16 required "
        'placeholder="XXXX-XXXX"><br>'
        "<button type=submit>Continue</button></form>"
        f"<p class=muted>You will then sign in at {_idp(issuer)}.</p>",
    )


def device_confirm(issuer: str, user_code: str) -> bytes:
    """A pre-filled code: shown for comparison, sent only by the button."""
    return _page(
        "Confirm the code",
        "<p>Check that this code matches the one Claude Code shows:</p>"
        f"<p class=code>{escape(user_code)}</p>"
        '<form method=post action="/device">'
        f'<input type=hidden name=user_code value="{escape(user_code)}">'
        "<button type=submit>Yes, continue to sign in</button></form>"
        "<p class=muted>If it does not match, or you did not just run <code>/login</code>, "
        'close this page. <a href="/device">Type a code instead</a>.</p>'
        f"<p class=muted>You will sign in at {_idp(issuer)}.</p>",
    )


def signed_in(email: str, workspace: str) -> bytes:
    return _page(
        "You are signed in",
        f"<p>Signed in as <strong>{escape(email)}</strong> "
        f"(workspace <strong>{escape(workspace)}</strong>).</p>"
        "<p>Return to Claude Code: it finishes signing in by itself. You can close this page.</p>",
    )


def failed(title: str, message: str) -> bytes:
    """A sign-in that did not succeed: the control plane's title and explanation."""
    return _page(
        title or "Sign-in failed",
        f"<p>{escape(message)}</p>"
        "<p class=muted>To try again, run <code>/login</code> in Claude Code.</p>",
    )


def message(title: str, text: str) -> bytes:
    """Any other page: not enabled, not set up, too many attempts, control plane away."""
    return _page(title, f"<p>{escape(text)}</p>")
