"""The contract every engine implements: the in-process transformers model, an OpenAI-compatible
server, and the fake with known timings.

A backend only knows *how* to run work; *when* requests are sent, how many are in flight and
what is recorded is decided by the load generator (`colobench.loadgen`). Both of its ways of
running work end in the same `Completion` per request, which the recorder turns into a record:

- static batching: `generate(batch)` runs the batch's requests together (one `model.generate`
  in-process; a wave of concurrent requests to a server) and returns one completion per request;
- streaming (closed and open loop): `start_streaming` prepares a continuous-batching engine (or a
  connection pool); `await request(r)` runs one request on it and returns its completion;
  `stop_streaming` tears it down.

A completion's `token_ns` are host timestamps of its tokens, each taken when the token existed on
the host (after the device had finished the step that made it: device truth, not dispatch time);
for a server, the arrival of each chunk that carried content. In-process backends produce one
stamp per token, exactly the tokens asked for (`token_count_source` None); a server reports its
own counts (`usage`, else a tokenizer, else the chunk count).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from colobench.workload.synthetic import Batch, Request


@dataclass
class Completion:
    """What one request produced."""

    token_ns: list[int] = field(default_factory=list)  # per token (in-process) or per content chunk (HTTP)
    done_ns: int | None = None
    output_tokens: int = 0
    prompt_tokens: int | None = None  # as the server counted them (None: the request's own length)
    token_count_source: str | None = None  # None: exact, one stamp per token; usage | tokenizer | chunks
    first_content_ns: int | None = None  # a reasoning model's first answer chunk (after its reasoning chunks)
    reasoning_chunks: int = 0  # chunks that carried reasoning (`reasoning_content` / `reasoning`), not answer
    error: str | None = None

    @classmethod
    def of_steps(cls, steps: list[int]) -> "Completion":
        """An in-process completion from its per-token step times."""
        return cls(token_ns=steps, done_ns=steps[-1] if steps else None, output_tokens=len(steps))

    @classmethod
    def failed(cls, error: str) -> "Completion":
        return cls(error=error)


class Backend(Protocol):
    vocab_size: int  # 0 when prompts are text (a server tokenises)

    def start(self) -> dict[str, Any]:
        """Load the model onto its device (or open the tokenizer); return facts for the run record."""

    def generate(self, batch: Batch) -> list[Completion]:
        """Run a static batch; one completion per request, in the batch's order. Raises when the
        whole batch failed (out of memory); the load generator records that for each request."""

    def start_streaming(self, max_concurrency: int, max_request_tokens: int, kv_cache_tokens: int) -> dict[str, Any]:
        """Prepare to serve up to `max_concurrency` requests at once, each up to
        `max_request_tokens` (prompt + output), with a KV cache of `kv_cache_tokens` tokens."""

    async def request(self, request: Request) -> Completion:
        """Generate `request.output_tokens` tokens for one request on the streaming engine."""

    def stop_streaming(self) -> None:
        """Release the streaming engine."""

    def memory_stats(self) -> dict[str, int] | None:
        """The device allocator's reserved and allocated bytes (see `Device.memory_stats`), or None
        where the backend has no allocator of its own to read (a server, the CPU)."""

    def quality_probe(self) -> dict[str, Any] | None:
        """Greedy outputs and next-token log-probabilities on fixed inputs (see analysis.quality),
        or None where the backend cannot give them."""

    def stop(self) -> None:
        """Release the model and device memory."""
