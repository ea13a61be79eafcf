"""A local HTTP endpoint for the integrations Swapline calls out to (CRMs' webhooks, ad
platforms' upload APIs), which tests cannot reach from here: it keeps every request and answers
as the test's `respond` says, so a test checks the documented request shape and plays the
other side's failures."""

from __future__ import annotations

import ssl
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
    trickle: float = 0.0  # seconds between the body's bytes: an answer that takes its time, a byte at a time
    filler: int = 0  # bytes of zeros after the body: a huge answer, never held whole here


FILLER = bytes(1 << 16)


class Receiver:
    """`tls`: answers over HTTPS with this context (a certificate the caller may not trust)."""

    def __init__(self, respond: Callable[[Request], Answer] = lambda request: Answer(),
                 tls: ssl.SSLContext | None = None) -> None:
        self.respond = respond
        self.requests: list[tuple[Request, Answer]] = []
        self.finished: list[Request] = []  # whose answer was written whole
        self.hung_up: list[tuple[Request, int]] = []  # whose caller left before the answer's end: bytes it took
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
                self.send_header("content-length", str(len(answer.body) + answer.filler))
                self.end_headers()
                self.written = 0
                try:
                    self.write(answer)
                except (BrokenPipeError, ConnectionResetError):
                    with receiver.lock:
                        receiver.hung_up.append((request, self.written))
                    return
                with receiver.lock:
                    receiver.finished.append(request)

            def write(self, answer: Answer) -> None:
                pieces = [answer.body[i:i + 1] for i in range(len(answer.body))] if answer.trickle else [answer.body]
                for piece in pieces:
                    time.sleep(answer.trickle)
                    self.written += self.wfile.write(piece)
                    self.wfile.flush()
                for start in range(0, answer.filler, len(FILLER)):
                    self.written += self.wfile.write(FILLER[:answer.filler - start])

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server.server_address[1]}"
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
