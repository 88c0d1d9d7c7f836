"""Sign in with Claude Code: the data plane's HTTP side of the gateway sign-in protocol.

The control plane holds every piece of sign-in state; a data plane serves the endpoints at its
public URL and turns each step into one call of the ``SignIn`` gRPC service, so any step may land
on any replica. Modules: :mod:`.routes` (dispatch), :mod:`.oauth` (discovery, device
authorization, token), :mod:`.browser` (the verification page and the identity provider's
callback), :mod:`.pages` (their HTML), :mod:`.client` (the gRPC client), :mod:`.ratelimit`
(per-address limits), :mod:`.publicurl` (the base URL), :mod:`.metrics`.
"""
