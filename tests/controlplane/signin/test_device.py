"""The device grant (RFC 8628) over real gRPC, on SQLite and PostgreSQL: start, every poll
answer, expiry with an injected clock, tokens minted once."""

from __future__ import annotations

import re
from typing import Any

import jwt
from sqlmodel import select

from controlplane.signin.codes import USER_CODE_ALPHABET, digest
from controlplane.store.models.signin import DeviceGrantRow, RefreshTokenRow
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import signin_pb2 as spb
from tests.controlplane.signin.conftest import ALICE, PUBLIC, Flow

CODE = re.compile(f"^[{USER_CODE_ALPHABET}]{{4}}-[{USER_CODE_ALPHABET}]{{4}}$")


def grant_row(cp: Any, device_code: str) -> DeviceGrantRow | None:
    return cp.state.db.read_sync(lambda s: s.get(DeviceGrantRow, digest(device_code)))


async def test_start_device_answers_codes_and_stores_only_a_hash(flow: Flow, ready: Any) -> None:
    start = await flow.start()
    assert start.expires_in == 600 and start.interval == 5 and not start.HasField("error")
    assert CODE.fullmatch(start.user_code), start.user_code
    assert len(start.device_code) >= 43  # 32 random bytes, base64url
    row = grant_row(ready, start.device_code)
    assert (
        row is not None
        and row.status == "pending"
        and row.user_code == start.user_code[:4] + start.user_code[5:]
    )
    assert row.public_url == PUBLIC and row.client_ip == "192.0.2.7"
    # The database holds no device code in clear.
    rows = ready.state.db.read_sync(lambda s: s.exec(select(DeviceGrantRow)).all())
    assert all(start.device_code not in repr(r.model_dump()) for r in rows)


async def test_start_without_sso_is_an_oauth_error(cp: Any, dp: Any) -> None:
    start = await dp.signin.StartDevice(spb.StartDeviceRequest(public_url=PUBLIC))
    assert (
        start.error.error == "access_denied" and "not configured" in start.error.error_description
    )
    assert not start.device_code


async def test_poll_pending_then_slow_down_with_a_growing_interval(flow: Flow) -> None:
    start = await flow.start()
    first = await flow.poll(start.device_code)
    assert (first.error.error, first.error.http_status) == ("authorization_pending", 400)
    flow.clock.advance(1)  # faster than the 5 s interval
    fast = await flow.poll(start.device_code)
    assert (fast.error.error, fast.error.http_status) == ("slow_down", 400)
    flow.clock.advance(6)  # the interval is now 10 s: 6 s is still too fast
    assert (await flow.poll(start.device_code)).error.error == "slow_down"
    flow.clock.advance(16)  # 15 s now, and the client waited 16
    assert (await flow.poll(start.device_code)).error.error == "authorization_pending"


async def test_expired_and_unknown_codes(flow: Flow) -> None:
    start = await flow.start()
    flow.clock.advance(601)
    expired = await flow.poll(start.device_code)
    assert (expired.error.error, expired.error.http_status) == ("expired_token", 400)
    unknown = await flow.poll("not-a-device-code")
    assert unknown.error.error == "expired_token"
    assert (await flow.poll("")).error.error == "expired_token"


async def test_success_mints_tokens_once(flow: Flow, ready: Any) -> None:
    begun = await flow.started()
    done = await flow.browser(begun, ALICE)
    assert done.ok and done.developer_email == "alice@example.com" and done.workspace == "platform"
    tokens = await flow.poll(begun.start.device_code)
    assert tokens.token_type == "Bearer" and tokens.expires_in == 3600 and tokens.refresh_token
    again = await flow.poll(begun.start.device_code)
    assert again.error.error == "expired_token" and not again.access_token
    # The access token: HS256 under the snapshot's current key, the documented claims.
    snap = ready.state.cache.current
    header = jwt.get_unverified_header(tokens.access_token)
    key = next(k for k in snap.signing_keys if k.kid == header["kid"])
    assert key.current and header["alg"] == "HS256"
    claims = jwt.decode(tokens.access_token, key.key, algorithms=["HS256"], audience="tollgate")
    dev = next(d for d in snap.developers if d.email == "alice@example.com")
    assert (
        claims["iss"] == "tollgate" and claims["sub"] == dev.id and claims["sid"].startswith("fam_")
    )
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["iat"] * 1000 <= flow.clock.ms < (claims["iat"] + 1) * 1000
    # Only the refresh token's hash is stored.
    rows = ready.state.db.read_sync(lambda s: s.exec(select(RefreshTokenRow)).all())
    assert [r.token_sha256 for r in rows] == [digest(tokens.refresh_token)]


async def test_denied_is_answered_once_then_the_grant_is_gone(flow: Flow, ready: Any) -> None:
    begun = await flow.started()
    flow.idp.next_refusal("access_denied", "the user cancelled")
    callback = await flow.idp.authorize(begun.begin.authorization_url)
    done = await flow.complete(begun.begin, callback)
    assert not done.ok and done.reason == "idp_error"
    denied = await flow.poll(begun.start.device_code)
    assert (
        denied.error.error == "access_denied"
        and "the user cancelled" in denied.error.error_description
    )
    assert grant_row(ready, begun.start.device_code) is None
    assert (await flow.poll(begun.start.device_code)).error.error == "expired_token"


async def test_approved_grant_of_a_developer_disabled_before_the_poll(
    flow: Flow, admin: Any
) -> None:
    begun = await flow.started()
    assert (await flow.browser(begun, ALICE)).ok
    await admin.DisableDeveloper(apb.DisableDeveloperRequest(id="alice@example.com"))
    refused = await flow.poll(begun.start.device_code)
    assert refused.error.error == "access_denied" and "disabled" in refused.error.error_description
    assert not refused.access_token


async def test_expired_grants_are_purged(flow: Flow, ready: Any) -> None:
    start = await flow.start()
    engine = ready.state.signin
    flow.clock.advance(601)
    done = ready.state.db.run_sync(lambda s: engine.purge(s, flow.clock()))
    assert done["device grants"] == 0  # kept an hour, to say "expired" rather than "unknown"
    assert (await flow.begin(start.user_code)).error.error == "expired_code"
    flow.clock.advance(3600)
    done = ready.state.db.run_sync(lambda s: engine.purge(s, flow.clock()))
    assert done["device grants"] == 1 and grant_row(ready, start.device_code) is None


async def test_a_bad_public_url_is_a_data_plane_bug(flow: Flow) -> None:
    from grpc import StatusCode

    from tests.controlplane.conftest import expect_error

    for url in ("", "gw.example.com", "ftp://gw.example.com", "https://gw.example.com/?x=1"):
        await expect_error(
            flow.dp.signin.StartDevice(spb.StartDeviceRequest(public_url=url)),
            StatusCode.INVALID_ARGUMENT,
            "--public-url",
        )
    start = await flow.dp.signin.StartDevice(spb.StartDeviceRequest(public_url=PUBLIC + "/"))
    assert start.device_code  # a trailing slash is dropped
