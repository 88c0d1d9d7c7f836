"""The browser pages: the verification page (never auto-submitted, escaped, same-origin only,
rate-limited), the redirect to the identity provider with its cookie, and the callback's result
pages — against the strict fake control plane."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
import pytest

from dataplane.edge.signin.browser import display_code, same_origin
from dataplane.process.server import DataPlane
from gwapi.v1 import signin_pb2
from tests.dataplane.edge.signin.conftest import StartDataPlane, wait_for_version
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.signin import IDP, FakeSignInControlPlane, sso_snapshot

SAME = {"sec-fetch-site": "same-origin"}

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https://idp.example.test; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def assert_page_headers(r: httpx.Response) -> None:
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"


def assert_never_submits_itself(html: str) -> None:
    lowered = html.lower()
    for needle in ("<script", "onload", "http-equiv", "autofocus", "javascript:", ".submit("):
        assert needle not in lowered, needle


async def user_code(client: httpx.AsyncClient) -> str:
    return str((await client.post("/oauth/device_authorization")).json()["user_code"])


async def test_the_form_and_the_confirmation_never_submit_themselves(
    client: httpx.AsyncClient, cp: FakeSignInControlPlane
) -> None:
    r = await client.get("/device")
    assert r.status_code == 200
    assert_page_headers(r)
    assert_never_submits_itself(r.text)
    assert '<form method=post action="/device">' in r.text and "name=user_code" in r.text
    assert "idp.example.test" in r.text

    r = await client.get("/device", params={"user_code": "wdjb-mjht"})
    assert r.status_code == 200
    assert_page_headers(r)
    assert_never_submits_itself(r.text)
    assert "WDJB-MJHT" in r.text and "<button type=submit>" in r.text
    assert cp.calls == []  # showing the code asks nothing of the control plane


async def test_a_hostile_user_code_is_escaped(client: httpx.AsyncClient) -> None:
    hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    r = await client.get("/device", params={"user_code": hostile})
    assert r.status_code == 400
    assert "<script>" not in r.text and "<img" not in r.text
    assert "&lt;script&gt;" in r.text or "&quot;&gt;&lt;script" in r.text
    assert_page_headers(r)


async def test_a_cross_origin_post_is_refused(
    client: httpx.AsyncClient, cp: FakeSignInControlPlane
) -> None:
    code = await user_code(client)
    for headers in (
        {"origin": "https://evil.example"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "null"},
        {},
    ):
        r = await client.post("/device", data={"user_code": code}, headers=headers)
        assert r.status_code == 403, headers
        assert "own sign-in page" in r.text
        assert_page_headers(r)
    assert [c[0] for c in cp.calls] == ["StartDevice"]


async def test_the_confirmed_code_redirects_to_the_idp_with_the_binding_cookie(
    client: httpx.AsyncClient, dp: DataPlane, cp: FakeSignInControlPlane
) -> None:
    code = await user_code(client)
    base = f"http://127.0.0.1:{dp.port}"
    r = await client.post(
        "/device", data={"user_code": code.lower().replace("-", "")}, headers={"origin": base}
    )
    assert r.status_code == 302, r.text
    location = urlsplit(r.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == IDP
    assert parse_qs(location.query)["redirect_uri"] == [base + "/oauth/callback"]
    cookie = r.headers["set-cookie"]
    secret = cp.grants[code.replace("-", "")].browser_secret
    attrs = [a.strip() for a in cookie.split(";")]
    assert attrs[0] == f"tollgate_signin={secret}"
    assert "HttpOnly" in attrs and "SameSite=Lax" in attrs and "Path=/oauth/callback" in attrs
    max_age = next(int(a.split("=")[1]) for a in attrs if a.startswith("Max-Age="))
    assert 590 <= max_age <= 600
    assert "Secure" not in attrs  # http on loopback
    assert r.headers["cache-control"] == "no-store"
    assert cp.calls[-1][1].user_code == code  # normalised before it left


async def test_wrong_and_expired_codes_show_the_form_again(
    client: httpx.AsyncClient, cp: FakeSignInControlPlane
) -> None:
    r = await client.post("/device", data={"user_code": "BBBB-BBBB"}, headers=SAME)
    assert r.status_code == 400 and "That code is not valid" in r.text
    assert '<form method=post action="/device">' in r.text
    assert_page_headers(r)
    r = await client.post("/device", data={"user_code": "not a code <b>"}, headers=SAME)
    assert r.status_code == 400 and "That code is not valid" in r.text and "<b>" not in r.text
    code = await user_code(client)
    cp.grants[code.replace("-", "")].approved = True  # already used
    r = await client.post("/device", data={"user_code": code}, headers=SAME)
    assert r.status_code == 400 and "expired or was already used" in r.text
    r = await client.post("/device", data={"user_code": ""}, headers=SAME)
    assert r.status_code == 400 and "Type the code" in r.text
    # The malformed one never reached the control plane.
    assert [c[1].user_code for c in cp.calls if c[0] == "BeginBrowser"] == ["BBBB-BBBB", code]


async def test_code_submissions_are_rate_limited_per_address(client: httpx.AsyncClient) -> None:
    statuses = []
    for _ in range(11):
        r = await client.post("/device", data={"user_code": "BBBB-BBBB"}, headers=SAME)
        statuses.append(r.status_code)
    assert statuses == [400] * 10 + [429]
    assert int(r.headers["retry-after"]) >= 1 and "Too many" in r.text
    assert_page_headers(r)


async def test_body_size_is_capped(client: httpx.AsyncClient) -> None:
    r = await client.post("/device", data={"user_code": "B" * 5000}, headers=SAME)
    assert r.status_code == 413 and "too large" in r.text


async def _begin(client: httpx.AsyncClient, cp: FakeSignInControlPlane) -> tuple[str, str]:
    code = await user_code(client)
    r = await client.post("/device", data={"user_code": code}, headers=SAME)
    state = parse_qs(urlsplit(r.headers["location"]).query)["state"][0]
    return state, cp.idp_code_for(state)


async def test_callback_success_page_and_the_cookie_is_cleared(
    client: httpx.AsyncClient, cp: FakeSignInControlPlane, dp: DataPlane
) -> None:
    state, idp_code = await _begin(client, cp)  # httpx keeps the cookie for /oauth/callback
    r = await client.get("/oauth/callback", params={"state": state, "code": idp_code, "iss": IDP})
    assert r.status_code == 200, r.text
    assert "Signed in as <strong>alice@example.com</strong>" in r.text
    assert "(workspace <strong>team-a</strong>)" in r.text and "Return to Claude Code" in r.text
    assert_page_headers(r)
    cleared = r.headers["set-cookie"]
    assert cleared.startswith("tollgate_signin=;") and "Max-Age=0" in cleared
    assert "Path=/oauth/callback" in cleared
    request = cp.calls[-1][1]
    assert request.iss == IDP and request.public_url == f"http://127.0.0.1:{dp.port}"


async def test_callback_from_another_browser_fails_with_the_reason(
    dp: DataPlane, cp: FakeSignInControlPlane
) -> None:
    base = f"http://127.0.0.1:{dp.port}"
    async with httpx.AsyncClient(base_url=base) as first, httpx.AsyncClient(base_url=base) as other:
        state, idp_code = await _begin(first, cp)
        r = await other.get("/oauth/callback", params={"state": state, "code": idp_code})
    assert r.status_code == 400 and "Another browser" in r.text
    assert "Max-Age=0" in r.headers["set-cookie"]


@pytest.mark.parametrize(
    ("reason", "status"), [("domain_not_allowed", 400), ("no_workspace", 400), ("internal", 500)]
)
async def test_callback_failure_pages_escape_the_control_planes_words(
    client: httpx.AsyncClient, cp: FakeSignInControlPlane, reason: str, status: int
) -> None:
    cp.complete_answer = signin_pb2.CompleteBrowserResponse(
        reason=reason, title="Not <allowed>", message="Groups <eng> & <ops> match no workspace."
    )
    r = await client.get("/oauth/callback", params={"state": "s", "code": "c"})
    assert r.status_code == status
    assert "Not &lt;allowed&gt;" in r.text
    assert "Groups &lt;eng&gt; &amp; &lt;ops&gt; match no workspace." in r.text
    assert "<eng>" not in r.text and "/login" in r.text
    assert_page_headers(r)
    metrics = (await client.get("/metrics")).text
    assert f'tollgate_signin_browser_total{{step="complete",outcome="{reason}"}} 1' in metrics


async def test_callback_errors(client: httpx.AsyncClient, cp: FakeSignInControlPlane) -> None:
    r = await client.get("/oauth/callback")
    assert r.status_code == 400 and "run /login" in r.text
    cp.fail["CompleteBrowser"] = grpc.StatusCode.UNAVAILABLE
    r = await client.get("/oauth/callback", params={"state": "s", "code": "c"})
    assert r.status_code == 503 and "cannot reach its control plane" in r.text
    assert "Max-Age=0" in r.headers["set-cookie"]
    assert_page_headers(r)


async def test_pages_when_sign_in_is_off(
    client: httpx.AsyncClient, dp: DataPlane, cp: FakeSignInControlPlane, upstream: FakeAnthropic
) -> None:
    cp.push(sso_snapshot(upstream.base_url, "off", enabled=False))
    await wait_for_version(dp, "off")
    for r in (
        await client.get("/device"),
        await client.post("/device", data={"user_code": "BBBB-BBBB"}, headers=SAME),
        await client.get("/oauth/callback", params={"state": "s"}),
    ):
        assert r.status_code == 404 and "not enabled" in r.text


async def test_https_public_url_makes_the_cookie_secure(
    start_dp: StartDataPlane, cp: FakeSignInControlPlane
) -> None:
    dp = await start_dp(public_url="https://gw.example.com")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}") as c:
        code = await user_code(c)
        r = await c.post(
            "/device", data={"user_code": code}, headers={"origin": "https://gw.example.com"}
        )
        assert r.status_code == 302
        assert "Secure" in [a.strip() for a in r.headers["set-cookie"].split(";")]
        # The Origin must be the public URL's, not whatever the request came in as.
        r = await c.post(
            "/device", data={"user_code": code}, headers={"origin": f"http://127.0.0.1:{dp.port}"}
        )
        assert r.status_code == 403


def test_display_code() -> None:
    assert display_code("wdjbmjht") == "WDJB-MJHT"
    assert display_code(" WDJB-MJHT ") == "WDJB-MJHT"
    for bad in ("WDJB-MJH", "AEIO-UUUU", "WDJB--MJHT", "WDJBMJHTX", "", "<b>"):
        assert display_code(bad) is None, bad


def test_same_origin() -> None:
    def scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
        return {"headers": list(headers)}

    base = "https://gw.example.com"
    assert same_origin(scope((b"sec-fetch-site", b"same-origin")), base)
    # Our pages send no referrer: a browser's Origin is then "null", Sec-Fetch-Site decides.
    assert same_origin(scope((b"origin", b"null"), (b"sec-fetch-site", b"same-origin")), base)
    assert not same_origin(
        scope((b"origin", base.encode()), (b"sec-fetch-site", b"cross-site")), base
    )
    assert same_origin(scope((b"origin", base.encode())), base)
    assert not same_origin(scope((b"origin", b"https://gw.example.com.evil")), base)
    assert not same_origin(scope(), base)


async def test_a_malformed_answer_from_the_control_plane_is_not_relayed(
    client: httpx.AsyncClient, cp: FakeSignInControlPlane
) -> None:
    cp.begin_url = "https://idp.example.test/a\r\nset-cookie: x=y"
    code = await user_code(client)
    r = await client.post("/device", data={"user_code": code}, headers=SAME)
    assert r.status_code == 502 and "location" not in r.headers
    assert "set-cookie" not in r.headers
