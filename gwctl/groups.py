"""How ``gwctl --help`` lists the commands: by task, as the README's sections do.

Table-driven: a new command module adds its name to one group below. A command the table does
not name is listed under "Other commands", never left out; a name the table lists that is not
registered is skipped (``tests/gwctl/test_help.py`` checks that neither happens unnoticed).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

# Titles follow the README's section headings where there is one.
COMMAND_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Get started", ("up", "down", "tui", "doctor", "completion")),
    ("Workspaces, keys and admin tokens", ("workspaces", "keys", "tokens", "whoami")),
    ("Sign-in with Claude Code", ("sso", "developers", "dev-idp")),
    ("Providers and routes", ("providers", "routes")),
    ("Configuration", ("apply", "telemetry")),
    ("Watching it", ("usage", "report", "logs", "sessions", "clients", "alerts", "audit")),
    ("Running the parts yourself", ("controlplane", "dataplanes")),
)
OTHER = "Other commands"


def grouped(names: Iterable[str]) -> list[tuple[str, list[str]]]:
    """``names`` (the registered commands) as (group title, commands) in the table's order,
    empty groups left out; names the table does not know come last, under :data:`OTHER`, in the
    order given."""
    remaining = list(dict.fromkeys(names))
    out: list[tuple[str, list[str]]] = []
    for title, members in COMMAND_GROUPS:
        present = [name for name in members if name in remaining]
        for name in present:
            remaining.remove(name)
        if present:
            out.append((title, present))
    if remaining:
        out.append((OTHER, remaining))
    return out


def commands_action(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any] | None:
    """The parser's subcommands (argparse keeps that class private, and stable since 3.2)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


class GroupedHelpParser(argparse.ArgumentParser):
    """The top-level parser: its help lists the subcommands under :data:`COMMAND_GROUPS`'
    titles instead of one flat "positional arguments" list. Everything else is argparse's own
    layout (usage, description, options, epilog)."""

    def format_help(self) -> str:
        commands = commands_action(self)
        if commands is None:
            return super().format_help()
        # One pseudo-action per command (its name, aliases and help), in registration order.
        lines = {sub.dest: sub for sub in commands._get_subactions()}
        formatter = self._get_formatter()
        formatter.add_usage(self.usage, self._actions, self._mutually_exclusive_groups)
        formatter.add_text(self.description)
        for title, names in grouped(lines):
            formatter.start_section(title)
            formatter.add_arguments([lines[name] for name in names])
            formatter.end_section()
        for group in self._action_groups:
            actions = [a for a in group._group_actions if a is not commands]
            if actions:
                formatter.start_section(group.title)
                formatter.add_text(group.description)
                formatter.add_arguments(actions)
                formatter.end_section()
        formatter.add_text(self.epilog)
        return formatter.format_help()
