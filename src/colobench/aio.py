"""The one asyncio event loop of a process: uvloop where it exists (its C loop takes a third off
the per-chunk cost of a stream; it has no Windows build), else asyncio's own.

One loop serves every repetition of a worker, so connections opened in one are still usable in
the next."""

from __future__ import annotations

import asyncio
from typing import Any

try:
    import uvloop
except ImportError:  # Windows: uvloop is not built there (see pyproject's marker)
    uvloop = None

_LOOP: asyncio.AbstractEventLoop | None = None


def new_event_loop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()


def run(coro: Any) -> Any:
    """Run a coroutine to completion on this process's event loop."""
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = new_event_loop()
    return _LOOP.run_until_complete(coro)
