"""Child processes of the benchmark: start with output to files, wait until ready, stop by pid."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with code {self.proc.returncode}:\n{self.tail()}"
            )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (graceful), then SIGKILL if it does not exit in time. Only this pid."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def spawn(name: str, args: list[str], workdir: Path, env: Mapping[str, str] | None = None) -> Child:
    log = workdir / f"{name}.log"
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Child(name, proc, log)


def wait_for_file(child: Child, path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        child.check_alive()
        time.sleep(0.02)
    raise TimeoutError(f"{child.name} not ready after {timeout:.0f}s:\n{child.tail()}")


def wait_for_json(child: Child, path: Path, timeout: float = 30.0) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(wait_for_file(child, path, timeout))
    return data


def wait_for_log(child: Child, pattern: str, timeout: float = 30.0) -> re.Match[str]:
    """Wait until the child's log has a line matching ``pattern``."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = rx.search(child.log.read_text(errors="replace"))
        if m:
            return m
        child.check_alive()
        time.sleep(0.05)
    raise TimeoutError(
        f"{child.name}: no line matching {pattern!r} after {timeout:.0f}s:\n{child.tail()}"
    )


def start_upstream(work: Path, children: list[Child], *extra_args: str) -> tuple[Child, int]:
    """``bench.upstream`` (the fast fake upstream) on a free port, added to ``children``: the
    child and its port."""
    ready = work / "upstream.ready"
    upstream = spawn(
        "upstream", ["-m", "bench.upstream", "--ready-file", str(ready), *extra_args], work
    )
    children.append(upstream)
    return upstream, int(wait_for_file(upstream, ready))


def start_bare_relay(work: Path, children: list[Child], upstream_port: int) -> tuple[Child, int]:
    """``bench.bare_relay`` (the frameworks' floor) in front of the upstream on ``upstream_port``,
    added to ``children``: the child and its port."""
    ready = work / "bare.ready"
    upstream = f"http://127.0.0.1:{upstream_port}"
    child = spawn(
        "bare", ["-m", "bench.bare_relay", "--ready-file", str(ready), "--upstream", upstream], work
    )
    children.append(child)
    return child, int(wait_for_json(child, ready)["port"])


def start_controlplane(
    work: Path,
    children: list[Child],
    db_url: str,
    tokens: tuple[str, str],
    *,
    name: str = "controlplane",
    python_args: Sequence[str] = ("-m", "controlplane"),
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
) -> tuple[Child, str]:
    """A control plane on a free loopback port (``python_args`` run it), added to ``children``:
    the child and its gRPC address. ``tokens`` (admin, data plane) go in its environment, never in
    argv (`ps` would show them)."""
    admin_token, dp_token = tokens
    cp = spawn(
        name,
        [*python_args, "--listen", "127.0.0.1:0", "--db", db_url, *extra_args],
        work,
        env={"TOLLGATE_ADMIN_TOKEN": admin_token, "TOLLGATE_DATAPLANE_TOKEN": dp_token},
    )
    children.append(cp)
    return cp, wait_for_log(cp, r"control plane listening on (\S+:\d+)", timeout).group(1)


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict (VmHWM, VmRSS, Threads, …)."""
    out: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def kib(value: str) -> int:
    """'123456 kB' -> 123456"""
    return int(value.split()[0])
