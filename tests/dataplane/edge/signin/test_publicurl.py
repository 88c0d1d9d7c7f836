"""The base URL of sign-in: --public-url, or a loopback Host on a loopback listener, never a
client's Host elsewhere."""

from __future__ import annotations

import httpx
import pytest

from dataplane.edge.signin.client import SignInClient
from dataplane.edge.signin.context import SignInContext
from dataplane.edge.signin.publicurl import (
    PublicUrl,
    listener_is_loopback,
    parse_public_url,
)
from dataplane.edge.signin.routes import SignInRoutes
from dataplane.process.server import DataPlane, main
from gwcommon.hosts import is_loopback_host
from tests.dataplane import runtimes
from tests.dataplane.edge.signin.conftest import StartDataPlane
from tests.fakes.signin import FakeSignInControlPlane


def test_parse_public_url() -> None:
    assert parse_public_url("https://gw.example.com/") == "https://gw.example.com"
    assert parse_public_url("https://gw.example.com:8443") == "https://gw.example.com:8443"
    assert parse_public_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert parse_public_url("http://localhost:8080") == "http://localhost:8080"
    for bad, words in (
        ("gw.example.com", "must look like"),
        ("ftp://gw.example.com", "must look like"),
        ("https://gw.example.com/tollgate", "origin only"),
        ("https://gw.example.com/?a=b", "origin only"),
        ("https://user@gw.example.com", "origin only"),
        ("http://gw.example.com", "https only"),
        ("https://gw.example.com:99999", "invalid port"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_public_url(bad)


def test_loopback() -> None:
    for host in ("localhost", "127.0.0.1", "127.1.2.3", "[::1]", "::1"):
        assert is_loopback_host(host), host
    for host in ("0.0.0.0", "10.0.0.1", "gw.example.com", "localhost.evil.example", ""):
        assert not is_loopback_host(host), host
    assert listener_is_loopback("127.0.0.1:8080") and listener_is_loopback("[::1]:8080")
    assert not listener_is_loopback("0.0.0.0:8080") and not listener_is_loopback(":8080")


def test_resolve() -> None:
    def scope(host: bytes | None, scheme: str = "http") -> dict[str, object]:
        headers = [(b"host", host)] if host is not None else []
        return {"headers": headers, "scheme": scheme}

    configured = PublicUrl("https://gw.example.com", loopback_listener=False)
    assert configured.resolve(scope(b"evil.example")) == "https://gw.example.com"
    loopback = PublicUrl("", loopback_listener=True)
    assert loopback.resolve(scope(b"127.0.0.1:8080")) == "http://127.0.0.1:8080"
    assert loopback.resolve(scope(b"localhost:8080")) == "http://localhost:8080"
    assert loopback.resolve(scope(b"[::1]:8080")) == "http://[::1]:8080"
    for hostile in (b"evil.example", b"evil.example:8080", b"127.0.0.1.evil:80", b"a b", None):
        assert loopback.resolve(scope(hostile)) is None, hostile  # DNS rebinding et al.
    assert PublicUrl("", loopback_listener=False).resolve(scope(b"127.0.0.1:8080")) is None


async def test_a_non_loopback_listener_without_public_url_says_to_set_it(
    cp: FakeSignInControlPlane, dp: DataPlane
) -> None:
    # The same routes a data plane on 0.0.0.0 would serve (tests bind loopback only).
    assert dp.holder.current is not None
    holder = runtimes.holder()
    holder.swap(dp.holder.current)
    assert dp._channel is not None
    routes = SignInRoutes(
        SignInContext(
            holder, SignInClient(dp._channel, cp.token), PublicUrl("", loopback_listener=False)
        )
    )
    transport = httpx.ASGITransport(app=routes)
    async with httpx.AsyncClient(transport=transport, base_url="http://10.1.2.3:8080") as c:
        r = await c.get("/.well-known/oauth-authorization-server")
        assert r.status_code == 500 and r.json()["error"] == "server_error"
        assert "--public-url" in r.json()["error_description"]
        r = await c.get("/device")
        assert r.status_code == 500 and "--public-url" in r.text
    assert cp.calls == []


async def test_a_foreign_host_header_on_loopback_is_not_trusted(
    client: httpx.AsyncClient, cp: FakeSignInControlPlane
) -> None:
    r = await client.get(
        "/.well-known/oauth-authorization-server", headers={"host": "evil.example"}
    )
    assert r.status_code == 500 and "--public-url" in r.json()["error_description"]
    r = await client.post("/oauth/device_authorization", headers={"host": "evil.example"})
    assert r.status_code == 500
    assert cp.calls == []


async def test_public_url_wins_over_the_host(start_dp: StartDataPlane) -> None:
    dp = await start_dp(public_url="https://gw.example.com")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}") as c:
        doc = (await c.get("/.well-known/oauth-authorization-server")).json()
    assert doc["issuer"] == "https://gw.example.com"
    assert doc["token_endpoint"] == "https://gw.example.com/oauth/token"


def test_the_flag_is_validated(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOLLGATE_DATAPLANE_TOKEN", "t")
    with pytest.raises(SystemExit) as exit_info:
        main(["--public-url", "http://gw.example.com"])
    assert exit_info.value.code == 2
    assert "https only" in capsys.readouterr().err

    with pytest.raises(SystemExit):
        main(["--public-url", "https://gw.example.com/prefix"])
    assert "origin only" in capsys.readouterr().err


def test_the_flag_comes_from_the_environment_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOLLGATE_PUBLIC_URL", "ftp://gw.example.com")
    monkeypatch.setenv("TOLLGATE_DATAPLANE_TOKEN", "t")
    with pytest.raises(SystemExit):
        main([])
    assert "must look like" in capsys.readouterr().err
