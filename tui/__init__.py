"""Operator-facing clients of the control plane: ``tui.client`` (the async gRPC facade shared by
gwctl and the TUI). This package never imports the server packages."""
