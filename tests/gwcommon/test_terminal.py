"""escape_controls: every terminal control made visible, everything else untouched."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from gwcommon.terminal import escape_controls

BIDI_AND_SEPARATORS = (
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
)


def test_controls_become_visible_escapes() -> None:
    assert escape_controls("a\x1b[31mb") == "a\\x1b[31mb"
    assert escape_controls("x\ry\n\tz\x07\x00") == "x\\ry\\n\\tz\\x07\\x00"
    assert escape_controls("del\x7f c1\x9b31m") == "del\\x7f c1\\x9b31m"
    assert escape_controls("evil\u202etxt.exe\u2028") == "evil\\u202etxt.exe\\u2028"


def test_printable_text_is_returned_as_is() -> None:
    text = "claude-opus-4 · ünïcödé 日本語 [b]markup[/] C:\\path"
    assert escape_controls(text) is text


def test_keep_newlines_keeps_lines_and_tabs_only() -> None:
    assert escape_controls("a\r\nb\n\tc\rd\x1b", keep_newlines=True) == "a\nb\n\tc\\rd\\x1b"


def unsafe(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc" or ch in BIDI_AND_SEPARATORS


@given(st.text())
def test_no_control_survives(text: str) -> None:
    assert not any(unsafe(ch) for ch in escape_controls(text))
    kept = escape_controls(text, keep_newlines=True)
    assert not any(unsafe(ch) and ch not in "\n\t" for ch in kept)
    assert "\r" not in kept


@given(st.text(st.characters(blacklist_categories=["Cc"])))
def test_text_without_controls_is_unchanged(text: str) -> None:
    if not any(ch in BIDI_AND_SEPARATORS for ch in text):
        assert escape_controls(text) == text
