"""A Slack incoming webhook on 127.0.0.1, as strict as Slack's about what it accepts.

Like ``https://hooks.slack.com/services/T…/B…/…``: a POST to :attr:`FakeSlack.url` with
``Content-Type: application/json`` and a JSON object whose ``text`` is a non-empty string (or
that has ``blocks``) is answered ``200`` with the body ``ok``; otherwise ``400`` with Slack's
error bodies (``invalid_payload``, ``no_text``); another path ``404 no_service``. ``script``
answers the first well-formed requests instead, in order, each as ``(status, headers)`` — e.g.
``[(500, {}), (429, {"Retry-After": "2"})]`` — and every request is kept in :attr:`requests`
(arrival time on the monotonic clock, headers, parsed body, the answer's status).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.threaded_http import ThreadedHTTP

PATH = "/services/T0TOLLGATE/B0ALERTS/s3cr3tT0ken"


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic()
    headers: dict[str, str]
    body: Any
    status: int


class FakeSlack(ThreadedHTTP):
    def __init__(self, script: list[tuple[int, dict[str, str]]] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        slack = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra, text = slack._answer(self.path, headers, raw)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                payload = text.encode()
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self._serve(Handler)

    def _answer(
        self, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], str]:
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        extra: dict[str, str]
        with self._lock:
            if path != PATH:
                status, extra, text = 404, {}, "no_service"
            elif headers.get("content-type", "").split(";")[0].strip() != "application/json":
                status, extra, text = 400, {}, "invalid_payload"
            elif not isinstance(body, dict):
                status, extra, text = 400, {}, "invalid_payload"
            elif not (isinstance(body.get("text"), str) and body["text"].strip()) and not (
                body.get("blocks")
            ):
                status, extra, text = 400, {}, "no_text"
            elif self.script:  # a well-formed message meets the scripted trouble
                status, extra = self.script.pop(0)
                text = "ok" if status == 200 else "rate_limited" if status == 429 else "error"
            else:
                status, extra, text = 200, {}, "ok"
            self.requests.append(Received(time.monotonic(), headers, body, status))
        return status, extra, text

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"
