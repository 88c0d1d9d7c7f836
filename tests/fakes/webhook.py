"""A webhook receiver on 127.0.0.1 (stdlib ``http.server`` in a thread), for alert delivery tests.

``with WebhookSink(statuses=[500, 200]) as sink:`` answers each POST with the next status (the
last one repeats), records every JSON body in ``sink.bodies`` and can stall (``delay_s``) to
exercise client timeouts. With ``endless_body`` each answer's body never ends (bytes are written
until the client hangs up; ``sink.body_bytes_sent`` counts them), for clients that must not read
a whole answer. With ``trickle_s`` the answer's header lines come one every ``trickle_s`` seconds
for ``trickle_lines`` lines (a receiver keeping a client busy without ever idling long enough for
a per-read timeout). Usable from sync and async tests alike.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.threaded_http import ThreadedHTTP


class WebhookSink(ThreadedHTTP):
    def __init__(
        self,
        statuses: list[int] | None = None,
        delay_s: float = 0.0,
        endless_body: bool = False,
        trickle_s: float = 0.0,
        trickle_lines: int = 20,
    ) -> None:
        self.trickle_s = trickle_s
        self.trickle_lines = trickle_lines
        self.statuses = list(statuses or [200])
        self.delay_s = delay_s
        self.endless_body = endless_body
        self.body_bytes_sent = 0
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with sink._lock:
                    sink.bodies.append(json.loads(body or b"null"))
                    sink.headers.append({k.lower(): v for k, v in self.headers.items()})
                    status = sink.statuses.pop(0) if len(sink.statuses) > 1 else sink.statuses[0]
                if sink.delay_s:
                    time.sleep(sink.delay_s)
                if sink.trickle_s:
                    try:
                        self.wfile.write(f"HTTP/1.1 {status} OK\r\n".encode())
                        for n in range(sink.trickle_lines):
                            time.sleep(sink.trickle_s)
                            self.wfile.write(f"x-pad-{n}: .\r\n".encode())
                        self.wfile.write(b"content-length: 0\r\n\r\n")
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                self.send_response(status)
                if not sink.endless_body:
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                self.send_header("content-type", "text/plain")
                self.end_headers()  # no length: the body lasts until the connection closes
                self.close_connection = True
                chunk = b"x" * 65536
                deadline = time.monotonic() + 30
                try:
                    while time.monotonic() < deadline:
                        self.wfile.write(chunk)
                        with sink._lock:
                            sink.body_bytes_sent += len(chunk)
                except OSError:  # the client hung up, as it should
                    return

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self._serve(Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/tollgate"
