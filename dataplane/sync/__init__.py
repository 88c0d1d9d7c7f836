"""What a data plane exchanges with the control plane off the request path: snapshot, usage, breakers."""
