"""Every gwctl command's --help renders (argparse %-expands help strings: a stray '%' crashes it)."""

from __future__ import annotations

import argparse

import pytest

from gwctl.main import build_parser


def _parsers(parser: argparse.ArgumentParser, path: str = "gwctl"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_command_has_a_help_page() -> None:
    pages = list(_parsers(build_parser()))
    assert len(pages) > 30  # the whole tree was walked, not just the top level
    for path, parser in pages:
        text = parser.format_help()
        assert text.startswith("usage:"), path


def test_top_level_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--help"])
    assert done.value.code == 0
    assert "budget alerts (50/80/100 % of a budget reached)" in capsys.readouterr().out
