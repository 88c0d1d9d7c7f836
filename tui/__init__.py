"""The console (``gwctl tui``): a Textual app over the control plane, talking to it through the
admin client in :mod:`gwclient`. This package never imports the server packages or gwctl."""
