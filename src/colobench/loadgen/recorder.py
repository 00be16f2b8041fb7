"""Turns what a load generator saw into `RequestRecord`s, appended as each request completes."""

from __future__ import annotations

from dataclasses import dataclass, field

from colobench.records import RecordWriter, RequestRecord
from colobench.workload.synthetic import Request


@dataclass
class StreamResult:
    """What an HTTP request produced: content-chunk times and the server's token counts."""

    token_ns: list[int] = field(default_factory=list)
    done_ns: int | None = None
    output_tokens: int = 0
    prompt_tokens: int | None = None
    token_count_source: str = "chunks"
    error: str | None = None


@dataclass
class Recorder:
    writer: RecordWriter
    instance: str
    run_id: str
    repetition: int = 0
    warmup: bool = False
    completed: int = 0
    failed: int = 0
    last_error: str | None = None

    def record(self, request: Request, submit_ns: int, token_ns: list[int], error: str | None = None,
               scheduled_ns: int | None = None, batch_id: int = -1, batch_size: int = 1,
               result: "StreamResult | None" = None) -> None:
        """Append one request's record. In-process backends give one timestamp per token; an HTTP
        `result` gives per-chunk timestamps and the token counts the server reported."""
        if result is not None:
            ok = error is None and result.output_tokens > 0 and bool(token_ns)
            if error is None and not ok:
                error = "stream ended without any content"
            record = RequestRecord(
                instance=self.instance, run_id=self.run_id, repetition=self.repetition, request_id=request.request_id,
                batch_id=batch_id, batch_size=batch_size, prompt_tokens=result.prompt_tokens or request.prompt_len,
                output_tokens=result.output_tokens, submit_ns=submit_ns, scheduled_ns=scheduled_ns, token_ns=token_ns,
                done_ns=result.done_ns, warmup=self.warmup, ok=ok, error=error,
                expected_output_tokens=request.output_tokens, token_count_source=result.token_count_source)
        else:
            ok = error is None and len(token_ns) == request.output_tokens
            if error is None and not ok:
                error = f"expected {request.output_tokens} tokens, got {len(token_ns)}"
            record = RequestRecord(
                instance=self.instance, run_id=self.run_id, repetition=self.repetition, request_id=request.request_id,
                batch_id=batch_id, batch_size=batch_size, prompt_tokens=len(request.prompt),
                output_tokens=len(token_ns), submit_ns=submit_ns, scheduled_ns=scheduled_ns, token_ns=token_ns,
                done_ns=token_ns[-1] if token_ns else None, warmup=self.warmup, ok=ok, error=error)
        self.writer.write(record)
        if ok:
            self.completed += 1
        else:
            self.failed += 1
            self.last_error = error


def error_text(exc: BaseException) -> str:
    """`ExcType: first line of the message`, for records and summaries."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{exc.__class__.__name__}: {text}".rstrip(": ")
