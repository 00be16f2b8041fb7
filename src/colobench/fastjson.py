"""JSON for the hot paths: orjson when installed (several times faster for records and SSE
chunks), the standard library otherwise, so colobench still runs from a source tree on machines
that have only the basics (a lent GPU box, say)."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    loads = orjson.loads
    JSONDecodeError: type[Exception] = orjson.JSONDecodeError
except ImportError:  # pragma: no cover - exercised where orjson is absent
    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    loads = json.loads
    JSONDecodeError = json.JSONDecodeError
