"""A backend with known timings: `ttft_ms` to the first token, then `tpot_ms` per token.

It exercises the whole pipeline (spawn, barrier, schedulers, records, summary) in milliseconds
and without torch, and its ground truth makes the metric formulas checkable end to end. With
zero timings it returns at once, which is how the load generator's own overhead is measured.
`fail_load`, `fail_batches` and `fail_above_batch` plant faults, to check that failures are recorded and the run
carries on.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

from colobench.clock import now_ns
from colobench.specs import FakeTimings
from colobench.workload.synthetic import Batch, Request


class FakeBackend:
    vocab_size = 32000

    def __init__(self, timings: FakeTimings | None):
        self.timings = timings or FakeTimings()

    def start(self) -> dict[str, Any]:
        time.sleep(self.timings.load_s)
        if self.timings.fail_load:
            raise RuntimeError("simulated load failure")
        return {"backend": "fake", "parameters": 0, "weight_bytes": 0, "dtype": "none",
                "ttft_ms": self.timings.ttft_ms, "tpot_ms": self.timings.tpot_ms}

    def generate(self, batch: Batch) -> list[int]:
        too_big = self.timings.fail_above_batch is not None and len(batch.requests) > self.timings.fail_above_batch
        if too_big or (not batch.warmup and batch.batch_id in self.timings.fail_batches):
            raise RuntimeError("simulated out of memory")
        steps = []
        time.sleep(self.timings.ttft_ms / 1e3)
        steps.append(now_ns())
        for _ in range(batch.output_tokens - 1):
            time.sleep(self.timings.tpot_ms / 1e3)
            steps.append(now_ns())
        return steps

    def start_streaming(self, max_concurrency: int, max_request_tokens: int, kv_cache_tokens: int) -> dict[str, Any]:
        return {"engine": "fake", "max_concurrency": max_concurrency}

    async def stream(self, request: Request) -> AsyncIterator[list[int]]:
        if request.request_id in self.timings.fail_batches:
            raise RuntimeError("simulated out of memory")
        ttft, tpot = self.timings.ttft_ms / 1e3, self.timings.tpot_ms / 1e3
        start = time.perf_counter()
        # sleep to absolute targets so per-token error does not accumulate
        for k in range(request.output_tokens):
            target = start + ttft + k * tpot
            delay = target - time.perf_counter()
            if delay > 0 or k == 0:
                await asyncio.sleep(max(delay, 0))
            yield [now_ns()]

    def stop_streaming(self) -> None:
        pass

    def stop(self) -> None:
        pass
