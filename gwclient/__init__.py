"""The admin client of the control plane, shared by gwctl, the console (``tui``), bench and the
tests: :mod:`gwclient.client` (the gRPC facade, one module per concept beside it),
:mod:`gwclient.api` (the protocol fakes satisfy), :mod:`gwclient.audit_diff` (audit events as
text) and :mod:`gwclient.format` (compact numbers and times). It never imports the server
packages, gwctl, the console or Textual (import-linter contracts)."""
