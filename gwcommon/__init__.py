"""Pure rules both planes must agree on (stdlib only): what the control plane seeds and reports
and what the data plane enforces are computed by the same code."""
