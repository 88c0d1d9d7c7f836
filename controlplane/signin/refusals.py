"""Why a browser sign-in failed, in words for the person in front of the browser.

Each refusal has a ``reason`` (the machine-readable code of ``CompleteBrowserResponse.reason``:
expired | other_browser | idp_error | invalid_id_token | email_not_verified |
domain_not_allowed | no_workspace | disabled | internal), a short ``title`` and a ``message``
saying what happened and what to do. The data plane renders them (escaped) on the result page;
the same message is the device grant's denial, which Claude Code receives as the
``error_description`` of ``access_denied``. Text that came from outside (the identity provider's
error parameters, claim values) is cut short and stripped of control characters here.
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.domain.names import is_invisible_control

AGAIN = "Run /login in Claude Code again to get a new code."
ASK = "If this looks wrong, ask your platform team."
MAX_QUOTED = 200


class SignInRefused(Exception):
    def __init__(self, reason: str, title: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.title = title
        self.message = message


def quoted(text: str, limit: int = MAX_QUOTED) -> str:
    """Outside text made safe to show: no control or invisible characters, at most ``limit``."""
    clean = "".join(" " if is_invisible_control(ch) else ch for ch in str(text)).strip()
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _listed(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(quoted(i, 60) for i in items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def expired() -> SignInRefused:
    return SignInRefused(
        "expired",
        "This sign-in link has expired",
        "Sign-in links are valid for 10 minutes and work once. " + AGAIN,
    )


def already_complete() -> SignInRefused:
    return SignInRefused(
        "expired",
        "This sign-in is already complete",
        "This link was already used. Return to your terminal; if Claude Code is not signed in, "
        + AGAIN,
    )


def other_browser() -> SignInRefused:
    return SignInRefused(
        "other_browser",
        "This sign-in was started in another browser",
        "For your safety, a sign-in must finish in the browser where the code was entered. "
        + AGAIN
        + " Then open the link in this browser.",
    )


def idp_refused(error: str, description: str = "") -> SignInRefused:
    said = quoted(error, 80) + (f": {quoted(description)}" if description else "")
    return SignInRefused(
        "idp_error",
        "Your identity provider refused the sign-in",
        f"The identity provider answered \u201c{said}\u201d. {AGAIN} {ASK}",
    )


def wrong_issuer() -> SignInRefused:
    return SignInRefused(
        "idp_error",
        "The sign-in came back from the wrong identity provider",
        "The answer did not come from the identity provider this gateway uses, so it was "
        "ignored. " + AGAIN,
    )


def invalid_id_token(detail: str) -> SignInRefused:
    return SignInRefused(
        "invalid_id_token",
        "The sign-in could not be verified",
        f"The gateway could not verify your identity: {detail}. {AGAIN} If it keeps failing, "
        "ask your platform team to check the gateway's SSO settings (gwctl sso show).",
    )


def email_not_verified(email: str) -> SignInRefused:
    return SignInRefused(
        "email_not_verified",
        "Your email address is not verified",
        f"Your identity provider says {quoted(email, 120)} is not verified. Verify it there, "
        "then run /login in Claude Code again.",
    )


def domain_not_allowed(email: str, allowed: Sequence[str]) -> SignInRefused:
    who = quoted(email, 120) or "Your account (no email address)"
    return SignInRefused(
        "domain_not_allowed",
        "This email domain is not allowed",
        f"{who} is not in a domain this gateway accepts (allowed: {_listed(allowed)}). Sign in "
        f"with your company account. {ASK}",
    )


def no_workspace(email: str, groups: Sequence[str], claim: str) -> SignInRefused:
    if groups:
        have = f"is in the groups {_listed(sorted(groups))}"
    else:
        have = f"has no groups (your identity provider sent none in the {claim!r} claim)"
    return SignInRefused(
        "no_workspace",
        "No workspace for your groups",
        f"{quoted(email, 120)} {have}, and no workspace of this gateway admits them. Ask your "
        "platform team to map one of your groups to a workspace "
        "(gwctl workspaces update WORKSPACE --sso-group GROUP).",
    )


def disabled(email: str) -> SignInRefused:
    return SignInRefused(
        "disabled",
        "Your access is disabled",
        f"The gateway has disabled access for {quoted(email, 120)}: ask your platform team.",
    )


def internal(why: str) -> SignInRefused:
    return SignInRefused(
        "internal",
        "The sign-in could not be completed",
        f"The gateway could not complete the sign-in: {quoted(why, 300)}. In a minute, {AGAIN[0].lower()}"
        f"{AGAIN[1:]} If it keeps failing, ask your platform team.",
    )
