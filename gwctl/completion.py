"""``gwctl completion bash|zsh|fish``: a shell completion script, generated from gwctl's parser.

The script is built from the argparse tree at run time (:func:`command_tree`), so it always
matches the gwctl that prints it: commands and their aliases, nested actions, every command's
flags (the global ones after a command too), fixed choices (``-o table|json``, ``completion
bash|zsh|fish``), file names for PATH/FILE/PEM values and directories for DIR. After
``controlplane serve`` / ``dataplanes serve`` (whose flags belong to the servers' own parsers,
not imported here) it offers file names. Names stored on the control plane (workspaces, keys)
are not completed: that would need the admin token and a round trip on every TAB.

One walk of the tree feeds all three shells, each a small renderer: the scripts find the
command being typed by the same rule (skip flags and their values, follow known command
names), so they cannot disagree. No dependency: ``shtab`` would generate bash and zsh but not
fish, and this walk was needed for fish anyway.

Every word a script completes (names, flags, choices) must match :data:`_WORD`, so the scripts
never quote a completion candidate; help texts are quoted for the shell that shows them.

This module is long (~470 lines) because the walk, the quoting rules and the three renderers are
one contract (every shell completes the same words by the same rule); split per shell, the rule
they share would live in a fourth module that each of them must still agree with.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gwctl.cli import Subparsers
from gwctl.groups import commands_action

SHELLS = ("bash", "zsh", "fish")
FILE_METAVARS = frozenset({"PATH", "FILE", "PEM"})
DIR_METAVARS = frozenset({"DIR"})
_WORD = re.compile(r"-{0,2}[A-Za-z0-9][A-Za-z0-9_.:/@+,=-]*")


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    help: str
    value: str  # "" (a switch), "any", "choices", "file" or "dir"
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]  # () for gwctl itself
    aliases: tuple[str, ...]
    help: str
    options: tuple[Option, ...]
    choices: tuple[str, ...]  # fixed values its positional arguments take
    children: tuple[Command, ...]
    passthrough: bool  # the rest of the line belongs to another parser (`… serve`)

    @property
    def key(self) -> str:
        return " ".join(self.path)

    def walk(self) -> Iterator[Command]:
        yield self
        for child in self.children:
            yield from child.walk()


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    try:  # as argparse expands it (%(default)s, %% …)
        text = text % {**vars(action), "prog": prog}
    except (KeyError, TypeError, ValueError):
        text = text.replace("%%", "%")
    return " ".join(text.split())


def _option(action: argparse.Action, prog: str) -> Option:
    flags = tuple(action.option_strings)
    if action.nargs == 0:
        return Option(flags, _help(action, prog), "")
    if action.choices is not None:
        return Option(flags, _help(action, prog), "choices", tuple(map(str, action.choices)))
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    kind = "file" if metavar in FILE_METAVARS else "dir" if metavar in DIR_METAVARS else "any"
    return Option(flags, _help(action, prog), kind)


def command_tree(
    parser: argparse.ArgumentParser,
    path: tuple[str, ...] = (),
    aliases: tuple[str, ...] = (),
    help_text: str = "",
) -> Command:
    """The command ``path`` of ``parser``, with everything below it."""
    commands = commands_action(parser)
    options: list[Option] = []
    choices: list[str] = []
    for action in parser._actions:
        if action is commands or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            options.append(_option(action, parser.prog))
        elif action.choices is not None:
            choices.extend(map(str, action.choices))
    children: list[Command] = []
    if commands is not None:
        helps = {a.dest: _help(a, parser.prog) for a in commands._get_subactions()}
        names: dict[int, list[str]] = {}  # one parser per command; its aliases map to it too
        parsers: dict[int, argparse.ArgumentParser] = {}
        for name, sub in commands.choices.items():
            names.setdefault(id(sub), []).append(name)
            parsers[id(sub)] = sub
        for ident, (name, *others) in names.items():
            sub = parsers[ident]
            children.append(command_tree(sub, (*path, name), tuple(others), helps.get(name, "")))
    return Command(
        path,
        aliases,
        help_text,
        tuple(options),
        tuple(choices),
        tuple(children),
        bool(parser.get_default("passthrough")),
    )


def _word(text: str) -> str:
    if not _WORD.fullmatch(text):
        raise ValueError(f"cannot offer {text!r} for completion: not a plain word")
    return text


def _sq(text: str) -> str:
    """``text`` single-quoted for bash, zsh (and, with the same rule, fish 3.x: see _fq)."""
    return "'" + text.replace("'", "'\\''") + "'"


def _fq(text: str) -> str:
    """Single-quoted for fish, whose single quotes take \\' and \\\\ as escapes."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---- the parts bash and zsh share (POSIX `case`, the same in both) ------------------------------


def _sh_lookups(tree: Command) -> list[str]:
    """Functions answering, for a command path: the command a word names, whether a flag takes
    a value, that value's candidates, and whether the rest of the line is passed through."""
    out = ['_gwctl_command() {  # PATH WORD: REPLY is the command WORD names under PATH, or ""']
    out.append('    case "$1/$2" in')
    for cmd in tree.walk():
        for child in cmd.children:
            names = (child.path[-1], *child.aliases)
            patterns = "|".join(_sq(f"{cmd.key}/{_word(n)}") for n in names)
            out.append(f"        {patterns}) REPLY={_sq(child.key)} ;;")
    out += ['        *) REPLY="" ;;', "    esac", "}", ""]

    out.append("_gwctl_takes_value() {  # PATH FLAG: whether FLAG takes a value there")
    out.append('    case "$1/$2" in')
    for cmd in tree.walk():
        flags = [f for o in cmd.options if o.value for f in o.flags]
        if flags:
            patterns = "|".join(_sq(f"{cmd.key}/{_word(f)}") for f in flags)
            out.append(f"        {patterns}) return 0 ;;")
    out += ["    esac", "    return 1", "}", ""]

    out.append("_gwctl_values() {  # PATH FLAG: REPLY is its choices, @file, @dir or empty")
    out.append('    case "$1/$2" in')
    for cmd in tree.walk():
        for o in cmd.options:
            if o.value in ("choices", "file", "dir"):
                patterns = "|".join(_sq(f"{cmd.key}/{f}") for f in o.flags)
                words = " ".join(map(_word, o.choices)) if o.choices else "@" + o.value
                out.append(f"        {patterns}) REPLY={_sq(words)} ;;")
    out += ['        *) REPLY="" ;;', "    esac", "}", ""]

    out.append("_gwctl_passthrough() {  # PATH: whether the rest of the line is another parser's")
    passthrough = [_sq(c.key) for c in tree.walk() if c.passthrough]
    out.append('    case "$1" in')
    if passthrough:
        out.append(f"        {'|'.join(passthrough)}) return 0 ;;")
    out += ["    esac", "    return 1", "}", ""]
    return out


def _sh_list(
    name: str, doc: str, tree: Command, words: Callable[[Command], list[str]]
) -> list[str]:
    out = [f"{name}() {{  # PATH: {doc}", '    case "$1" in']
    for cmd in tree.walk():
        if items := words(cmd):
            out.append(f"        {_sq(cmd.key)}) REPLY={_sq(' '.join(map(_word, items)))} ;;")
    return [*out, '        *) REPLY="" ;;', "    esac", "}", ""]


# The walk over the words before the cursor, in bash and zsh syntax (zsh's `path` is $PATH).
_SH_WALK = """\
    local cmdpath="" word REPLY i
    for (( i = {first}; i < {cursor}; i++ )); do
        _gwctl_passthrough "$cmdpath" && break
        word=${{{words}[i]}}
        case $word in
            --*=*) ;;
            -*) _gwctl_takes_value "$cmdpath" "$word" && (( i++ )) ;;
            *) _gwctl_command "$cmdpath" "$word"; [[ -n $REPLY ]] && cmdpath=$REPLY ;;
        esac
    done
"""

_BASH_MAIN = (
    """\
_gwctl() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    COMPREPLY=()
"""
    + _SH_WALK.format(first=1, cursor="COMP_CWORD", words="COMP_WORDS")
    + """\
    if _gwctl_passthrough "$cmdpath"; then
        compopt -o default 2>/dev/null  # file names, as the server's flags are not known here
        return 0
    fi
    if (( COMP_CWORD > 1 )) && [[ $prev == -* ]] && _gwctl_takes_value "$cmdpath" "$prev"; then
        _gwctl_values "$cmdpath" "$prev"
        case $REPLY in
            @file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
            @dir) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")) ;;
            *) COMPREPLY=($(compgen -W "$REPLY" -- "$cur")) ;;
        esac
        return 0
    fi
    if [[ $cur == -* ]]; then
        _gwctl_options "$cmdpath"
    else
        _gwctl_words "$cmdpath"
    fi
    COMPREPLY=($(compgen -W "$REPLY" -- "$cur"))
}

complete -F _gwctl gwctl
"""
)


def bash(tree: Command) -> str:
    """A bash (3.2 or later) completion script: ``source <(gwctl completion bash)``."""
    out = [
        "# bash completion for gwctl, generated by `gwctl completion bash`.",
        "# Load it with: source <(gwctl completion bash)",
        "",
        *_sh_lookups(tree),
        *_sh_list(
            "_gwctl_words",
            "REPLY is its commands and argument choices",
            tree,
            lambda c: [ch.path[-1] for ch in c.children] + list(c.choices),
        ),
        *_sh_list(
            "_gwctl_options",
            "REPLY is its flags",
            tree,
            lambda c: [f for o in c.options for f in o.flags],
        ),
        _BASH_MAIN,
    ]
    return "\n".join(out)


def _zsh_item(name: str, help_text: str) -> str:
    return _sq(_word(name).replace(":", "\\:") + (":" + help_text if help_text else ""))


_ZSH_MAIN = (
    """\
_gwctl() {
    local -a reply
"""
    + _SH_WALK.format(first=2, cursor="CURRENT", words="words")
    + """\
    if _gwctl_passthrough "$cmdpath"; then
        _files
        return
    fi
    local prev=${words[CURRENT-1]}
    if (( CURRENT > 2 )) && [[ $prev == -* ]] && _gwctl_takes_value "$cmdpath" "$prev"; then
        _gwctl_values "$cmdpath" "$prev"
        case $REPLY in
            @file) _files ;;
            @dir) _files -/ ;;
            ?*) compadd -- ${=REPLY} ;;
        esac
        return
    fi
    if [[ ${words[CURRENT]} == -* ]]; then
        _gwctl_options "$cmdpath"
        (( ${#reply} )) && _describe -t options 'gwctl option' reply
    else
        _gwctl_commands "$cmdpath"
        (( ${#reply} )) && _describe -t commands 'gwctl command' reply
        _gwctl_choices "$cmdpath"
        [[ -n $REPLY ]] && compadd -- ${=REPLY}
    fi
    return 0
}

if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then
    _gwctl "$@"
else
    compdef _gwctl gwctl
fi
"""
)


def _zsh_described(name: str, tree: Command, items: Callable[[Command], list[str]]) -> list[str]:
    out = [f"{name}() {{  # PATH: reply holds name:description pairs", '    case "$1" in']
    for cmd in tree.walk():
        if entries := items(cmd):
            out.append(f"        {_sq(cmd.key)}) reply=(")
            out += [f"            {e}" for e in entries]
            out.append("        ) ;;")
    return [*out, "        *) reply=() ;;", "    esac", "}", ""]


def zsh(tree: Command) -> str:
    """A zsh completion script: ``source <(gwctl completion zsh)`` after ``compinit``, or saved
    as ``_gwctl`` in a directory of ``$fpath``."""
    out = [
        "#compdef gwctl",
        "# zsh completion for gwctl, generated by `gwctl completion zsh`.",
        "# Load it with: source <(gwctl completion zsh)   (after compinit),",
        "# or save it as _gwctl in a directory of $fpath.",
        "",
        *_sh_lookups(tree),
        *_zsh_described(
            "_gwctl_commands",
            tree,
            lambda c: [_zsh_item(ch.path[-1], ch.help) for ch in c.children],
        ),
        *_zsh_described(
            "_gwctl_options",
            tree,
            lambda c: [_zsh_item(f, o.help) for o in c.options for f in o.flags],
        ),
        *_sh_list(
            "_gwctl_choices", "REPLY is its argument choices", tree, lambda c: list(c.choices)
        ),
        _ZSH_MAIN,
    ]
    return "\n".join(out)


_FISH_FUNCTIONS = """\
function __gwctl_path --description 'the gwctl command being typed, e.g. "workspaces create"'
    set -l tokens (commandline -opc)
    set -l line (string join ' ' -- $tokens)
    if test "$line" = "$__gwctl_cached_line"
        echo $__gwctl_cached_path
        return
    end
    set -l cmdpath ''
    set -l skip 0
    for word in $tokens[2..-1]
        if test $skip -eq 1
            set skip 0
            continue
        end
        __gwctl_passthrough "$cmdpath"; and break
        switch $word
            case '--*=*'
            case '-*'
                __gwctl_takes_value "$cmdpath" $word; and set skip 1
            case '*'
                set -l next (__gwctl_command "$cmdpath" $word)
                test -n "$next"; and set cmdpath $next
        end
    end
    set -g __gwctl_cached_line $line
    set -g __gwctl_cached_path $cmdpath
    echo $cmdpath
end

function __gwctl_at --argument-names expected
    set -l cmdpath (__gwctl_path)
    test "$cmdpath" = "$expected"
end
"""


def _fish_switch(name: str, doc: str, arms: list[tuple[list[str], str]], default: str) -> list[str]:
    out = [f"function {name} --description {_fq(doc)}", '    switch "$argv[1]/$argv[2]"']
    for patterns, body in arms:
        out += [f"        case {' '.join(map(_fq, patterns))}", f"            {body}"]
    return [*out, "    end", f"    {default}", "end", ""]


def _fish_flag(flag: str) -> str:
    if flag.startswith("--"):
        return f"-l {flag[2:]}"
    return f"-s {flag[1:]}" if len(flag) == 2 else f"-o {flag[1:]}"


def fish(tree: Command) -> str:
    """A fish completion script: ``gwctl completion fish | source``, or saved as
    ``~/.config/fish/completions/gwctl.fish``."""
    commands = [
        ([f"{cmd.key}/{_word(n)}" for n in (ch.path[-1], *ch.aliases)], f"echo {_fq(ch.key)}")
        for cmd in tree.walk()
        for ch in cmd.children
    ]
    takes = [
        ([f"{cmd.key}/{_word(f)}" for o in cmd.options if o.value for f in o.flags], "return 0")
        for cmd in tree.walk()
        if any(o.value for o in cmd.options)
    ]
    passthrough = [c.key for c in tree.walk() if c.passthrough]
    out = [
        "# fish completion for gwctl, generated by `gwctl completion fish`.",
        "# Load it with: gwctl completion fish | source",
        "# or save it as ~/.config/fish/completions/gwctl.fish",
        "",
        *_fish_switch("__gwctl_command", "the command a word names", commands, "return 0"),
        *_fish_switch("__gwctl_takes_value", "whether a flag takes a value", takes, "return 1"),
        "function __gwctl_passthrough --description 'whether the rest is a server parser\\'s'",
        '    switch "$argv[1]"',
    ]
    if passthrough:
        out += [f"        case {' '.join(map(_fq, passthrough))}", "            return 0"]
    out += ["    end", "    return 1", "end", "", _FISH_FUNCTIONS, "complete -c gwctl -f"]
    for cmd in tree.walk():
        at = f"-n {_fq('__gwctl_at ' + _sq(cmd.key))}"
        if cmd.passthrough:
            out.append(f"complete -c gwctl {at} -F")
            continue
        for ch in cmd.children:
            out.append(f"complete -c gwctl {at} -a {_word(ch.path[-1])} -d {_fq(ch.help)}")
        if cmd.choices:
            out.append(f"complete -c gwctl {at} -a {_fq(' '.join(map(_word, cmd.choices)))}")
        for o in cmd.options:
            spec = " ".join(_fish_flag(_word(f)) for f in o.flags)
            if o.value == "choices":
                spec += f" -x -a {_fq(' '.join(map(_word, o.choices)))}"
            elif o.value == "file":
                spec += " -r -F"
            elif o.value == "dir":
                spec += " -x -a '(__fish_complete_directories)'"
            elif o.value == "any":
                spec += " -x"
            out.append(f"complete -c gwctl {at} {spec} -d {_fq(o.help)}")
    return "\n".join(out) + "\n"


RENDERERS: dict[str, Callable[[Command], str]] = {"bash": bash, "zsh": zsh, "fish": fish}


def register(subparsers: Subparsers, root: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description="Print a completion script for gwctl's commands and flags. Load it with: "
        "source <(gwctl completion bash)  |  source <(gwctl completion zsh) (after compinit)  "
        "|  gwctl completion fish | source",
    )
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    p.set_defaults(run=lambda args, extra: _run(root, args.shell))


def _run(root: argparse.ArgumentParser, shell: str) -> int:
    sys.stdout.write(RENDERERS[shell](command_tree(root)))
    return 0
