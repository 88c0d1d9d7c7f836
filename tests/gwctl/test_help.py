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


# The command groups and their actions, as `gwctl --help` and each group's --help list them.
GROUPS = {
    "sso": {"set", "show", "get", "delete", "rm", "rotate-signing-key"},
    "developers": {"list", "ls", "show", "get", "update", "disable", "enable"},
    "workspaces": {"create", "list", "ls", "show", "get", "update", "delete", "rm"},
}


def test_command_groups_list_their_actions(capsys: pytest.CaptureFixture[str]) -> None:
    pages = dict(_parsers(build_parser()))
    for name, actions in GROUPS.items():
        assert {path.split()[-1] for path in pages if path.startswith(f"gwctl {name} ")} == actions
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    top = " ".join(capsys.readouterr().out.split())  # wrapped to the terminal's width
    assert "sign-in with Claude Code: the company's OIDC identity" in top
    assert "people signed in with Claude Code" in top
    assert "--client-secret-stdin" in pages["gwctl sso set"].format_help()
    usage_help = " ".join(pages["gwctl usage"].format_help().split())
    assert "developer" in usage_help and "5 % off the metered cost" in usage_help
    for flag in ("--sso-group", "--member-budget", "--managed-settings-file",
                 "--clear-managed-settings", "--clear-member-target"):  # fmt: skip
        assert flag in pages["gwctl workspaces update"].format_help(), flag
    assert "--show-managed-settings" in pages["gwctl workspaces show"].format_help()
    assert "--developer" in pages["gwctl logs tail"].format_help()
