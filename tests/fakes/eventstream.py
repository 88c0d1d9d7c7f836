"""The Bedrock fake's own AWS event-stream encoder (``application/vnd.amazon.eventstream``).

Written from the wire format, not imported from :mod:`dataplane.codecs.eventstream`: a strict fake
must not share the code it checks, or a fault in the production codec would be mirrored by the
fake and pass unseen. It encodes only what Bedrock sends, string headers (type 7) and a payload::

    total length u32 | headers length u32 | prelude CRC32 u32 (of the 8 bytes before it)
    headers: name length u8 | name | 7 | value length u16 | value (UTF-8)
    payload | message CRC32 u32 (of every byte before it)

All integers are big-endian; ``total length`` counts the whole frame.
tests/dataplane/codecs/test_eventstream_fake.py holds it against the production decoder.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Mapping

STRING = 7  # the header value type for UTF-8 strings


def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One complete event-stream message with string ``headers`` (in order) and ``payload``."""
    raw = bytearray()
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        raw += struct.pack(">B", len(n)) + n + struct.pack(">BH", STRING, len(v)) + v
    prelude = struct.pack(">II", 12 + len(raw) + len(payload) + 4, len(raw))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + raw + payload
    return message + struct.pack(">I", binascii.crc32(message))
