"""GetSso / SetSso / DeleteSso / RotateSigningKey over real gRPC: validation, update masks, the
master-key requirement, the secret never shown, audit rows, signing keys in snapshots."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from grpc import StatusCode
from sqlmodel import select

from controlplane.server import running
from controlplane.signin import config as sso_config
from controlplane.signin import signing_keys
from controlplane.store.models.admin import AuditRow
from controlplane.store.models.signin import SigningKeyRow, SsoConfigRow
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from tests.controlplane.conftest import ADMIN_TOKEN, Clients, expect_error, make_settings
from tests.controlplane.signin.conftest import MASTER_KEY, configure
from tests.fakes.oidc import CLIENT_SECRET

ISSUER = "https://login.example.com"


def set_req(secret: str = CLIENT_SECRET, paths: list[str] | None = None, **fields: Any) -> Any:
    return apb.SetSsoRequest(
        sso=apb.SsoConfig(**fields), client_secret=secret, update_mask=FieldMask(paths=paths or [])
    )


async def test_get_when_not_configured(admin: Any) -> None:
    got = await admin.GetSso(apb.GetSsoRequest())
    assert got == apb.SsoConfig(configured=False)


async def test_set_get_and_the_secret_never_comes_back(admin: Any, cp: Any) -> None:
    created = await admin.SetSso(
        set_req(issuer=ISSUER, client_id="tollgate", allowed_email_domains=["Example.com"])
    )
    assert created.configured and created.has_client_secret and created.groups_claim == "groups"
    assert list(created.allowed_email_domains) == ["example.com"]
    assert created.signing_key_id and created.signing_key_created_at_ms > 0
    assert await admin.GetSso(apb.GetSsoRequest()) == created
    row = cp.state.db.read_sync(lambda s: s.get(SsoConfigRow, 1))
    assert CLIENT_SECRET not in row.client_secret_ciphertext and row.client_secret_ciphertext
    audit_rows = cp.state.db.read_sync(lambda s: s.exec(select(AuditRow)).all())
    assert [r.action for r in audit_rows] == ["sso.set"]
    assert CLIENT_SECRET not in audit_rows[0].after_json
    assert '"has_client_secret": true' in audit_rows[0].after_json
    snap = cp.state.cache.current
    assert snap.sso.enabled and snap.sso.issuer == ISSUER
    assert [k.kid for k in snap.signing_keys] == [created.signing_key_id]
    assert len(snap.signing_keys[0].key) == 32 and snap.signing_keys[0].current


async def test_update_mask_changes_only_the_named_fields(admin: Any) -> None:
    first = await admin.SetSso(set_req(issuer=ISSUER, client_id="tollgate", scopes=["groups"]))
    updated = await admin.SetSso(
        set_req(
            secret="",
            paths=["access_token_ttl_s", "groups_claim"],
            access_token_ttl_s=900,
            groups_claim="roles",
        )
    )
    assert (updated.access_token_ttl_s, updated.groups_claim) == (900, "roles")
    assert list(updated.scopes) == ["groups"] and updated.client_id == "tollgate"
    assert updated.signing_key_id == first.signing_key_id  # no new key on an update
    # The whole configuration (no mask) with an empty secret keeps the stored secret.
    whole = await admin.SetSso(set_req(secret="", issuer=ISSUER, client_id="other"))
    assert (
        whole.has_client_secret and whole.access_token_ttl_s == 0 and whole.groups_claim == "groups"
    )


@pytest.mark.parametrize(
    ("fields", "secret", "paths", "words"),
    [
        ({"issuer": "", "client_id": "x"}, CLIENT_SECRET, [], "issuer is required"),
        (
            {"issuer": "http://login.example.com", "client_id": "x"},
            CLIENT_SECRET,
            [],
            "must use https",
        ),
        (
            {"issuer": "https://login.example.com?x=1", "client_id": "x"},
            CLIENT_SECRET,
            [],
            "no query",
        ),
        (
            {"issuer": "https://u:p@login.example.com", "client_id": "x"},
            CLIENT_SECRET,
            [],
            "credentials",
        ),
        ({"issuer": ISSUER, "client_id": ""}, CLIENT_SECRET, [], "client_id is required"),
        ({"issuer": ISSUER, "client_id": "a b"}, CLIENT_SECRET, [], "client_id contains spaces"),
        ({"issuer": ISSUER, "client_id": "x"}, "", [], "client_secret"),
        ({"issuer": ISSUER, "client_id": "x"}, "bad secret\n", [], "client_secret contains"),
        (
            {"issuer": ISSUER, "client_id": "x", "scopes": ["a b"]},
            CLIENT_SECRET,
            [],
            "invalid scope",
        ),
        (
            {"issuer": ISSUER, "client_id": "x", "groups_claim": "gro ups"},
            CLIENT_SECRET,
            [],
            "groups_claim",
        ),
        (
            {"issuer": ISSUER, "client_id": "x", "allowed_email_domains": ["not a domain"]},
            CLIENT_SECRET,
            [],
            "email domain",
        ),
        (
            {"issuer": ISSUER, "client_id": "x", "access_token_ttl_s": 30},
            CLIENT_SECRET,
            [],
            "access_token_ttl_s must be between 60",
        ),
        (
            {
                "issuer": ISSUER,
                "client_id": "x",
                "refresh_idle_ttl_s": 600,
                "access_token_ttl_s": 3600,
            },
            CLIENT_SECRET,
            [],
            "must be longer than",
        ),
        (
            {"issuer": ISSUER, "client_id": "x", "session_max_ttl_s": 10**9},
            CLIENT_SECRET,
            [],
            "session_max_ttl_s",
        ),
        (
            {"issuer": ISSUER, "client_id": "x", "default_provider": "nope"},
            CLIENT_SECRET,
            [],
            "provider 'nope' not found",
        ),
        (
            {"issuer": ISSUER},
            CLIENT_SECRET,
            ["issuer", "bogus"],
            "unknown update_mask path 'bogus'",
        ),
    ],
)
async def test_set_validation(
    admin: Any, cp: Any, fields: dict[str, Any], secret: str, paths: list[str], words: str
) -> None:
    code = StatusCode.NOT_FOUND if "not found" in words else StatusCode.INVALID_ARGUMENT
    details = await expect_error(admin.SetSso(set_req(secret, paths, **fields)), code, words)
    assert "bad secret" not in details and CLIENT_SECRET not in details
    assert cp.state.db.read_sync(lambda s: s.get(SsoConfigRow, 1)) is None


async def test_http_issuer_on_loopback_is_accepted(admin: Any) -> None:
    for issuer in (
        "http://127.0.0.1:8000",
        "http://localhost:9000/realms/dev",
        "http://[::1]:8000",
    ):
        assert (await admin.SetSso(set_req(issuer=issuer, client_id="x"))).issuer == issuer


async def test_default_target_exists_and_is_one(admin: Any) -> None:
    await admin.CreateProvider(
        apb.CreateProviderRequest(provider=pb.Provider(name="sim", kind="simulator"))
    )
    await admin.CreateRoute(
        apb.CreateRouteRequest(route=pb.Route(name="rt", targets=[pb.RouteTarget(provider="sim")]))
    )
    await expect_error(
        admin.SetSso(
            set_req(issuer=ISSUER, client_id="x", default_provider="sim", default_route="rt")
        ),
        StatusCode.INVALID_ARGUMENT,
        "not both",
    )
    done = await admin.SetSso(set_req(issuer=ISSUER, client_id="x", default_provider="sim"))
    switched = await admin.SetSso(set_req(secret="", paths=["default_route"], default_route="rt"))
    assert (done.default_provider, switched.default_provider, switched.default_route) == (
        "sim",
        "",
        "rt",
    )
    await expect_error(
        admin.DeleteRoute(apb.DeleteRouteRequest(name="rt")),
        StatusCode.FAILED_PRECONDITION,
        "sign-in (the SSO default_route)",
    )


async def test_set_without_a_master_key_is_failed_precondition(db_url: str) -> None:
    import grpc

    async with running(make_settings(db_url)) as r, grpc.aio.insecure_channel(r.address) as ch:
        admin = Clients(ch, ADMIN_TOKEN).admin
        await expect_error(
            admin.SetSso(set_req(issuer=ISSUER, client_id="x")),
            StatusCode.FAILED_PRECONDITION,
            "no master key",
        )


async def test_delete_and_rotate(admin: Any, cp: Any) -> None:
    await expect_error(
        admin.DeleteSso(apb.DeleteSsoRequest()), StatusCode.NOT_FOUND, "not configured"
    )
    await expect_error(
        admin.RotateSigningKey(apb.RotateSigningKeyRequest()),
        StatusCode.FAILED_PRECONDITION,
        "not configured",
    )
    first = await admin.SetSso(set_req(issuer=ISSUER, client_id="x"))
    rotated = await admin.RotateSigningKey(apb.RotateSigningKeyRequest())
    assert rotated.signing_key_id != first.signing_key_id
    keys = {k.kid: k.current for k in cp.state.cache.current.signing_keys}
    assert keys == {
        first.signing_key_id: False,
        rotated.signing_key_id: True,
    }  # the old one verifies on
    await admin.DeleteSso(apb.DeleteSsoRequest())
    assert (await admin.GetSso(apb.GetSsoRequest())).configured is False
    assert cp.state.db.read_sync(lambda s: s.exec(select(SigningKeyRow)).all()) == []
    actions = cp.state.db.read_sync(lambda s: [r.action for r in s.exec(select(AuditRow)).all()])
    assert actions == ["sso.set", "sso.rotate_signing_key", "sso.delete"]


async def test_retired_keys_leave_snapshots_after_one_token_lifetime(admin: Any, cp: Any) -> None:
    first = await admin.SetSso(set_req(issuer=ISSUER, client_id="x", access_token_ttl_s=600))
    rotated = await admin.RotateSigningKey(apb.RotateSigningKeyRequest())
    retired = cp.state.db.read_sync(
        lambda s: s.get(SigningKeyRow, first.signing_key_id)
    ).retired_at_ms

    def live(now: int) -> list[str]:
        return [k.kid for k in cp.state.db.read_sync(lambda s: signing_keys.live(s, now, 600))]

    assert sorted(live(retired + 600_000 + signing_keys.RETIRED_MARGIN_MS - 1)) == sorted(
        [first.signing_key_id, rotated.signing_key_id]
    )
    later = retired + 600_000 + signing_keys.RETIRED_MARGIN_MS
    assert live(later) == [rotated.signing_key_id]
    done = cp.state.db.run_sync(lambda s: cp.state.signin.purge(s, later))
    assert done["signing keys"] == 1


async def test_snapshot_without_the_master_key_has_no_signing_keys(db_url: str, idp: Any) -> None:
    import grpc

    async with (
        running(make_settings(db_url, master_key=MASTER_KEY)) as r,
        grpc.aio.insecure_channel(r.address) as ch,
    ):
        await configure(Clients(ch, ADMIN_TOKEN).admin, idp)
    async with running(make_settings(db_url)) as r:
        snap = r.state.cache.current
        assert snap.sso.enabled and not snap.signing_keys
        problems = " ".join(r.state.cache.secret_problems)
        assert "signing key" in problems and "no master key" in problems


async def test_master_key_rotation_reencrypts_sign_in_secrets(
    db_url: str, idp: Any, tmp_path: Any
) -> None:
    import base64
    import os

    import grpc

    async with (
        running(make_settings(db_url, master_key=MASTER_KEY)) as r,
        grpc.aio.insecure_channel(r.address) as ch,
    ):
        before = await configure(Clients(ch, ADMIN_TOKEN).admin, idp)
        old_key = r.state.cache.current.signing_keys[0].key
    new_master = base64.b64encode(b"n" * 32).decode()
    previous = tmp_path / "old.key"
    previous.write_text(MASTER_KEY)
    os.chmod(previous, 0o600)
    settings = make_settings(
        db_url, master_key=new_master, previous_master_key_files=(str(previous),)
    )
    async with running(settings) as r:
        assert r.state.cache.current.signing_keys[0].key == old_key
    async with running(make_settings(db_url, master_key=new_master)) as r:  # old key dropped
        assert r.state.cache.current.signing_keys[0].kid == before.signing_key_id
        assert r.state.cache.current.signing_keys[0].key == old_key
        actions = r.state.db.read_sync(lambda s: [a.action for a in s.exec(select(AuditRow)).all()])
        assert "sso.reencrypt_secrets" in actions
        loaded = r.state.db.read_sync(lambda s: sso_config.load(s, r.state.cache.master))
        assert loaded is not None and loaded.client_secret == CLIENT_SECRET
