"""Carrying out a ``gwctl apply`` plan against the control plane, change by change.

Key changes are pipelined and new keys created in bulk (:func:`execute`); every other change
runs alone, in the plan's order (see :mod:`gwctl.apply` for the order and what a failure leaves).
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from gwapi.v1 import admin_pb2
from gwclient.client import GatewayClient
from gwclient.errors import ClientError
from gwctl.apply_plan import ACTION_WORDS, Change, Plan
from gwctl.cli import CommandError
from gwctl.config_model import KeySpec


@dataclass
class CreatedKey:
    workspace: str
    name: str
    id: str
    secret: str


# Key calls in flight at once. The control plane serves them in worker threads under one GIL, so
# more in flight adds no throughput, only latency per call: at 16 × 500 keys a loaded control
# plane took more than the client's 10 s deadline per call (a 20,000-key apply failed midway).
KEY_CONCURRENCY = 4
KEYS_PER_CALL = 500  # new keys of one workspace per CreateKeys call


def _batches(changes: list[Change]) -> list[list[Change]]:
    """Consecutive key changes (each key once) form one batch, run concurrently; every other
    change is a batch of its own, run in order (later changes may depend on it)."""
    batches: list[list[Change]] = []
    names: set[str] = set()
    for change in changes:
        last = batches[-1] if batches else None
        if (
            change.kind == "key"
            and last is not None
            and last[0].kind == "key"
            and change.name not in names
        ):
            last.append(change)
        else:
            batches.append([change])
            names = set()
        names.add(change.name)
    return batches


def _units(batch: list[Change]) -> list[list[Change]]:
    """A batch's calls: new keys grouped by workspace (``KEYS_PER_CALL`` per call), every
    other change alone."""
    units: list[list[Change]] = []
    by_workspace: dict[str, list[Change]] = {}
    for change in batch:
        if change.kind == "key" and change.action == "+":
            group = by_workspace.setdefault(change.message.workspace, [])
            if len(group) == KEYS_PER_CALL:
                units.append(group)
                group = by_workspace[change.message.workspace] = []
            group.append(change)
        else:
            units.append([change])
    return units + [g for g in by_workspace.values() if g]


async def execute(
    client: GatewayClient,
    p: Plan,
    *,
    on_done: Callable[[Change, CreatedKey | None], None] = lambda c, k: None,
    concurrency: int = KEY_CONCURRENCY,
) -> list[CreatedKey]:
    """Apply ``p.changes`` in order; ``on_done`` is told after each one, in the plan's order
    (with a new key's secret, which the caller must show at once). Key changes are pipelined,
    ``concurrency`` calls at a time, and new keys go ``KEYS_PER_CALL`` per ``CreateKeys`` call
    (one transaction each; a control plane without it gets one ``CreateKey`` per key): a bulk
    apply publishes a few snapshot changes, not one per key. Raises :class:`CommandError`
    naming the first change that was refused and how many were done (every change that
    succeeded is reported to ``on_done`` first, so no new key's secret is lost)."""
    created: list[CreatedKey] = []
    done = 0
    gate = asyncio.Semaphore(max(1, concurrency))
    batch_rpc = [True]  # False once the control plane answered UNIMPLEMENTED

    async def run(unit: list[Change]) -> list[CreatedKey | None]:
        async with gate:
            if len(unit) > 1 or (unit[0].kind == "key" and unit[0].action == "+" and batch_rpc[0]):
                try:
                    return await _create_keys(client, unit)
                except ClientError as exc:
                    if exc.code != grpc.StatusCode.UNIMPLEMENTED:
                        raise
                    batch_rpc[0] = False
                return [await _execute_one(client, c, p) for c in unit]
            return [await _execute_one(client, unit[0], p)]

    for batch in _batches(p.changes):
        units = _units(batch)
        results = await asyncio.gather(*(run(u) for u in units), return_exceptions=True)
        outcome: dict[int, CreatedKey | ClientError | None] = {}
        for unit, result in zip(units, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, ClientError):
                raise result
            for i, change in enumerate(unit):
                outcome[id(change)] = result if isinstance(result, ClientError) else result[i]
        failed: tuple[Change, ClientError] | None = None
        for change in batch:
            got = outcome[id(change)]
            if isinstance(got, ClientError):
                failed = failed or (change, got)
                continue
            done += 1
            if got is not None:
                created.append(got)
            on_done(change, got)
        if failed is not None:
            change, exc = failed
            raise CommandError(
                f"{ACTION_WORDS[change.action]} {change.kind} {change.name} was refused: "
                f"{exc.message} ({done} of {len(p.changes)} change(s) applied; "
                "fix the file and apply again)"
            )
    return created


def _create_key_request(spec: KeySpec) -> admin_pb2.CreateKeyRequest:
    return admin_pb2.CreateKeyRequest(
        workspace=spec.workspace,
        name=spec.name,
        limits=spec.limits,
        provider=spec.provider,
        route=spec.route,
        models=list(spec.models),
    )


async def _create_keys(client: GatewayClient, unit: list[Change]) -> list[CreatedKey | None]:
    specs: list[KeySpec] = [c.message for c in unit]
    response = await client.create_keys(
        specs[0].workspace,
        [_create_key_request(spec) for spec in specs],
    )
    return [
        CreatedKey(spec.workspace, spec.name, r.key.id, r.secret)
        for spec, r in zip(specs, response.keys, strict=True)
    ]


async def _execute_one(client: GatewayClient, c: Change, p: Plan) -> CreatedKey | None:
    if c.kind in ("provider", "route", "workspace"):
        # The client's calls for these follow one naming: create_<kind>, update_<kind>, delete_<kind>.
        if c.action == "+":
            await getattr(client, f"create_{c.kind}")(c.message)
        elif c.action == "~":
            await getattr(client, f"update_{c.kind}")(c.message, c.paths)
        elif c.kind != "workspace":
            await getattr(client, f"delete_{c.kind}")(c.name)
        else:
            # When the file manages keys, this plan has already deleted the workspace's active
            # keys; force also removes its revoked ones (which apply does not manage). When it
            # does not, a workspace that still has keys is refused, as with `workspaces delete`.
            await client.delete_workspace(c.name, force=p.keys_managed)
    elif c.action == "+":
        spec: KeySpec = c.message
        response = await client.create_key(_create_key_request(spec))
        return CreatedKey(spec.workspace, spec.name, response.key.id, response.secret)
    elif c.action == "~":
        await client.update_key(c.message, c.paths)
    else:
        await client.delete_key(c.key_id)
    return None
