"""Untrusted text made safe to print on a terminal.

Model names, session ids, metadata, paths, user agents and error messages arrive from clients
(and from upstreams); gwctl prints them and the console draws them. Written raw, an ``ESC [``
sequence recolours or rewrites the operator's terminal, a carriage return overwrites the line
it is on, and a bidi override reverses what the operator reads.

Contract: :func:`escape_controls` returns the text with every C0 control, DEL, every C1 control,
the bidi embedding/override/isolate marks and the Unicode line/paragraph separators replaced by
a visible escape (``\\x1b``, ``\\r``, ``\\n``, ``\\u202e``); everything else, backslashes
included, is unchanged. With ``keep_newlines`` (multi-line blocks such as logged bodies) ``\\n``
and ``\\t`` stay as they are and ``\\r\\n`` becomes ``\\n``. Printable text comes back as the
same string object: the common case costs one scan.

:func:`escape_json_text` is for JSON already written by an encoder that escapes only what JSON
requires (C0, quote, backslash): it writes the remaining controls as ``\\uXXXX``, which is the
same JSON value.
"""

from __future__ import annotations

import re

_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
# Bidi controls (ALM, LRM, RLM, LRE..RLO, LRI..PDI) and the line/paragraph separators.
_FORMAT = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029)


def _escape(code: int) -> str:
    return _NAMED.get(code) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


_UNSAFE = [*range(0x20), 0x7F, *range(0x80, 0xA0), *_FORMAT]
_TABLE = {code: _escape(code) for code in _UNSAFE}
_BLOCK_TABLE = {code: text for code, text in _TABLE.items() if code not in (0x09, 0x0A)}
_UNSAFE_RE = re.compile("[" + "".join(re.escape(chr(code)) for code in _UNSAFE) + "]")
_BEYOND_C0_RE = re.compile("[" + "".join(re.escape(chr(c)) for c in _UNSAFE if c >= 0x20) + "]")


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every terminal control made visible (see the module contract)."""
    if _UNSAFE_RE.search(text) is None:
        return text
    if keep_newlines:
        return text.replace("\r\n", "\n").translate(_BLOCK_TABLE)
    return text.translate(_TABLE)


def escape_json_text(json_text: str) -> str:
    """JSON text with DEL, C1, bidi marks and line separators written as ``\\uXXXX``.

    Only valid for encoder output: outside strings JSON has none of these characters."""
    return _BEYOND_C0_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)
