"""JSON responses through orjson, and the one error shape every client sees."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from service.errors import HTTPError


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSON:
    return JSON({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def refusal(exc: HTTPError) -> JSON:
    """The answer to a request refused with `exc`."""
    return error(exc.status, exc.code, exc.message)
