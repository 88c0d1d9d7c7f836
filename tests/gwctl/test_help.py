"""Every gwctl command's --help renders (argparse %-expands help strings: a stray '%' crashes it)."""

from __future__ import annotations

import argparse

import pytest

from gwctl.groups import COMMAND_GROUPS, OTHER, commands_action, grouped
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


# ---- gwctl --help lists the commands by group (gwctl/groups.py) -----------------------------


def _top_level_sections(text: str) -> dict[str, list[str]]:
    """Section title -> the command names listed under it (first word of each entry line)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = sections.setdefault(line[:-1], [])
        elif current is not None and line.startswith("  ") and not line.startswith("   "):
            current.append(line.split()[0])
        elif not line:
            current = None
    return sections


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    action = commands_action(parser)
    assert action is not None
    return list(dict.fromkeys(a.dest for a in action._get_subactions()))


def test_top_level_help_groups_every_command_once(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    sections = _top_level_sections(capsys.readouterr().out)
    titles = [t for t, _ in COMMAND_GROUPS]
    listed = {t: names for t, names in sections.items() if t in titles}
    assert list(listed) == titles  # every group, in the table's order
    assert OTHER not in sections  # every command has its group
    for title, members in COMMAND_GROUPS:
        assert listed[title] == list(members), title
    flat = [name for names in listed.values() for name in names]
    assert sorted(flat) == sorted(_commands(parser))  # every command, exactly once
    assert "positional arguments" not in sections
    assert "--control-plane" in sections["options"]  # argparse's own sections follow


def test_group_table_names_only_registered_commands() -> None:
    registered = set(_commands(build_parser()))
    for title, members in COMMAND_GROUPS:
        assert set(members) <= registered, (title, set(members) - registered)


def test_a_command_missing_from_the_table_is_listed_under_other(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    action = commands_action(parser)
    assert action is not None
    action.add_parser("frobnicate", help="a command nobody put in a group")
    text = parser.format_help()
    sections = _top_level_sections(text)
    assert sections[OTHER] == ["frobnicate"]
    assert list(sections)[-2:] == [OTHER, "options"]
    assert "a command nobody put in a group" in text


def test_grouped_keeps_unknown_names_in_order() -> None:
    assert grouped(["zeta", "keys", "alpha", "up"]) == [
        ("Get started", ["up"]),
        ("Workspaces, keys and admin tokens", ["keys"]),
        (OTHER, ["zeta", "alpha"]),
    ]
