"""Parts of answers made once in JSON and kept, to be sent as they are (`orjson.Fragment`).

orjson writes into a buffer of 4 KiB and hands that buffer over as the `bytes` it returns,
however short the JSON: a memo of a few thousand parts held tens of MiB of empty buffers. A
part to keep is copied out of its buffer once, when it is made (docs/PERFORMANCE.md, "Memory").
"""

from __future__ import annotations

from typing import Any

import orjson


def kept(value: Any) -> orjson.Fragment:
    """`value` in JSON, in bytes of its own length."""
    return orjson.Fragment(bytes(memoryview(orjson.dumps(value))))
