"""The OpenAI HTTP backend against the fake server, in-process on the load generator's loop:
every SSE variation and every fault. No timing is asserted beyond generous sanity bounds."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest
from aiohttp import web

from colobench.backends.openai_http import OpenAIBackend, request_body
from colobench import aio
from colobench.serve.fake_openai import FakeOpenAIServer, FakeServerSettings
from colobench.specs import EndpointConfig
from colobench.workload.synthetic import Request

from conftest import free_port




@pytest.fixture
def serve():
    """Start fake servers on the load generator's event loop; stop them afterwards."""
    runners = []

    def start(**config) -> str:
        port = free_port()
        runner = web.AppRunner(FakeOpenAIServer(FakeServerSettings(**config)).app())
        aio.run(runner.setup())
        aio.run(web.TCPSite(runner, "127.0.0.1", port).start())
        runners.append(runner)
        return f"http://127.0.0.1:{port}/v1"

    yield start
    for runner in runners:
        aio.run(runner.cleanup())


def backend(url: str, tokenizer: str | None = None, **fields) -> OpenAIBackend:
    b = OpenAIBackend("fake-model", EndpointConfig(base_url=url, **fields), tokenizer)
    b.start()
    return b


def ask(b: OpenAIBackend, n: int = 8, **request):
    result = aio.run(b.request(Request(0, (), n, text="hello world", **request)))
    b.stop()
    return result


@pytest.mark.parametrize("api", ["completions", "chat"])
@pytest.mark.parametrize("done", [True, False])
@pytest.mark.parametrize("usage", ["requested", "always"])
@pytest.mark.parametrize("tokens_per_chunk", [1, 3])
def test_stream_variations_with_usage(serve, api, done, usage, tokens_per_chunk):
    url = serve(ttft_ms=1, itl_ms=0, usage=usage, done=done, tokens_per_chunk=tokens_per_chunk, keepalive=True)
    result = ask(backend(url, api=api), n=8)
    assert result.error is None
    assert result.output_tokens == 8 and result.token_count_source == "usage"
    assert result.prompt_tokens == (4 if api == "completions" else 8)  # the fake tokenizer: 2 + 2, chat template 3 + 1
    chunks = -(-8 // tokens_per_chunk)
    assert len(result.token_ns) == chunks  # only content chunks: not role, keep-alive, finish or usage chunks
    assert result.token_ns == sorted(result.token_ns) and result.done_ns >= result.token_ns[-1]


def test_without_usage_counts_chunks_or_uses_the_tokenizer(serve, tokenizer_checkpoint):
    url = serve(ttft_ms=0, itl_ms=0, usage="never", tokens_per_chunk=2)
    plain = ask(backend(url), n=6)
    assert (plain.output_tokens, plain.token_count_source) == (3, "chunks")  # a lower bound
    counted = ask(backend(url, tokenizer=str(tokenizer_checkpoint)), n=6)
    assert counted.token_count_source == "tokenizer" and counted.output_tokens > 0


@pytest.mark.parametrize("fault, fragment", [
    ("http_500", "HTTP 500: simulated internal server error"),
    ("cut", "connection closed mid-stream"),
    ("malformed", "malformed SSE data line"),
])
def test_faults_become_failed_results(serve, fault, fragment):
    url = serve(ttft_ms=0, itl_ms=1)
    result = ask(backend(url, headers={"x-colobench-fault": fault}), n=10)
    assert result.error and fragment in result.error


def test_stalled_stream_times_out(serve):
    url = serve(ttft_ms=0, itl_ms=1, stall_s=1.0)
    result = ask(backend(url, headers={"x-colobench-fault": "stall"}, stall_timeout_s=0.3), n=10)
    assert result.error and "Timeout" in result.error


def test_refused_connection():
    result = ask(backend(f"http://127.0.0.1:{free_port()}/v1"))
    assert result.error and "Connect" in result.error


def test_unknown_model_and_api_key(serve):
    url = serve(ttft_ms=0, itl_ms=0, require_api_key="sk-test-123")
    denied = ask(backend(url))
    assert denied.error == "HTTP 401: invalid API key"
    import os

    os.environ["COLOBENCH_TEST_KEY"] = "sk-test-123"
    try:
        assert ask(backend(url, api_key_env="COLOBENCH_TEST_KEY")).error is None
    finally:
        del os.environ["COLOBENCH_TEST_KEY"]


def test_ground_truth_timing(serve):
    """Chunks are stamped when read: never before the server sent them, and soon after."""
    url = serve(ttft_ms=20, itl_ms=5, stamp=True)
    b = backend(url)
    sent: list[int] = []
    original = orjson.loads

    def spy(payload):
        obj = original(payload)
        if isinstance(obj, dict) and obj.get("choices") and obj["choices"][0].get("text"):
            sent.append(obj["colobench_sent_ns"])
        return obj

    import colobench.backends.openai_http as module

    module.orjson = SimpleNamespace(loads=spy, dumps=orjson.dumps, JSONDecodeError=orjson.JSONDecodeError)
    try:
        result = ask(b, n=10)
    finally:
        module.orjson = orjson
    assert len(sent) == len(result.token_ns) == 10
    delays_ms = [(r - s) / 1e6 for r, s in zip(result.token_ns, sent)]
    assert all(d >= 0 for d in delays_ms) and sum(delays_ms) / len(delays_ms) < 20


def test_request_body_fields():
    cfg = EndpointConfig(base_url="http://x/v1", api="chat", extra_body={"generation_config": "{}"})
    body = request_body(cfg, "m", Request(1, (), 7, messages=({"role": "user", "content": "hi"},)))
    assert body["messages"] == [{"role": "user", "content": "hi"}] and body["max_tokens"] == 7
    assert body["ignore_eos"] is True and body["min_tokens"] == 7 and body["generation_config"] == "{}"
    assert body["stream_options"] == {"include_usage": True}
    strict = EndpointConfig(base_url="http://x/v1", exact_output_fields=[])
    body = request_body(strict, "m", Request(1, (5, 6), 3))
    assert body["prompt"] == [5, 6] and "ignore_eos" not in body and "min_tokens" not in body


def test_sse_parsing_does_not_depend_on_how_bytes_arrive():
    from colobench.backends.openai_http import StreamError, _SSEStream

    events = [b'data: {"choices":[{"text":"He"}]}\n\n', b": keep-alive\n\n", b'data:{"choices":[{"text":"llo"}]}\n\n',
              b'event: x\ndata: {"choices":[{"text":""}]}\n\n',
              b'data: {"choices":[],"usage":{"completion_tokens":2}}\n\n', b"data: [DONE]\n\n",
              b'data: {"choices":[{"text":"after done"}]}\n\n']
    whole = b"".join(events)
    ways = {"event per piece": events, "all at once": [whole], "byte by byte": [whole[i:i + 1] for i in range(len(whole))],
            "crlf": [e.replace(b"\n", b"\r\n") for e in events]}
    for way, pieces in ways.items():
        sse = _SSEStream([], chat=False, keep_text=True)
        for t, piece in enumerate(pieces):
            sse(piece, t)
        assert (len(sse.stamps), sse.texts, sse.usage, sse.done) == (2, ["He", "llo"], {"completion_tokens": 2}, True), way
    with pytest.raises(StreamError, match="malformed SSE data line"):
        _SSEStream([], chat=False, keep_text=False)(b"data: {oops\n\n", 0)
    with pytest.raises(StreamError, match="server error in stream"):
        _SSEStream([], chat=True, keep_text=False)(b'data: {"error": {"message": "overloaded"}}\n\n', 0)


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_chunks_are_output_tokens(serve, field):
    """A reasoning model streams its reasoning first: TTFT is the first reasoning chunk (as in
    vLLM's benchmark), every chunk counts for ITL and TPOT, and the first answer chunk is kept apart."""
    url = serve(ttft_ms=1, itl_ms=2, reasoning_tokens=6, reasoning_field=field, stamp=True)
    result = ask(backend(url, api="chat"), n=10)
    assert result.error is None and result.output_tokens == 10
    assert len(result.token_ns) == 10 and result.reasoning_chunks == 6
    assert result.first_content_ns == result.token_ns[6] > result.token_ns[0]


def test_tokenize_gives_token_exact_prompts(serve):
    """With the server's /tokenize the synthetic prompts are exactly the length asked for, as the
    server counts it (chat template included); without it they are words, and the server's usage
    says they were not."""
    from colobench.specs.models import LengthDist
    from colobench.workload.synthetic import build_text_requests

    for api in ("completions", "chat"):
        b = backend(serve(ttft_ms=0, itl_ms=0), api=api)
        assert b.count_prompt_tokens is not None
        requests = build_text_requests(12, LengthDist(min=20, max=60), 2, seed=3, counter=b.count_prompt_tokens)
        results = [aio.run(b.request(r)) for r in requests]
        b.stop()
        assert all(res.error is None for res in results)
        assert [res.prompt_tokens for res in results] == [r.prompt_target for r in requests], api
    plain = backend(serve(ttft_ms=0, itl_ms=0, tokenize=False))
    assert plain.count_prompt_tokens is None
    requests = build_text_requests(12, 40, 2, seed=3, counter=plain.count_prompt_tokens)
    results = [aio.run(plain.request(r)) for r in requests]
    plain.stop()
    assert sum(res.prompt_tokens != 40 for res in results) >= 6  # "between", "people", ... are two tokens there


def test_fit_prompts_reaches_targets_with_a_lumpy_tokenizer():
    """Fitting converges when words cost one to three tokens and a template adds its own."""
    import numpy as np

    from colobench.serve.fake_openai import count_tokens
    from colobench.workload.synthetic import WORDS, fit_prompts

    rng = np.random.default_rng(0)
    targets = [int(n) for n in rng.integers(8, 300, size=40)]
    words = [list(rng.choice(WORDS + ["internationalisation"], size=n)) for n in targets]
    texts, counts = fit_prompts(words, targets, lambda ts: [count_tokens(t) + 4 for t in ts], rng)
    assert counts == targets and [count_tokens(t) + 4 for t in texts] == targets
    _, short = fit_prompts([["hello"]], [2], lambda ts: [count_tokens(t) + 4 for t in ts], rng)
    assert short == [4]  # below the template's own tokens: the nearest it can get, never a loop
