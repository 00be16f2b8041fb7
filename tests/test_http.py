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
    assert result.prompt_tokens == (6 if api == "completions" else 10)  # the fake tokenizer: 3 + 3, chat template 3 + 1
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
    # 30 ms between chunks: six reasoning chunks arrive 180 ms before the answer, never in the same
    # receive as it (2 ms let a busy host read them together, with one timestamp)
    url = serve(ttft_ms=1, itl_ms=30, reasoning_tokens=6, reasoning_field=field, stamp=True)
    result = ask(backend(url, api="chat"), n=10)
    assert result.error is None and result.output_tokens == 10
    assert len(result.token_ns) == 10 and result.reasoning_chunks == 6
    assert result.first_content_ns == result.token_ns[6] > result.token_ns[0]


def _driver(b: OpenAIBackend, name: str = "a", **workload):
    from colobench.loadgen.driver import LoadDriver
    from colobench.specs.models import WorkloadSpec

    return LoadDriver(b, WorkloadSpec(**{"output_tokens": 2, "requests": 12, **workload}), 4, None, name=name)


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_prompts_are_the_length_asked_for_on_a_tokenizer_of_several_tokens_a_word(serve, api):
    """The fake tokenizer makes "the" two tokens and "between" four (a field run saw 2.7 tokens a
    word): completions prompts are token ids the server checked it counts as sent; chat prompts
    are composed from measured word costs and fitted with /tokenize. The server's usage agrees
    with every one, and `exact_prompts` says so."""
    from colobench.specs.models import LengthDist

    b = backend(serve(ttft_ms=0, itl_ms=0), api=api)
    assert b.prompt_method == ("token ids" if api == "completions" else "server /tokenize")
    driver = _driver(b, prompt_tokens=LengthDist(min=20, max=90))
    results = [aio.run(b.request(r)) for r in driver.measured_requests]
    b.stop()
    assert all(res.error is None for res in results)
    assert [res.prompt_tokens for res in results] == [r.asked_prompt_tokens for r in driver.measured_requests]
    assert driver.exact_prompts is not None and driver.prompts_off == 0


def test_without_a_counter_prompts_are_words_and_not_called_exact(serve):
    b = backend(serve(ttft_ms=0, itl_ms=0, tokenize=False))
    assert b.count_prompt_tokens is None and b.prompt_ids is None and b.prompt_method is None
    driver = _driver(b, prompt_tokens=40)
    results = [aio.run(b.request(r)) for r in driver.measured_requests]
    b.stop()
    assert sum(res.prompt_tokens != 40 for res in results) >= 6  # most words are two tokens there
    assert driver.exact_prompts is None


def test_a_server_that_refuses_token_ids_gets_fitted_text(serve, monkeypatch):
    """A completions server that takes text only (the probe fails): fitted text, still exact."""
    from colobench.backends import openai_http

    monkeypatch.setattr(openai_http.OpenAIBackend, "_takes_ids", lambda self, ids: False)
    b = backend(serve(ttft_ms=0, itl_ms=0))
    assert b.prompt_ids is None and b.prompt_method == "server /tokenize"
    driver = _driver(b, prompt_tokens=64)
    results = [aio.run(b.request(r)) for r in driver.measured_requests]
    b.stop()
    assert {res.prompt_tokens for res in results} == {64} and driver.exact_prompts == "server /tokenize"


@pytest.mark.parametrize("chars_per_token", [1, 2, 3, 5])
def test_fitted_text_converges_on_lumpy_tokenizers(chars_per_token):
    """Word costs measured, not assumed: with words of one to eleven tokens and a chat template
    of four, every prompt reaches its target (the fit used to delete a word per token over and
    oscillate: 173, 1, 137, 1, ...)."""
    from colobench.serve.fake_tokens import FakeTokenizer
    from colobench.specs.models import LengthDist
    from colobench.workload.text_prompts import build_text_requests, calibrate

    tok = FakeTokenizer(chars_per_token)
    calls = []

    def count(texts):
        calls.append(len(texts))
        return [tok.count(t) + 4 for t in texts]

    costs = calibrate(count)
    assert costs is not None and costs.costs["between"] == -(-7 // chars_per_token)
    built = build_text_requests(60, LengthDist(min=8, max=400), 1, seed=1, counter=count, costs=costs)
    assert built.off == 0 and built.counted
    assert [count([r.text])[0] for r in built.requests] == [r.prompt_target for r in built.requests]
    assert len(calls) == 2 + 60  # calibration and one count: composed exact the first time; the check above


def test_every_window_has_prompts_of_its_own(serve):
    """No 16-token block of one window's prompts appears in another window, another instance, the
    warm-up or the filler (ids and text alike), while lengths stay the same."""
    from colobench.serve.fake_tokens import FakeTokenizer, PrefixCache

    tok = FakeTokenizer()
    for api in ("completions", "chat"):
        b = backend(serve(ttft_ms=0, itl_ms=0), api=api)
        cache, lengths = PrefixCache(), set()
        for name in ("a", "b"):
            driver = _driver(b, name=name, prompt_tokens=48)
            sets = [driver.warmup_requests]
            for run_id, rep in (("solo-a", 1), ("colocated", 1), ("solo-a", 2)):
                driver.new_window(run_id, rep)
                sets += [driver.measured_requests, driver.filler_requests()]
            for requests in sets:
                lengths.add(tuple(r.asked_prompt_tokens for r in requests))
                for r in requests:
                    ids = list(r.prompt) if r.prompt else tok.chat([{"role": "user", "content": r.text}])
                    assert cache.lookup_and_insert(ids) == 0, api
        b.stop()
        assert {n for x in lengths for n in x} == {48}


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_a_shared_prefix_is_shared_on_purpose(serve, api):
    """`shared_prefix: {tokens: 32, share: 0.5}`: about half the requests start with the same 32
    tokens (across windows too), the rest share nothing; lengths stay exact."""
    from colobench.serve.fake_tokens import FakeTokenizer, PrefixCache

    tok = FakeTokenizer()
    b = backend(serve(ttft_ms=0, itl_ms=0), api=api)
    driver = _driver(b, prompt_tokens=64, requests=40, shared_prefix={"tokens": 32, "share": 0.5})
    cache, hits, shared = PrefixCache(), [], 0
    for rep in (1, 2):
        driver.new_window("solo-a", rep)
        results = [aio.run(b.request(r)) for r in driver.measured_requests]
        assert [res.prompt_tokens for res in results] == [64] * 40
        for r in driver.measured_requests:
            ids = list(r.prompt) if r.prompt else tok.chat([{"role": "user", "content": r.text}])
            hits.append(cache.lookup_and_insert(ids))
    b.stop()
    shared = sum(h > 0 for h in hits)
    # the prefix's two blocks, or nothing (on chat too: the prefix's words make up for the tokens a
    # template puts after the content, so the shared leading ids are 32 long there as well)
    assert set(hits) <= {0, 32} and 0.3 * 80 < shared < 0.7 * 80


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_a_stream_of_tokens_without_text_is_not_a_failure(serve, api):
    """A greedy run of special tokens: one chunk a token with empty text, usage counting them (a
    vLLM field run recorded these as "stream ended without any content"). Its chunks are its
    tokens; without usage nothing says they were tokens, and it stays a failure."""
    from colobench.loadgen.recorder import Recorder

    url = serve(ttft_ms=0, itl_ms=1, empty_text=True)
    result = ask(backend(url, api=api), n=12)
    assert result.error is None and result.output_tokens == 12 and len(result.token_ns) == 12
    silent = ask(backend(serve(ttft_ms=0, itl_ms=0, empty_text=True, usage="never"), api=api), n=12)

    class Rows(list):
        def write(self, row):
            self.append(row)

    rows = Rows()
    recorder = Recorder(rows, "a", "run")
    recorder.record(Request(0, (), 12), 0, result)
    recorder.record(Request(1, (), 12), 0, silent)
    assert [r.ok for r in rows] == [True, False] and rows[1].error == "stream ended without any content"


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_sessions_extend_the_conversation_turn_after_turn(serve, api):
    """`sessions: {turns: 3}`: each turn's prompt is the conversation so far; turns of a session
    go in order, each sent after the previous answer came; a prefix cache hits the earlier turns."""
    from colobench.loadgen import streaming
    from colobench.loadgen.recorder import Recorder
    from colobench.serve.fake_tokens import FakeTokenizer, PrefixCache

    b = backend(serve(ttft_ms=0, itl_ms=1), api=api)
    driver = _driver(b, prompt_tokens=40, output_tokens=8, requests=9, concurrency=3,
                     sessions={"turns": 3, "think_time_s": 0.01})
    reqs = driver.measured_requests
    assert [(r.session, r.turn) for r in reqs] == [(s, t) for s in range(3) for t in range(3)]
    if api == "completions":
        assert [len(r.prompt) for r in reqs[:3]] == [40, 40 + 8 + 40, 40 + 8 + 40 + 8 + 40]
        assert reqs[1].prompt[:40] == reqs[0].prompt and reqs[2].prompt[:88] == reqs[1].prompt
    else:
        assert reqs[0].text and len(reqs[2].messages) == 5 and reqs[2].messages[0]["content"] == reqs[0].text

    class Rows(list):
        def write(self, row):
            self.append(row)

        def flush(self):
            pass

    rows = Rows()
    aio.run(streaming.closed_loop(b, iter(streaming.sessions_of(reqs)), 3, Recorder(rows, "a", "run")))
    b.stop()
    assert len(rows) == 9 and all(r.ok for r in rows)
    by = {(r.session, r.turn): r for r in rows}
    for s in range(3):
        for t in (1, 2):
            assert by[(s, t)].submit_ns >= by[(s, t - 1)].done_ns  # after the previous answer
    tok, cache = FakeTokenizer(), PrefixCache()
    hits = []
    for r in reqs:
        ids = list(r.prompt) if r.prompt else tok.chat(list(r.messages or [{"role": "user", "content": r.text}]))
        hits.append(cache.lookup_and_insert(ids))
    assert [h > 0 for h in hits] == [t > 0 for _, t in ((r.session, r.turn) for r in reqs)]


def test_a_duration_bound_window_and_a_long_filler_never_resend_a_prompt(serve):
    """Past the window's requests (a duration bound, a filler waiting for its partner) come more
    requests with prompts of their own, not the same ones again."""
    import itertools

    from colobench.serve.fake_tokens import PrefixCache

    b = backend(serve(ttft_ms=0, itl_ms=0))
    driver = _driver(b, prompt_tokens=32, requests=5)
    driver.new_window("colocated", 1)
    cache = PrefixCache()
    for source in (driver.fresh(driver.measured_requests, driver._salt),
                   driver.fresh(driver.filler_requests(), driver._filler_salt)):
        lots = list(itertools.islice(source, 23))  # more than four lots of five
        assert {len(r.prompt) for r in lots} == {32}
        assert all(cache.lookup_and_insert(list(r.prompt)) == 0 for r in lots)
    b.stop()


def test_vllm_stream_of_empty_tokens_as_vllm_0_32_sends_it():
    """vLLM 0.32 (CPU build, random weights) streams five tokens that decode to nothing as five
    chunks of empty text, the last one carrying the finish reason, then usage: five tokens."""
    from colobench.backends.openai_http import _SSEStream

    chunk = ('{"id":"cmpl-1","object":"text_completion","created":1,"model":"tiny","choices":[{"index":0,"text":"",'
             '"logprobs":null,"finish_reason":%s,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]}')
    events = [chunk % "null"] * 4 + [chunk % '"length"',
                                     '{"id":"cmpl-1","object":"text_completion","created":1,"model":"tiny","choices":[],'
                                     '"usage":{"prompt_tokens":9,"total_tokens":14,"completion_tokens":5}}', "[DONE]"]
    stamps: list[int] = []
    sse = _SSEStream(stamps, chat=False, keep_text=False)
    for k, e in enumerate(events):
        sse(f"data: {e}\n\n".encode(), 1000 + k)
    assert sse.tokens_without_text() and stamps == [1000, 1001, 1002, 1003, 1004] and sse.content_chunks == 5
