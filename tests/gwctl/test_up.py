"""``gwctl up`` / ``up --status`` / ``down`` for real: two detached servers on free loopback ports.

Runs gwctl as a subprocess in a temporary working directory (so the default ``./.tollgate``
state dir is exercised), without ANTHROPIC_API_KEY (so the simulator provider is used), sends
one request through the data plane with the printed key, and always tears down.
"""

from __future__ import annotations

import html
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    # Whatever happened, leave no server behind.
    _gwctl(tmp_path, "down", "--timeout", "5")


def _gwctl(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOLLGATE_", "ANTHROPIC_"))}
    return subprocess.run(
        [sys.executable, "-m", "gwctl.main", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def _exports(stdout: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in stdout.splitlines():
        assert line.startswith("export "), line
        for pair in line.removeprefix("export ").split():
            key, _, value = pair.partition("=")
            values[key] = value
    return values


def test_up_status_request_down(workdir: Path) -> None:
    port, grpc_port = _free_port(), _free_port()
    first = _gwctl(workdir, "up", "--port", str(port), "--grpc-port", str(grpc_port))
    assert first.returncode == 0, first.stderr
    assert "SIMULATED" in first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == f"export ANTHROPIC_BASE_URL=http://127.0.0.1:{port}"
    assert lines[1].startswith("export ANTHROPIC_AUTH_TOKEN=gw-")
    assert lines[2].startswith(f"export TOLLGATE_CONTROL_PLANE=127.0.0.1:{grpc_port} ")
    exports = _exports(first.stdout)

    state = workdir / ".tollgate"
    for name in ("admin-token", "dataplane-token", "virtual-key", "master.key"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    master_key = (state / "master.key").read_text()
    assert (state / "admin-token").read_text().strip() == exports["TOLLGATE_ADMIN_TOKEN"]
    assert (state / "virtual-key").read_text().strip() == exports["ANTHROPIC_AUTH_TOKEN"]
    pids = {n: (state / f"{n}.pid").read_text().strip() for n in ("controlplane", "dataplane")}
    # Two tokens: the data plane never holds the admin token (it could administer the gateway).
    admin_token = exports["TOLLGATE_ADMIN_TOKEN"].encode()
    dp_token = (state / "dataplane-token").read_text().strip().encode()
    assert dp_token and dp_token != admin_token
    # Tokens are handed over in the environment, never on a command line anyone can `ps`.
    for pid in pids.values():
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists():
            assert admin_token not in cmdline.read_bytes()
            assert dp_token not in cmdline.read_bytes()
    dp_environ = Path(f"/proc/{pids['dataplane']}/environ")
    if dp_environ.exists():
        assert admin_token not in dp_environ.read_bytes()
        assert b"TOLLGATE_DATAPLANE_TOKEN=" + dp_token in dp_environ.read_bytes()

    # Idempotent: nothing restarted, the same key reused, the same lines printed.
    second = _gwctl(workdir, "up")
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("already running") == 2
    assert second.stdout == first.stdout
    assert {n: (state / f"{n}.pid").read_text().strip() for n in pids} == pids
    assert (state / "master.key").read_text() == master_key  # kept: stored secrets stay readable

    # The control plane got the master key: a provider key can be stored (from stdin).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOLLGATE_", "ANTHROPIC_"))}
    env.update(TOLLGATE_CONTROL_PLANE=exports["TOLLGATE_CONTROL_PLANE"],
               TOLLGATE_ADMIN_TOKEN=exports["TOLLGATE_ADMIN_TOKEN"])  # fmt: skip
    stored = subprocess.run(
        [sys.executable, "-m", "gwctl.main", "providers", "create", "stored", "--kind",
         "anthropic", "--api-key-stdin"],
        cwd=workdir, env=env, input="sk-ant-api03-up-test-key\n", capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert stored.returncode == 0, stored.stderr
    assert "API key stored on the control plane" in stored.stdout

    status = _gwctl(workdir, "up", "--status")
    assert status.returncode == 0, status.stdout
    assert status.stdout.count("healthy") == 2

    response = httpx.post(
        f"{exports['ANTHROPIC_BASE_URL']}/v1/messages",
        headers={
            "authorization": f"Bearer {exports['ANTHROPIC_AUTH_TOKEN']}",
            "anthropic-version": "2023-06-01",
        },
        json={"model": "claude-sonnet-4-5", "max_tokens": 32,
              "messages": [{"role": "user", "content": "hello"}]},
        timeout=20,
        trust_env=False,
    )  # fmt: skip
    assert response.status_code == 200, response.text

    down = _gwctl(workdir, "down")
    assert down.returncode == 0
    assert "controlplane: stopped" in down.stderr and "dataplane: stopped" in down.stderr
    assert not (state / "controlplane.pid").exists()
    assert _gwctl(workdir, "up", "--status").returncode == 1


def test_up_refuses_a_busy_port(workdir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        result = _gwctl(workdir, "up", "--grpc-port", str(taken), "--port", str(_free_port()))
    assert result.returncode == 1
    assert f"port 127.0.0.1:{taken} is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_with_the_dev_idp_signs_a_developer_in(workdir: Path) -> None:
    """``gwctl up --dev-idp``: the whole sign-in (device grant, browser at the development IdP,
    token), then a request as the developer, attributed to them; ``down`` stops the IdP too."""
    port, grpc_port, idp_port = _free_port(), _free_port(), _free_port()
    up = _gwctl(
        workdir, "up", "--port", str(port), "--grpc-port", str(grpc_port),
        "--dev-idp", "--dev-idp-port", str(idp_port),
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    assert "DEVELOPMENT identity provider" in up.stderr and "never for production" in up.stderr
    assert f'"forceLoginGatewayUrl": "http://127.0.0.1:{port}"' in up.stderr
    exports = _exports(up.stdout)
    gateway = f"http://127.0.0.1:{port}"

    with httpx.Client(trust_env=False, follow_redirects=False, timeout=20) as http:
        meta = http.get(f"{gateway}/.well-known/oauth-authorization-server").json()
        grant = http.post(meta["device_authorization_endpoint"]).json()
        code = grant["user_code"]
        # The browser: confirm the code, then sign in at the development IdP's form.
        assert http.get(f"{gateway}/device", params={"user_code": code}).status_code == 200
        to_idp = http.post(f"{gateway}/device", data={"user_code": code},
                           headers={"Origin": gateway})  # fmt: skip
        assert to_idp.status_code == 302, to_idp.text
        form_page = http.get(to_idp.headers["location"])
        assert "NOT for production" in form_page.text
        fields = dict(re.findall(r"<input type=hidden name='([^']*)' value='([^']*)'>",
                                 form_page.text))  # fmt: skip
        fields = {k: html.unescape(v) for k, v in fields.items()}
        back = http.post(f"http://127.0.0.1:{idp_port}/authorize",
                         data={**fields, "email": "newcomer@example.com", "name": "New Comer",
                               "groups": "developers"})  # fmt: skip
        assert back.status_code == 302, back.text
        done = http.get(back.headers["location"])  # the binding cookie rides along
        assert done.status_code == 200 and "newcomer@example.com" in done.text, done.text
        tokens = http.post(meta["token_endpoint"], data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": grant["device_code"],
        }).json()  # fmt: skip
        assert tokens["token_type"] == "Bearer" and tokens["refresh_token"], tokens

        deadline = time.monotonic() + 10
        while True:  # the new developer reaches the data plane with the next snapshot
            answer = http.post(
                f"{gateway}/v1/messages",
                headers={"authorization": f"Bearer {tokens['access_token']}",
                         "anthropic-version": "2023-06-01"},
                json={"model": "claude-sonnet-4-5", "max_tokens": 32,
                      "messages": [{"role": "user", "content": "hello"}]},
            )  # fmt: skip
            if answer.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert answer.status_code == 200, answer.text

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOLLGATE_", "ANTHROPIC_"))}
    env.update(TOLLGATE_CONTROL_PLANE=exports["TOLLGATE_CONTROL_PLANE"],
               TOLLGATE_ADMIN_TOKEN=exports["TOLLGATE_ADMIN_TOKEN"])  # fmt: skip
    listed = subprocess.run(
        [sys.executable, "-m", "gwctl.main", "developers", "list", "-o", "json"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "newcomer@example.com" in listed.stdout

    status = _gwctl(workdir, "up", "--status")
    assert "dev-idp" in status.stdout
    down = _gwctl(workdir, "down")
    assert "dev-idp: stopped" in down.stderr, down.stderr
    assert not (workdir / ".tollgate" / "dev-idp.pid").exists()
