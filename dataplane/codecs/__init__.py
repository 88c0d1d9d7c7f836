"""I/O-free incremental decoders for upstream wire formats (stdlib only)."""

from dataplane.codecs.sse import SSEDecoder, SSEEvent

__all__ = ["SSEDecoder", "SSEEvent"]
