"""Metric formulas, one small function each, over `RequestRecord`s.

Definitions follow vLLM's benchmark so numbers are comparable:

- start = scheduled_ns when the request had a schedule (open loop), else submit_ns: latency
  counts from when the user arrived, so time spent waiting for a free slot is included.
- TTFT (time to first token) = first_token_ns - start. With static batching the whole batch is
  submitted together, so TTFT includes the batch's prefill.
- TPOT (time per output token) = (done_ns - first_token_ns) / (output_tokens - 1), per request;
  undefined for a single-token request.
- ITL (inter-token latency) = every gap between consecutive tokens of a request, pooled; for
  HTTP streams, between consecutive chunks that carry content (a chunk with only a finish
  reason or usage is not a token).
- E2EL (end-to-end latency) = done_ns - start.
- schedule lag = submit_ns - scheduled_ns: how late the load generator sent a due request.
- achieved rate = (n - 1) / (last submit - first submit): the open-loop rate actually sent.
- mean concurrency = sum of E2EL / window (Little's law): requests in flight on average.
- output throughput = output tokens of completed requests / window, in tokens/s, where the
  window runs from the first submit to the last completion of the repetition.

Only successful, non-warm-up records count; callers filter with `measured()`.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from colobench.records import RequestRecord

NS_PER_S = 1e9


def measured(records: Iterable[RequestRecord]) -> list[RequestRecord]:
    """Records that count: not warm-up, not co-located filler, completed successfully."""
    return [r for r in records if not r.warmup and not r.load_only and r.ok and r.token_ns and r.done_ns is not None]


def start_ns(r: RequestRecord) -> int:
    """When the request's latency starts: its scheduled arrival if it had one, else its submit."""
    return r.scheduled_ns if r.scheduled_ns is not None else r.submit_ns


def ttft_ns(r: RequestRecord) -> int:
    """Time to first token, ns."""
    return r.token_ns[0] - start_ns(r)


def ttfc_ns(r: RequestRecord) -> int | None:
    """Time to first content: a reasoning model's first answer chunk, after its reasoning (None
    when the answer never came); the same as TTFT for a model that does not reason."""
    if not r.reasoning_chunks:
        return ttft_ns(r)
    return r.first_content_ns - start_ns(r) if r.first_content_ns is not None else None


def ttft_per_ktok_ns(r: RequestRecord) -> float | None:
    """TTFT per 1,000 prompt tokens, ns: TTFT x 1000 / prompt tokens; None for an empty prompt.
    Prefill grows with the prompt, so with prompts of mixed lengths (files, traces) this compares
    how fast prompts were taken in where TTFT alone mostly says how long they were."""
    return ttft_ns(r) * 1000 / r.prompt_tokens if r.prompt_tokens > 0 else None


def e2el_ns(r: RequestRecord) -> int:
    """End-to-end latency, ns."""
    return r.done_ns - start_ns(r)


def schedule_lag_ns(r: RequestRecord) -> int | None:
    """How late a scheduled request was sent, ns (None without a schedule)."""
    return r.submit_ns - r.scheduled_ns if r.scheduled_ns is not None else None


def achieved_rate_req_s(records: list[RequestRecord]) -> float | None:
    """Requests sent per second: (n - 1) / (last submit - first submit); None below 2 requests."""
    if len(records) < 2:
        return None
    submits = sorted(r.submit_ns for r in records)
    span = (submits[-1] - submits[0]) / NS_PER_S
    return (len(submits) - 1) / span if span > 0 else None


def mean_concurrency(records: list[RequestRecord]) -> float | None:
    """Average requests in flight over the window (Little's law)."""
    w = window_s(records)
    return sum(e2el_ns(r) for r in records) / NS_PER_S / w if w > 0 else None


def tpot_ns(r: RequestRecord) -> float | None:
    """Mean time per output token after the first, ns; None with fewer than 2 tokens. Uses the
    token count, not the chunk count: an HTTP chunk may carry several tokens."""
    n = r.output_tokens
    return (r.done_ns - r.token_ns[0]) / (n - 1) if n > 1 else None


def itl_ns(r: RequestRecord) -> list[int]:
    """Gaps between consecutive tokens, ns (empty with fewer than 2 tokens)."""
    return np.diff(np.asarray(r.token_ns, dtype=np.int64)).tolist()


def window_s(records: list[RequestRecord]) -> float:
    """Seconds from the first start to the last completion; 0 for no records."""
    if not records:
        return 0.0
    return (max(r.done_ns for r in records) - min(start_ns(r) for r in records)) / NS_PER_S


def output_throughput_tok_s(records: list[RequestRecord]) -> float | None:
    """Output tokens per second over the records' window."""
    w = window_s(records)
    return sum(r.output_tokens for r in records) / w if w > 0 else None


def request_throughput_req_s(records: list[RequestRecord]) -> float | None:
    """Completed requests per second over the records' window."""
    w = window_s(records)
    return len(records) / w if w > 0 else None
