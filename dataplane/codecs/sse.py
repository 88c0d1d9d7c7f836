"""Incremental Server-Sent-Events decoder (WHATWG HTML, "Parsing an event stream"). Stdlib only.

Contract:

* ``SSEDecoder.feed(chunk)`` accepts arbitrary byte chunks — split anywhere, including inside a
  CRLF pair or a UTF-8 multibyte sequence — and returns the events completed by that chunk, in
  order. Feeding a stream whole or split at any byte boundaries yields the same events.
* An event is dispatched only at a blank line and only when at least one ``data`` line was seen
  (the spec's "empty data buffer" rule). ``close()`` returns the events still owed; per the spec an
  event not terminated by a blank line is *discarded*, so this is always empty — check
  ``pending`` (bytes received after the last blank line) to tell a truncated stream.
* Line endings CR, LF and CRLF; one leading UTF-8 BOM is stripped; invalid UTF-8 decodes to
  U+FFFD; ``:`` comment lines and unknown fields are ignored; a line without a colon is a field
  with an empty value; exactly one space after the colon is dropped; ``data`` lines are joined
  with ``"\\n"``; ``id`` containing NUL is ignored; ``retry`` counts only if it is all ASCII digits.
* ``SSEEvent.id`` is the *last event ID* (it persists across events, as in the spec and in
  browsers) or ``None`` if no ``id`` field has been seen yet. ``SSEEvent.retry`` is the ``retry``
  value given within that event's block, else ``None``.

Performance: this sees every upstream chunk. Lines are found with ``bytes.rfind`` /
``bytes.splitlines`` (C loops); Python code runs once per line, never per byte. Bytes of an
unterminated line are kept as a list of parts and joined once, so a long line fed in many small
chunks stays linear.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEEvent"]

_BOM = b"\xef\xbb\xbf"
_CR = 13


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event. ``event`` is ``"message"`` when the stream gave no ``event`` field."""

    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Push-style decoder: ``feed()`` bytes as they arrive, get completed events back."""

    __slots__ = (
        "_block",
        "_bom_checked",
        "_data",
        "_event",
        "_last_id",
        "_parts",
        "_retry",
        "_skip_lf",
        "_tail",
    )

    def __init__(self) -> None:
        self._parts: list[bytes] = []  # the unterminated last line, as received
        self._tail = 0  # total length of _parts
        self._block = 0  # bytes of complete lines since the last blank line
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF completes a CRLF
        self._bom_checked = False
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None

    @property
    def pending(self) -> int:
        """Bytes received since the last blank line (0 after a cleanly terminated stream)."""
        return self._block + self._tail

    @property
    def last_event_id(self) -> str | None:
        """The last event ID buffer (what a reconnecting client sends as ``Last-Event-ID``)."""
        return self._last_id

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode ``chunk`` and return every event it completes (possibly none)."""
        if not chunk:
            return []
        if not self._bom_checked:
            # The BOM may itself be split across chunks: hold up to 2 bytes until we can tell.
            head = b"".join(self._parts) + chunk if self._parts else chunk
            if len(head) < 3 and _BOM.startswith(head):
                self._parts = [head]
                self._tail = len(head)
                return []
            self._bom_checked = True
            self._parts = []
            self._tail = 0
            chunk = head[3:] if head.startswith(_BOM) else head
            if not chunk:
                return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 10:  # the LF of a CRLF whose CR ended the previous chunk
                if self._block:
                    self._block += 1
                chunk = chunk[1:]
                if not chunk:
                    return []
        # The last terminator in this chunk ends the decodable region; the buffered parts hold no
        # terminator, so there is no need to rescan them.
        end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1
        if not end:
            self._parts.append(chunk)
            self._tail += len(chunk)
            return []
        if self._parts:
            self._parts.append(chunk[:end])
            region = b"".join(self._parts)
            self._parts = []
        else:
            region = chunk if end == len(chunk) else chunk[:end]
        if end < len(chunk):
            rest = chunk[end:]
            self._parts.append(rest)
            self._tail = len(rest)
        else:
            self._tail = 0
            # A CR at the very end may be the first half of a CRLF split across chunks.
            self._skip_lf = region[-1] == _CR
        return self._lines(region)

    def close(self) -> list[SSEEvent]:
        """End of stream. An event without its terminating blank line is discarded (per spec)."""
        return []

    def _lines(self, region: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        data = self._data
        block = self._block
        for raw in region.splitlines(True):
            line = raw.rstrip(b"\r\n")
            if not line:  # blank line: dispatch
                block = 0
                if data:
                    events.append(
                        SSEEvent(
                            self._event or "message", "\n".join(data), self._last_id, self._retry
                        )
                    )
                    data = self._data = []
                self._event = ""
                self._retry = None
                continue
            block += len(raw)
            if line[0] == 58:  # ":" comment
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value.decode("utf-8", "replace"))
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
            elif name == b"id":
                if b"\0" not in value:
                    self._last_id = value.decode("utf-8", "replace")
            elif name == b"retry":
                if value.isdigit():  # bytes.isdigit() is ASCII-only and False when empty
                    self._retry = int(value)
        self._block = block
        return events
