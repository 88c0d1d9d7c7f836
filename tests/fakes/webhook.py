"""A webhook receiver on 127.0.0.1 (stdlib ``http.server`` in a thread), for alert delivery tests.

``with WebhookSink(statuses=[500, 200]) as sink:`` answers each POST with the next status (the
last one repeats), records every JSON body in ``sink.bodies`` and can stall (``delay_s``) to
exercise client timeouts. Usable from sync and async tests alike.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class WebhookSink:
    def __init__(self, statuses: list[int] | None = None, delay_s: float = 0.0) -> None:
        self.statuses = list(statuses or [200])
        self.delay_s = delay_s
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
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/tollgate"

    def __enter__(self) -> WebhookSink:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
