"""Logged headers and bodies: the workspace policy (validated, updatable), compressed storage
apart from the ledger, GetLog (admin only), nothing stored under ``none``, retention purge."""

from __future__ import annotations

import asyncio
import zlib

from google.protobuf.field_mask_pb2 import FieldMask
from grpc import StatusCode
from sqlalchemy import MetaData, select

from controlplane.store.models.usage import RequestLogBodyRow
from controlplane.usage.request_logs import DAY_MS, purge, purge_forever
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import telemetry_pb2 as tpb
from tests.controlplane.conftest import Clients, expect_error
from tests.controlplane.snapshots.reference_builder import read_snapshot

MARKER = "quokka-marker-51e7"


async def make_ws(admin, name: str, policy: str, **kw: int) -> pb.Workspace:
    return await admin.CreateWorkspace(
        apb.CreateWorkspaceRequest(workspace=pb.Workspace(name=name, log_bodies=policy, **kw))
    )


def logged_event(rid: str, ws: str) -> tpb.UsageEvent:
    body = ('{"messages":[{"role":"user","content":"' + MARKER + '"}]}').encode()
    resp = f'event: content_block_delta\ndata: {{"text":"{MARKER}"}}\n\n'.encode()
    return tpb.UsageEvent(
        request_id=rid,
        time_ms=1_000,
        workspace=ws,
        key_id="key_a",
        status=200,
        request_headers={"authorization": "[redacted]", "x-app": f"cli-{MARKER}"},
        request_body=body,
        response_body=resp,
        request_body_size=len(body),
        response_body_size=len(resp),
        bodies_truncated=True,
    )


async def report(dp: Clients, events: list[tpb.UsageEvent]) -> None:
    await dp.telemetry.ReportUsage(tpb.ReportUsageRequest(node_id="dp", events=events, last_seq=1))


def db_contains(engine, needle: bytes) -> list[str]:
    """Every table's every column, as text and (for bytes) decompressed too."""
    hits = []
    meta = MetaData()
    meta.reflect(bind=engine)
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    blobs = []
                    if isinstance(value, str):
                        blobs.append(value.encode())
                    elif isinstance(value, bytes | memoryview):
                        raw = bytes(value)
                        blobs.append(raw)
                        try:
                            blobs.append(zlib.decompress(raw))
                        except zlib.error:
                            pass
                    if any(needle in b for b in blobs):
                        hits.append(table.name)
    return hits


async def test_policy_defaults_validation_and_update(cp, admin) -> None:
    ws = await make_ws(admin, "w-default", "")
    assert (ws.log_bodies, ws.log_body_max_bytes, ws.log_retention_days) == ("none", 262144, 30)
    await expect_error(make_ws(admin, "w-bad", "everything"), StatusCode.INVALID_ARGUMENT, "none")
    await expect_error(
        make_ws(admin, "w-bad2", "full", log_retention_days=-1),
        StatusCode.INVALID_ARGUMENT,
        "log_retention_days",
    )
    updated = await admin.UpdateWorkspace(
        apb.UpdateWorkspaceRequest(
            workspace=pb.Workspace(
                name="w-default", log_bodies="full", log_body_max_bytes=1000, log_retention_days=7
            ),
            update_mask=FieldMask(paths=["log_bodies", "log_body_max_bytes", "log_retention_days"]),
        )
    )
    assert (updated.log_bodies, updated.log_body_max_bytes, updated.log_retention_days) == (
        "full",
        1000,
        7,
    )
    snap = cp.state.db.read_sync(read_snapshot)
    (w,) = [w for w in snap.workspaces if w.name == "w-default"]
    assert (w.log_bodies, w.log_body_max_bytes, w.log_retention_days) == ("full", 1000, 7)


async def test_full_bodies_stored_compressed_and_returned(cp, admin, dataplane, admin_clients):
    await make_ws(admin, "w-full", "full")
    await report(dataplane, [logged_event("r-full", "w-full")])
    got = await admin_clients.telemetry.GetLog(tpb.GetLogRequest(request_id="r-full"))
    sent = logged_event("r-full", "w-full")
    assert got.request_body == sent.request_body
    assert got.response_body == sent.response_body
    assert dict(got.request_headers) == dict(sent.request_headers)
    assert got.bodies_truncated and got.request_body_size == len(sent.request_body)
    # Compressed in its own table; the ledger holds no body text.
    hits = db_contains(cp.state.db.engine, MARKER.encode())
    assert set(hits) == {"request_log_body"}, hits
    row = cp.state.db.read_sync(lambda s: s.get(RequestLogBodyRow, "r-full"))
    assert zlib.decompress(row.request_body_z) == sent.request_body
    assert MARKER.encode() not in row.request_body_z
    # Replays store nothing twice; TailLogs never carries bodies.
    await report(dataplane, [logged_event("r-full", "w-full")])
    tail = [e async for e in admin_clients.telemetry.TailLogs(tpb.TailLogsRequest(limit=5))]
    assert [e.request_id for e in tail] == ["r-full"]
    assert not tail[0].request_body and not tail[0].request_headers


async def test_none_stores_nothing_anywhere(cp, admin, dataplane, admin_clients) -> None:
    # A data plane on a stale snapshot still sends bodies: the control plane drops them.
    await make_ws(admin, "w-none", "none")
    await report(dataplane, [logged_event("r-none", "w-none")])
    got = await admin_clients.telemetry.GetLog(tpb.GetLogRequest(request_id="r-none"))
    assert got.request_id == "r-none"
    assert not got.request_body and not got.response_body and not got.request_headers
    assert db_contains(cp.state.db.engine, MARKER.encode()) == []
    assert cp.state.db.read_sync(lambda s: s.get(RequestLogBodyRow, "r-none")) is None


async def test_metadata_keeps_headers_never_bodies(cp, admin, dataplane, admin_clients) -> None:
    await make_ws(admin, "w-meta", "metadata")
    await report(dataplane, [logged_event("r-meta", "w-meta")])
    got = await admin_clients.telemetry.GetLog(tpb.GetLogRequest(request_id="r-meta"))
    assert got.request_headers["authorization"] == "[redacted]"
    assert got.request_body == b"" and got.response_body == b""
    assert got.request_body_size > 0


async def test_get_log_is_admin_only_and_not_found(channel, admin_clients, dataplane) -> None:
    await expect_error(
        dataplane.telemetry.GetLog(tpb.GetLogRequest(request_id="x")),
        StatusCode.UNAUTHENTICATED,
    )
    await expect_error(
        Clients(channel, None).telemetry.GetLog(tpb.GetLogRequest(request_id="x")),
        StatusCode.UNAUTHENTICATED,
    )
    await expect_error(
        admin_clients.telemetry.GetLog(tpb.GetLogRequest(request_id="nope")),
        StatusCode.NOT_FOUND,
        "not found",
    )


async def test_retention_purge_with_injected_clock(cp, admin, dataplane) -> None:
    await make_ws(admin, "w-short", "full", log_retention_days=1)
    await make_ws(admin, "w-long", "full", log_retention_days=10)
    await report(dataplane, [logged_event("r-s", "w-short"), logged_event("r-l", "w-long")])
    db = cp.state.db
    created = db.read_sync(lambda s: s.get(RequestLogBodyRow, "r-s")).created_ms

    def ids() -> set[str]:
        return set(db.read_sync(lambda s: s.exec(select(RequestLogBodyRow.request_id)).scalars()))

    assert db.run_sync(lambda s: purge(s, created + DAY_MS - 1)) == 0
    assert db.run_sync(lambda s: purge(s, created + DAY_MS + 1)) == 1
    assert ids() == {"r-l"}
    # The periodic task purges at once on start.
    task = asyncio.create_task(purge_forever(db, 3600, clock=lambda: created + 11 * DAY_MS))
    for _ in range(100):
        if not ids():
            break
        await asyncio.sleep(0.02)
    task.cancel()
    assert ids() == set()
