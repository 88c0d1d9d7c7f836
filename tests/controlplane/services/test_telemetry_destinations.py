"""Telemetry destinations over the real Admin API (SQLite and PostgreSQL): add / list / remove,
header values encrypted at rest and only ever sent to data planes (decrypted, in the snapshot),
audited by name, readable refusals, and master-key rotation."""

from __future__ import annotations

import base64
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from controlplane.catalog import telemetry_destinations as destinations
from controlplane.secrets import MasterKey
from controlplane.server import Running, running
from controlplane.store.db import Database
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import discovery_pb2 as dpb
from tests.controlplane.conftest import (
    ADMIN_TOKEN,
    DATAPLANE_TOKEN,
    Clients,
    expect_error,
    make_settings,
)

MASTER = base64.b64encode(b"m" * 32).decode()
OTHER = base64.b64encode(b"o" * 32).decode()
API_KEY = "otlp-collector-secret-0123456789abcdef"


def add_request(name: str = "honeycomb", **kw: Any) -> apb.AddTelemetryDestinationRequest:
    dest = apb.TelemetryDestination(
        name=name,
        url=kw.pop("url", "https://api.honeycomb.example.com/"),
        signals=kw.pop("signals", []),
    )
    return apb.AddTelemetryDestinationRequest(
        destination=dest, headers=kw.pop("headers", {"X-Honeycomb-Team": API_KEY})
    )


@pytest.fixture
async def cp(db_url: str) -> Any:
    async with running(make_settings(db_url, master_key=MASTER)) as r:
        yield r


async def watch_snapshot(address: str) -> dpb.Snapshot:
    async with grpc.aio.insecure_channel(address) as ch:
        call = Clients(ch, DATAPLANE_TOKEN).discovery.Watch()
        await call.write(dpb.WatchRequest(node_id="dp-tel"))
        response = await call.read()
        call.cancel()
        return response.snapshot


def stored(r: Running) -> list[tuple[str, str, str]]:
    def q(s: Any) -> list[tuple[str, str, str]]:
        rows = s.execute(
            text("SELECT name, headers_ciphertext, header_names_json FROM telemetry_destination")
        ).all()
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    return r.state.db.read_sync(q)


async def test_add_list_remove_and_the_snapshot(cp: Running) -> None:
    async with grpc.aio.insecure_channel(cp.address) as ch:
        admin = Clients(ch, ADMIN_TOKEN).admin
        created = await admin.AddTelemetryDestination(add_request(signals=["logs", "metrics"]))
        assert created.name == "honeycomb"
        assert created.url == "https://api.honeycomb.example.com"
        assert list(created.header_names) == ["x-honeycomb-team"]
        assert list(created.signals) == ["metrics", "logs"]  # canonical order
        assert API_KEY not in str(created)
        await admin.AddTelemetryDestination(
            add_request("local", url="http://127.0.0.1:4318", headers={})
        )
        listed = await admin.ListTelemetryDestinations(apb.ListTelemetryDestinationsRequest())
        assert [d.name for d in listed.destinations] == ["honeycomb", "local"]
        assert list(listed.destinations[1].signals) == ["metrics", "logs", "traces"]
        assert API_KEY not in str(listed)

        # At rest: encrypted, never the plaintext.
        rows = {name: (ct, names) for name, ct, names in stored(cp)}
        assert rows["honeycomb"][0].startswith("v1:") and API_KEY not in rows["honeycomb"][0]
        assert rows["local"][0] == ""

        # Data planes get the values, decrypted, in the snapshot.
        snap = await watch_snapshot(cp.address)
        by_name = {d.name: d for d in snap.telemetry_destinations}
        assert dict(by_name["honeycomb"].headers) == {"x-honeycomb-team": API_KEY}
        assert list(by_name["honeycomb"].signals) == ["metrics", "logs"]
        assert by_name["local"].url == "http://127.0.0.1:4318"

        # Audited by name, never with a header value.
        audit = await admin.ListAudit(apb.ListAuditRequest(resource_kind="telemetry_destination"))
        assert [e.action for e in audit.events] == [
            "telemetry_destination.add",
            "telemetry_destination.add",
        ]
        assert all(API_KEY not in e.after_json for e in audit.events)
        assert "x-honeycomb-team" in audit.events[-1].after_json

        await admin.RemoveTelemetryDestination(
            apb.RemoveTelemetryDestinationRequest(name="honeycomb")
        )
        snap = await watch_snapshot(cp.address)
        assert [d.name for d in snap.telemetry_destinations] == ["local"]
        audit = await admin.ListAudit(apb.ListAuditRequest(resource_kind="telemetry_destination"))
        assert audit.events[0].action == "telemetry_destination.remove"
        await expect_error(
            admin.RemoveTelemetryDestination(
                apb.RemoveTelemetryDestinationRequest(name="honeycomb")
            ),
            grpc.StatusCode.NOT_FOUND,
            "not found",
        )


@pytest.mark.parametrize(
    ("request_kw", "code", "text_"),
    [
        ({"url": "http://otel.example.com"}, grpc.StatusCode.INVALID_ARGUMENT, "https only"),
        ({"url": "https://u:p@otel.example.com"}, grpc.StatusCode.INVALID_ARGUMENT, "user:pass"),
        ({"url": "https://otel.example.com/?k=1"}, grpc.StatusCode.INVALID_ARGUMENT, "query"),
        ({"url": "ftp://otel.example.com"}, grpc.StatusCode.INVALID_ARGUMENT, "https://host"),
        ({"url": ""}, grpc.StatusCode.INVALID_ARGUMENT, "url is required"),
        ({"signals": ["metrics", "spans"]}, grpc.StatusCode.INVALID_ARGUMENT, "unknown signal"),
        ({"headers": {"Content-Type": "x"}}, grpc.StatusCode.INVALID_ARGUMENT, "set by the data"),
        ({"headers": {"x-key": ""}}, grpc.StatusCode.INVALID_ARGUMENT, "empty value"),
        ({"headers": {"x-key": "a\r\nb"}}, grpc.StatusCode.INVALID_ARGUMENT, "line break"),
        ({"headers": {"bad name": "v"}}, grpc.StatusCode.INVALID_ARGUMENT, "header name"),
    ],
)
async def test_refusals_are_readable(
    cp: Running, request_kw: dict[str, Any], code: grpc.StatusCode, text_: str
) -> None:
    async with grpc.aio.insecure_channel(cp.address) as ch:
        admin = Clients(ch, ADMIN_TOKEN).admin
        details = await expect_error(
            admin.AddTelemetryDestination(add_request(**request_kw)), code, text_
        )
        assert "a\r\nb" not in details


async def test_duplicate_and_bad_names(cp: Running) -> None:
    async with grpc.aio.insecure_channel(cp.address) as ch:
        admin = Clients(ch, ADMIN_TOKEN).admin
        await admin.AddTelemetryDestination(add_request())
        await expect_error(
            admin.AddTelemetryDestination(add_request()),
            grpc.StatusCode.ALREADY_EXISTS,
            "already exists",
        )
        await expect_error(
            admin.AddTelemetryDestination(add_request("Not A Slug")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid destination name",
        )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_headers_need_a_master_key(db_url: str) -> None:
    async with running(make_settings(db_url)) as r, grpc.aio.insecure_channel(r.address) as ch:
        admin = Clients(ch, ADMIN_TOKEN).admin
        details = await expect_error(
            admin.AddTelemetryDestination(add_request()),
            grpc.StatusCode.FAILED_PRECONDITION,
            "no master key",
        )
        assert "TOLLGATE_MASTER_KEY" in details and API_KEY not in details
        # Without headers no secret is stored: fine without a master key.
        await admin.AddTelemetryDestination(add_request(headers={}))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_master_key_rotation_reencrypts_header_values(db_url: str) -> None:
    async with running(make_settings(db_url, master_key=OTHER)) as r:
        async with grpc.aio.insecure_channel(r.address) as ch:
            await Clients(ch, ADMIN_TOKEN).admin.AddTelemetryDestination(add_request())
    # Restart with a new master key and the old one as previous: re-encrypted at start.
    async with running(make_settings(db_url, master_key=MASTER, previous_master_key=OTHER)) as r:
        [(_, ciphertext, _)] = stored(r)
        assert ciphertext.split(":")[1] == MasterKey(b"m" * 32).key_id
        snap = await watch_snapshot(r.address)
        assert dict(snap.telemetry_destinations[0].headers) == {"x-honeycomb-team": API_KEY}
        async with grpc.aio.insecure_channel(r.address) as ch:
            audit = await Clients(ch, ADMIN_TOKEN).admin.ListAudit(
                apb.ListAuditRequest(resource_kind="telemetry_destination")
            )
        assert audit.events[0].action == "telemetry_destination.reencrypt_secret"
        assert API_KEY not in audit.events[0].after_json
    # Started with only a third key: the destination is left out of the snapshot, with a
    # warning, and everything else keeps flowing.
    async with running(make_settings(db_url, master_key=base64.b64encode(b"z" * 32).decode())) as r:
        snap = await watch_snapshot(r.address)
        assert list(snap.telemetry_destinations) == []


def test_database_has_no_plaintext(db_url: str) -> None:
    db = Database(db_url)
    db.create_all()
    master = MasterKey(b"m" * 32)
    try:
        db.run_sync(
            lambda s: destinations.add(
                s,
                apb.TelemetryDestination(name="d", url="https://c.example.com"),
                {"Authorization": "Bearer " + API_KEY},
                1,
                master,
            )
        )
        dump = db.read_sync(
            lambda s: str(s.execute(text("SELECT * FROM telemetry_destination")).all())
        )
        assert API_KEY not in dump
        entries = db.read_sync(lambda s: destinations.snapshot_entries(s, master))
        assert dict(entries[0].headers) == {"authorization": "Bearer " + API_KEY}
        # Bound to its name: a ciphertext copied to another destination does not decrypt.
        warnings: list[str] = []
        db.run_sync(
            lambda s: s.execute(
                text(
                    "INSERT INTO telemetry_destination (name, url, headers_ciphertext, "
                    "header_names_json, signals_json, created_at_ms) SELECT 'copy', url, "
                    "headers_ciphertext, header_names_json, signals_json, 2 "
                    "FROM telemetry_destination WHERE name = 'd'"
                )
            )
        )
        entries = db.read_sync(lambda s: destinations.snapshot_entries(s, master, warnings))
        assert [e.name for e in entries] == ["d"]
        assert warnings and "copy" in warnings[0]
    finally:
        db.dispose()
