"""Anthropic (first-party API) adapter: a transparent pass-through.

The client's body bytes go upstream unchanged; every client header but the hop-by-hop ones and
the client's own credentials is forwarded (``anthropic-*`` above all). The provider's secret is
the one stored on the control plane when there is one (delivered over the authenticated
snapshot stream, held in memory only; a rotation rebuilds the adapter, so it applies to the next
request), otherwise read from the data plane's environment (``api_key_env``). The answer comes
back as raw bytes, unbuffered.
"""

from __future__ import annotations

from dataplane.asgi import Header
from dataplane.config.snapshot import ProviderConfig
from dataplane.errors import GatewayError, Misconfigured, Unauthenticated
from dataplane.providers.base import (
    Diagnosis,
    HttpAdapter,
    UpstreamRequest,
    problem_of,
    secret_not_received,
)
from dataplane.providers.transport import TransportResponse

DEFAULT_BASE_URL = "https://api.anthropic.com"


class AnthropicProvider(HttpAdapter):
    kind = "anthropic"

    def _configure(self, config: ProviderConfig) -> None:
        self._base = (config.base_url or DEFAULT_BASE_URL).rstrip("/")

    def _credentials(self, request: UpstreamRequest) -> list[Header]:
        if self.config.option("auth", "key") == "passthrough":
            # A Claude subscription: the user's own OAuth token goes upstream, never stored or logged.
            if not request.client_authorization:
                raise Unauthenticated(
                    401,
                    f"Provider '{self.name}' uses your own Claude login: sign in with `claude` "
                    "as usual and send your virtual key in the x-tollgate-key header "
                    '(ANTHROPIC_CUSTOM_HEADERS="x-tollgate-key: gw-…").',
                )
            return [(b"authorization", request.client_authorization)]
        if self.config.api_key:
            return [(b"x-api-key", self.config.api_key.encode())]
        problem = self._key_problem()
        if problem is not None:
            raise problem
        var = self.config.api_key_env
        return [(b"x-api-key", self._env[var].encode())] if var else []

    def _key_problem(self) -> GatewayError | None:
        """Why this provider's own key is unusable, when it has no stored key in hand."""
        if self.config.has_secret:
            # Started from the disk cache (which never holds secrets) and the control plane has
            # not answered yet: calling upstream without the key would only earn a 401.
            return secret_not_received(self.name)
        var = self.config.api_key_env
        if var and not self._env.get(var):
            return Misconfigured(
                500,
                f"Provider '{self.name}' is misconfigured: the data plane's environment has no "
                f"{var}. Ask your platform team to set it on the data plane.",
            )
        return None

    def diagnose(self, model: str) -> Diagnosis:
        """Anthropic ids pass unchanged; a key that is missing refuses everything."""
        passthrough = self.config.option("auth", "key") == "passthrough"
        problem = None if passthrough or self.config.api_key else self._key_problem()
        return problem_of(problem) if problem is not None else Diagnosis(upstream_model=model)

    async def send(self, request: UpstreamRequest) -> TransportResponse:
        url = self._base + request.path
        if request.query:
            url += "?" + request.query.decode("latin-1")
        headers = [
            *request.headers,
            *request.trace_headers,
            *self._credentials(request),
            (b"accept-encoding", b"identity"),
        ]
        return await self._transport.request(
            "POST", url, headers, request.body, request.timeouts or self._timeout, self.name
        )

    async def aclose(self) -> None:
        """The shared transport belongs to the registry; nothing of our own to close."""
