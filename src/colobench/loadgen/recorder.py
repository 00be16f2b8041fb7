"""Turns a backend's `Completion` into a `RequestRecord`, appended as each request completes.

One path for every backend: a completion is ok when it has no error and at least one token.
In-process backends promise exactly the tokens asked for (`token_count_source` None), so a
shortfall there is an error; a server's counts may differ from what was asked (a server that
ignores `ignore_eos`), which is kept as `expected_output_tokens` and flagged by the checks; so
is a prompt the server counted differently from the length asked for (`expected_prompt_tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from colobench.backends.base import Completion
from colobench.loadgen.health import Health
from colobench.records import RecordWriter, RequestRecord
from colobench.workload.synthetic import Request

BURST_WRITTEN = 10  # identical failures in a row written one by one; the rest of the burst is counted


@dataclass
class Recorder:
    writer: RecordWriter
    instance: str
    run_id: str
    repetition: int = 0
    warmup: bool = False
    load_only: bool = False  # filler that keeps a co-located partner loaded: recorded, never measured
    health: Health | None = None  # the instance's circuit breaker, shared by its windows
    completed: int = 0
    failed: int = 0
    last_error: str | None = None
    _streak: int = 0  # identical failures in a row
    _held: RequestRecord | None = field(default=None, repr=False)  # the latest of a counted burst

    def record(self, request: Request, submit_ns: int, completion: Completion, scheduled_ns: int | None = None,
               batch_id: int = -1, batch_size: int = 1) -> None:
        """Append one request's record."""
        c = completion
        error = c.error
        exact = c.token_count_source is None
        if error is None and (c.output_tokens <= 0 or not c.token_ns):
            error = "stream ended without any content"
        elif error is None and exact and c.output_tokens != request.output_tokens:
            error = f"expected {request.output_tokens} tokens, got {c.output_tokens}"
        ok = error is None
        record = RequestRecord(
            instance=self.instance, run_id=self.run_id, repetition=self.repetition, request_id=request.request_id,
            batch_id=batch_id, batch_size=batch_size, prompt_tokens=c.prompt_tokens or request.prompt_len,
            output_tokens=c.output_tokens, submit_ns=submit_ns, scheduled_ns=scheduled_ns, token_ns=c.token_ns,
            done_ns=c.done_ns, warmup=self.warmup, load_only=self.load_only, ok=ok, error=error,
            expected_output_tokens=None if exact else request.output_tokens, token_count_source=c.token_count_source,
            expected_prompt_tokens=request.asked_prompt_tokens if c.prompt_tokens is not None else None,
            first_content_ns=c.first_content_ns if c.reasoning_chunks else None, reasoning_chunks=c.reasoning_chunks,
            category=request.category, session=request.session,
            turn=request.turn if request.session is not None else None)
        if self.health is not None and not self.warmup and not self.load_only:
            self.health.observe(ok, error, c.done_ns)
        if ok:
            self.completed += 1
            self.flush()
            self._streak = 0
            self.writer.write(record)
            return
        self.failed += 1
        if error != self.last_error:
            self.flush()
            self._streak = 0
        self.last_error = error
        self._streak += 1
        if self._streak <= BURST_WRITTEN:
            self.writer.write(record)
        elif self._held is None:
            self._held = record
        else:  # bounded records: the latest of the burst stands for the ones before it
            record.also_failed = self._held.also_failed + 1
            self._held = record

    @property
    def stopped(self) -> bool:
        """The instance's breaker tripped: send nothing more."""
        return self.health is not None and self.health.tripped is not None

    def flush(self) -> None:
        """Write the record that stands for a counted burst of identical failures, if any."""
        if self._held is not None:
            self.writer.write(self._held)
            self._held = None
