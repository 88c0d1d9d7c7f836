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
* Memory is bounded: one event block (the bytes from one blank line to the next, the pending
  ``pending`` bytes) may be at most ``max_event_bytes`` long (default :data:`MAX_EVENT_BYTES`,
  16 MiB); an upstream that sends more — an endless line, or endless lines with no blank one —
  gets :class:`SSEError`. (The first 2 bytes of a stream may be held apart while they could
  still be the start of a BOM.) Whether and where it is raised does not depend on how the stream is
  split: ``SSEError.events`` holds the events the failing ``feed()`` completed before the overflow.
  Framing is then lost, so the decoder stays failed and every later ``feed`` raises again.
  Nothing else raises: any other byte string decodes (invalid UTF-8 as U+FFFD).
* ``SSEEvent.id`` is the *last event ID* (it persists across events, as in the spec and in
  browsers) or ``None`` if no ``id`` field has been seen yet. ``SSEEvent.retry`` is the ``retry``
  value given within that event's block, else ``None``.

Skipping: ``SSEDecoder(skip=frozenset({b"ping", ...}))`` never materialises the events whose type
is in ``skip`` — no ``SSEEvent``, no UTF-8 decoding of their data — and otherwise returns exactly
what the full decoder returns, from the same ``feed()`` calls: the full decoder's events minus those
whose ``SSEEvent.event`` (UTF-8 encoded) is in ``skip``; ``pending`` and ``last_event_id`` are
identical (an ``id`` inside a skipped event still sets the last event ID). ``b"message"`` also
matches events without an ``event`` field. Names must be valid UTF-8 without U+FFFD, so comparing
raw field bytes is the same as comparing the decoded name. With an empty ``skip`` (the default)
nothing changes.

Performance: this sees every upstream chunk. Lines are found with ``bytes.rfind`` /
``bytes.splitlines`` (C loops); Python code runs once per line, never per byte. Bytes of an
unterminated line are kept as a list of parts and joined once, so a long line fed in many small
chunks stays linear. Data lines are kept as bytes and decoded once per dispatched event. With a
``skip`` set and no CR in the decodable region (the LF framing every provider uses), blocks shaped
``event: NAME\n…\n\n`` with NAME skipped and no other ``event``/``id`` line are consumed a whole
run at a time by one precompiled regex match (C, no per-line or per-block Python); the line
parser sees only the other blocks. A skipped block cut by a chunk boundary is held back as
unread bytes (up to 4 KiB) and matched whole with the next chunk. CR / CRLF streams take the
line parser throughout and still build nothing for skipped events. A chunk that is nothing but
such blocks, arriving at a block boundary (one token of a paced stream), is consumed by one
``fullmatch`` of that regex before any other work.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["MAX_EVENT_BYTES", "SSEDecoder", "SSEError", "SSEEvent"]

MAX_EVENT_BYTES = 16 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"
_CR = 13
# The longest open block held back for a whole match (see SSEDecoder._blocks): skipped blocks
# are small (a text delta is ~150 bytes); a longer one goes to the line parser as it arrives.
_HOLD_MAX = 4096


def _trie(names: list[bytes]) -> bytes:
    """A regex matching exactly one of ``names`` (sorted), their common prefixes factored out:
    the matcher then tests one byte per level rather than each name in turn."""
    by_first: dict[bytes, list[bytes]] = {}
    for name in names:
        by_first.setdefault(name[:1], []).append(name[1:])
    alts = [re.escape(first) + _trie(rest) if first else b"" for first, rest in by_first.items()]
    return alts[0] if len(alts) == 1 else b"(?:" + b"|".join(alts) + b")"


def _skip_names(skip: frozenset[bytes]) -> set[bytes]:
    """The raw ``event`` values that mean a skipped type (those a line can hold)."""
    # A raw empty value is the type "message", never "": b"" in skip matches nothing.
    names = {n for n in skip if n and b"\n" not in n and b"\r" not in n}
    if b"message" in names:
        names.add(b"")
    return names


def _open_block(names: set[bytes]) -> bytes:
    """The lines of a skipped block before its blank one: a first byte test for each line, then
    one C loop to its LF. Possessive: no backtracking, linear time."""
    return rb"event: " + _trie(sorted(names)) + rb"\n(?:[^ei\n][^\n]*+\n)*+"


@lru_cache(maxsize=16)
def _skipped_run(skip: frozenset[bytes]) -> re.Pattern[bytes]:
    """Matches a run of complete LF-only blocks that are certainly skipped, possibly empty.

    A block qualifies when its first line is ``event: NAME`` with NAME in ``skip`` and no later
    line starts with ``e`` (an ``event`` line would make another type final) or ``i`` (an ``id``
    line moves the last event ID); ``retry`` and ``data`` lines die with the block. A line the
    pattern will not pass ends the run there, and the line parser reads that block (so refusing
    ``eventual: x`` too is only slower, never wrong). Blank lines between blocks are no-ops. The
    caller guarantees the text holds no CR. Possessive quantifiers: no backtracking, linear time.
    A line costs a first-byte class test and one C loop to its LF; the names are a trie
    (``content_block_`` is compared once, not for each of its three names).
    """
    names = _skip_names(skip)
    if not names:
        return re.compile(b"")
    return re.compile(rb"(?:\n*+" + _open_block(names) + rb"\n)*+")


@lru_cache(maxsize=16)
def _open_skipped(skip: frozenset[bytes]) -> Callable[[bytes, int], re.Match[bytes] | None]:
    """``fullmatch(text, pos)``: the complete lines from ``pos`` on begin a block that the run
    pattern would pass once its blank line comes (no later line starting ``e`` or ``i``)."""
    names = _skip_names(skip)
    if not names:
        return re.compile(b"(?!)").fullmatch
    return re.compile(_open_block(names)).fullmatch


class SSEError(ValueError):
    """The stream cannot be decoded within the decoder's memory bound (see the module docstring).

    ``events``: the events completed by the failing ``feed()`` call before the overflow.
    """

    def __init__(self, message: str, events: list[SSEEvent] | None = None) -> None:
        super().__init__(message)
        self.events: list[SSEEvent] = events or []


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
        "_at_boundary",
        "_block",
        "_bom_checked",
        "_data",
        "_event",
        "_failed",
        "_last_id",
        "_max",
        "_parts",
        "_retry",
        "_skip",
        "_skip_all",
        "_skip_lf",
        "_tail",
    )

    def __init__(
        self, skip: frozenset[bytes] = frozenset(), max_event_bytes: int = MAX_EVENT_BYTES
    ) -> None:
        if max_event_bytes < 1:
            raise ValueError(f"max_event_bytes must be positive, got {max_event_bytes}")
        for name in skip:
            if "\ufffd" in name.decode("utf-8", "replace"):
                raise ValueError(f"skip: event names must be valid UTF-8 without U+FFFD: {name!r}")
        self._skip = frozenset(skip)
        # Matches a text of whole skipped LF blocks and nothing else (see feed's first case).
        self._skip_all = _skipped_run(self._skip).fullmatch if self._skip else None
        self._at_boundary: Callable[[bytes], re.Match[bytes] | None] | None = None
        self._max = max_event_bytes
        self._failed: SSEError | None = None
        self._parts: list[bytes] = []  # the unterminated last line, as received
        self._tail = 0  # total length of _parts
        self._block = 0  # bytes of complete lines since the last blank line
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF completes a CRLF
        self._bom_checked = False
        self._data: list[bytes] = []  # raw values of this block's data lines
        self._event = b""  # raw value of this block's last event line
        self._last_id: str | None = None
        self._retry: int | None = None

    @property
    def pending(self) -> int:
        """Bytes received since the last blank line (0 after a cleanly terminated stream, and
        after an :class:`SSEError`, which drops what was buffered)."""
        return 0 if self._failed is not None else self._block + self._tail

    @property
    def last_event_id(self) -> str | None:
        """The last event ID buffer (what a reconnecting client sends as ``Last-Event-ID``)."""
        return self._last_id

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode ``chunk`` and return every event it completes (possibly none).

        Raises :class:`SSEError` when an event block outgrows ``max_event_bytes`` (and on every
        call after that)."""
        at_boundary = self._at_boundary
        if (
            at_boundary is not None
            and len(chunk) <= self._max
            and b"\r" not in chunk
            and at_boundary(chunk) is not None
        ):
            # A streamed token: whole skipped blocks arriving at a block boundary. The general
            # path below would find just that, at several times the cost: nothing to return and
            # no state to change (those blocks hold no id line; the per-block state is clean).
            return []
        try:
            return self._feed(chunk)
        finally:
            # The token test above, armed only while nothing is pending: no open block or line,
            # no CR awaiting its LF, the BOM settled, not failed.
            clean = not (self._block or self._parts or self._skip_lf or self._failed)
            self._at_boundary = self._skip_all if clean and self._bom_checked else None

    def _feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._failed is not None:
            raise SSEError(str(self._failed))
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
                    if self._block > self._max:
                        raise self._overflow([])
                chunk = chunk[1:]
                if not chunk:
                    return []
        # The last terminator in this chunk ends the decodable region; the buffered parts hold no
        # terminator, so there is no need to rescan them.
        end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1
        if not end:
            self._parts.append(chunk)
            self._tail += len(chunk)
            if self._block + self._tail > self._max:
                raise self._overflow([])
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
        events = self._blocks(region) if self._skip else self._lines(region)
        if self._failed is not None:
            raise SSEError(str(self._failed), events)
        if self._block + self._tail > self._max:
            raise self._overflow(events)
        return events

    def _overflow(self, events: list[SSEEvent]) -> SSEError:
        self._failed = SSEError(
            f"SSE event longer than {self._max} bytes without a blank line: "
            "the stream is not valid or not SSE",
            events,
        )
        self._parts = []  # the oversized bytes go now, not with the decoder
        self._data = []
        return self._failed

    def close(self) -> list[SSEEvent]:
        """End of stream. An event without its terminating blank line is discarded (per spec)."""
        return []

    def _blocks(self, region: bytes) -> list[SSEEvent]:
        """``_lines`` with runs of skipped blocks cut out by one regex match each."""
        if b"\r" in region:  # CR / CRLF endings: the line parser handles every case
            return self._lines(region)
        skipped = _skipped_run(self._skip).match
        find = region.find
        events: list[SSEEvent] = []
        pos = 0  # a block boundary: the per-event state is clean there
        opened = self._block
        if opened:  # the region continues a block begun in an earlier chunk: finish it
            if region[0] == 10:
                pos = 1
            else:
                pos = find(b"\n\n") + 2
                if pos == 1:  # no blank line: all of the region is in the open block
                    return self._lines(region)
        run = 0  # start of the bytes not yet handed to the line parser
        # Without CR every LF ends a line, so the first "\n\n" after a line start ends a block.
        while True:
            m = skipped(region, pos)  # never None: the pattern matches the empty string
            end = m.end() if m else pos
            if end - pos > self._max:  # may hold an oversized block: let _lines count it
                end = pos
            if end > pos:
                if run < pos:
                    events += self._lines(region[run:pos])
                    if self._failed is not None:
                        return events
                run = pos = end
            end = find(b"\n\n", pos)  # a block the line parser must see, if complete
            if end < 0:
                break
            pos = end + 2
        size = len(region)
        if run < size:
            # A block left open at the end that is a skipped one so far (no id line) is held back
            # as unread bytes, to be matched whole with its end, rather than read by the line
            # parser now and again when it ends. Only a short one, so that a block trickling in
            # line by line is not read over and over.
            start = region.rfind(b"\n\n", run) + 2
            if start == 1:
                start = run if run or not opened else size
            if (
                start < size
                and size - start <= _HOLD_MAX
                and _open_skipped(self._skip)(region, start)
            ):
                if run < start:
                    events += self._lines(region[run:start])
                    if self._failed is not None:
                        return events
                self._parts.insert(0, region[start:])
                self._tail += size - start
                return events
            events += self._lines(region[run:] if run else region)
        return events

    def _lines(self, region: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        data = self._data
        block = self._block
        skip = self._skip
        limit = self._max
        for raw in region.splitlines(True):
            line = raw.rstrip(b"\r\n")
            if not line:  # blank line: dispatch
                block = 0
                if data:
                    etype = self._event
                    if not skip or (etype or b"message") not in skip:
                        events.append(
                            SSEEvent(
                                etype.decode("utf-8", "replace") if etype else "message",
                                # Joining at an ASCII byte, then decoding, equals decoding each part.
                                b"\n".join(data).decode("utf-8", "replace"),
                                self._last_id,
                                self._retry,
                            )
                        )
                    data = self._data = []
                self._event = b""
                self._retry = None
                continue
            block += len(raw)
            if block > limit:  # remembered, raised by feed() after the events before it
                self._overflow([])
                break
            if line[0] == 58:  # ":" comment
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                self._event = value
            elif name == b"id":
                if b"\0" not in value:
                    self._last_id = value.decode("utf-8", "replace")
            elif name == b"retry":
                if value.isdigit():  # bytes.isdigit() is ASCII-only and False when empty
                    self._retry = int(value)
        self._block = block
        return events
