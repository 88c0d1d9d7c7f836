"""Sign-in with Claude Code on the control plane: the OAuth 2.0 device authorization grant (RFC
8628) whose browser step signs the developer in at the company's OIDC identity provider.

One module per concept: :mod:`.codes` (random values and their storage), :mod:`.config` (the
SSO configuration as used), :mod:`.discovery` (the IdP's metadata and keys, cached),
:mod:`.oidc` (authorization URL, code exchange, ID-token validation), :mod:`.admission` (who may
sign in, and into which workspace), :mod:`.refusals` (readable reasons), :mod:`.grants` (device
grants), :mod:`.tokens` (access and refresh tokens), :mod:`.signing_keys`, :mod:`.browser` (the
browser step) and :mod:`.engine` (every step of the ``SignIn`` service). The gRPC servicer is
:mod:`controlplane.services.signin`; the Admin API's side is :mod:`controlplane.catalog.sso` and
:mod:`controlplane.catalog.developers`.
"""
