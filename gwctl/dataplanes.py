"""``gwctl dataplanes list`` (and ``gwctl dataplane serve``, see gwctl.serve).

Shows which data plane runs which snapshot version: ``acked`` is the version the replica
confirmed, compared with the control plane's current one. ``breakers`` are the replica's
circuit breakers that are not closed (provider → ``open`` | ``half_open``), as last reported.
``quarantined`` counts the usage events the replica set aside because the control plane refused
them for good: they are in its spool directory's ``rejected.log``, not in the ledger.
"""

from __future__ import annotations

import argparse

from gwapi.v1 import discovery_pb2
from gwclient.client import GatewayClient
from gwctl import output as out
from gwctl import serve
from gwctl.cli import Subparsers, group, is_json, leaf


def register(subparsers: Subparsers) -> None:
    sub = group(
        subparsers,
        "dataplanes",
        "data planes: list them, or serve one",
        aliases=["dataplane", "dp"],
    )
    p = leaf(
        sub, "list", "connected data planes and the snapshot version each runs", aliases=["ls"]
    )
    p.set_defaults(handler=list_)
    serve.add_serve(
        sub, "run a data plane (see: gwctl dataplane serve --help)", serve.serve_dataplane
    )


def short(version: str) -> str:
    return version[:12] if version else "-"


def sync_state(dp: discovery_pb2.DataPlaneStatus, current: str) -> str:
    """``current`` when it runs the current snapshot; otherwise why not."""
    if dp.acked_version and dp.acked_version == current:
        return "current"
    if dp.nacked_version and dp.nacked_version == current:
        return "rejected"
    return "behind" if dp.acked_version else "none"


def breakers_text(dp: discovery_pb2.DataPlaneStatus) -> str:
    return ", ".join(f"{p}={state}" for p, state in sorted(dp.breakers.items())) or "-"


async def list_(client: GatewayClient, args: argparse.Namespace) -> int:
    response = await client.list_dataplanes()
    current = response.current_version
    if is_json(args):
        doc = out.message_dict(response)
        for item, dp in zip(doc["dataplanes"], response.dataplanes, strict=True):
            item["sync"] = sync_state(dp, current)
        out.print_json(doc)
        return 0
    print(f"current snapshot version: {short(current)}")
    out.print_table(
        [
            "NODE",
            "HOST",
            "LISTEN",
            "CONNECTED",
            "ACKED",
            "SYNC",
            "BREAKERS",
            "QUARANTINED",
            "LAST SEEN",
            "LAST ERROR",
        ],
        (
            [
                dp.node_id,
                dp.hostname or "-",
                dp.listen or "-",
                "yes" if dp.connected else "no",
                short(dp.acked_version),
                sync_state(dp, current),
                breakers_text(dp),
                str(dp.quarantined_events) if dp.quarantined_events else "-",
                out.format_time(dp.last_seen_ms),
                dp.last_error or "-",
            ]
            for dp in response.dataplanes
        ),
    )
    return 0
