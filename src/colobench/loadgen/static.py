"""Static batching: batches generated back to back, each request submitted with its batch.

In-process, a batch runs until its longest request is done and request i owns the first
`output_tokens` steps; against a server, a batch is a wave of requests sent together and the
next wave starts when the last has finished. A batch that fails as a whole (out of memory, say)
is recorded as failed requests and the next batch runs; too many failures in a row stop the
worker with the last error.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from colobench.backends.base import Completion
from colobench.clock import now_ns
from colobench.errors import error_text
from colobench.loadgen.recorder import Recorder
from colobench.workload.synthetic import Batch

MAX_CONSECUTIVE_FAILED_BATCHES = 3


def run_static(backend: Any, batches: Iterable[Batch], recorder: Recorder, until: Callable[[], bool] | None = None,
               on_batch: Callable[[int], None] | None = None, on_error: Callable[[], None] | None = None) -> None:
    """Run `batches` in order; stop early, between batches, once `until()` is true."""
    failures = 0
    for batch in batches:
        if (until is not None and until()) or recorder.stopped:
            break
        submit = now_ns()
        try:
            completions, error = backend.generate(batch), None
        except Exception as exc:
            error = error_text(exc)
            completions = [Completion.failed(error)] * len(batch.requests)
            if on_error:
                on_error()
        for request, completion in zip(batch.requests, completions):
            recorder.record(request, submit, completion, batch_id=batch.batch_id, batch_size=len(batch.requests))
        if on_batch:
            on_batch(len(batch.requests))
        failures = failures + 1 if error else 0
        if failures >= MAX_CONSECUTIVE_FAILED_BATCHES:
            recorder.flush()
            raise RuntimeError(f"{failures} batches failed in a row, last: {error}")
    recorder.flush()
