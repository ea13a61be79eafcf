"""A local HTTP endpoint for the integrations Swapline calls out to (CRMs' webhooks, ad
platforms' upload APIs), which tests cannot reach from here: it keeps every request and answers
as the test's `respond` says, so a test checks the documented request shape and plays the
other side's failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple


class Request(NamedTuple):
    method: str
    path: str  # with its query
    headers: dict[str, str]  # names in lower case
    body: bytes


class Answer(NamedTuple):
    status: int = 200
    body: bytes = b""
    delay: float = 0.0  # seconds before answering: longer than the caller's timeout is a timeout


class Receiver:
    def __init__(self, respond: Callable[[Request], Answer] = lambda request: Answer()) -> None:
        self.respond = respond
        self.requests: list[tuple[Request, Answer]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                  self.rfile.read(length))
                answer = receiver.respond(request)
                time.sleep(answer.delay)
                with receiver.lock:
                    receiver.requests.append((request, answer))
                self.send_response(answer.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def taken(self, path: str) -> list[Request]:
        """The requests to `path` (without query) that were answered 2xx."""
        with self.lock:
            return [request for request, answer in self.requests
                    if request.path.partition("?")[0] == path and 200 <= answer.status < 300]

    def wait(self, until: Callable[[], bool], deadline: float = 60) -> None:
        """Until `until()` holds: a deadline as a safety net, never a sleep to pass the time."""
        end = time.monotonic() + deadline
        while not until():
            assert time.monotonic() < end, "the receiver never got what the test waits for"
            time.sleep(0.05)

    def close(self) -> None:
        self.server.shutdown()
