"""``gwctl completion bash|zsh|fish``.

The bash script is sourced into a real bash and its completion function is called the way
readline calls it (``COMP_WORDS``/``COMP_CWORD``), for hand-picked lines and for every command
of the tree. zsh and fish are not on CI's machine, so their scripts are checked against the
tree: every command, alias and flag is in them, each under the command it belongs to.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from gwctl.completion import Command, bash, command_tree, fish, zsh
from gwctl.main import build_parser

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree() -> Command:
    return command_tree(build_parser())


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What the real command prints (python -m gwctl.main completion SHELL)."""
    out = {}
    for shell in ("bash", "zsh", "fish"):
        done = subprocess.run(
            [sys.executable, "-m", "gwctl.main", "completion", shell],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        out[shell] = done.stdout
    return out


def complete_in_bash(script: str, lines: Sequence[Sequence[str]], cwd: Path) -> list[list[str]]:
    """What the script's completion offers for each line, the last word being the one the cursor
    is in (readline's COMP_WORDS/COMP_CWORD), from a real bash."""
    (cwd / "gwctl-completion.bash").write_text(script)
    calls = ["source ./gwctl-completion.bash", "complete -p gwctl || exit 3"]
    for words in lines:
        calls.append(
            f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); "
            "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=(); _gwctl; "
            'echo "=> ${COMPREPLY[*]}"'
        )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", "\n".join(calls)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "complete -F _gwctl gwctl" in done.stdout
    answers = [line[3:].split() for line in done.stdout.splitlines() if line.startswith("=>")]
    assert len(answers) == len(lines), done.stderr
    return answers


def test_bash_completes_commands_actions_flags_and_values(
    scripts: dict[str, str], tree: Command, tmp_path: Path
) -> None:
    (tmp_path / "gateway.yaml").write_text("workspaces: []\n")
    (tmp_path / "state").mkdir()
    cases: list[tuple[list[str], list[str]]] = [
        (["gwctl", "wor"], ["workspaces"]),
        (["gwctl", "workspaces", "cr"], ["create"]),
        (["gwctl", "ws", "cr"], ["create"]),  # an alias
        (["gwctl", "-o", "json", "workspaces", "cr"], ["create"]),  # a flag and its value skipped
        (["gwctl", "--control-plane", "cr", "workspaces", "cr"], ["create"]),  # a value like a word
        (["gwctl", "-o", ""], ["table", "json", "csv"]),
        (["gwctl", "workspaces", "list", "--output", "j"], ["json"]),
        (["gwctl", "completion", ""], ["bash", "zsh", "fish"]),
        (["gwctl", "workspaces", "create", "team-a", "--bu"], ["--budget"]),
        (["gwctl", "keys", "create", "--workspace", "team-a", "--na"], ["--name"]),
        (["gwctl", "apply", "-f", ""], ["gateway.yaml", "gwctl-completion.bash", "state"]),
        (["gwctl", "up", "--state-dir", ""], ["state"]),  # directories only
        (["gwctl", "keys", "create", "--budget", ""], []),  # a free value: nothing to offer
        # the server's own flags are not gwctl's: bash falls back to file names
        (["gwctl", "controlplane", "serve", "--li"], []),
        (["gwctl", "dp", "serve", "--state-dir", "st"], []),
    ]
    answers = complete_in_bash(scripts["bash"], [c for c, _ in cases], tmp_path)
    for (line, expected), got in zip(cases, answers, strict=True):
        assert sorted(got) == sorted(expected), line


def test_bash_offers_every_command_and_flag_of_the_tree(
    scripts: dict[str, str], tree: Command, tmp_path: Path
) -> None:
    commands = [c for c in tree.walk() if not c.passthrough]
    lines = [["gwctl", *c.path, ""] for c in commands] + [["gwctl", *c.path, "-"] for c in commands]
    answers = complete_in_bash(scripts["bash"], lines, tmp_path)
    words, flags = answers[: len(commands)], answers[len(commands) :]
    for cmd, got_words, got_flags in zip(commands, words, flags, strict=True):
        children = [c.path[-1] for c in cmd.children]
        assert got_words == children + list(cmd.choices), cmd.key
        assert got_flags == [f for o in cmd.options for f in o.flags], cmd.key
    top = {c.path[-1] for c in tree.children}
    assert {"workspaces", "keys", "completion", "tui", "controlplane", "dataplanes"} <= top


def test_the_tree_follows_the_parser(tree: Command) -> None:
    by_key = {c.key: c for c in tree.walk()}
    assert by_key["workspaces"].aliases == ("ws",)
    assert {"create", "list", "show", "update", "delete"} <= {
        c.path[-1] for c in by_key["workspaces"].children
    }
    assert by_key["completion"].choices == ("bash", "zsh", "fish")
    output = next(o for o in by_key["keys create"].options if "--output" in o.flags)
    assert output.value == "choices" and output.choices == ("table", "json", "csv")
    assert next(o for o in by_key["apply"].options if "-f" in o.flags).value == "file"
    assert next(o for o in by_key["up"].options if "--state-dir" in o.flags).value == "dir"
    assert {c.key for c in tree.walk() if c.passthrough} == {
        "controlplane serve",
        "controlplane migrate",
        "controlplane rebuild-ledger",
        "dataplanes serve",
    }
    # the global flags after a command too
    assert any("--control-plane" in o.flags for o in by_key["keys create"].options)


def test_hidden_flags_are_not_offered() -> None:
    parser = argparse.ArgumentParser(prog="gwctl")
    parser.add_argument("--shown", help="yes")
    parser.add_argument("--hidden", help=argparse.SUPPRESS)
    assert [o.flags for o in command_tree(parser).options] == [("-h", "--help"), ("--shown",)]


def _fish_lines(script: str) -> dict[str, list[str]]:
    """The fish script's `complete` lines by the command they apply to."""
    out: dict[str, list[str]] = {}
    for line in script.splitlines():
        m = re.match(r"complete -c gwctl -n '__gwctl_at \\'([^\\]*)\\'' (.*)", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


def test_fish_script_has_every_command_alias_and_flag(
    scripts: dict[str, str], tree: Command
) -> None:
    script = scripts["fish"]
    lines = _fish_lines(script)
    for cmd in tree.walk():
        mine = lines.get(cmd.key, [])
        if cmd.passthrough:
            assert mine == ["-F"], cmd.key
            continue
        for child in cmd.children:
            assert any(line.startswith(f"-a {child.path[-1]} -d ") for line in mine), child.key
            for name in (child.path[-1], *child.aliases):  # the walk knows aliases too
                assert f"'{cmd.key}/{name}'" in script, (cmd.key, name)
        for option in cmd.options:
            spec = " ".join(
                f"-l {f[2:]}" if f.startswith("--") else f"-s {f[1:]}" for f in option.flags
            )
            assert any(line.startswith(spec + " ") for line in mine), (cmd.key, option.flags)
    assert "-s o -l output -x -a 'table json csv'" in " ".join(lines[""])
    assert "-a 'bash zsh fish'" in lines["completion"]


def _zsh_case(script: str, function: str) -> dict[str, str]:
    """A generated zsh function's `case` arms: pattern -> body."""
    body = script.split(f"\n{function}() {{", 1)[1].split("\n}\n", 1)[0]
    arms = re.findall(r"^        ('[^)]*')\) (.*?)(?: ;;)?$", body, re.M | re.S)
    return {pattern: text for pattern, text in arms}


def test_zsh_script_has_every_command_alias_and_flag(
    scripts: dict[str, str], tree: Command
) -> None:
    script = scripts["zsh"]
    assert script.startswith("#compdef gwctl\n")
    assert "compdef _gwctl gwctl" in script
    commands = script.split("\n_gwctl_commands() {", 1)[1].split("\n}\n", 1)[0]
    options = script.split("\n_gwctl_options() {", 1)[1].split("\n}\n", 1)[0]
    walk = _zsh_case(script, "_gwctl_command")
    for cmd in tree.walk():
        for child in cmd.children:
            pattern = "|".join(f"'{cmd.key}/{n}'" for n in (child.path[-1], *child.aliases))
            assert walk[pattern] == f"REPLY='{child.key}'"
        if cmd.children:
            arm = commands.split(f"\n        '{cmd.key}') reply=(\n", 1)[1].split(") ;;")[0]
            listed = re.findall(r"^ +'([^:']+):", arm, re.M)
            assert listed == [c.path[-1] for c in cmd.children], cmd.key
        if cmd.options and not cmd.passthrough:
            arm = options.split(f"\n        '{cmd.key}') reply=(\n", 1)[1].split(") ;;")[0]
            listed = re.findall(r"^ +'([^:']+)(?::|')", arm, re.M)
            assert listed == [f for o in cmd.options for f in o.flags], cmd.key
    values = _zsh_case(script, "_gwctl_values")
    assert values["'/-o'|'/--output'"] == "REPLY='table json csv'"
    assert values["'apply/-f'|'apply/--file'"] == "REPLY='@file'"


def test_a_word_that_would_need_quoting_is_refused() -> None:
    parser = argparse.ArgumentParser(prog="gwctl")
    parser.add_argument("--mode", choices=["a b", "c"])
    for render in (bash, zsh, fish):
        with pytest.raises(ValueError, match="not a plain word"):
            render(command_tree(parser))


def test_help_texts_are_quoted_for_each_shell() -> None:
    parser = argparse.ArgumentParser(prog="gwctl")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("it", help='it\'s 100 %% \\ `$(nope)` "quoted"')
    tree = command_tree(parser)
    assert tree.children[0].help == 'it\'s 100 % \\ `$(nope)` "quoted"'
    zsh_script = zsh(tree)
    assert "'it:it'\\''s 100 % \\ `$(nope)` \"quoted\"'" in zsh_script
    assert "-d 'it\\'s 100 % \\\\ `$(nope)` \"quoted\"'" in fish(tree)
