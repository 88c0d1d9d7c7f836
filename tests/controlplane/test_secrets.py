"""Provider secrets at rest: the envelope, the master key's configuration, and the Admin API
(create with ``api_key``, RotateProviderSecret) through a real control plane, on both databases.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import text

from controlplane.secrets import (
    CorruptSecret,
    MasterKey,
    WrongMasterKey,
    envelope_key_id,
    load_master_key,
)
from controlplane.server import Running, running
from controlplane.settings import Settings
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from tests.controlplane.conftest import ADMIN_TOKEN, Clients, make_settings

KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()
SECRET = "sk-ant-api03-secret-value-0123456789abcdef"
SECRET_2 = "sk-ant-api03-rotated-value-fedcba9876543210"


# -- the envelope -------------------------------------------------------------------------------


def test_round_trip_with_a_fresh_nonce_each_time() -> None:
    key = MasterKey(b"k" * 32)
    one, two = key.encrypt("anthropic", SECRET), key.encrypt("anthropic", SECRET)
    assert one != two  # random nonce: equal secrets do not look equal at rest
    assert one.startswith(f"v1:{key.key_id}:") and SECRET not in one
    assert key.decrypt("anthropic", one) == SECRET == key.decrypt("anthropic", two)


def test_a_ciphertext_cannot_move_to_another_provider() -> None:
    key = MasterKey(b"k" * 32)
    stolen = key.encrypt("cheap", SECRET)
    with pytest.raises(CorruptSecret, match="'premium' cannot be decrypted"):
        key.decrypt("premium", stolen)


def test_tampering_is_detected() -> None:
    key = MasterKey(b"k" * 32)
    env = key.encrypt("p", SECRET)
    raw = bytearray(base64.b64decode(env.split(":", 2)[2]))
    raw[-1] ^= 1
    with pytest.raises(CorruptSecret):
        key.decrypt("p", f"v1:{key.key_id}:{base64.b64encode(bytes(raw)).decode()}")
    for bad in ("", "plaintext", f"v2:{key.key_id}:abc", f"v1:{key.key_id}:!!!"):
        with pytest.raises(CorruptSecret):
            key.decrypt("p", bad)


def test_a_wrong_master_key_names_both_key_ids() -> None:
    a, b = MasterKey(b"A" * 32), MasterKey(b"B" * 32)
    env = a.encrypt("anthropic", SECRET)
    assert envelope_key_id(env) == a.key_id != b.key_id
    with pytest.raises(WrongMasterKey) as info:
        b.decrypt("anthropic", env)
    message = str(info.value)
    assert (
        f"master key id {a.key_id}" in message and f"this control plane has {b.key_id}" in message
    )
    assert "TOLLGATE_MASTER_KEY" in message and SECRET not in message


def test_the_key_never_shows() -> None:
    key = load_master_key(KEY_A)
    assert key is not None
    assert KEY_A not in repr(key) and repr(key) == f"MasterKey(id={key.key_id})"
    settings = Settings(admin_token="t", master_key=KEY_A)
    assert KEY_A not in repr(settings)


# -- configuration ------------------------------------------------------------------------------


def test_no_master_key_configured_is_none() -> None:
    assert load_master_key("", "") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"short").decode(), "decodes to 5 bytes"),
    ],
)
def test_bad_master_key_values(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        load_master_key(value)
    assert "TOLLGATE_MASTER_KEY" in str(info.value)


def test_master_key_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text(KEY_A + "\n")
    path.chmod(0o644)
    with pytest.raises(ValueError, match=r"readable by other users \(mode 0644\).*chmod 600"):
        load_master_key(file=str(path))
    path.chmod(0o600)
    key = load_master_key(file=str(path))
    assert key is not None and key.key_id == MasterKey(b"A" * 32).key_id


def test_master_key_file_missing_or_both_given(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the master key file"):
        load_master_key(file=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="configure exactly one"):
        load_master_key(KEY_A, str(tmp_path / "nope"))


def test_settings_read_the_environment_and_flags(tmp_path: Path) -> None:
    s = Settings.from_args(
        ["--master-key-file", "/k", "--tls-cert", "/c", "--tls-key", "/p"],
        env={"TOLLGATE_ADMIN_TOKEN": "t", "TOLLGATE_MASTER_KEY": KEY_A},
    )
    assert (s.master_key, s.master_key_file, s.tls_cert, s.tls_key) == (KEY_A, "/k", "/c", "/p")
    with pytest.raises(ValueError, match="both --tls-cert and --tls-key"):
        Settings(admin_token="t", dataplane_token="d", tls_cert="/c").validate()


async def test_a_bad_master_key_stops_the_start(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="not valid base64"):
        async with running(make_settings(sqlite_url, master_key="nope!")):
            pass


# -- through the Admin API ----------------------------------------------------------------------


@pytest.fixture
async def keyed_cp(db_url: str) -> AsyncIterator[Running]:
    async with running(make_settings(db_url, master_key=KEY_A)) as r:
        yield r


@pytest.fixture
async def keyed_admin(keyed_cp: Running) -> AsyncIterator[Clients]:
    async with grpc.aio.insecure_channel(keyed_cp.address) as ch:
        yield Clients(ch, ADMIN_TOKEN)


def _anthropic(name: str = "anthropic", **kw: Any) -> pb.Provider:
    return pb.Provider(name=name, kind="anthropic", base_url="http://127.0.0.1:9", **kw)


def _stored_columns(cp: Running, name: str) -> tuple[str, int]:
    def q(s):
        row = s.execute(
            text("SELECT secret_ciphertext, secret_rotated_at_ms FROM provider WHERE name = :n"),
            {"n": name},
        ).one()
        return str(row[0]), int(row[1])

    return cp.state.db.read_sync(q)


async def test_create_with_a_secret_stores_only_ciphertext(
    keyed_cp: Running, keyed_admin: Clients
) -> None:
    prov = await keyed_admin.admin.CreateProvider(
        apb.CreateProviderRequest(provider=_anthropic(), api_key=SECRET)
    )
    assert prov.has_secret and prov.secret_rotated_at_ms > 0
    assert SECRET.encode() not in prov.SerializeToString()
    got = await keyed_admin.admin.GetProvider(apb.GetProviderRequest(name="anthropic"))
    listed = await keyed_admin.admin.ListProviders(apb.ListProvidersRequest())
    assert got.has_secret and SECRET.encode() not in listed.SerializeToString()

    ciphertext, rotated = _stored_columns(keyed_cp, "anthropic")
    assert ciphertext.startswith("v1:") and SECRET not in ciphertext
    assert rotated == prov.secret_rotated_at_ms
    # The snapshot, and only the snapshot, carries it decrypted.
    snap = keyed_cp.state.cache.current
    assert snap is not None
    assert [(s.provider, s.api_key) for s in snap.secrets] == [("anthropic", SECRET)]


async def test_rotation_publishes_a_new_version_and_removal_falls_back(
    keyed_cp: Running, keyed_admin: Clients
) -> None:
    await keyed_admin.admin.CreateProvider(
        apb.CreateProviderRequest(provider=_anthropic(api_key_env="ANTHROPIC_API_KEY"))
    )
    v0 = keyed_cp.state.cache.version
    rotated = await keyed_admin.admin.RotateProviderSecret(
        apb.RotateProviderSecretRequest(name="anthropic", api_key=SECRET)
    )
    v1 = keyed_cp.state.cache.version
    again = await keyed_admin.admin.RotateProviderSecret(
        apb.RotateProviderSecretRequest(name="anthropic", api_key=SECRET_2)
    )
    v2 = keyed_cp.state.cache.version
    assert rotated.has_secret and again.secret_rotated_at_ms >= rotated.secret_rotated_at_ms
    assert len({v0, v1, v2}) == 3
    snap = keyed_cp.state.cache.current
    assert snap is not None and [s.api_key for s in snap.secrets] == [SECRET_2]

    removed = await keyed_admin.admin.RotateProviderSecret(
        apb.RotateProviderSecretRequest(name="anthropic", api_key="")
    )
    assert not removed.has_secret and removed.api_key_env == "ANTHROPIC_API_KEY"
    snap = keyed_cp.state.cache.current
    assert snap is not None and len(snap.secrets) == 0
    assert _stored_columns(keyed_cp, "anthropic") == ("", 0)

    # Audited in the same transaction: whether a key is stored, never the key.
    audit = await keyed_admin.admin.ListAudit(apb.ListAuditRequest(resource_kind="provider"))
    rotations = [e for e in audit.events if e.action == "provider.rotate_secret"]
    assert len(rotations) == 3 and {e.method for e in rotations} == {"RotateProviderSecret"}
    assert sorted('"has_secret": true' in e.after_json for e in rotations) == [False, True, True]
    assert SECRET.encode() not in audit.SerializeToString()
    assert SECRET_2.encode() not in audit.SerializeToString()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keyed_admin.admin.RotateProviderSecret(
            apb.RotateProviderSecretRequest(name="anthropic", api_key="")
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no stored secret" in (info.value.details() or "")


@pytest.mark.parametrize(
    ("provider", "api_key", "needle"),
    [
        (
            pb.Provider(name="br", kind="bedrock", options={"region": "us-east-1"}),
            SECRET,
            "ACCESS_KEY_ID:SECRET_ACCESS_KEY",
        ),
        (
            pb.Provider(name="br", kind="bedrock", options={"region": "us-east-1"}),
            "AKIDLOWERcase0000:secret",
            "access-key pair",
        ),
        (pb.Provider(name="vx", kind="vertex", options={"project": "p"}), SECRET, "Google"),
        (pb.Provider(name="sim", kind="simulator"), SECRET, "needs no credential"),
        (_anthropic(options={"auth": "passthrough"}), SECRET, "passthrough"),
        (_anthropic(), "sk-ant with spaces", "spaces"),
        (_anthropic(), "   ", "empty"),
    ],
)
async def test_secrets_are_refused_where_they_mean_nothing(
    keyed_admin: Clients, provider: pb.Provider, api_key: str, needle: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keyed_admin.admin.CreateProvider(
            apb.CreateProviderRequest(provider=provider, api_key=api_key)
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in (info.value.details() or "")
    assert api_key.strip() == "" or api_key not in (info.value.details() or "")


async def test_bedrock_takes_an_access_key_pair(keyed_cp: Running, keyed_admin: Clients) -> None:
    pair = "AKIDEXAMPLE000000001:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    prov = await keyed_admin.admin.CreateProvider(
        apb.CreateProviderRequest(
            provider=pb.Provider(
                name="br",
                kind="bedrock",
                options={"region": "us-east-1", "profile": "fallback"},
            ),
            api_key=pair,
        )
    )
    assert prov.has_secret
    snap = keyed_cp.state.cache.current
    assert snap is not None and [(s.provider, s.api_key) for s in snap.secrets] == [("br", pair)]


async def test_passthrough_cannot_be_switched_on_over_a_stored_key(keyed_admin: Clients) -> None:
    await keyed_admin.admin.CreateProvider(
        apb.CreateProviderRequest(provider=_anthropic(), api_key=SECRET)
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keyed_admin.admin.UpdateProvider(
            apb.UpdateProviderRequest(
                provider=_anthropic(options={"auth": "passthrough"}),
                update_mask=FieldMask(paths=["options.auth"]),
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "--remove-secret" in (info.value.details() or "")


async def test_without_a_master_key_storing_is_failed_precondition(
    cp: Running, admin_clients: Clients
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await admin_clients.admin.CreateProvider(
            apb.CreateProviderRequest(provider=_anthropic(), api_key=SECRET)
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = info.value.details() or ""
    assert "no master key" in details and "TOLLGATE_MASTER_KEY" in details
    assert "--api-key-env" in details
    # Environment references keep working without one.
    prov = await admin_clients.admin.CreateProvider(
        apb.CreateProviderRequest(provider=_anthropic(api_key_env="ANTHROPIC_API_KEY"))
    )
    assert not prov.has_secret


async def test_another_master_key_leaves_the_secret_out_and_says_why(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(make_settings(sqlite_url, master_key=KEY_A)) as r:
        async with grpc.aio.insecure_channel(r.address) as ch:
            admin = Clients(ch, ADMIN_TOKEN).admin
            await admin.CreateProvider(
                apb.CreateProviderRequest(provider=_anthropic(), api_key=SECRET)
            )
            await admin.CreateProvider(
                apb.CreateProviderRequest(provider=_anthropic("other"), api_key=SECRET_2)
            )
    key_a, key_b = load_master_key(KEY_A), load_master_key(KEY_B)
    assert key_a is not None and key_b is not None
    async with running(make_settings(sqlite_url, master_key=KEY_B)) as r:
        snap = r.state.cache.current
        assert snap is not None and len(snap.secrets) == 0  # never a wrong key upstream
        assert {p.name for p in snap.providers if p.has_secret} == {"anthropic", "other"}
        problems = " ".join(r.state.cache.secret_problems)
        assert f"master key id {key_a.key_id}; this control plane has {key_b.key_id}" in problems
        async with grpc.aio.insecure_channel(r.address) as ch:
            admin = Clients(ch, ADMIN_TOKEN).admin
            # Rotating under the new key is the way out, and needs no old plaintext.
            await admin.RotateProviderSecret(
                apb.RotateProviderSecretRequest(name="anthropic", api_key=SECRET_2)
            )
        snap = r.state.cache.current
        assert snap is not None and [s.provider for s in snap.secrets] == ["anthropic"]
    logged = caplog.text
    assert "secret left out of the snapshot" in logged
    assert SECRET not in logged and SECRET_2 not in logged and KEY_A not in logged


def test_generated_keys_load(tmp_path: Path) -> None:
    path = tmp_path / "k"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, MasterKey.generate_text().encode())
    os.close(fd)
    assert load_master_key(file=str(path)) is not None


def test_provider_rows_written_without_the_secret_columns_read_as_none(db_url: str) -> None:
    """A row written by code from before stored secrets reads as "none stored"."""
    from controlplane.store.models.config import ProviderRow
    from tests.controlplane.store.schema_data import written_by_older_code

    row = written_by_older_code(
        db_url,
        "INSERT INTO provider (name, kind, base_url, api_key_env, options_json, "
        "created_at_ms, updated_at_ms) VALUES ('old', 'anthropic', '', 'K', '{}', 1, 1)",
        ProviderRow,
        "old",
    )
    assert (row.secret_ciphertext, row.secret_rotated_at_ms) == ("", 0)
