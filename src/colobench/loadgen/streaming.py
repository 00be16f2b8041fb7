"""Closed- and open-loop load against a streaming backend, on one asyncio event loop.

Closed loop: `concurrency` requests are in flight at all times; each completion sends the next.
Open loop: request k is due at `start + offset[k]` (absolute deadlines on the monotonic clock,
so lateness never accumulates into the achieved rate); with a concurrency cap a due request
waits for a free slot. Each record keeps `scheduled_ns` (when it was due) and `submit_ns` (when
it was actually sent): their difference is the schedule lag, which includes any wait for a slot,
and latency is measured from the schedule, as a user would feel it.

Timer precision: the event loop's sleep resolution is about a millisecond, so the driver sleeps
until just before a deadline and then yields to the loop (which keeps serving token streams)
until the deadline passes.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterator

from colobench.backends.base import Completion
from colobench.clock import now_ns
from colobench.errors import error_text
from colobench.loadgen.health import Backoff
from colobench.loadgen.recorder import Recorder
from colobench.workload.synthetic import Request

SPIN_BEFORE_DEADLINE_NS = 1_000_000
UNTIL_POLL_S = 0.02


async def _send(backend: Any, request: Request, recorder: Recorder, scheduled_ns: int | None,
                on_done: Callable[[int], None] | None) -> str | None:
    """Send one request and record it; return its error (None when it succeeded)."""
    submit = now_ns()
    try:
        completion = await backend.request(request)
    except Exception as exc:  # a failed request is recorded; the others carry on
        completion = Completion.failed(error_text(exc))
    recorder.record(request, submit, completion, scheduled_ns=scheduled_ns)
    if on_done:
        on_done(1)
    return completion.error


async def _sleep_until(deadline_ns: int, until: Callable[[], bool] | None = None) -> None:
    """Sleep to a deadline; with `until`, wake at least every `UNTIL_POLL_S` to see whether to stop."""
    while until is not None and deadline_ns - now_ns() > UNTIL_POLL_S * 1e9:
        if until():
            return
        await asyncio.sleep(UNTIL_POLL_S)
    delay = deadline_ns - now_ns()
    if delay > SPIN_BEFORE_DEADLINE_NS:
        await asyncio.sleep((delay - SPIN_BEFORE_DEADLINE_NS) / 1e9)
    while now_ns() < deadline_ns:
        await asyncio.sleep(0)


Unit = Request | list[Request]  # a request, or a multi-turn session's turns in order


def sessions_of(requests: list[Request]) -> list[Unit]:
    """Requests as the loops take them: a multi-turn session's turns together, in order (each
    turn waits for the previous answer and its think time); other requests alone."""
    units: list[Unit] = []
    for r in requests:
        if r.session is not None and r.turn > 0 and units and isinstance(units[-1], list) \
                and units[-1][-1].session == r.session:
            units[-1].append(r)
        else:
            units.append([r] if r.session is not None else r)
    return units


async def closed_loop(backend: Any, requests: Iterator[Unit], concurrency: int, recorder: Recorder,
                      until: Callable[[], bool] | None = None, on_done: Callable[[int], None] | None = None) -> None:
    """Keep `concurrency` requests (or sessions) in flight until `requests` runs out or `until()`
    is true."""

    def stop() -> bool:
        return (until is not None and until()) or recorder.stopped

    async def slot() -> None:
        backoff = Backoff()
        for unit in requests:  # a shared iterator: each slot takes the next request or session
            for request in (unit if isinstance(unit, list) else (unit,)):
                if stop():
                    return
                if request.think_s:
                    await asyncio.sleep(request.think_s)
                delay = backoff.after(await _send(backend, request, recorder, None, on_done))
                if delay:  # the server refused or dropped the connection: this slot waits, unmeasured
                    await asyncio.sleep(delay)

    await asyncio.gather(*(slot() for _ in range(concurrency)))
    recorder.flush()


async def open_loop(backend: Any, requests: list[Unit], offsets_s: list[float], recorder: Recorder,
                    max_concurrency: int | None = None, on_done: Callable[[int], None] | None = None,
                    start_ns: int | None = None, until: Callable[[], bool] | None = None) -> int:
    """Send request k at start + offsets_s[k]; return the start time (ns). Client processes that
    share one schedule pass the same `start_ns`. Stop sending once `until()` is true (the requests
    in flight complete). A session starts at its offset; each later turn is due its think time
    after the previous answer (a trace's turn at its own time, but not before that answer), and is
    recorded with that due time."""
    slots = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    start = start_ns if start_ns is not None else now_ns()
    tasks = []

    async def send_in_slot(request: Request, due: int) -> None:
        assert slots is not None
        try:
            await _send(backend, request, recorder, due, on_done)
        finally:
            slots.release()

    def stop() -> bool:
        return (until is not None and until()) or recorder.stopped

    async def session(turns: list[Request], due: int) -> None:
        for k, request in enumerate(turns):
            if k:
                if stop():
                    return
                if request.at_s is not None:  # a trace's turn: at its time, never before the answer it follows
                    due = max(now_ns(), start + int(request.at_s * 1e9))
                else:
                    due = now_ns() + int(request.think_s * 1e9)
                await _sleep_until(due, stop)
            if slots is not None:
                await slots.acquire()
                await send_in_slot(request, due)
            else:
                await _send(backend, request, recorder, due, on_done)

    for unit, offset in zip(requests, offsets_s):
        due = start + int(offset * 1e9)
        await _sleep_until(due, stop)
        if stop():
            break
        if isinstance(unit, list):
            tasks.append(asyncio.create_task(session(unit, due)))
        elif slots is not None:
            await slots.acquire()
            tasks.append(asyncio.create_task(send_in_slot(unit, due)))
        else:
            tasks.append(asyncio.create_task(_send(backend, unit, recorder, due, on_done)))
    await asyncio.gather(*tasks)
    recorder.flush()
    return start


async def with_loop_monitor(coro: Any, lags_ns: list[int], interval_s: float = 0.01) -> Any:
    """Run `coro` while measuring event-loop lag: how late a 10 ms sleep wakes up. A loop that
    is late is a load generator that cannot keep up."""
    async def monitor() -> None:
        while True:
            t = now_ns()
            await asyncio.sleep(interval_s)
            lags_ns.append(max(0, now_ns() - t - int(interval_s * 1e9)))

    task = asyncio.ensure_future(monitor())
    try:
        return await coro
    finally:
        task.cancel()
