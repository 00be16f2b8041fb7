"""A fake OpenAI-compatible server with known timing and injectable faults.

`colobench fake-server --port 8000 --ttft-ms 50 --itl-ms 10 --jitter-ms 2 --error-rate 0.01`

It serves `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions` (streaming
Server-Sent Events or not), `POST /tokenize` (vLLM's shape: `{"count", "tokens",
"max_model_len"}`; off with `--no-tokenize`) and `GET /metrics` (Prometheus text in vLLM's
names and shapes: request, token, preemption and prefix-cache counters, TTFT, inter-token, TPOT,
end-to-end and queue-time histograms, running/waiting/KV-cache gauges, per served model; and the
process's own `process_resident_memory_bytes` as real servers export it: `serve.fake_metrics`).
With `--frontend-delay-ms D` each request waits D ms before the "engine" takes it in: the
client's TTFT and end-to-end latency include it, the server's histograms do not, as an HTTP front
end, a proxy or a tokenizer in front of a real engine would.

Its tokenizer is a stand-in with real tokenizers' awkward properties (`serve.fake_tokens`): a word
costs one token per `--chars-per-token` characters (default 2: "the" is two tokens, "between"
four), and a chat prompt costs 3 template tokens per message plus 1 for the generation prompt, so
a prompt of N words is not N tokens and only a client that measures (`/tokenize`, or token ids as
the prompt) gets exact lengths. A completions `prompt` may be a list of token ids, as vLLM takes
it. Its prefix cache (on by default, as in vLLM; `--no-prefix-cache`) serves leading 16-token
blocks seen before: their prefill is skipped (TTFT scaled by the share not hit) and /metrics
counts `vllm:prefix_cache_queries_total` and `vllm:prefix_cache_hits_total` in tokens. With `--reasoning-tokens K` a chat stream's first K tokens are
reasoning (`delta.reasoning_content`, or the field `--reasoning-field` names), as vLLM's
reasoning parsers send them. Every request produces exactly
`max_tokens` tokens (`max_completion_tokens` for chat): the first after `ttft_ms`, then one chunk
every `itl_ms` (each +- up to `jitter_ms`), timed against absolute targets so delays do not
accumulate. It reproduces what real servers differ in, so clients can be tested against all of
it: a role-only first chunk (chat), several tokens per chunk, empty keep-alive chunks and SSE
comments, usage when asked for (`stream_options.include_usage`) or always in the last chunk,
and streams with or without the final `data: [DONE]`.

Faults, drawn per request with `error_rate` (or forced by the `x-colobench-fault` header):
`http_500`, `cut` (the connection closes mid-stream), `malformed` (a line that is not JSON),
`stall` (the stream stops sending and hangs), and the usage faults `bad_usage`
(`completion_tokens: "abc"`), `negative_usage` (-5) and `huge_usage` (10^12).

Shared device: with `decode_tok_s` and `prefill_tok_s` set (`--decode-tok-s N --prefill-tok-s M`)
all `--models` share ONE simulated device of known capacity instead of each request having its own
`ttft_ms`/`itl_ms` timeline: one FIFO prefill queue at M prompt tokens/s that pauses decoding, and a
decode budget of N tokens/s shared equally by all streams, each capped at one token per `itl_ms`.
`ttft_ms` and `jitter_ms` are then ignored. The solo capacity of a model is
1 / (p/M + (n-1)/N) requests/s; see `colobench.serve.shared_device` for the semantics and formulas.
`--model-costs a=2:1.5` makes a model's tokens cost more of the device, and `--cross-model-penalty`
and `--crowding-penalty` add interference no solo profile shows (for the predictor's validation).
`/metrics` then also exports the device's own work per model (`colobench:device_prefill_seconds_total`,
`colobench:device_decode_seconds_total`: nominal seconds, no penalties), as busy-time telemetry would.

Ground truth: with `stamp` on, each chunk carries `colobench_sent_ns` (the server's
`time.perf_counter_ns()` when it wrote the chunk, on the same host clock as the client's
records) and the response has `x-colobench-received-ns`, so a client's measured TTFT and ITL can
be compared with what the server actually did.

Used by the tests, and by users to check colobench itself on their machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from typing import Any, Literal

from aiohttp import web
from pydantic import Field, field_validator, model_validator

from colobench.serve.fake_tokens import FakeTokenizer, PrefixCache, valid_token_ids
from colobench.serve.fake_metrics import FakeMetrics, RequestTrack
from colobench.serve.shared_device import DeviceStream, SharedDevice, SharedDeviceDriver
from colobench.text import printable
from colobench.typed import Frozen

FAULTS = ("http_500", "cut", "malformed", "stall")
USAGE_FAULTS = ("bad_usage", "negative_usage", "huge_usage")  # a usage block no client should believe
KNOWN_FAULTS = FAULTS + USAGE_FAULTS


def _flag(flag: str, help: str, negate: bool = False) -> dict[str, Any]:
    """A field's command-line flag (`colobench fake-server`), its help, and whether it turns the
    field off (`--no-done` sets `done` to false)."""
    return {"json_schema_extra": {"flag": flag, "negate": negate}, "description": help}


class FakeServerSettings(Frozen):
    """Everything `colobench fake-server` takes: its flags are generated from these fields, so
    the command and a test that builds the server in process share one validation."""

    host: str = Field("127.0.0.1", **_flag("--host", "address to listen on"))
    port: int = Field(8000, ge=1, le=65535, **_flag("--port", "TCP port on 127.0.0.1"))
    ttft_ms: float = Field(50.0, ge=0, le=3_600_000, **_flag("--ttft-ms", "time to the first token"))
    itl_ms: float = Field(10.0, ge=0, le=3_600_000, **_flag("--itl-ms", "time between chunks"))
    jitter_ms: float = Field(0.0, ge=0, le=3_600_000, **_flag("--jitter-ms", "uniform +- jitter on every delay"))
    frontend_delay_ms: float = Field(0.0, ge=0, le=3_600_000, **_flag(
        "--frontend-delay-ms", "time each request spends before the engine takes it in: the client sees it, the "
        "server's own /metrics histograms do not"))
    error_rate: float = Field(0.0, ge=0, le=1, **_flag("--error-rate", "fraction of requests that hit a fault"))
    faults: tuple[str, ...] = Field(FAULTS, **_flag("--faults", "faults drawn on error, comma separated: "
                                                    + ", ".join(KNOWN_FAULTS)))
    models: tuple[str, ...] = Field(("fake-model",), **_flag("--models", "served model names, comma separated"))
    tokens_per_chunk: int = Field(1, ge=1, le=100_000, **_flag("--tokens-per-chunk", "tokens in each streamed chunk"))
    usage: Literal["requested", "always", "never"] = Field(
        "requested", **_flag("--usage", "usage when asked for (requested), in every last chunk (always), or never"))
    done: bool = Field(True, **_flag("--no-done", "close the stream without data: [DONE]", negate=True))
    keepalive: bool = Field(False, **_flag("--keepalive", "empty chunks and SSE comments between tokens"))
    stamp: bool = Field(False, **_flag("--stamp", "server send times in every chunk (ground truth)"))
    trace: bool = Field(False, **_flag("--trace", "keep send times of every stream for GET /colobench/trace"))
    seed: int | None = Field(None, **_flag("--seed", "seed of jitter and faults"))
    api_key_env: str | None = Field(None, **_flag("--api-key-env", "require the key held in this environment variable"))
    tokenize: bool = Field(True, **_flag("--no-tokenize", "do not serve POST /tokenize", negate=True))
    chars_per_token: int = Field(2, ge=1, le=100, **_flag("--chars-per-token", "the fake tokenizer: one token per "
                                                          "this many characters of each word"))
    empty_text: bool = Field(False, **_flag("--empty-text", "every token decodes to nothing (special tokens): "
                                            "one chunk a token with empty text, usage counts them"))
    prefix_cache: bool = Field(True, **_flag("--no-prefix-cache", "no prefix cache (on by default, as in vLLM)",
                                             negate=True))
    echo_headers: bool = Field(False, **_flag("--echo-headers", "error bodies quote the request's headers, credentials "
                                              "included (to check that colobench scrubs them)"))
    reasoning_tokens: int = Field(0, ge=0, le=10_000_000, **_flag("--reasoning-tokens", "chat: the first N tokens of "
                                                                  "each stream are reasoning"))
    reasoning_field: Literal["reasoning_content", "reasoning"] = Field(
        "reasoning_content", **_flag("--reasoning-field", "the delta field reasoning goes in"))
    # Both set: every model shares one simulated device (colobench.serve.shared_device) with this
    # decode budget and prefill rate (tokens per second); `itl_ms` caps each stream, `ttft_ms` unused.
    decode_tok_s: float | None = Field(None, gt=0, allow_inf_nan=False, **_flag(
        "--decode-tok-s", "shared-device mode (with --prefill-tok-s): decode tokens per second of ONE simulated "
        "device shared equally by the streams of all --models, each capped at one token per --itl-ms"))
    prefill_tok_s: float | None = Field(None, gt=0, allow_inf_nan=False, **_flag(
        "--prefill-tok-s", "shared-device mode (with --decode-tok-s): prompt tokens per second of the device's one "
        "FIFO prefill queue for all --models; prefill pauses decoding; --ttft-ms is then ignored"))
    # Shapes and hidden penalties of the shared device (`serve.shared_device`), for the co-location
    # predictor's validation (`benchmarks/predict.py`): all off by default.
    model_costs: tuple[str, ...] = Field((), **_flag(
        "--model-costs", "shared device: per-model cost multipliers, comma separated NAME=PREFILL_X:DECODE_X "
        "(a model whose token costs more of the device)"))
    cross_model_penalty: float = Field(0.0, ge=0, le=100, **_flag(
        "--cross-model-penalty", "shared device: the decode budget is divided by 1 + this x (models decoding - 1)"))
    crowding_penalty: float = Field(0.0, ge=0, le=100, **_flag(
        "--crowding-penalty", "shared device: past --crowding-streams streams in decode the budget is divided by "
        "1 + this x (streams - K) / K"))
    crowding_streams: int = Field(16, ge=1, le=1_000_000, **_flag("--crowding-streams", "shared device: K of "
                                                                  "--crowding-penalty"))
    stall_s: float = Field(3600.0, ge=0)  # how long a `stall` fault hangs (tests shorten it)
    # the key itself, for a server built in process (the command reads it from `api_key_env`)
    require_api_key: str | None = Field(None, repr=False)

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [f for f in value if f not in KNOWN_FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {', '.join(KNOWN_FAULTS)}")
        return value

    @field_validator("models")
    @classmethod
    def _some_models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(v.strip() for v in value if v.strip())
        if not names:
            raise ValueError("give at least one served model name")
        return names

    @field_validator("model_costs")
    @classmethod
    def _costs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            _parse_cost(item)
        return value

    @model_validator(mode="after")
    def _both_rates(self) -> "FakeServerSettings":
        if (self.decode_tok_s is None) != (self.prefill_tok_s is None):
            raise ValueError("the shared device needs both --decode-tok-s and --prefill-tok-s")
        unknown = sorted(set(self.costs()) - set(self.models))
        if unknown:
            raise ValueError(f"--model-costs names models not served: {', '.join(unknown)}")
        return self

    def costs(self) -> dict[str, tuple[float, float]]:
        """`--model-costs` as {model: (prefill multiplier, decode multiplier)}."""
        return dict(_parse_cost(item) for item in self.model_costs)

    @property
    def shared_device(self) -> bool:
        return self.decode_tok_s is not None and self.prefill_tok_s is not None

    def api_key(self) -> str | None:
        """The key requests must carry: `require_api_key`, or the value of `api_key_env`."""
        if self.require_api_key:
            return self.require_api_key
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueError(f"environment variable {self.api_key_env} is not set (it should hold the key)")
            return key
        return None

    def banner(self) -> str:
        timing = (f"one shared device: prefill {self.prefill_tok_s} tok/s, decode {self.decode_tok_s} tok/s, ITL >= "
                  f"{self.itl_ms} ms" if self.shared_device else
                  f"TTFT {self.ttft_ms} ms, ITL {self.itl_ms} ms, jitter {self.jitter_ms} ms")
        return (f"fake OpenAI server on http://{self.host}:{self.port}/v1 (models: {', '.join(self.models)}; "
                f"{timing}, error rate {self.error_rate})")


def _parse_cost(item: str) -> tuple[str, tuple[float, float]]:
    """`NAME=PREFILL_X:DECODE_X` -> (name, (prefill_x, decode_x)); a ValueError naming the item."""
    name, _, costs = item.partition("=")
    prefill, _, decode = costs.partition(":")
    try:
        pair = (float(prefill), float(decode))
    except ValueError:
        pair = (0.0, 0.0)
    if not name.strip() or not all(0 < x < 1e6 for x in pair):
        raise ValueError(f"model cost {item!r}: write NAME=PREFILL_X:DECODE_X with positive numbers, e.g. a=1.5:2")
    return name.strip(), pair


def _error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "code": status}}, status=status)


MAX_MODEL_LEN = 4096


class FakeOpenAIServer:
    def __init__(self, config: FakeServerSettings):
        self.config = config
        self.key = config.api_key()
        self.rng = random.Random(config.seed)
        self.traces: list[list[int]] = []  # GET /colobench/trace: each stream's received and send times
        self.counters = {"requests": 0, "errors": 0, "tokens": 0}
        self.tokenizer = FakeTokenizer(config.chars_per_token)
        self.cache = PrefixCache() if config.prefix_cache else None
        self.engine = FakeMetrics(config.models)  # vLLM-shaped /metrics (a prefix cache reports through it)
        self.device: SharedDeviceDriver | None = None
        if config.shared_device:
            assert config.decode_tok_s is not None and config.prefill_tok_s is not None
            self.device = SharedDeviceDriver(SharedDevice(
                config.decode_tok_s, config.prefill_tok_s, itl_s=config.itl_ms / 1e3, model_costs=config.costs(),
                cross_model_penalty=config.cross_model_penalty, crowding_penalty=config.crowding_penalty,
                crowding_streams=config.crowding_streams))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/metrics", self.metrics)
        if self.config.tokenize:
            app.router.add_post("/tokenize", self.tokenize)
        app.router.add_get("/colobench/trace", self.trace)
        if self.device is not None:
            app.on_cleanup.append(self._close_device)
        return app

    async def _close_device(self, app: web.Application) -> None:
        if self.device is not None:
            await self.device.close()

    async def trace(self, request: web.Request) -> web.Response:
        """Ground truth of every stream since the last call: [received_ns, sent_ns of each content
        chunk...], on the host's monotonic clock. Empties the trace."""
        traces, self.traces = self.traces, []
        return web.json_response(traces)

    def _unauthorised(self, request: web.Request) -> web.Response | None:
        key = self.key
        if key and request.headers.get("Authorization") != f"Bearer {key}":
            return _error(401, "invalid API key" + self._echo(request), "AuthenticationError")
        return None

    def _echo(self, request: web.Request) -> str:
        """With `echo_headers`, an error quotes the request's headers (a careless proxy's habit)."""
        return f" (request headers: {dict(request.headers)})" if self.config.echo_headers else ""

    async def models(self, request: web.Request) -> web.Response:
        if (denied := self._unauthorised(request)) is not None:
            return denied
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "colobench"} for m in self.config.models]})

    async def tokenize(self, request: web.Request) -> web.Response:
        """vLLM's /tokenize: a `prompt` or `messages` (chat template applied) counted."""
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object")
        ids = self.tokenizer.prompt_ids(body, "messages" in body)
        return web.json_response({"count": len(ids), "max_model_len": MAX_MODEL_LEN, "tokens": ids})

    async def metrics(self, request: web.Request) -> web.Response:
        c = self.counters
        text = (
            "# HELP fake_requests_total Requests received.\n# TYPE fake_requests_total counter\n"
            f"fake_requests_total {c['requests']}\n"
            "# HELP fake_errors_total Requests answered with a fault.\n# TYPE fake_errors_total counter\n"
            f"fake_errors_total {c['errors']}\n"
            "# HELP fake_generation_tokens_total Tokens generated.\n# TYPE fake_generation_tokens_total counter\n"
            f"fake_generation_tokens_total {c['tokens']}\n"
            + self.engine.text()
            + self._device_text()
        )
        return web.Response(text=text, content_type="text/plain")

    def _device_text(self) -> str:
        """The shared device's own work counters per model (nominal device seconds, no penalties),
        as a device's busy-time telemetry would give them: prefill seconds and decode budget used."""
        if self.device is None:
            return ""
        self.device.sync()
        lines = []
        for name, kind, help_ in (("colobench:device_prefill_seconds_total", 0, "Device seconds spent prefilling."),
                                  ("colobench:device_decode_seconds_total", 1, "Decode budget used, in seconds of "
                                   "the whole budget.")):
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} counter"]
            for model in self.config.models:
                work = self.device.device.work_s.get(model, [0.0, 0.0])
                lines.append(f'{name}{{model_name="{model}"}} {work[kind]!r}')
        return "\n".join(lines) + "\n"

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    def _fault(self, request: web.Request) -> str | None:
        forced = request.headers.get("x-colobench-fault")
        if forced:
            return forced if forced in KNOWN_FAULTS else None
        if self.config.error_rate > 0 and self.rng.random() < self.config.error_rate:
            return self.rng.choice(self.config.faults)
        return None

    def _delay_s(self, base_ms: float) -> float:
        jitter = self.rng.uniform(-self.config.jitter_ms, self.config.jitter_ms) if self.config.jitter_ms else 0.0
        return max(0.0, base_ms + jitter) / 1e3

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        received_ns = time.perf_counter_ns()
        cfg = self.config
        self.counters["requests"] += 1
        if (denied := self._unauthorised(request)) is not None:
            return denied
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "body is not JSON")
        if body.get("model") not in cfg.models:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        n = int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)
        fault = self._fault(request)
        if fault == "http_500":
            self.counters["errors"] += 1
            return _error(500, "simulated internal server error" + self._echo(request), "InternalServerError")
        if not chat and isinstance(body.get("prompt"), list) and not valid_token_ids(body["prompt"]):
            return _error(400, "prompt: a list must hold token ids of the vocabulary")
        if cfg.frontend_delay_ms:  # before the engine sees it: in the client's figures, not in /metrics
            await asyncio.sleep(cfg.frontend_delay_ms / 1e3)
        ids = self.tokenizer.prompt_ids(body, chat)
        prompt_tokens = len(ids)
        cached = self.cache.lookup_and_insert(ids) if self.cache is not None else 0
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
        if fault in USAGE_FAULTS:
            self.counters["errors"] += 1
            usage["completion_tokens"] = {"bad_usage": "abc", "negative_usage": -5, "huge_usage": 10**12}[fault]
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{self.counters['requests']}"
        obj = "chat.completion" if chat else "text_completion"
        if cached:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}  # as vLLM reports it
        # a cache hit skips the prefill of its blocks
        stream = self.device.submit(body["model"], prompt_tokens - cached, n) if self.device is not None else None
        ttft_share = (prompt_tokens - cached) / prompt_tokens if prompt_tokens else 1.0
        track = RequestTrack(self.engine, body["model"], prompt_tokens, cached)
        try:
            return await self._answer(request, body, chat, n, fault, usage, rid, obj, received_ns, stream, track,
                                      ttft_share)
        finally:
            track.close()  # a request not done by now failed (cut, stalled, the client went away)
            if stream is not None and self.device is not None:
                self.device.release(stream)  # a no-op once all tokens came; frees the device if not

    async def _answer(self, request: web.Request, body: dict[str, Any], chat: bool, n: int, fault: str | None,
                      usage: dict[str, Any], rid: str, obj: str, received_ns: int,
                      stream: DeviceStream | None, track: RequestTrack, ttft_share: float = 1.0) -> web.StreamResponse:
        """The response, timed by `stream` (the shared device) when there is one, else by
        `ttft_ms`/`itl_ms`."""
        cfg = self.config
        if not body.get("stream"):
            if stream is not None:
                await stream.wait_tokens(n)
            else:
                await asyncio.sleep(self._delay_s(cfg.ttft_ms * ttft_share) + (n - 1) * cfg.itl_ms / 1e3)
            self.counters["tokens"] += n
            track.chunk(n)
            track.done()
            text = " tok" * n
            choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
                      if chat else {"index": 0, "text": text, "finish_reason": "length"})
            return web.json_response({"id": rid, "object": obj, "model": body["model"], "choices": [choice],
                                      "usage": usage})

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "x-colobench-received-ns": str(received_ns)})
        await response.prepare(request)
        obj = "chat.completion.chunk" if chat else "text_completion"
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(text: str | None, finish: str | None = None, role: bool = False,
                  reasoning: bool = False) -> dict[str, Any]:
            if chat:
                delta: dict[str, Any] = {"role": "assistant"} if role else {}
                if text is not None:
                    delta[cfg.reasoning_field if reasoning else "content"] = text
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text or "", "finish_reason": finish}
            return {"id": rid, "object": obj, "model": body["model"], "choices": [choice]}

        async def send(payload: dict[str, Any] | str) -> None:
            if isinstance(payload, dict):
                if cfg.stamp:
                    payload["colobench_sent_ns"] = time.perf_counter_ns()
                data = json.dumps(payload, separators=(",", ":"))
            else:
                data = payload
            await response.write(f"data: {data}\n\n".encode())

        if chat:
            await send(chunk(None, role=True))
        target = time.perf_counter() + (self._delay_s(cfg.ttft_ms * ttft_share) if stream is None else 0.0)
        sent = 0
        trace = [received_ns] if cfg.trace else None
        while sent < n:
            k = min(cfg.tokens_per_chunk, n - sent)
            reasoning = chat and sent < cfg.reasoning_tokens
            if reasoning:
                k = min(k, cfg.reasoning_tokens - sent)  # a chunk is reasoning or answer, never both
            if stream is not None:
                await stream.wait_tokens(sent + k)  # the chunk goes when the device has made its tokens
            else:
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            if fault in ("cut", "malformed", "stall") and sent >= n // 2:
                self.counters["errors"] += 1
                if fault == "cut":
                    request.transport.close()  # the peer sees the connection drop mid-stream
                    return response
                if fault == "malformed":
                    await response.write(b"data: {this is not json\n\n")
                    fault = None  # carry on after the bad line, as a buggy proxy might
                else:
                    await asyncio.sleep(cfg.stall_s)
                    return response
            track.chunk(k)
            if sent + k >= n:
                track.done()  # counted before the client can see the stream end
            await send(chunk("" if cfg.empty_text else " tok" * k, reasoning=reasoning))
            if trace is not None:
                trace.append(time.perf_counter_ns())
            sent += k
            self.counters["tokens"] += k
            if cfg.keepalive and sent < n:
                await response.write(b": keep-alive\n\n")
                await send(chunk(""))
            if stream is None:
                target += self._delay_s(cfg.itl_ms)
        last = chunk("" if not chat else None, finish="length")
        if cfg.usage == "always":
            last["usage"] = usage
        await send(last)
        if include_usage and cfg.usage != "never":
            await send({"id": rid, "object": obj, "model": body["model"], "choices": [], "usage": usage})
        if cfg.done:
            await send("[DONE]")
        await response.write_eof()
        if trace is not None:
            self.traces.append(trace)
        return response


def serve(config: FakeServerSettings) -> None:
    """Run the fake server until interrupted (blocking); its banner is printed to stderr once it
    listens: a process that starts it waits for that line (a port that is taken raises OSError
    before anything is printed)."""
    server = FakeOpenAIServer(config)

    def say(*_: Any) -> None:
        print(printable(config.banner()), file=sys.stderr, flush=True)

    web.run_app(server.app(), host=config.host, port=config.port, print=say, access_log=None, handle_signals=True,
                shutdown_timeout=1.0)
