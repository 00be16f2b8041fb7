"""The contract every engine implements: start, generate, stop.

A backend only knows *how* to run a batch; *when* batches run, how many, and what gets
recorded is the worker's business (`colobench.launch.worker`). `generate` returns one host
timestamp per output token, each taken after the device had finished the step that produced
it, so the records carry device truth rather than dispatch time.
"""

from __future__ import annotations

from typing import Any, Protocol

from colobench.workload.synthetic import Batch


class Backend(Protocol):
    vocab_size: int

    def start(self) -> dict[str, Any]:
        """Load the model onto its device; return facts for the run record (parameters,
        weight bytes, dtype, device info, architecture)."""

    def generate(self, batch: Batch) -> list[int]:
        """Generate exactly `batch.output_tokens` tokens for every prompt of the batch (end of
        sequence ignored); return the `clock.now_ns()` at which each step's tokens existed."""

    def stop(self) -> None:
        """Release the model and device memory."""
