"""The contract every engine implements.

A backend only knows *how* to run work; *when* requests are sent, how many are in flight and
what is recorded is decided by the load generator (`colobench.loadgen`).

- Static batching: `generate(batch)` runs a whole batch and returns one host timestamp per
  decoding step, each taken after the device had finished that step (device truth, not
  dispatch time). Request i of the batch owns the first `output_tokens` steps.
- Streaming (closed and open loop): `start_streaming` prepares a continuous-batching engine;
  `stream(request)` is an async iterator that yields, for each chunk the engine delivers, the
  timestamps of the tokens in it; `stop_streaming` tears the engine down.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Protocol

from colobench.workload.synthetic import Batch, Request


class Backend(Protocol):
    vocab_size: int

    def start(self) -> dict[str, Any]:
        """Load the model onto its device; return facts for the run record."""

    def generate(self, batch: Batch) -> list[int]:
        """Run a static batch to its longest output; return `clock.now_ns()` after each step."""

    def start_streaming(self, max_concurrency: int, max_request_tokens: int, kv_cache_tokens: int) -> dict[str, Any]:
        """Prepare to serve up to `max_concurrency` requests at once, each up to
        `max_request_tokens` (prompt + output), with a KV cache of `kv_cache_tokens` tokens."""

    def stream(self, request: Request) -> AsyncIterator[list[int]]:
        """Generate exactly `request.output_tokens` tokens, yielding each chunk's token times."""

    def stop_streaming(self) -> None:
        """Release the streaming engine."""

    def stop(self) -> None:
        """Release the model and device memory."""
