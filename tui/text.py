"""Untrusted strings as literal text for the console.

Emails, names and groups come from the identity provider, model names and session ids from
clients: handed to a widget as a ``str``, Rich would parse them as markup (``[@click=…]`` becomes
an action, an unbalanced ``[/]`` breaks the render) and a terminal control in them would reach
the operator's terminal. :func:`plain_text` returns a :class:`rich.text.Text` (never markup) with
every C0/C1 control, DEL, bidi mark and line separator written as a visible escape (``\\x1b``,
``\\u202e``).

The same contract as ``tui.format.plain`` on the main line (P2); this module stands in for it
on the sign-in branch and is meant to be replaced by it when the two are merged.
"""

from __future__ import annotations

import re

from rich.text import Text

_FORMAT = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029)
_UNSAFE = [*range(0x20), 0x7F, *range(0x80, 0xA0), *_FORMAT]
_UNSAFE_RE = re.compile("[" + "".join(re.escape(chr(code)) for code in _UNSAFE) + "]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(value: str) -> str:
    """``value`` on one line with every terminal control shown escaped."""
    return _UNSAFE_RE.sub(_escape, value)


def plain_text(value: str, style: str = "", *, justify: str | None = None) -> Text:
    """``value`` as literal text (never markup), controls escaped."""
    return Text(escape_controls(value), style=style, justify=justify)  # type: ignore[arg-type]
