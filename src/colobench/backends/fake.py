"""A backend with known timings: sleeps `ttft_ms`, then `tpot_ms` per further token.

It exercises the whole pipeline (spawn, barrier, records, summary) in milliseconds and without
torch, and its ground truth makes the metric formulas checkable end to end. `fail_load` and
`fail_batches` plant faults, to check that failures are recorded and the run carries on.
"""

from __future__ import annotations

import time
from typing import Any

from colobench.clock import now_ns
from colobench.specs import FakeTimings
from colobench.workload.synthetic import Batch


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
        if not batch.warmup and batch.batch_id in self.timings.fail_batches:
            raise RuntimeError("simulated out of memory")
        steps = []
        time.sleep(self.timings.ttft_ms / 1e3)
        steps.append(now_ns())
        for _ in range(batch.output_tokens - 1):
            time.sleep(self.timings.tpot_ms / 1e3)
            steps.append(now_ns())
        return steps

    def stop(self) -> None:
        pass
