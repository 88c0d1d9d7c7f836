"""``gwctl apply -f gateway.yaml [--dry-run] [--prune] [--yes]`` — the whole gateway as one file.

The file (see :mod:`gwctl.config_file` and ``examples/gateway.yaml``) lists providers, routes,
workspaces and keys. ``apply`` reads what the control plane has, prints a plan like ``terraform
plan`` and, once confirmed (``--yes``, or ``y`` on a terminal), makes the control plane match::

    + route primary                      created
        targets: anthropic → bedrock (eu.anthropic.claude-sonnet-4-5-20250929-v1:0)
    ~ workspace platform                 updated, field by field
        limits.budgets: $50/day → $80/day
    - key platform/old-bot (key_…)       deleted: only with --prune

Rules:

* **Identity.** Providers, routes and workspaces by name; keys by workspace + name among the
  *active* keys (revoked ones are ignored; two active keys with one name are an error).
* **Order.** Creates and updates go providers → routes → workspaces → keys, so everything a
  change refers to exists first; deletes then go the other way (keys → workspaces → routes →
  providers), after the updates that stopped using what they delete.
* **Idempotent.** The file is normalised to the form the control plane stores (defaults filled
  in, budgets sorted…: the control plane itself says what it would store, or why it refuses,
  with ``Admin.Validate`` before anything is planned), so applying the same file twice plans
  nothing the second time: ``No changes.``
* **Declarative per field, managed per section.** A field missing from an item means its default
  (so deleting a line removes that setting). A section missing from the file (no ``keys:`` at
  all) is not looked at; ``keys: []`` manages keys and, with ``--prune``, deletes them all.
  Without ``--prune`` nothing is deleted; objects the file does not mention are listed as a note.
* **Sign-in.** A workspace's ``sso_groups``, ``sso_priority``, ``member_limits``,
  ``member_provider`` / ``member_route`` are compared like its other fields; its
  ``managed_settings_file`` by the checksum of the policy's canonical form (a reformatted file is
  no change).
* **Secrets.** ``apply`` never creates, rotates or shows a secret for an existing key: it only
  changes that key's limits, target (provider/route) and model allow-list. A key in the file that
  does not exist yet is created, and its secret (``gw-…``) is printed once, right after it is
  created — on stdout, as ``secret: gw-…`` (table output) or in ``created_keys[].key`` (``-o
  json``) — and can never be shown again. Key expiry is not part of the file (it is relative to
  creation): set it with ``gwctl keys update --expires``.
* ``--dry-run`` prints the plan and changes nothing. ``-f -`` reads the file from stdin.
* A provider's kind cannot change: the plan refuses (delete it, or give it a new name). Nor does
  ``apply`` move a provider that holds a stored key to another base URL (that would send the key
  to the new host): the plan refuses and says how to do it with ``gwctl providers update``.
* If a change is refused mid-way, what was done stays done and the error says how far it got;
  fix the file and apply again (the plan then shows only what is left).

This module is the command (reading the file, asking the control plane, confirming, printing);
the plan is :mod:`gwctl.apply_plan` (with :mod:`gwctl.apply_views`, how an object is compared
field by field) and carrying it out is :mod:`gwctl.apply_execute`.
"""

import argparse
from typing import Any

from gwclient.client import GatewayClient
from gwctl import output as out
from gwctl.apply_execute import CreatedKey, execute
from gwctl.apply_plan import Change, State, check_references, plan, render_plan
from gwctl.cli import CommandError, Subparsers, add_yes, confirm, is_json, leaf
from gwctl.config_file import load
from gwctl.config_model import ConfigError, GatewayConfig


def register(subparsers: Subparsers) -> None:
    p = leaf(
        subparsers,
        "apply",
        "make the gateway match a declarative file (prints a plan first)",
    )
    p.add_argument(
        "-f", "--file", required=True, metavar="FILE", help="gateway YAML file ('-' = stdin)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    p.add_argument(
        "--prune",
        action="store_true",
        help="also delete what the file does not mention (in the sections it has)",
    )
    add_yes(p, "apply without asking for confirmation")
    p.set_defaults(handler=run)


async def stored_forms(client: GatewayClient, config: GatewayConfig) -> None:
    """Replace the file's providers, routes and workspaces by the form the control plane would
    store (its defaults filled in, options normalised), asking it (``Admin.Validate``, which
    writes nothing); raises :class:`CommandError` listing every object it would refuse, and
    why. The plan then compares like with like, and gwctl holds none of the control plane's
    rules or defaults."""
    if not (config.providers or config.routes or config.workspaces):
        return
    results = await client.validate(config.providers, config.routes, config.workspaces)
    refused = [f"{r.kind} {r.name}: {r.error}" for r in results if r.error]
    if refused:
        raise CommandError(
            "the control plane would refuse the file (nothing was changed):\n  "
            + "\n  ".join(refused)
        )
    stored = {(r.kind, r.name): getattr(r, r.kind) for r in results}
    config.providers = [stored["provider", p.name] for p in config.providers]
    config.routes = [stored["route", r.name] for r in config.routes]
    config.workspaces = [stored["workspace", w.name] for w in config.workspaces]


async def fetch_state(client: GatewayClient, config: GatewayConfig) -> State:
    state = State()
    if "providers" in config.sections:
        state.providers = await client.list_providers()
    if "routes" in config.sections:
        state.routes = await client.list_routes()
    if "workspaces" in config.sections:
        state.workspaces = await client.list_workspaces()
    if "keys" in config.sections:
        state.keys = await client.list_keys("", include_revoked=False)
    return state


async def run(client: GatewayClient, args: argparse.Namespace) -> int:
    try:
        config = load(args.file)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    check_references(config)  # before asking the control plane, which would name only the first
    await stored_forms(client, config)
    state = await fetch_state(client, config)
    the_plan = plan(config, state, prune=args.prune)
    as_json = is_json(args)
    doc: dict[str, Any] = {
        "changes": [c.as_dict() for c in the_plan.changes],
        "unmanaged": the_plan.unmanaged if not args.prune else [],
        "applied": False,
        "created_keys": [],
    }
    if not as_json:
        print(render_plan(the_plan, prune=args.prune))
    if not the_plan.changes or args.dry_run:
        if as_json:
            out.print_json(doc)
        elif the_plan.changes:
            out.info("\ndry run: nothing was changed.")
        return 0
    n = len(the_plan.changes)
    deletes = the_plan.count("-")
    confirm(
        f"apply {n} change(s)" + (f", {deletes} of them delete(s)" if deletes else ""),
        args.yes,
    )

    def done(change: Change, key: CreatedKey | None) -> None:
        if key is not None:
            doc["created_keys"].append(
                {"workspace": key.workspace, "name": key.name, "id": key.id, "key": key.secret}
            )
        if as_json:
            return
        verb = {"+": "created", "~": "updated", "-": "deleted"}[change.action]
        print(f"{verb} {change.kind} {change.name}" + (f" ({key.id})" if key else ""))
        if key is not None:
            print(f"    secret: {key.secret}")
            out.info(
                f"    warning: the only time key {key.workspace}/{key.name}'s secret is shown: "
                "store it now."
            )

    try:
        await execute(client, the_plan, on_done=done)
    except CommandError:
        if as_json:
            out.print_json(doc)  # keys created before the failure: their secrets, once
        raise
    doc["applied"] = True
    if as_json:
        out.print_json(doc)
    else:
        print(
            f"\nApplied: {the_plan.count('+')} created, {the_plan.count('~')} updated, "
            f"{the_plan.count('-')} deleted."
        )
    return 0
