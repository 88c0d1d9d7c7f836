"""The browser step against the strict fake IdP: the authorization request, the code exchange,
every ID-token check, admission, workspace mapping and every refusal page."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
from sqlmodel import select

from controlplane.signin.codes import digest
from controlplane.store.models.admin import AuditRow
from controlplane.store.models.signin import DeveloperRow, DeviceGrantRow
from gwapi.v1 import admin_pb2 as apb
from tests.controlplane.signin.conftest import ALICE, CALLBACK, Flow, configure, workspace
from tests.fakes.oidc import CLIENT_ID, Login


async def test_authorization_url_carries_pkce_nonce_state_and_scopes(
    flow: Flow, ready: Any
) -> None:
    begun = await flow.started()
    url = urllib.parse.urlsplit(begun.begin.authorization_url)
    q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == flow.idp.issuer + "/authorize"
    assert q["client_id"] == CLIENT_ID and q["redirect_uri"] == CALLBACK
    assert q["response_type"] == "code" and q["code_challenge_method"] == "S256"
    assert q["scope"].split() == ["openid", "profile", "email", "offline_access"]
    assert len(q["state"]) >= 43 and len(q["nonce"]) >= 43 and len(q["code_challenge"]) == 43
    assert begun.begin.browser_secret and 0 < begun.begin.max_age_s <= 600
    row = ready.state.db.read_sync(lambda s: s.get(DeviceGrantRow, digest(begun.start.device_code)))
    # Stored: hashes of the state and the browser binding, the verifier encrypted.
    assert row.state_sha256 == digest(q["state"]) and row.nonce == q["nonce"]
    assert row.browser_secret_sha256 == digest(begun.begin.browser_secret)
    assert row.pkce_verifier_ciphertext.startswith("v1:")


async def test_extra_scopes_are_requested(flow: Flow, admin: Any, idp: Any) -> None:
    await configure(admin, idp, scopes=["groups", "openid"])
    begun = await flow.started()
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(begun.begin.authorization_url).query)
    assert q["scope"][0].split() == ["openid", "profile", "email", "offline_access", "groups"]


@pytest.mark.parametrize(
    "typed",
    [
        lambda c: c.lower(),  # any case
        lambda c: c.replace("-", ""),  # without the dash
        lambda c: "  " + c.replace("-", " ") + " ",  # a blank instead, and around
    ],
)
async def test_user_code_is_normalised(flow: Flow, typed: Any) -> None:
    start = await flow.start()
    begin = await flow.begin(typed(start.user_code))
    assert begin.authorization_url and not begin.HasField("error"), begin


async def test_begin_with_wrong_used_or_expired_codes(flow: Flow) -> None:
    bad = await flow.begin("ABCD-EFGH")  # vowels: not even a possible code
    assert bad.error.error == "invalid_code" and "8 letters" in bad.error.error_description
    unknown = await flow.begin("BCDF-GHJK")
    assert (
        unknown.error.error == "invalid_code"
        and "No sign-in is waiting" in unknown.error.error_description
    )
    start = await flow.start()
    flow.clock.advance(601)
    expired = await flow.begin(start.user_code)
    assert expired.error.error == "expired_code" and not expired.authorization_url
    begun = await flow.started()
    assert (await flow.browser(begun, ALICE)).ok
    used = await flow.begin(begun.start.user_code)
    assert used.error.error == "invalid_code" and "already used" in used.error.error_description


async def test_begin_twice_the_last_browser_wins(flow: Flow) -> None:
    begun = await flow.started()
    second = await flow.begin(begun.start.user_code)
    flow.idp.next_login(ALICE)
    stale = await flow.idp.authorize(begun.begin.authorization_url)
    done = await flow.complete(second, stale)
    assert not done.ok and done.reason == "expired"  # the first attempt's state was replaced


async def test_other_browser_is_refused_and_denies_the_grant(flow: Flow) -> None:
    begun = await flow.started()
    flow.idp.next_login(ALICE)
    callback = await flow.idp.authorize(begun.begin.authorization_url)
    done = await flow.complete(begun.begin, callback, browser_secret="another-browser's-cookie")
    assert (done.ok, done.reason) == (False, "other_browser")
    assert "another browser" in done.title and "/login" in done.message
    assert (await flow.poll(begun.start.device_code)).error.error == "access_denied"
    # The code was never exchanged.
    assert flow.idp.requests["token"] == 0
    flow.idp.codes.clear()


async def test_no_cookie_is_another_browser(flow: Flow) -> None:
    begun = await flow.started()
    flow.idp.next_login(ALICE)
    callback = await flow.idp.authorize(begun.begin.authorization_url)
    done = await flow.complete(begun.begin, callback, browser_secret="")
    assert done.reason == "other_browser"


async def test_unknown_state_replayed_callback_and_expired_link(flow: Flow) -> None:
    assert (
        await flow.complete(flow_begin_stub(), {"state": "nope", "code": "x"})
    ).reason == "expired"
    begun = await flow.started()
    flow.idp.next_login(ALICE)
    callback = await flow.idp.authorize(begun.begin.authorization_url)
    assert (await flow.complete(begun.begin, callback)).ok
    replay = await flow.complete(begun.begin, callback)  # a reload of the callback page
    assert not replay.ok and replay.title == "This sign-in is already complete"
    late = await flow.started()
    flow.idp.next_login(ALICE)
    callback = await flow.idp.authorize(late.begin.authorization_url)
    flow.clock.advance(601)
    expired = await flow.complete(late.begin, callback)
    assert expired.reason == "expired" and "10 minutes" in expired.message
    flow.idp.codes.clear()


def flow_begin_stub() -> Any:
    from gwapi.v1 import signin_pb2 as spb

    return spb.BeginBrowserResponse(browser_secret="x")


async def test_idp_refusal_is_shown_and_sanitised(flow: Flow) -> None:
    begun = await flow.started()
    flow.idp.next_refusal("access_denied", "User is not assigned\x1b[31m to the app")
    callback = await flow.idp.authorize(begun.begin.authorization_url)
    done = await flow.complete(begun.begin, callback)
    assert done.reason == "idp_error" and "access_denied: User is not assigned" in done.message
    assert "\x1b" not in done.message


async def test_callback_from_another_issuer_is_refused(flow: Flow) -> None:
    begun = await flow.started()
    flow.idp.next_login(ALICE)
    callback = await flow.idp.authorize(begun.begin.authorization_url)
    callback["iss"] = "https://evil.example.com"
    done = await flow.complete(begun.begin, callback)
    assert done.reason == "idp_error" and "wrong identity provider" in done.title
    # The provider announces the RFC 9207 iss parameter: an answer without it is refused too.
    begun = await flow.started()
    flow.idp.next_login(ALICE)
    callback = await flow.idp.authorize(begun.begin.authorization_url)
    del callback["iss"]
    assert (await flow.complete(begun.begin, callback)).reason == "idp_error"
    assert flow.idp.requests["token"] == 0
    flow.idp.codes.clear()


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("bad_signature", "signature does not match"),
        ("unknown_kid", "key the identity provider does not publish"),
        ("wrong_iss", "was not issued by"),
        ("wrong_aud", "another application"),
        ("several_aud_no_azp", "azp"),
        ("wrong_azp", "azp"),
        ("wrong_nonce", "nonce mismatch"),
        ("no_nonce", "nonce mismatch"),
        ("expired", "expired"),
        ("alg_none", "'none'"),
        ("hs256_public_key", "'HS256'"),
        ("no_id_token", "no ID token"),
    ],
)
async def test_id_token_faults_are_refused(flow: Flow, ready: Any, fault: str, words: str) -> None:
    flow.idp.id_token_fault = fault
    begun = await flow.started()
    done = await flow.browser(begun, ALICE)
    assert (done.ok, done.reason) == (False, "invalid_id_token"), done
    assert words in done.message, done.message
    refused = await flow.poll(begun.start.device_code)
    assert refused.error.error == "access_denied" and words in refused.error.error_description
    assert ready.state.db.read_sync(lambda s: s.exec(select(DeveloperRow)).all()) == []


async def test_email_not_verified(flow: Flow) -> None:
    for verified in (False, "false"):
        begun = await flow.started()
        login = Login(
            sub="s-1", email="bob@example.com", email_verified=verified, groups=["platform-eng"]
        )
        done = await flow.browser(begun, login)
        assert done.reason == "email_not_verified" and "bob@example.com" in done.message
    begun = await flow.started()  # absent: accepted
    login = Login(sub="s-1", email="bob@example.com", email_verified=None, groups=["platform-eng"])
    assert (await flow.browser(begun, login)).ok


async def test_allowed_email_domains(flow: Flow, admin: Any, idp: Any) -> None:
    await configure(admin, idp, allowed_email_domains=["example.com", "@Corp.Example"])
    begun = await flow.started()
    outsider = Login(sub="s-2", email="eve@evil.test", groups=["platform-eng"])
    done = await flow.browser(begun, outsider)
    assert done.reason == "domain_not_allowed"
    assert "eve@evil.test" in done.message and "example.com, corp.example" in done.message
    begun = await flow.started()
    assert (
        await flow.browser(
            begun, Login(sub="s-3", email="Carol@CORP.example", groups=["platform-eng"])
        )
    ).ok


async def test_no_email_is_refused(flow: Flow) -> None:
    begun = await flow.started()
    done = await flow.browser(begun, Login(sub="s-4", groups=["platform-eng"]))
    assert done.reason == "invalid_id_token" and "no email address" in done.message


async def test_group_mapping_priority_star_and_names(flow: Flow, admin: Any) -> None:
    await workspace(admin, "catch-all", ["*"], sso_priority=1000)
    await workspace(admin, "alpha", ["devs"], sso_priority=50)
    await workspace(admin, "beta", ["devs"], sso_priority=50)
    await workspace(admin, "zeta", ["devs"])  # 0 counts as 100
    cases = [
        (["platform-eng"], "platform"),
        (["devs"], "alpha"),  # 50 beats 100; alpha before beta on a tie
        (["devs", "platform-eng"], "alpha"),
        ("devs other", "alpha"),  # a space-separated string claim
        (["nobody"], "catch-all"),
        (None, "catch-all"),
    ]
    for i, (groups, expected) in enumerate(cases):
        begun = await flow.started()
        done = await flow.browser(
            begun, Login(sub=f"g-{i}", email=f"g{i}@example.com", groups=groups)
        )
        assert done.workspace == expected, (groups, done)


async def test_no_workspace_names_the_groups(flow: Flow) -> None:
    begun = await flow.started()
    done = await flow.browser(
        begun, Login(sub="s-5", email="dan@example.com", groups=["sales", "emea"])
    )
    assert done.reason == "no_workspace"
    assert "emea, sales" in done.message and "--sso-group" in done.message
    begun = await flow.started()
    done = await flow.browser(begun, Login(sub="s-6", email="fay@example.com"))
    assert done.reason == "no_workspace" and "sent none in the 'groups' claim" in done.message


async def test_groups_claim_is_configurable(flow: Flow, admin: Any, idp: Any) -> None:
    await configure(admin, idp, groups_claim="roles")
    begun = await flow.started()
    login = Login(sub="s-7", email="gil@example.com", extra={"roles": ["platform-eng"]})
    assert (await flow.browser(begun, login)).workspace == "platform"


async def test_relogin_keeps_the_developer_and_follows_group_changes(
    flow: Flow, admin: Any, ready: Any
) -> None:
    await flow.sign_in(ALICE)
    first = await admin.GetDeveloper(apb.GetDeveloperRequest(id="alice@example.com"))
    await workspace(admin, "research", ["research"])
    moved = Login(sub=ALICE.sub, email="Alice@Example.com", name="Alice B", groups=["research"])
    await flow.sign_in(moved)
    again = await admin.GetDeveloper(apb.GetDeveloperRequest(id=first.id))
    assert again.id == first.id and again.created_at_ms == first.created_at_ms
    assert (again.workspace, again.name, list(again.groups)) == (
        "research",
        "Alice B",
        ["research"],
    )
    assert again.last_sign_in_ms >= first.last_sign_in_ms
    assert again.active_sessions == 2  # two sign-ins, two sessions
    rows = ready.state.db.read_sync(
        lambda s: s.exec(select(AuditRow).where(AuditRow.action == "developer.sign_in")).all()
    )
    assert [r.actor for r in rows] == [first.id, first.id]
    assert rows[0].actor_role == "developer" and rows[0].peer == "192.0.2.8"
    assert rows[0].actor_name == "alice@example.com" and rows[0].before_json == ""
    assert '"workspace": "research"' in rows[1].after_json


async def test_disabled_developer_cannot_sign_in_again(flow: Flow, admin: Any) -> None:
    await flow.sign_in(ALICE)
    await admin.DisableDeveloper(apb.DisableDeveloperRequest(id="alice@example.com"))
    begun = await flow.started()
    done = await flow.browser(begun, ALICE)
    assert done.reason == "disabled" and "ask your platform team" in done.message
    await admin.EnableDeveloper(apb.EnableDeveloperRequest(id="alice@example.com"))
    await flow.sign_in(ALICE)


async def test_client_secret_post_and_wrong_secret(
    cp: Any, admin: Any, dp: Any, clock: Any
) -> None:
    from tests.controlplane.signin.conftest import CALLBACK as cb
    from tests.fakes.oidc import FakeOidc

    idp = FakeOidc(auth_methods=("client_secret_post",))
    await idp.start()
    try:
        idp.register_redirect_uri(cb)
        await configure(admin, idp)
        await workspace(admin, "platform", ["platform-eng"])
        flow = Flow(dp, idp, clock)
        await flow.sign_in(ALICE)  # client_secret_post, as announced
        await admin.SetSso(
            apb.SetSsoRequest(
                client_secret="wrong-secret", update_mask={"paths": ["client_secret"]}
            )
        )
        begun = await flow.started()
        done = await flow.browser(begun, ALICE)
        assert done.reason == "idp_error" and "invalid_client" in done.message
        assert idp.take_violations() == ["token: wrong client credentials"]
    finally:
        await idp.stop()
