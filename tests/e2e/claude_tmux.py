"""Drive the real, interactive Claude Code CLI in tmux (for ``/login`` with a Cloud gateway).

``claude -p`` cannot sign in: the gateway login is an interactive screen. These helpers run the
CLI in a detached tmux session on a private tmux socket, read the screen with ``capture-pane``
and type with ``send-keys``, as a person would.

Facts this relies on (Claude Code 2.1.197, observed; see also ../shared/GATEWAY-PROTOCOL.md):

* The *Cloud gateway* login appears only when the **managed settings** file
  (``/etc/claude-code/managed-settings.json`` on Linux, an admin-only path) says
  ``{"forceLoginMethod": "gateway", "forceLoginGatewayUrl": URL}``; there is no per-user
  override. :func:`managed_settings` writes it for the duration of a test and restores what
  was there. Because that file changes every ``claude`` started meanwhile, every test that runs
  the real CLI holds :func:`cli_lock` (an ``fcntl`` lock), which :func:`managed_settings` takes.
* Keys sent while the CLI is still drawing are lost: type only once the expected screen shows
  (:meth:`ClaudeTerminal.wait_for`).
* After *Connected to Cloud gateway* the CLI waits for Enter. When the policy fetched right after
  sign-in carries ``env``, the CLI exits after the sign-in screen; starting ``claude`` again in
  the same HOME picks up the session and the policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urljoin

import httpx

ROOT = Path(__file__).resolve().parents[2]
CLAUDE = ROOT / "node_modules" / ".bin" / "claude"
MANAGED_DIR = Path("/etc/claude-code")
MANAGED_FILE = MANAGED_DIR / "managed-settings.json"
LOCK_FILE = Path(os.environ.get("TMPDIR", "/tmp")) / "tollgate-claude-cli.lock"
USER_CODE = re.compile(r"\b([BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4})\b")


@contextlib.contextmanager
def cli_lock() -> Iterator[None]:
    """Exclusive use of the real CLI's machine-wide state (the managed-settings file)."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.asynccontextmanager
async def cli_lock_async() -> AsyncIterator[None]:
    """:func:`cli_lock` for a coroutine (waits in a thread; the event loop keeps running).
    Not re-entrant: never take it inside :func:`managed_settings`, which holds it already."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "a") as f:
        await asyncio.to_thread(fcntl.flock, f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def managed_settings(gateway_url: str) -> Iterator[Path]:
    """Point every Claude Code on this machine at ``gateway_url`` (the company's deployment
    of managed settings), restoring the previous file (or its absence) afterwards."""
    with cli_lock():
        created_dir = not MANAGED_DIR.exists()
        previous = MANAGED_FILE.read_bytes() if MANAGED_FILE.exists() else None
        MANAGED_DIR.mkdir(parents=True, exist_ok=True)
        MANAGED_FILE.write_text(
            json.dumps({"forceLoginMethod": "gateway", "forceLoginGatewayUrl": gateway_url})
        )
        try:
            yield MANAGED_FILE
        finally:
            if previous is None:
                MANAGED_FILE.unlink(missing_ok=True)
                if created_dir:
                    with contextlib.suppress(OSError):
                        MANAGED_DIR.rmdir()
            else:
                MANAGED_FILE.write_bytes(previous)


def new_home(base: Path) -> Path:
    """A fresh HOME whose CLI skips the first-run screens (which would reach the internet)."""
    home = base / f"home-{uuid.uuid4().hex[:8]}"
    home.mkdir(parents=True)
    (home / ".claude.json").write_text(
        json.dumps({"hasCompletedOnboarding": True, "theme": "dark"})
    )
    return home


class ClaudeTerminal:
    """One interactive ``claude`` in a detached tmux session (private socket)."""

    def __init__(self, home: Path, workdir: Path, env: dict[str, str] | None = None) -> None:
        tmux = shutil.which("tmux")
        if tmux is None:
            raise RuntimeError("tmux is not installed (apt-get install tmux)")
        if not CLAUDE.exists():
            raise RuntimeError(f"Claude Code is not installed at {CLAUDE}: run `make install`")
        self.tmux = tmux
        self.home = home
        self.workdir = workdir
        self.socket = f"tollgate-{uuid.uuid4().hex[:10]}"
        self.session = "claude"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "TERM": "xterm-256color",
            "LANG": "C.UTF-8",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            **(env or {}),
        }

    def _tmux(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            [self.tmux, "-L", self.socket, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"tmux {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = "env -i " + " ".join(
            shlex.quote(f"{k}={v}") for k, v in self.env.items()
        ) + " " + shlex.quote(str(CLAUDE))  # fmt: skip
        self._tmux(
            "new-session", "-d", "-s", self.session, "-x", "120", "-y", "40",
            "-c", str(self.workdir), command,
        )  # fmt: skip
        self._tmux("set-option", "-t", self.session, "remain-on-exit", "on")

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.session, check=False)

    def alive(self) -> bool:
        out = self._tmux(
            "display-message", "-p", "-t", self.session, "#{pane_dead}", check=False
        ).strip()
        return out == "0"

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Wait until the screen matches ``pattern`` (a regex); the match, or an error showing
        the last screen."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        last = ""
        while time.monotonic() < deadline:
            last = self.screen()
            match = regex.search(last)
            if match is not None:
                return match
            time.sleep(0.2)
        raise AssertionError(f"screen never showed {pattern!r} in {timeout} s; it shows:\n{last}")

    def keys(self, *keys: str) -> None:
        """Send tmux key names (``Enter``, ``Up``, ``Escape``) or literal text."""
        for key in keys:
            self._tmux("send-keys", "-t", self.session, key)
            time.sleep(0.15)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", self.session, "-l", text)
        time.sleep(0.2)

    def close(self) -> None:
        self._tmux("kill-server", check=False)

    def __enter__(self) -> ClaudeTerminal:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the steps a person takes -----------------------------------------------------------

    def trust_folder(self) -> None:
        self.wait_for(r"Yes, I trust this folder")
        self.keys("Enter")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """The input line is showing: keys typed now are not lost."""
        self.wait_for(r"\? for shortcuts", timeout)

    def begin_gateway_login(self) -> str:
        """``/login`` → Cloud gateway → trust it; returns the user code the CLI shows."""
        self.type("/login")
        self.keys("Enter")
        self.wait_for(r"Cloud gateway")
        self.wait_for(r"Press Enter to connect")
        self.keys("Enter")
        self.wait_for(r"Yes, trust this gateway")
        self.keys("Up", "Enter")  # the default is "No, go back"
        match = self.wait_for(USER_CODE.pattern)
        return match.group(1)

    def finish_gateway_login(self, timeout: float = 30.0) -> None:
        self.wait_for(r"Connected to Cloud gateway", timeout)
        self.keys("Enter")


def browser_sign_in(base_url: str, user_code: str) -> httpx.Response:
    """Act as the developer's browser: open the verification page, confirm the code, follow the
    identity provider's redirects (a test IdP that signs in without a form) back to the gateway;
    returns the gateway's final page."""
    with httpx.Client(follow_redirects=False, timeout=15) as browser:
        page = browser.get(urljoin(base_url, "/device"), params={"user_code": user_code})
        page.raise_for_status()
        r = browser.post(
            urljoin(base_url, "/device"),
            data={"user_code": user_code},
            headers={"Origin": base_url.rstrip("/")},
        )
        for _ in range(10):
            if r.status_code not in (301, 302, 303, 307, 308):
                return r
            r = browser.get(urljoin(str(r.url), r.headers["location"]))
        raise AssertionError("too many redirects in the browser sign-in")
