"""A stored provider key stays with its host, over real gRPC (SQLite and PostgreSQL): changing the
base URL of a provider that holds a stored key needs the key again or an explicit keep_secret,
so an edit (a mistake, or a stolen admin token) cannot send the key to a host of its choosing."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from grpc import StatusCode
from sqlmodel import select

from controlplane.secrets import MasterKey
from controlplane.server import Running, running
from controlplane.store.models.admin import AuditRow
from controlplane.store.models.config import ProviderRow
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from tests.controlplane.conftest import ADMIN_TOKEN, Clients, expect_error, make_settings

RAW_KEY = b"k" * 32
MASTER = base64.b64encode(RAW_KEY).decode()
STORED = "sk-ant-api03-stored-0123456789"
NEW = "sk-ant-api03-new-9876543210"
HOME = "https://api.anthropic.com"
ELSEWHERE = "https://collector.example.net"


@pytest.fixture
async def cp(db_url: str) -> AsyncIterator[Running]:
    async with running(make_settings(db_url, master_key=MASTER)) as r:
        yield r


@pytest.fixture
async def admin(cp: Running) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(cp.address) as channel:
        yield Clients(channel, ADMIN_TOKEN).admin


async def create(admin: Any, name: str = "claude", api_key: str = STORED) -> pb.Provider:
    return await admin.CreateProvider(
        apb.CreateProviderRequest(
            provider=pb.Provider(name=name, kind="anthropic", base_url=HOME), api_key=api_key
        )
    )


def update(admin: Any, paths: list[str], *, name: str = "claude", **kw: Any) -> Any:
    options = kw.pop("options", {})
    base_url = kw.pop("base_url", "")
    return admin.UpdateProvider(
        apb.UpdateProviderRequest(
            provider=pb.Provider(name=name, base_url=base_url, options=options),
            update_mask=FieldMask(paths=paths),
            **kw,
        )
    )


async def stored_key(cp: Running, name: str = "claude") -> tuple[str, str]:
    """(base_url, decrypted stored secret) as the database holds them."""
    row = await cp.state.db.read(lambda s: s.get(ProviderRow, name))
    return row.base_url, MasterKey(RAW_KEY).decrypt(name, row.secret_ciphertext)


async def test_moving_a_stored_key_to_another_host_is_refused(cp: Running, admin: Any) -> None:
    await create(admin)
    details = await expect_error(
        update(admin, ["base_url"], base_url=ELSEWHERE),
        StatusCode.FAILED_PRECONDITION,
        "provider 'claude' has a stored key; changing its base URL",
    )
    assert f"'{HOME}' → '{ELSEWHERE}'" in details
    assert "would send that key to the new host" in details
    assert "--api-key-stdin" in details and "--keep-secret" in details
    assert STORED not in details
    assert await stored_key(cp) == (HOME, STORED)  # nothing changed
    # Other settings, and the same URL written differently, need nothing more.
    await update(admin, ["options.timeout_read_s"], options={"timeout_read_s": "30"})
    await update(admin, ["base_url"], base_url=HOME + "/")
    assert await stored_key(cp) == (HOME, STORED)


async def test_keep_secret_moves_it_knowingly_and_the_audit_shows_it(
    cp: Running, admin: Any
) -> None:
    created = await create(admin)
    moved = await update(admin, ["base_url"], base_url=ELSEWHERE, keep_secret=True)
    assert moved.base_url == ELSEWHERE and moved.has_secret
    assert moved.secret_rotated_at_ms == created.secret_rotated_at_ms  # the same key
    assert await stored_key(cp) == (ELSEWHERE, STORED)
    rows = await cp.state.db.read(
        lambda s: s.exec(select(AuditRow).where(AuditRow.action == "provider.update")).all()
    )
    (row,) = rows
    before, after = json.loads(row.before_json), json.loads(row.after_json)
    assert (before["base_url"], after["base_url"]) == (HOME, ELSEWHERE)
    assert STORED not in row.before_json + row.after_json


async def test_a_new_key_may_come_with_the_new_host(cp: Running, admin: Any) -> None:
    created = await create(admin)
    moved = await update(admin, ["base_url"], base_url=ELSEWHERE, api_key=NEW)
    assert moved.base_url == ELSEWHERE and moved.has_secret
    assert moved.secret_rotated_at_ms >= created.secret_rotated_at_ms
    assert await stored_key(cp) == (ELSEWHERE, NEW)
    # A key that this kind cannot take is refused like at creation, and nothing moves.
    await expect_error(
        update(admin, ["base_url"], base_url=HOME, api_key="not a key"),
        StatusCode.INVALID_ARGUMENT,
        "API key contains spaces",
    )
    assert await stored_key(cp) == (ELSEWHERE, NEW)


async def test_providers_without_a_stored_key_move_freely(admin: Any) -> None:
    await admin.CreateProvider(
        apb.CreateProviderRequest(
            provider=pb.Provider(
                name="by-env", kind="anthropic", base_url=HOME, api_key_env="ANTHROPIC_API_KEY"
            )
        )
    )
    moved = await update(admin, ["base_url"], name="by-env", base_url=ELSEWHERE)
    assert moved.base_url == ELSEWHERE and not moved.has_secret
