"""The admin client of the control plane, shared by gwctl, the console (``tui``), bench and the
tests: :mod:`gwclient.client` (the gRPC facade; its calls one module per concept beside it:
:mod:`~gwclient.channel`, :mod:`~gwclient.catalog`, :mod:`~gwclient.identities`,
:mod:`~gwclient.observability`, and :mod:`~gwclient.errors`), :mod:`gwclient.api` (the protocols
the real client and the tests' fake satisfy), :mod:`gwclient.audit_diff` (audit events as text)
and :mod:`gwclient.budgets` (which budget is closest to running out). It never imports the
server packages, gwctl, the console or Textual (import-linter contracts)."""
