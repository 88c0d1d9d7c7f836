"""``gwctl doctor`` as a developer runs it — no admin token, only the data-plane URL and their own
credential — against a real control plane and data plane: a healthy setup, then what breaks
before the gateway sees a request (the URL, the connection, TLS, the credential)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gwctl.main import main
from tests.gwctl.doctor_support import (
    ADMIN,
    Gateway,
    closed_port,
    developer_shell,
    run_doctor,
    silent_port,
    statuses,
    team_gateway,
    tls_front,
)
from tests.tls_support import make_pki

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with team_gateway(tmp_path_factory.mktemp("doctor")) as running:
        yield running


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A developer's shell: nothing set but PATH (with a Claude Code 2.1.197 on it) and a
    Claude Code config directory of its own."""
    developer_shell(monkeypatch, tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def healthy_key(gw: Gateway) -> str:
    return gw.key("team", "--provider", "sim", "--budget", "50/day", "--rpm", "60")[1]


def test_a_healthy_setup_is_all_ok(
    gw: Gateway, healthy_key: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", gw.url)
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", healthy_key)
    code, checks, doc = run_doctor(capsys)
    assert code == 0, doc
    assert statuses(checks) == {
        "credential": "OK", "url": "OK", "reachable": "OK", "gateway": "OK", "auth": "OK",
        "budget": "OK", "limits": "OK", "model": "OK", "provider": "OK", "claude": "OK",
    }  # fmt: skip
    assert doc["ok"] is True and doc["url"] == gw.url and doc["url_source"] == "ANTHROPIC_BASE_URL"
    assert doc["credential"] == {
        "source": "ANTHROPIC_AUTH_TOKEN",
        "kind": "virtual key",
        "shown": healthy_key[:7] + "…",
    }
    assert doc["model"] == {"id": "claude-opus-4-8", "source": "Claude Code's default"}
    text = str(doc)
    assert healthy_key not in text and healthy_key[7:20] not in text  # only the prefix
    assert "in workspace 'team'" in checks["auth"][0]["detail"]
    assert "Budget of $50.00/day for key" in checks["budget"][0]["detail"]
    assert "$50.00 left" in checks["budget"][0]["detail"]
    assert checks["limits"][0]["detail"] == "key: rpm 60"
    assert (
        "'sim' (simulator): claude-opus-4-8 → claude-opus-4-8, breaker closed"
        in (checks["provider"][0]["detail"])
    )
    assert checks["claude"][0]["detail"] == (
        "Claude Code 2.1.197 (this workspace requires 2.1.0 or later)"
    )
    assert "control plane" not in checks  # no admin token: the developer's path stands alone

    # The table: one line per check, a summary, exit code 0.
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"gwctl doctor: {gw.url} with {healthy_key[:7]}… (virtual key)")
    assert "OK    provider" in out and out.rstrip().endswith("All good.")
    assert healthy_key not in out


def test_send_makes_one_real_request_and_an_admin_token_adds_the_control_plane(
    gw: Gateway, healthy_key: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", gw.url)
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", healthy_key)
    monkeypatch.setenv("TOLLGATE_CONTROL_PLANE", gw.address)
    monkeypatch.setenv("TOLLGATE_ADMIN_TOKEN", ADMIN)
    code, checks, _ = run_doctor(capsys, "--send")
    assert code == 0
    assert checks["request"][0]["status"] == "OK"
    assert "answered by provider 'sim'" in checks["request"][0]["detail"]
    (plane,) = checks["control plane"]
    assert plane["status"] == "OK" and gw.dp.dp.node_id in plane["detail"]
    assert "connected and serves the current configuration" in plane["detail"]


def test_flags_instead_of_the_environment(
    gw: Gateway, healthy_key: str, env: Path, capsys: Any
) -> None:
    key_file = env / "key"
    key_file.write_text(healthy_key + "\n")
    key_file.chmod(0o600)
    code, _, doc = run_doctor(capsys, "--url", gw.url + "/v1", "--key-file", str(key_file),
                                   "--model", "sonnet")  # fmt: skip
    assert code == 0, doc
    assert doc["url"] == gw.url and doc["credential"]["source"] == str(key_file)
    assert doc["model"] == {"id": "claude-sonnet-4-6", "source": "--model (sonnet)"}
    code = main(["doctor", "--url", gw.url, "--key", healthy_key, "-o", "json"])
    assert code == 0
    assert "--key puts your key on the command line" in capsys.readouterr().err


def test_connection_refused(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    port = closed_port()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "gw-some-key-0123456789abcdefghijklmnop")
    code, checks, _ = run_doctor(capsys)
    assert code == 1
    (reachable,) = checks["reachable"]
    assert reachable["status"] == "FAIL"
    assert f"connection refused by 127.0.0.1:{port}" in reachable["detail"]
    assert "is the data plane running?" in reachable["fix"]
    assert checks["auth"][0]["status"] == "SKIP"
    # Claude Code's version is still checked (no workspace policy known).
    assert checks["claude"][0]["status"] == "OK"


def test_no_answer_times_out(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    with silent_port() as port:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "gw-some-key-0123456789abcdefghijklmnop")
        code, checks, _ = run_doctor(capsys, "--timeout", "0.5")
    assert code == 1
    (reachable,) = checks["reachable"]
    assert reachable["status"] == "FAIL" and "did not answer (timed out)" in reachable["detail"]


def test_unresolvable_host(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "https://gateway.doctor-test.invalid")
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "gw-some-key-0123456789abcdefghijklmnop")
    code, checks, _ = run_doctor(capsys, "--timeout", "2")
    assert code == 1
    (reachable,) = checks["reachable"]
    assert reachable["status"] == "FAIL"
    assert "cannot resolve gateway.doctor-test.invalid" in reachable["detail"]
    assert "VPN" in reachable["fix"]


def test_a_plain_http_url_to_another_host_warns(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://gateway.doctor-test.invalid:8080/v1")
    code, checks, _ = run_doctor(capsys, "--timeout", "2")
    assert code == 1
    url = {c["status"]: c for c in checks["url"]}
    assert "ends in /v1" in url["FAIL"]["detail"]
    assert url["FAIL"]["fix"] == (
        "export ANTHROPIC_BASE_URL=http://gateway.doctor-test.invalid:8080"
    )
    assert "/login only accepts https" in url["WARN"]["detail"]
    assert checks["credential"][0]["status"] == "FAIL"  # and nothing to send either


def test_tls_with_an_untrusted_certificate_then_trusted(
    gw: Gateway, healthy_key: str, env: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    pki = make_pki(env / "pki")
    with tls_front(gw.dp.dp.port, pki.cert, pki.key) as port:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", f"https://localhost:{port}")
        monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", healthy_key)
        code, checks, _ = run_doctor(capsys)
        assert code == 1
        (tls,) = checks["tls"]
        assert tls["status"] == "FAIL"
        assert "the certificate of localhost is not trusted" in tls["detail"]
        assert "NODE_EXTRA_CA_CERTS" in tls["fix"]
        assert checks["auth"][0]["status"] == "SKIP"

        # The company's CA, as Claude Code would be given it: everything passes over TLS.
        monkeypatch.setenv("NODE_EXTRA_CA_CERTS", str(pki.ca))
        code, checks, doc = run_doctor(capsys)
        assert code == 0, doc
        (tls,) = checks["tls"]
        # Valid, but the test CA's certificate lives one day: doctor says it expires soon.
        assert (
            tls["status"] == "WARN"
            and "certificate valid, but it expires in 0 days" in (tls["detail"])
        )
        assert checks["auth"][0]["status"] == "OK" and checks["budget"][0]["status"] == "OK"

        # The same CA given to doctor alone; an unreadable NODE_EXTRA_CA_CERTS is pointed out.
        monkeypatch.setenv("NODE_EXTRA_CA_CERTS", str(env / "missing.pem"))
        code, checks, _ = run_doctor(capsys, "--ca-file", str(pki.ca))
        assert code == 0 and checks["tls"][0]["status"] == "WARN"
        (note,) = checks["environment"]
        assert note["status"] == "WARN" and "cannot be read" in note["detail"]
        assert main(["doctor", "--ca-file", str(env / "missing.pem")]) == 2
        assert "--ca-file" in capsys.readouterr().err


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers like a data plane's probe, records every request's headers."""

    seen: list[str] = []

    def do_GET(self) -> None:
        _Recorder.seen.append(str(self.headers))
        answers = {"/": b'{"service":"tollgate"}', "/healthz": b'{"status":"ok"}'}
        body = answers.get(self.path, b'{"type":"error","error":{"type":"not_found_error"}}')
        self.send_response(200 if self.path in answers else 404)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


def test_a_provider_key_is_refused_and_never_sent(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    provider_key = "sk-ant-api03-" + "x" * 40
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("ANTHROPIC_API_KEY", provider_key)
        code, checks, doc = run_doctor(capsys)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1
    (credential,) = checks["credential"]
    assert credential["status"] == "FAIL"
    assert (
        "ANTHROPIC_API_KEY: sk-ant-… (provider key), not a Tollgate virtual key"
        in (credential["detail"])
    )
    assert "export ANTHROPIC_AUTH_TOKEN=gw-" in credential["fix"]
    assert checks["auth"][0]["status"] == "SKIP"
    assert _Recorder.seen and not any("sk-ant" in headers for headers in _Recorder.seen)
    assert provider_key not in str(doc)


def test_a_provider_key_beside_the_virtual_key_warns(
    gw: Gateway, healthy_key: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", gw.url)
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", healthy_key)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-" + "y" * 40)
    code, checks, doc = run_doctor(capsys)
    assert code == 0
    (warning,) = checks["environment"]
    assert warning["status"] == "WARN" and "unset ANTHROPIC_API_KEY" in warning["fix"]
    assert doc["credential"]["source"] == "ANTHROPIC_AUTH_TOKEN"


def test_unknown_revoked_and_expired_keys(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    revoked_id, revoked = gw.key("team", "--provider", "sim")
    gw.admin("keys", "revoke", revoked_id, "--yes")
    gw.dp.wait_for(lambda _: gw.key_state(revoked).revoked)
    _, expired = gw.key("team", "--provider", "sim", "--expires", "1s")
    gw.dp.wait_for(lambda _: gw.key_state(expired).expires_at_ms < _now_ms())
    monkeypatch.setenv("ANTHROPIC_BASE_URL", gw.url)
    for secret, words in (
        ("gw-unknown-0123456789abcdefghijklmnopqrstuvwxyz", "is not a valid Tollgate virtual key"),
        (revoked, f"({revoked_id}) has been revoked"),
        (expired, "expired at"),
    ):
        monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", secret)
        code, checks, _ = run_doctor(capsys)
        assert code == 1, secret
        (auth,) = checks["auth"]
        assert auth["status"] == "FAIL" and words in auth["detail"], auth
        assert auth["fix"].startswith("ask your platform team for a new virtual key")
        assert checks["credential"][0]["status"] == "OK"  # the shape was fine: the gateway said no
        assert "budget" not in checks


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def test_a_data_plane_older_than_doctor(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """No /v1/tollgate/whoami (404): the gateway checks that need it are said to be skipped."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "gw-some-key-0123456789abcdefghijklmnop")
        code, checks, _ = run_doctor(capsys)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0
    (auth,) = checks["auth"]
    assert auth["status"] == "WARN" and "predates gwctl doctor" in auth["detail"]
    assert "budget" not in checks and "provider" not in checks
