"""A workspace's sign-in settings on ``gwctl workspaces create|update|show``.

* ``--sso-group G`` (repeatable; replaces the list; ``'*'`` = any signed-in user) and
  ``--sso-priority N`` decide which signed-in developers land in the workspace: among the
  workspaces one of whose groups the developer's ID token carries, the lowest priority wins
  (0 = the default, 100), then the name. ``--clear-sso-groups`` empties the list.
* ``--member-budget`` (repeatable, like ``--budget``), ``--member-rpm``, ``--member-rph``,
  ``--member-tpm``, ``--member-max-parallel`` apply to *each* developer of the workspace (a
  developer's own override, ``gwctl developers update``, replaces them); the workspace's own
  limits still apply on top. ``--clear-member-budgets`` removes the member budgets.
* ``--member-provider`` / ``--member-route`` say where developers' requests go
  (``--clear-member-target``: the sign-in default, ``gwctl sso set --default-…``).
* ``--managed-settings-file PATH`` (``-`` = stdin) sends the file's text as the Claude Code
  managed settings served to the workspace's developers; it is checked here first (readable,
  UTF-8, one JSON object: an error names the file, line and column), then by the control plane
  (size, ``env`` values…; its refusal is reported with the file's name too).
  ``--clear-managed-settings`` removes the policy (developers then get 404).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import grpc

from gwapi.v1 import common_pb2
from gwclient.errors import ClientError
from gwctl import limit_flags, parse
from gwctl import output as out
from gwctl.cli import CommandError, UsageError, read_list, read_target

DEFAULT_PRIORITY = 100


def add_flags(p: argparse.ArgumentParser, *, update: bool) -> None:
    replaces = "; replaces the list" if update else ""
    p.add_argument(
        "--sso-group",
        dest="sso_groups",
        action="append",
        metavar="GROUP",
        help="developers signed in with this IdP group land here, repeatable ('*' = anyone "
        f"who signs in){replaces}",
    )
    p.add_argument(
        "--sso-priority",
        type=parse.parse_count,
        metavar="N",
        help="when several workspaces match a developer's groups, the lowest wins "
        f"(0 = default {DEFAULT_PRIORITY}, then by name)",
    )
    limit_flags.add_budget_flag(p, limit_flags.MEMBER, update=update)
    limit_flags.add_count_flags(p, limit_flags.MEMBER)
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--member-provider", metavar="NAME", help="developers' requests go to this provider"
    )
    target.add_argument(
        "--member-route", metavar="NAME", help="developers' requests go through this route"
    )
    p.add_argument(
        "--managed-settings-file",
        metavar="PATH",
        help="Claude Code managed settings (a JSON object) served to the workspace's developers "
        "at /managed/settings ('-' = stdin)",
    )
    if update:
        p.add_argument(
            "--clear-sso-groups", action="store_true", help="no developer lands here any more"
        )
        limit_flags.add_clear_budgets_flag(p, limit_flags.MEMBER)
        target.add_argument(
            "--clear-member-target",
            action="store_true",
            help="developers use the sign-in default target (gwctl sso set --default-…)",
        )
        p.add_argument(
            "--clear-managed-settings",
            action="store_true",
            help="remove the managed settings (developers get 404)",
        )


def read_managed_settings(path: str) -> str:
    """The file's text, checked to be one JSON object; :class:`CommandError` naming the file
    (and the line and column of a JSON error) otherwise."""
    source = "<stdin>" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(
            f"cannot read the managed settings file {source}: {exc.strerror or exc}"
        ) from None
    except UnicodeDecodeError:
        raise CommandError(f"{source}: managed settings must be UTF-8 text") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(
            f"{source}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except RecursionError:
        raise CommandError(f"{source}: the JSON is nested too deeply") from None
    if not isinstance(doc, dict):
        raise CommandError(
            f'{source}: managed settings must be a JSON object such as {{"env": {{…}}, '
            f'"permissions": {{…}}}}, not a JSON {_json_type(doc)}'
        )
    return text


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    return "number"


def apply_args(args: argparse.Namespace, ws: common_pb2.Workspace, paths: list[str]) -> None:
    """Set the sign-in fields the flags give on ``ws`` and append their update-mask paths."""
    groups = getattr(args, "sso_groups", None)
    clear_groups = getattr(args, "clear_sso_groups", False)
    read_list(ws, paths, "sso_groups", groups, clear_groups, "sso-group")
    if args.sso_priority is not None:
        ws.sso_priority = args.sso_priority
        paths.append("sso_priority")

    limit_flags.read_limits(args, limit_flags.MEMBER, ws.member_limits, paths)

    clear_target = getattr(args, "clear_member_target", False)
    read_target(ws, paths, "member_", args.member_provider, args.member_route, clear_target)

    settings_file = args.managed_settings_file
    clear_settings = getattr(args, "clear_managed_settings", False)
    if settings_file is not None and clear_settings:
        raise UsageError(
            "--managed-settings-file and --clear-managed-settings contradict each other"
        )
    if settings_file is not None:
        ws.managed_settings_json = read_managed_settings(settings_file)
    if settings_file is not None or clear_settings:
        paths.append("managed_settings_json")


def explain_refusal(exc: ClientError, args: argparse.Namespace) -> Exception:
    """A refusal of the managed settings names the file they came from."""
    path = getattr(args, "managed_settings_file", None)
    if (
        path is not None
        and exc.code == grpc.StatusCode.INVALID_ARGUMENT
        and "managed settings" in exc.message
    ):
        source = "<stdin>" if path == "-" else path
        return CommandError(f"{source}: {exc.message}")
    return exc


def format_limits(limits: common_pb2.Limits) -> str:
    """``$50/day, rpm 120, max parallel 4`` or ``none``."""
    parts = [out.format_budget(b) for b in limits.budgets]
    for field, label in (("rpm", "rpm"), ("rph", "rph"), ("tpm", "tpm"), ("max_parallel", "")):
        value = getattr(limits, field)
        if value:
            parts.append(f"{label or 'max parallel'} {value}")
    return ", ".join(parts) or "none"


def member_target(ws: common_pb2.Workspace) -> str:
    if ws.member_route:
        return f"route:{ws.member_route}"
    if ws.member_provider:
        return f"provider:{ws.member_provider}"
    return "- (the sign-in default target)"


def groups_text(groups: list[str]) -> str:
    if not groups:
        return "- (no developer signs in here)"
    return ", ".join("* (any signed-in user)" if g == "*" else g for g in groups)


def managed_settings_text(ws: common_pb2.Workspace) -> str:
    if not ws.managed_settings_checksum and not ws.managed_settings_json:
        return "none (developers get 404)"
    size = len(ws.managed_settings_json.encode("utf-8"))
    return (
        f"sha256 {ws.managed_settings_checksum[:16]}… ({size:,} bytes, updated "
        f"{out.format_time(ws.managed_settings_updated_at_ms)})"
    )


def fields(ws: common_pb2.Workspace) -> list[tuple[str, object]]:
    """The ``show`` lines of the sign-in settings."""
    return [
        ("sso groups", groups_text(list(ws.sso_groups))),
        (
            "sso priority",
            f"{ws.sso_priority}" if ws.sso_priority else f"{DEFAULT_PRIORITY} (default)",
        ),
        ("member limits", format_limits(ws.member_limits)),
        ("member target", member_target(ws)),
        ("managed settings", managed_settings_text(ws)),
    ]


def pretty_settings(ws: common_pb2.Workspace) -> str:
    """The managed settings as indented JSON (``--show-managed-settings``)."""
    if not ws.managed_settings_json:
        return "no managed settings"
    try:
        return json.dumps(json.loads(ws.managed_settings_json), indent=2, ensure_ascii=False)
    except json.JSONDecodeError:  # stored canonical, so always JSON; shown as is otherwise
        return ws.managed_settings_json
