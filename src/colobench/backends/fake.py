"""A backend with known timings: `ttft_ms` to the first token, then `tpot_ms` per token.

It exercises the whole pipeline (spawn, barrier, schedulers, records, summary) in milliseconds
and without torch, and its ground truth makes the metric formulas checkable end to end. With
zero timings it returns at once, which is how the load generator's own overhead is measured.
`fail_load`, `fail_batches` and `fail_above_batch` plant faults, to check that failures are
recorded and the run carries on.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from colobench.backends.base import Completion
from colobench.clock import now_ns
from colobench.workload.synthetic import Batch, Request


class FakeBackend:
    vocab_size = 32000

    def __init__(self, ttft_ms: float = 5.0, tpot_ms: float = 1.0, load_s: float = 0.0,
                 fail_batches: list[int] | tuple[int, ...] = (), fail_load: bool = False,
                 fail_above_batch: int | None = None):
        self.ttft_ms, self.tpot_ms, self.load_s = ttft_ms, tpot_ms, load_s
        self.fail_batches, self.fail_load, self.fail_above_batch = set(fail_batches), fail_load, fail_above_batch

    def start(self) -> dict[str, Any]:
        time.sleep(self.load_s)
        if self.fail_load:
            raise RuntimeError("simulated load failure")
        return {"backend": "fake", "parameters": 0, "weight_bytes": 0, "dtype": "none",
                "ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms}

    def generate(self, batch: Batch) -> list[Completion]:
        too_big = self.fail_above_batch is not None and len(batch.requests) > self.fail_above_batch
        if too_big or (not batch.warmup and batch.batch_id in self.fail_batches):
            raise RuntimeError("simulated out of memory")
        steps = []
        time.sleep(self.ttft_ms / 1e3)
        steps.append(now_ns())
        for _ in range(batch.output_tokens - 1):
            time.sleep(self.tpot_ms / 1e3)
            steps.append(now_ns())
        return [Completion.of_steps(steps[:r.output_tokens]) for r in batch.requests]

    def start_streaming(self, max_concurrency: int, max_request_tokens: int, kv_cache_tokens: int) -> dict[str, Any]:
        return {"engine": "fake", "max_concurrency": max_concurrency}

    async def request(self, request: Request) -> Completion:
        if request.request_id in self.fail_batches:
            return Completion.failed("RuntimeError: simulated out of memory")
        ttft, tpot = self.ttft_ms / 1e3, self.tpot_ms / 1e3
        start = time.perf_counter()
        steps = []
        # sleep to absolute targets so per-token error does not accumulate
        for k in range(request.output_tokens):
            delay = start + ttft + k * tpot - time.perf_counter()
            if delay > 0 or k == 0:
                await asyncio.sleep(max(delay, 0))
            steps.append(now_ns())
        return Completion.of_steps(steps)

    def stop_streaming(self) -> None:
        pass

    def quality_probe(self) -> dict[str, Any] | None:
        return None

    def stop(self) -> None:
        pass
