"""gzip for the CSV files analysts download, where the client takes it.

A month of calls is megabytes of text, which compresses well. The compressing runs in
the downloads' thread (`service.analytics.one_thread`), never in the event loop, as the file's
own writing does. Workbooks are zip archives already; every other answer is left as it is.
"""

from __future__ import annotations

import gzip

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.analytics import one_thread

LEVEL = 6  # zlib's default: most of level 9's gain for a fraction of its time


class CompressedFiles:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith(".csv") or not _takes_gzip(scope):
            await self.app(scope, receive, send)
            return
        started: Message | None = None

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = message  # sent with the body, once its length is known
                return
            if started is not None:
                start, started = started, None
                if _csv(start) and not message.get("more_body"):
                    body = await one_thread.run(_gzipped, message.get("body", b""))
                    headers = [(name, value) for name, value in start["headers"] if name != b"content-length"]
                    await send({**start, "headers": [*headers, (b"content-encoding", b"gzip"),
                                                     (b"vary", b"accept-encoding"),
                                                     (b"content-length", b"%d" % len(body))]})
                    await send({**message, "body": body})
                    return
                await send(start)
            await send(message)

        await self.app(scope, receive, sending)


def _gzipped(body: bytes) -> bytes:
    return gzip.compress(body, LEVEL, mtime=0)  # no time in its header: the same file, the same bytes


def _takes_gzip(scope: Scope) -> bool:
    return any(name == b"accept-encoding" and b"gzip" in value.lower() for name, value in scope["headers"])


def _csv(start: Message) -> bool:
    return start["status"] == 200 and any(name == b"content-type" and value.startswith(b"text/csv")
                                          for name, value in start["headers"])
