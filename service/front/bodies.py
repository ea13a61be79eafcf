"""Request bodies: read up to a limit, parsed as the JSON object an endpoint expects."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from service.errors import BadRequest, TooLarge


async def read(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (declared or streamed). A
    client that goes away, or runs out of time to send it (`service.front.protocol`), raises
    `ClientDisconnect`."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise TooLarge("body_too_large", f"the body is larger than {limit} bytes")
    chunks, size, more = [], 0, True
    while more:  # the ASGI messages themselves: a beacon's body is one message, no generator needed
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk, more = message.get("body", b""), message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise TooLarge("body_too_large", f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("invalid_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("invalid_json", "the body must be a JSON object")
    return data
