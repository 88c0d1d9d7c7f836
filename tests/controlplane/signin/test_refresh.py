"""Refresh tokens over real gRPC, on SQLite and PostgreSQL: rotation, single use, reuse
revoking the whole session, idle and absolute expiry (injected clock), deprovisioning."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import jwt
from sqlmodel import select

from controlplane.signin.tokens import REUSE_GRACE_MS
from controlplane.store.models.admin import AuditRow
from controlplane.store.models.signin import RefreshTokenRow
from gwapi.v1 import admin_pb2 as apb
from tests.controlplane.signin.conftest import ALICE, Flow, configure

DAY = 86_400


def family(tokens: Any) -> str:
    return str(jwt.decode(tokens.access_token, options={"verify_signature": False})["sid"])


async def test_refresh_rotates_within_the_session(flow: Flow) -> None:
    first = await flow.sign_in()
    flow.clock.advance(3000)
    second = await flow.refresh(first.refresh_token)
    assert second.access_token and second.refresh_token != first.refresh_token
    assert second.expires_in == 3600 and family(second) == family(first)
    flow.clock.advance(3000)
    third = await flow.refresh(second.refresh_token)
    assert third.access_token and family(third) == family(first)


async def test_reuse_revokes_the_whole_session_and_is_audited(
    flow: Flow, ready: Any, caplog: Any
) -> None:
    first = await flow.sign_in()
    second = await flow.refresh(first.refresh_token)
    other_session = await flow.sign_in()  # another laptop: must survive
    caplog.set_level(logging.WARNING)
    flow.clock.advance(REUSE_GRACE_MS / 1000 + 1)  # past the grace period of a second use
    replayed = await flow.refresh(first.refresh_token)
    assert (replayed.error.error, replayed.error.http_status) == ("invalid_grant", 401)
    assert "already used" in replayed.error.error_description and not replayed.access_token
    # The legitimate holder's newer token is dead too.
    dead = await flow.refresh(second.refresh_token)
    assert dead.error.error == "invalid_grant"
    assert (await flow.refresh(other_session.refresh_token)).access_token
    assert "presented again" in caplog.text and first.refresh_token not in caplog.text
    rows = ready.state.db.read_sync(
        lambda s: s.exec(
            select(AuditRow).where(AuditRow.action == "developer.refresh_token_reuse")
        ).all()
    )
    assert len(rows) >= 1 and rows[0].workspace == "platform" and rows[0].peer == "192.0.2.7"
    assert rows[0].resource.startswith("dev_") and family(first) in rows[0].actor_name


async def test_concurrent_refreshes_of_one_token_all_continue_the_session(flow: Flow) -> None:
    """Two Claude Code processes sharing one credentials file refresh together: within the
    grace period that is not theft, and nobody is signed out."""
    first = await flow.sign_in()
    answers = await asyncio.gather(*(flow.refresh(first.refresh_token) for _ in range(4)))
    assert all(a.access_token and not a.HasField("error") for a in answers), answers
    assert {family(a) for a in answers} == {family(first)}
    assert len({a.refresh_token for a in answers}) == 4
    for answer in answers:  # every branch carries on
        assert (await flow.refresh(answer.refresh_token)).access_token


async def test_a_second_use_within_the_grace_period_continues_after_it_revokes(
    flow: Flow,
) -> None:
    first = await flow.sign_in()
    second = await flow.refresh(first.refresh_token)
    flow.clock.advance(REUSE_GRACE_MS / 1000 - 1)
    again = await flow.refresh(first.refresh_token)
    assert again.access_token and family(again) == family(first)
    flow.clock.advance(2)  # now past the grace period of the first use
    late = await flow.refresh(first.refresh_token)
    assert (late.error.error, late.error.http_status) == ("invalid_grant", 401)
    for branch in (second, again):  # reuse ends the whole session
        assert (await flow.refresh(branch.refresh_token)).error.error == "invalid_grant"


async def test_unknown_and_malformed_tokens(flow: Flow) -> None:
    for token in ("", "nope", "x" * 10_000):
        answer = await flow.refresh(token)
        assert (answer.error.error, answer.error.http_status) == ("invalid_grant", 401)


async def test_idle_expiry(flow: Flow) -> None:
    first = await flow.sign_in()
    flow.clock.advance(7 * DAY - 10)
    second = await flow.refresh(first.refresh_token)  # just in time
    assert second.access_token
    flow.clock.advance(7 * DAY)
    late = await flow.refresh(second.refresh_token)
    assert late.error.error == "invalid_grant" and "expired" in late.error.error_description


async def test_absolute_session_lifetime(flow: Flow) -> None:
    tokens = await flow.sign_in()
    for _ in range(4):  # refreshed every 6 days: never idle, but the session ends at 30 days
        flow.clock.advance(6 * DAY)
        tokens = await flow.refresh(tokens.refresh_token)
        assert tokens.access_token and tokens.expires_in == 3600
    flow.clock.advance(6 * DAY - 1800)  # day 24 → 30 minutes before the session ends
    last = await flow.refresh(tokens.refresh_token)
    assert 0 < last.expires_in <= 1800  # the access token never outlives the session
    flow.clock.advance(1800)
    assert (await flow.refresh(last.refresh_token)).error.error == "invalid_grant"


async def test_configured_lifetimes(flow: Flow, admin: Any, idp: Any) -> None:
    await configure(admin, idp, access_token_ttl_s=600, refresh_idle_ttl_s=3600)
    tokens = await flow.sign_in()
    assert tokens.expires_in == 600
    flow.clock.advance(3601)
    assert (await flow.refresh(tokens.refresh_token)).error.error == "invalid_grant"


async def test_disable_revokes_sessions_and_bumps_tokens_not_before(
    flow: Flow, admin: Any, ready: Any
) -> None:
    tokens = await flow.sign_in()
    before = await admin.GetDeveloper(apb.GetDeveloperRequest(id="alice@example.com"))
    assert before.active_sessions == 1 and before.disabled_at_ms == 0
    disabled = await admin.DisableDeveloper(apb.DisableDeveloperRequest(id=before.id))
    assert disabled.disabled_at_ms > 0 and disabled.active_sessions == 0
    snap_dev = next(d for d in ready.state.cache.current.developers if d.id == before.id)
    assert snap_dev.disabled and snap_dev.tokens_not_before_ms == disabled.disabled_at_ms
    iat = jwt.decode(tokens.access_token, options={"verify_signature": False})["iat"]
    assert iat * 1000 < snap_dev.tokens_not_before_ms  # data planes refuse the live token
    refused = await flow.refresh(tokens.refresh_token)
    assert (refused.error.error, refused.error.http_status) == ("invalid_grant", 401)
    rows = ready.state.db.read_sync(lambda s: s.exec(select(RefreshTokenRow)).all())
    assert rows and all(r.revoked_at_ms for r in rows)
    # Enabled again: the old session stays dead; a new sign-in works.
    await admin.EnableDeveloper(apb.EnableDeveloperRequest(id=before.id))
    assert (await flow.refresh(tokens.refresh_token)).error.error == "invalid_grant"
    assert (await flow.sign_in(ALICE)).access_token


async def test_refresh_after_the_workspace_is_deleted(flow: Flow, admin: Any, ready: Any) -> None:
    tokens = await flow.sign_in()
    dev = await admin.GetDeveloper(apb.GetDeveloperRequest(id="alice@example.com"))
    await admin.DeleteWorkspace(apb.DeleteWorkspaceRequest(name="platform"))
    assert all(d.id != dev.id for d in ready.state.cache.current.developers)
    refused = await flow.refresh(tokens.refresh_token)
    assert refused.error.error == "invalid_grant" and "platform" in refused.error.error_description
    # The developer (id, spend) survives and lands in the new workspace at the next sign-in.
    from tests.controlplane.signin.conftest import workspace

    await workspace(admin, "platform-v2", ["platform-eng"])
    await flow.sign_in(ALICE)
    again = await admin.GetDeveloper(apb.GetDeveloperRequest(id=dev.id))
    assert again.workspace == "platform-v2"


async def test_sso_deleted_ends_every_session(flow: Flow, admin: Any, ready: Any) -> None:
    tokens = await flow.sign_in()
    await admin.DeleteSso(apb.DeleteSsoRequest())
    assert (await flow.refresh(tokens.refresh_token)).error.error == "invalid_grant"
    snap = ready.state.cache.current
    assert not snap.sso.enabled and not snap.signing_keys and not snap.developers
