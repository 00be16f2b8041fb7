"""The fake server's `/metrics`: vLLM's series, names and shapes, so the comparison of the client's
figures with a server's own (`analysis.server`) is tested end to end without vLLM.

Each served model has its own series (label `model_name`, as vLLM labels them):

- counters `vllm:request_success_total{finished_reason}`, `vllm:prompt_tokens_total`,
  `vllm:generation_tokens_total`, `vllm:num_preemptions_total` (always 0: nothing is ever
  preempted), and the prefix cache's `vllm:prefix_cache_queries_total` (every prompt token looked
  up) and `vllm:prefix_cache_hits_total` (those found): without a prefix cache every request adds
  its prompt to the queries and nothing to the hits; a prefix cache reports what it found through
  `prefix_lookup` (its `prefix_cache_hits_tokens` counter);
- histograms `vllm:time_to_first_token_seconds`, `vllm:inter_token_latency_seconds` (a chunk's
  interval shared among its tokens, as SGLang observes it), `vllm:request_time_per_output_token_seconds`,
  `vllm:e2e_request_latency_seconds` and `vllm:request_queue_time_seconds` (0: every request is
  admitted at once), all timed from when the "engine" received the request, after the front-end
  delay (`--frontend-delay-ms`, which the client sees and the server's histograms do not);
- gauges `vllm:num_requests_running`, `vllm:num_requests_waiting` (0) and
  `vllm:kv_cache_usage_perc`: the tokens held by running requests over a nominal KV capacity of
  `KV_CAPACITY_TOKENS` (the fake server has no KV cache; the gauge moves as a real one would).

A request is counted finished when its last token is written, before the client can see the
end of its stream: a scrape taken after the client's last response counts it. Faults: an HTTP 500
or a connection cut is not a success; a malformed line does not stop the stream, so it is one.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

KV_CAPACITY_TOKENS = 65_536
LATENCY_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                     20.0, 40.0, 80.0)
STEP_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
                  2.5)
LABEL = "model_name"


class FakeMetrics:
    """The fake server's counters, histograms and gauges, per served model (one registry per server)."""

    def __init__(self, models: tuple[str, ...]):
        self.registry = reg = CollectorRegistry()
        ProcessCollector(registry=reg)  # process_resident_memory_bytes, as real servers export it
        labels = [LABEL]
        self.success = Counter("vllm:request_success", "Count of successfully processed requests.",
                               [LABEL, "finished_reason"], registry=reg)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", labels, registry=reg)
        self.generation_tokens = Counter("vllm:generation_tokens", "Number of generation tokens processed.", labels,
                                         registry=reg)
        self.preemptions = Counter("vllm:num_preemptions", "Cumulative number of preemptions from the engine.",
                                   labels, registry=reg)
        self.prefix_queries = Counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of "
                                      "queried tokens.", labels, registry=reg)
        self.prefix_hits = Counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached "
                                   "tokens.", labels, registry=reg)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                              labels, buckets=LATENCY_BUCKETS_S, registry=reg)
        self.itl = Histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                             labels, buckets=STEP_BUCKETS_S, registry=reg)
        self.tpot = Histogram("vllm:request_time_per_output_token_seconds", "Histogram of time_per_output_token_"
                              "seconds per request.", labels, buckets=STEP_BUCKETS_S, registry=reg)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                             labels, buckets=LATENCY_BUCKETS_S, registry=reg)
        self.queue = Histogram("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for "
                               "request.", labels, buckets=LATENCY_BUCKETS_S, registry=reg)
        self.running = Gauge("vllm:num_requests_running", "Number of requests in model execution batches.", labels,
                             registry=reg)
        self.waiting = Gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", labels,
                             registry=reg)
        self.kv_usage = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", labels,
                              registry=reg)
        self.held_tokens = {m: 0 for m in models}
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}  # labels() looked up once, not per token
        for m in models:  # every series exists from the start, at 0, as vLLM's do
            for metric in (self.prompt_tokens, self.generation_tokens, self.preemptions, self.prefix_queries,
                           self.prefix_hits, self.ttft, self.itl, self.tpot, self.e2e, self.queue, self.running,
                           self.waiting, self.kv_usage):
                self._of(metric, m)
            self._of(self.success, m, "length")

    def _of(self, metric: Any, *labels: str) -> Any:
        """The metric's child for these label values."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    @property
    def prefix_cache_hits_tokens(self) -> Counter:
        """The counter a prefix cache increments by the prompt tokens it found (`prefix_lookup`)."""
        return self.prefix_hits

    def prefix_lookup(self, model: str, queried_tokens: int, hit_tokens: int = 0) -> None:
        """A prompt looked up in the prefix cache: `queried_tokens` asked for, `hit_tokens` found."""
        self._of(self.prefix_queries, model).inc(queried_tokens)
        if hit_tokens:
            self._of(self.prefix_hits, model).inc(hit_tokens)

    def started(self, model: str, prompt_tokens: int, cached_tokens: int = 0) -> None:
        """The engine took the request in (after the front end): it runs at once, nothing queues;
        `cached_tokens` of its prompt were found in the prefix cache."""
        self._of(self.prompt_tokens, model).inc(prompt_tokens)
        self.prefix_lookup(model, prompt_tokens, cached_tokens)
        self._of(self.queue, model).observe(0.0)
        self._of(self.running, model).inc()
        self._hold(model, prompt_tokens)

    def first_token(self, model: str, ttft_s: float) -> None:
        self._of(self.ttft, model).observe(ttft_s)

    def tokens(self, model: str, count: int, interval_s: float | None) -> None:
        """`count` tokens written; `interval_s` since the previous chunk (None for the first)."""
        self._of(self.generation_tokens, model).inc(count)
        self._hold(model, count)
        if interval_s is not None and count:
            itl = self._of(self.itl, model)
            for _ in range(count):  # the interval shared among the chunk's tokens: sum += interval, count += k
                itl.observe(interval_s / count)

    def finished(self, model: str, e2e_s: float, first_token_s: float | None, output_tokens: int, held: int,
                 success: bool) -> None:
        """The request is over (`held`: the tokens it held); `success`: it ran to its last token."""
        self._of(self.running, model).dec()
        self._hold(model, -held)
        if not success:
            return
        self._of(self.success, model, "length").inc()
        self._of(self.e2e, model).observe(e2e_s)
        if first_token_s is not None and output_tokens > 1:
            self._of(self.tpot, model).observe((e2e_s - first_token_s) / (output_tokens - 1))

    def _hold(self, model: str, tokens: int) -> None:
        self.held_tokens[model] = max(0, self.held_tokens.get(model, 0) + tokens)
        self._of(self.kv_usage, model).set(min(1.0, self.held_tokens[model] / KV_CAPACITY_TOKENS))

    def text(self) -> str:
        return generate_latest(self.registry).decode()


class RequestTrack:
    """One request's life as the fake engine observes it, from when it took the request in: its
    chunks as they are written, its end (`done` before the last chunk goes out, `close` whatever
    happened: a request not done by then failed)."""

    def __init__(self, metrics: FakeMetrics, model: str, prompt_tokens: int, cached_tokens: int = 0):
        self.metrics, self.model = metrics, model
        self.start_s = time.perf_counter()
        self.first_s: float | None = None
        self.last_s = self.start_s
        self.tokens, self.held, self.over = 0, prompt_tokens, False
        metrics.started(model, prompt_tokens, cached_tokens)

    def chunk(self, count: int) -> None:
        now = time.perf_counter()
        if self.first_s is None:
            self.first_s = now
            self.metrics.first_token(self.model, now - self.start_s)
            self.metrics.tokens(self.model, count, None)
        else:
            self.metrics.tokens(self.model, count, now - self.last_s)
        self.last_s = now
        self.tokens += count
        self.held += count

    def done(self) -> None:
        self._end(True)

    def close(self) -> None:
        self._end(False)

    def _end(self, success: bool) -> None:
        if self.over:
            return
        self.over = True
        first = self.first_s - self.start_s if self.first_s is not None else None
        self.metrics.finished(self.model, time.perf_counter() - self.start_s, first, self.tokens, self.held, success)
