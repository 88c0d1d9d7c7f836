"""Local process management for ``gwctl up`` / ``down``: state files, detached servers, pids.

Contracts:

* Secret files (tokens, the virtual key) are created with mode 0600 and written atomically; their
  content is never printed by this module.
* ``spawn`` starts ``python -m gwctl.main <argv>`` in its own session (so it survives the
  terminal, and ``stop`` can signal its whole process group), with stdout/stderr appended to
  ``<state>/<name>.log`` and its pid in ``<state>/<name>.pid``.
* ``running_pid`` only trusts a pid file whose process is alive *and* (where /proc exists) is a
  gwctl server of that name: a stale file whose pid was reused is never signalled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """Where ``gwctl up`` keeps its state (default ``./.tollgate``)."""

    root: Path

    @classmethod
    def at(cls, path: str | Path) -> Layout:
        return cls(Path(path).expanduser().resolve())

    @property
    def admin_token(self) -> Path:
        return self.root / "admin-token"

    @property
    def dataplane_token(self) -> Path:
        return self.root / "dataplane-token"

    @property
    def virtual_key(self) -> Path:
        return self.root / "virtual-key"

    @property
    def virtual_key_id(self) -> Path:
        return self.root / "virtual-key.id"

    @property
    def state_file(self) -> Path:
        return self.root / "up.json"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.root / 'tollgate.db'}"

    @property
    def dataplane_dir(self) -> Path:
        return self.root / "dataplane"

    def pid_file(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def display(self, path: Path) -> str:
        """A path relative to the working directory when that is shorter (for messages)."""
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)


def write_private(path: Path, text: str) -> None:
    """Atomically replace ``path`` with ``text``, readable by the owner only (0600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def ensure_secret(path: Path, nbytes: int = 32) -> str:
    """The secret stored in ``path``, generated (and persisted 0600) on first use."""
    value = read_text(path)
    if value:
        # Tighten permissions if someone loosened them; the file holds an admin credential.
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return value
    value = secrets.token_urlsafe(nbytes)
    write_private(path, value + "\n")
    return value


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _is_our_server(pid: int, name: str) -> bool:
    """Whether ``pid`` runs ``gwctl.main <name> serve``; assumed yes where /proc is missing."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self/cmdline").exists():
        return True
    try:
        argv = cmdline.read_bytes().split(b"\0")
    except OSError:
        return False
    return b"gwctl.main" in argv and name.encode() in argv and b"serve" in argv


def running_pid(layout: Layout, name: str) -> int | None:
    """The pid of our running ``name`` server, or None (a stale pid file is removed)."""
    text = read_text(layout.pid_file(name))
    if not text.isdigit():
        return None
    pid = int(text)
    if pid_alive(pid) and _is_our_server(pid, name):
        return pid
    layout.pid_file(name).unlink(missing_ok=True)
    return None


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a port in TIME_WAIT after `down` is free to use, a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def spawn(
    layout: Layout, name: str, argv: list[str], env: dict[str, str | None] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``python -m gwctl.main <argv>`` detached; see the module contract.

    ``env`` adds variables to the inherited environment (``None`` removes one). Secrets go there
    rather than in ``argv``: a command line is visible to every local user in ``ps``.
    """
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value
    log_path = layout.log_file(name)
    with open(log_path, "ab") as log:
        log.write(f"\n--- gwctl up: starting {name} at {time.strftime('%F %T')} ---\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "gwctl.main", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=child_env,
        )
    write_private(layout.pid_file(name), f"{proc.pid}\n")
    return proc


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(content[-lines:])


def stop(layout: Layout, name: str, timeout: float = 10.0) -> int | None:
    """SIGTERM the server's process group, wait up to ``timeout``, then SIGKILL.

    Returns the pid that was stopped, or None when it was not running. The pid file is removed.
    """
    pid = running_pid(layout, name)
    if pid is None:
        layout.pid_file(name).unlink(missing_ok=True)
        return None
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        _reap(pid)
        time.sleep(0.05)
    if pid_alive(pid):
        _signal(pid, signal.SIGKILL)
        for _ in range(40):
            _reap(pid)
            if not pid_alive(pid):
                break
            time.sleep(0.05)
    layout.pid_file(name).unlink(missing_ok=True)
    return pid


def _signal(pid: int, sig: signal.Signals) -> None:
    # spawn() made the server a session (and process group) leader: signal the group so any
    # worker it started goes too; fall back to the pid alone if it is not a group leader.
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
            return
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status when the server is our own child (started by this process)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
