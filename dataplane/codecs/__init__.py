"""I/O-free incremental decoders for upstream wire formats (stdlib only)."""

from dataplane.codecs.sse import SSEDecoder, SSEError, SSEEvent

__all__ = ["SSEDecoder", "SSEError", "SSEEvent"]
