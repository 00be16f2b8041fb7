"""A backend with known timings: `ttft_ms` to the first token, then `tpot_ms` per token.

It exercises the whole pipeline (spawn, barrier, schedulers, records, summary) in milliseconds
and without torch, and its ground truth makes the metric formulas checkable end to end. With
zero timings it returns at once, which is how the load generator's own overhead is measured.
`fail_load`, `fail_batches` and `fail_above_batch` plant faults, to check that failures are
recorded and the run carries on. `contention` plants interference: instances naming the same
`shared_device` folder mark themselves busy there while they generate (one file per process),
and each step of an instance takes `contention` times longer while another one is busy, so a
co-located slowdown has a known true value.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from colobench.backends.base import Completion
from colobench.clock import now_ns
from colobench.workload.synthetic import Batch, Request


class FakeBackend:
    vocab_size = 32000

    def __init__(self, ttft_ms: float = 5.0, tpot_ms: float = 1.0, load_s: float = 0.0,
                 fail_batches: list[int] | tuple[int, ...] = (), fail_load: bool = False,
                 fail_above_batch: int | None = None, contention: float = 1.0, shared_device: str | None = None,
                 reserved_mb: float | None = None, allocated_mb: float | None = None):
        self.ttft_ms, self.tpot_ms, self.load_s = ttft_ms, tpot_ms, load_s
        self.fail_batches, self.fail_load, self.fail_above_batch = set(fail_batches), fail_load, fail_above_batch
        self.contention = contention
        self.reserved_mb, self.allocated_mb = reserved_mb, allocated_mb
        self.device = Path(shared_device) if shared_device else None
        self._busy = 0
        self._me = str(os.getpid())

    def _enter(self) -> None:
        self._busy += 1
        if self.device is not None and self._busy == 1:
            self.device.mkdir(parents=True, exist_ok=True)
            (self.device / self._me).touch()

    def _leave(self) -> None:
        self._busy -= 1
        if self.device is not None and self._busy == 0:
            (self.device / self._me).unlink(missing_ok=True)

    def _factor(self) -> float:
        """`contention` while another instance on the shared device is busy, else 1."""
        if self.device is None or self.contention == 1.0:
            return 1.0
        return self.contention if any(name != self._me for name in os.listdir(self.device)) else 1.0

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
        self._enter()
        try:
            time.sleep(self.ttft_ms * self._factor() / 1e3)
            steps.append(now_ns())
            for _ in range(batch.output_tokens - 1):
                time.sleep(self.tpot_ms * self._factor() / 1e3)
                steps.append(now_ns())
        finally:
            self._leave()
        return [Completion.of_steps(steps[:r.output_tokens]) for r in batch.requests]

    def start_streaming(self, max_concurrency: int, max_request_tokens: int, kv_cache_tokens: int) -> dict[str, Any]:
        return {"engine": "fake", "max_concurrency": max_concurrency}

    async def request(self, request: Request) -> Completion:
        if request.request_id in self.fail_batches:
            return Completion.failed("RuntimeError: simulated out of memory")
        self._enter()
        try:
            steps = []
            # sleep to absolute targets so per-token error does not accumulate
            target = time.perf_counter() + self.ttft_ms * self._factor() / 1e3
            for k in range(request.output_tokens):
                delay = target - time.perf_counter()
                if delay > 0 or k == 0:
                    await asyncio.sleep(max(delay, 0))
                steps.append(now_ns())
                target += self.tpot_ms * self._factor() / 1e3
        finally:
            self._leave()
        return Completion.of_steps(steps)

    def stop_streaming(self) -> None:
        pass

    def memory_stats(self) -> dict[str, int] | None:
        """The planted allocator figures (`reserved_mb`, `allocated_mb`), as a device would give them."""
        if self.reserved_mb is None or self.allocated_mb is None:
            return None
        reserved, allocated = int(self.reserved_mb * 2**20), int(self.allocated_mb * 2**20)
        return {"reserved_bytes": reserved, "allocated_bytes": allocated, "max_reserved_bytes": reserved,
                "max_allocated_bytes": allocated}

    def quality_probe(self) -> dict[str, Any] | None:
        return None

    def stop(self) -> None:
        if self.device is not None:
            (self.device / self._me).unlink(missing_ok=True)
