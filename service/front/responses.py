"""JSON responses through orjson, and the one error shape every client sees."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from starlette.responses import Response

from service.errors import HTTPError

_JSON_TYPE = (b"content-type", b"application/json")
RawHeaders = Sequence[tuple[bytes, bytes]]  # (lower-case name, value), as ASGI sends them


class JSON(Response):
    """A JSON answer, its headers made directly: every answer here has a body and its own
    content type, so Starlette's general header handling (4–6 µs of every decision and
    beacon in the profiles) is not needed. `headers` come encoded: the hot routes' CORS
    headers are made once per origin (`service.front.cors`)."""

    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200, headers: RawHeaders = ()) -> None:
        self.status_code = status_code
        self.background = None
        self.body = orjson.dumps(content)
        self.raw_headers = [*headers, (b"content-length", b"%d" % len(self.body)), _JSON_TYPE]


def reset(headers: RawHeaders = ()) -> Response:
    """205 Reset Content, without a body (HTTP allows none): what the client shows is to be
    asked for again."""
    response = Response(status_code=205)
    response.raw_headers.extend(headers)
    return response


def _encoded(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSON:
    return JSON({"error": {"code": code, "message": message}}, status_code=status, headers=_encoded(headers or {}))


def refusal(exc: HTTPError) -> JSON:
    """The answer to a request refused with `exc`."""
    return error(exc.status, exc.code, exc.message, exc.headers)
