"""Sign-in metrics, registered in the data plane's registry (:mod:`dataplane.edge.metrics`).

Outcomes are a fixed vocabulary (OAuth error codes the protocol knows, ``ok``, ``unavailable``
when the control plane could not answer, ``other``), so a misbehaving peer cannot grow the label
sets.
"""

from __future__ import annotations

from gwcommon.prometheus import Counter, Registry

OUTCOMES = frozenset(
    {
        "ok",
        "unavailable",
        "authorization_pending",
        "slow_down",
        "access_denied",
        "expired_token",
        "invalid_grant",
        "invalid_request",
        "unsupported_grant_type",
        "not_configured",
        "invalid_code",
        "expired_code",
        "rate_limited",
        "cross_origin",
        # CompleteBrowser reasons
        "expired",
        "other_browser",
        "idp_error",
        "invalid_id_token",
        "email_not_verified",
        "domain_not_allowed",
        "no_workspace",
        "disabled",
        "internal",
    }
)


def outcome(value: str) -> str:
    return value if value in OUTCOMES else "other"


class SignInMetrics:
    def __init__(self, registry: Registry) -> None:
        r = registry
        self.device_authorizations = r.add(
            Counter(
                "tollgate_signin_device_authorizations_total",
                "POST /oauth/device_authorization answered, by outcome.",
                ("outcome",),
            )
        )
        self.tokens = r.add(
            Counter(
                "tollgate_signin_token_requests_total",
                "POST /oauth/token answered, by grant (device_code, refresh_token, other) and "
                "outcome (ok or the OAuth error).",
                ("grant", "outcome"),
            )
        )
        self.browser = r.add(
            Counter(
                "tollgate_signin_browser_total",
                "Browser sign-in steps: begin (POST /device) and complete (GET /oauth/callback), "
                "by outcome.",
                ("step", "outcome"),
            )
        )
        self.bearer_refusals = r.add(
            Counter(
                "tollgate_bearer_refusals_total",
                "Signed-in developers' access tokens refused, by reason.",
                ("reason",),
            )
        )
        self.rate_limited = r.add(
            Counter(
                "tollgate_signin_rate_limited_total",
                "Sign-in requests refused by the per-address rate limit, by endpoint.",
                ("endpoint",),
            )
        )

    def device_authorization(self, result: str) -> None:
        self.device_authorizations.inc((outcome(result),))

    def token(self, grant: str, result: str) -> None:
        self.tokens.inc((grant, outcome(result)))

    def browser_step(self, step: str, result: str) -> None:
        self.browser.inc((step, outcome(result)))

    def bearer_refused(self, reason: str) -> None:
        self.bearer_refusals.inc((reason,))

    def limited(self, endpoint: str) -> None:
        self.rate_limited.inc((endpoint,))
