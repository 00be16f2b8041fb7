"""The OpenAI HTTP backend against the fake server, in-process on the load generator's loop:
every SSE variation and every fault. No timing is asserted beyond generous sanity bounds."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import orjson
import pytest
from aiohttp import web

from colobench.backends.openai_http import OpenAIBackend, request_body
from colobench import aio
from colobench.serve.fake_openai import FakeOpenAIServer, FakeServerConfig
from colobench.specs import EndpointConfig
from colobench.workload.synthetic import Request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve():
    """Start fake servers on the load generator's event loop; stop them afterwards."""
    runners = []

    def start(**config) -> str:
        port = free_port()
        runner = web.AppRunner(FakeOpenAIServer(FakeServerConfig(**config)).app())
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
    assert result.prompt_tokens == 2
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
