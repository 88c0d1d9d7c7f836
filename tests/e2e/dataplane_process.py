"""``gwctl dataplane serve`` as its own process, for end-to-end tests that need a data plane that
can be killed, restarted or run twice (its log is next to its state directory)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from tests.e2e.test_gateway import ROOT, stop_process


class DataPlaneProcess:
    def __init__(
        self,
        control_plane: str,
        state_dir: Path,
        public_url: str,
        port: int,
        env: Mapping[str, str],
        extra_args: Sequence[str] = (),
    ) -> None:
        """``env``: the process's variables beyond the test's own (the data-plane token, the
        upstream's key); ``extra_args``: flags beyond listen, control plane and state dir."""
        self.control_plane, self.state_dir, self.public_url = control_plane, state_dir, public_url
        self.port, self.env, self.extra_args = port, dict(env), list(extra_args)
        self.log = state_dir.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, snapshot: bool = True) -> None:
        """Starts the process and waits until /healthz says it serves (``snapshot``) or, when
        not, at least answers (a 503 while it has no configuration)."""
        args = ["--listen", f"127.0.0.1:{self.port}", "--control-plane", self.control_plane]
        args += ["--state-dir", str(self.state_dir), "--drain-seconds", "0", "--graceful-s", "2"]
        env = {**os.environ, **self.env, "TOLLGATE_PUBLIC_URL": self.public_url}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gwctl.main", "dataplane", "serve", *args, *self.extra_args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as probe:
            while True:
                try:
                    status = (await probe.get("/healthz")).status_code
                    if status == 200 or (status == 503 and not snapshot):
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("data plane did not start:\n" + self.log.read_text()[-3000:])
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10)
