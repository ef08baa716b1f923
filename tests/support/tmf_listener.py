"""A TMF event listener for tests: an HTTP server on 127.0.0.1 recording every notification POSTed
to /listener/<eventType>, which can be told to answer 503 (down) to make the hub retry."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Listener:
    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.attempts = 0
        self.refusing = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                owner.attempts += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                if owner.refusing:
                    self.send_response(503)
                    self.end_headers()
                    return
                owner.received.append((self.path, body))
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [body for _, body in self.received if body.get("eventType") == event_type]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
