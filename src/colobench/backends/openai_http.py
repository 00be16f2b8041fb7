"""An instance behind an OpenAI-compatible HTTP API (vLLM, vLLM-Ascend, MindIE, SGLang, TGI,
`transformers serve`, llama.cpp server), streamed with Server-Sent Events.

What real servers differ in, and how each is handled:

- the stream may end with `data: [DONE]` or just close;
- token counts come from `usage`, sent when asked (`stream_options.include_usage`, a final chunk
  with empty `choices`) or put in the last chunk anyway; without usage, a tokenizer (when one is
  configured) counts the text after the stream ends, else the count of content chunks is used
  (a lower bound) and the summary says which;
- a chunk may carry several tokens; chat streams often start with a role-only chunk; some send
  empty keep-alive chunks or SSE comments. Only chunks that carry content (text, or token ids
  without text) are tokens, so only their arrival times enter TTFT and ITL; a stream with no text
  at all whose usage counts tokens (a greedy run of special tokens: vLLM sends one empty chunk a
  token) has its empty chunks as tokens: it is not a failure;
- reasoning models (vLLM's and SGLang's reasoning parsers) stream their reasoning as
  `delta.reasoning_content` (or `delta.reasoning`) before the answer's `delta.content`: those
  chunks are output tokens too (TTFT is the first of them, as in vLLM's own benchmark), and the
  first answer chunk is kept apart (time to first content, TTFC);
- prompt lengths: on a completions API a synthetic prompt is a list of token ids when the server
  takes one (vLLM, SGLang and `transformers serve` do; a one-token request at start checks that
  the server counts them as sent), its length exact by construction; the ids are those of common
  words (from the instance's `tokenizer`, else the server's `POST /tokenize`). Otherwise (chat,
  or a server that refuses ids) a synthetic text prompt is composed from measured word costs and
  fitted to its exact token count when a counter is at hand (the tokenizer, else `/tokenize`,
  which vLLM and SGLang serve at the server's root and which counts the chat template too; see
  `workload.text_prompts`); without one it has as many common words as tokens asked for. Either
  way the checks compare every prompt with the server's `usage`, and `exact_prompts` in the
  run's facts is set only when the lengths are exact by construction or were counted exact;
- exact output lengths: `ignore_eos` and `min_tokens` (vLLM, SGLang) by default, or any
  server-specific field through `extra_body`, where `$output_tokens` in a string stands for the
  request's length (`transformers serve` refuses unknown fields with HTTP 422 and takes
  `generation_config: '{"min_new_tokens": $output_tokens}'` with `exact_output_fields: []`).

The hot path (every chunk) does the least possible work: bytes are handled in the connection's
protocol callback as they arrive (`sse_client`, on httptools), stamped with
`time.perf_counter_ns()` once per receive, split into SSE events by hand and parsed with
orjson; the request's task wakes once, at the end. No tokenisation on the way. Connections
have no pool limit, so the configured concurrency is the real concurrency.

The API key is read from the environment variable the config names, in the worker, and goes
only into the Authorization header.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from colobench import aio
from colobench.backends.base import Completion
from colobench.backends.sse_client import ConnectionPool
from colobench.clock import now_ns
from colobench.errors import error_text
from colobench.secrets import scrub
from colobench.workload.synthetic import Batch, Request
from colobench.workload.text_prompts import BASE_WORD, WORDS, WordCosts, calibrate

DATA = b"data:"
OUTPUT_TOKENS_PLACEHOLDER = "$output_tokens"
REASONING_FIELDS = ("reasoning_content", "reasoning")  # vLLM/SGLang/DeepSeek name it one or the other
TOKENIZE_CONCURRENCY = 32
MAX_TOKENS_PER_CHUNK = 10  # more usage tokens a content chunk than this is a count that cannot be right


class StreamError(Exception):
    """The server answered, but not with a well-formed stream."""


def endpoint_url(base_url: str, api: str) -> str:
    return without_userinfo(base_url).rstrip("/") + ("/chat/completions" if api == "chat" else "/completions")


def auth_headers(config: Any) -> dict[str, str]:
    """The configured headers, the API key as a bearer token, or the URL's user:password as
    basic authentication."""
    headers = dict(config.headers or {})
    if config.api_key_env:
        key = os.environ.get(config.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
    parts = urlsplit(config.base_url)
    if parts.username and "Authorization" not in headers:
        token = base64.b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers


def without_userinfo(url: str) -> str:
    """`url` without its user:password (sent as a header instead, never in a request line)."""
    parts = urlsplit(url)
    if not parts.username:
        return url
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=host).geturl()


def request_body(config: Any, model: str, request: Request, stream: bool = True) -> dict[str, Any]:
    """The JSON body for one request: prompt, exact length fields, extra body fields."""
    n = request.output_tokens
    body: dict[str, Any] = {"model": model, "max_tokens": n, "stream": stream, "temperature": 0.0}
    if config.api == "chat":
        body["messages"] = list(request.messages) if request.messages else [{"role": "user", "content": request.text or ""}]
    else:
        if request.messages and request.session is None:
            raise ValueError("chat prompts need api: chat")
        if request.messages:  # a later turn of a session, on a completions API: the conversation as text
            body["prompt"] = "\n".join(m["content"] for m in request.messages)
        else:
            body["prompt"] = list(request.prompt) if request.prompt else (request.text or "")
    if stream:
        body["stream_options"] = {"include_usage": True}
    for name in config.exact_output_fields:
        body[name] = True if name == "ignore_eos" else n
    for key, value in (config.extra_body or {}).items():
        # "$output_tokens" in a string value becomes this request's output length, e.g. for
        # transformers serve: generation_config: '{"min_new_tokens": $output_tokens}'
        body[key] = value.replace(OUTPUT_TOKENS_PLACEHOLDER, str(n)) if isinstance(value, str) else value
    return body


class OpenAIBackend:
    vocab_size = 0  # prompts are text; nothing here depends on a vocabulary

    def __init__(self, model: str, config: Any, tokenizer_path: str | None = None):
        self.model, self.config = model, config
        self.url = endpoint_url(config.base_url, config.api)
        self._path = urlsplit(self.url).path
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream", **auth_headers(config)}
        self._header_bytes = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items()).encode("latin-1")
        self.tokenizer_path = tokenizer_path
        self._tokenizer: Any = None
        self._session: Any = None
        self._tokenize_path: str | None = None
        self.count_prompt_tokens: Any = None  # list[str] -> list[int], as the server will count them
        self.prompt_ids: list[int] | None = None  # token ids the server takes as a completions prompt
        self.word_costs: WordCosts | None = None  # measured costs of the words text prompts are made of
        self.prompt_method: str | None = None  # how prompts are made exact: token ids / tokenizer / server /tokenize

    def start(self) -> dict[str, Any]:
        if self.tokenizer_path:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path)
        counter = self._prompt_counter()
        if self.config.api == "completions" and (ids := self._word_ids()) and self._takes_ids(ids):
            self.prompt_ids, self.prompt_method = ids, "token ids"
        elif counter is not None:
            self.word_costs = calibrate(self.count_prompt_tokens)
            if self.word_costs is not None and self.config.api == "chat":
                self.word_costs = dataclasses.replace(self.word_costs, tail_tokens=self._template_tail())
            self.prompt_method = counter
        # `exact_prompts` is confirmed (or withdrawn) once the prompts are built: LoadDriver
        return {"backend": "openai", "base_url": self.config.base_url, "served_model": self.model,
                "api": self.config.api, "tokenizer": self.tokenizer_path, "prompt_method": self.prompt_method}

    def _word_ids(self) -> list[int] | None:
        """The token ids of common words (what synthetic id prompts are drawn from), without the
        special tokens a tokenizer puts around them; None when nothing here can tokenize."""
        texts = [BASE_WORD] + [f"{BASE_WORD} {w}" for w in WORDS]
        try:
            if self._tokenizer is not None:
                encoded = [list(ids) for ids in self._tokenizer(texts)["input_ids"]]
            elif self._tokenize_path is not None:
                encoded = aio.run(self._tokenize_all(texts, ids=True))
            else:
                return None
        except Exception:
            return None
        base = encoded[0]
        words = set()
        for ids in encoded[1:]:
            # what a word adds: the ids after those it shares with the base (BOS, "the"), less what
            # the base ends with after them (an EOS)
            p = next((k for k in range(min(len(base), len(ids))) if base[k] != ids[k]), min(len(base), len(ids)))
            end = base[p:]
            words.update(ids[p:len(ids) - len(end)] if end and ids[-len(end):] == end else ids[p:])
        special = set(getattr(self._tokenizer, "all_special_ids", None) or ())
        out = sorted(int(t) for t in words if isinstance(t, int) and t not in special)
        return out or None

    def _template_tail(self) -> int:
        """How many of a chat prompt's tokens come after its content (the template closing the
        message, the generation prompt): the common end of two chats' ids; 0 when no ids are seen."""
        texts = [BASE_WORD, f"{BASE_WORD} {BASE_WORD}"]
        try:
            if self._tokenizer is not None:
                encoded = [list(_flat_ids(self._tokenizer.apply_chat_template(
                    [{"role": "user", "content": t}], tokenize=True, add_generation_prompt=True))) for t in texts]
            elif self._tokenize_path is not None:
                encoded = aio.run(self._tokenize_all(texts, ids=True))
            else:
                return 0
        except Exception:
            return 0
        a, b = encoded
        tail = 0
        while tail < min(len(a), len(b)) - 1 and a[-1 - tail] == b[-1 - tail]:
            tail += 1
        return tail

    def _takes_ids(self, ids: list[int], tries: int = 3) -> bool:
        """Whether the server takes a list of token ids as a completions prompt and counts it as
        sent: a request of 8 ids and 1 output token, tried again (a flaky server's one bad answer
        is not a refusal) unless the server refuses the body outright (HTTP 4xx)."""
        probe = Request(0, tuple(ids[k % len(ids)] for k in range(8)), 1)
        body = orjson.dumps(request_body(self.config, self.model, probe, stream=False))
        for _ in range(tries):
            got = bytearray()
            try:
                response = aio.run(asyncio.wait_for(self._pool().post(
                    self._path, body, self._header_bytes, lambda data, t: got.extend(data)), 60))
                if 400 <= response.status < 500:
                    return False
                usage = orjson.loads(bytes(got)).get("usage") or {} if response.status == 200 else {}
                if usage.get("prompt_tokens") == len(probe.prompt):
                    return True
            except Exception:
                continue
        return False

    def _prompt_counter(self) -> str | None:
        """Set `count_prompt_tokens` from the local tokenizer or the server's /tokenize; return
        which (None: prompts are as many words as tokens asked for)."""
        tok = self._tokenizer
        if tok is not None:
            if self.config.api == "chat":
                if not getattr(tok, "chat_template", None):
                    return None  # the server's template is unknown here: usage will tell

                def count(texts: list[str]) -> list[int]:
                    return [len(_flat_ids(tok.apply_chat_template([{"role": "user", "content": t}], tokenize=True,
                                                                  add_generation_prompt=True))) for t in texts]
            else:
                def count(texts: list[str]) -> list[int]:
                    return [len(ids) for ids in tok(texts)["input_ids"]]
            self.count_prompt_tokens = count
            return "tokenizer"
        root = re.sub(r"/v1/?$", "", urlsplit(self.config.base_url).path.rstrip("/"))
        for path in dict.fromkeys([root + "/tokenize", urlsplit(self.config.base_url).path.rstrip("/") + "/tokenize"]):
            self._tokenize_path = path
            try:
                if aio.run(self._tokenize_one("hello")) is not None:
                    self.count_prompt_tokens = lambda texts: aio.run(self._tokenize_all(texts))
                    return f"server {path}"
            except Exception:
                pass  # no such endpoint, or not this shape: try the next, else go without
        self._tokenize_path = None
        return None

    async def _tokenize_one(self, text: str, ids: bool = False) -> Any:
        body: dict[str, Any] = {"model": self.model}
        if self.config.api == "chat":
            body["messages"] = [{"role": "user", "content": text}]
        else:
            body["prompt"] = text
        got = bytearray()
        response = await asyncio.wait_for(self._pool().post(
            self._tokenize_path, orjson.dumps(body), self._header_bytes, lambda data, t: got.extend(data)), 30)
        if response.status != 200:
            return None
        obj = orjson.loads(bytes(got))
        tokens = obj.get("tokens") if isinstance(obj, dict) else None
        if ids:
            return tokens if isinstance(tokens, list) else None
        if isinstance(obj, dict) and isinstance(obj.get("count"), int):
            return obj["count"]
        return len(tokens) if isinstance(tokens, list) else None

    async def _tokenize_all(self, texts: list[str], ids: bool = False) -> list[Any]:
        gate = asyncio.Semaphore(TOKENIZE_CONCURRENCY)

        async def one(text: str) -> Any:
            async with gate:
                n = await self._tokenize_one(text, ids)
            if n is None:
                raise StreamError(f"{self._tokenize_path} stopped answering")
            return n

        return list(await asyncio.gather(*(one(t) for t in texts)))

    def generate(self, batch: Batch) -> list[Completion]:
        """A static batch against a server: its requests sent together as one wave; the call
        returns when the last has finished."""
        async def wave() -> list[Completion]:
            return list(await asyncio.gather(*(self.request(r) for r in batch.requests)))

        return aio.run(wave())

    def start_streaming(self, max_concurrency: int, max_request_tokens: int, kv_cache_tokens: int) -> dict[str, Any]:
        return {"engine": "openai-http", "max_concurrency": max_concurrency}

    def _pool(self) -> ConnectionPool:
        if self._session is None:
            self._session = ConnectionPool(self.url, stall_timeout_s=self.config.stall_timeout_s)
        return self._session

    async def request(self, request: Request) -> Completion:
        """Send one streaming request; never raises (a failure is in `result.error`)."""
        result = Completion(token_count_source="chunks")
        sse = _SSEStream(result.token_ns, self.config.api == "chat", self._tokenizer is not None)
        try:
            body = orjson.dumps(request_body(self.config, self.model, request))
            response = await asyncio.wait_for(self._pool().post(self._path, body, self._header_bytes, sse),
                                              self.config.request_timeout_s)
            if response.status != 200:
                result.error = f"HTTP {response.status}: {_error_message(bytes(response.body))}"
                return result
        except Exception as exc:
            result.error = error_text(exc) if str(exc) else f"{exc.__class__.__name__}: {_describe(exc)}"
            return result
        result.done_ns = now_ns()
        if sse.reasoning_chunks:
            result.reasoning_chunks, result.first_content_ns = sse.reasoning_chunks, sse.first_content_ns
        try:  # anything wrong inside one response is that request's failure, never the worker's
            sse.tokens_without_text()
            self._count(result, sse)
        except Exception as exc:
            result.error = f"cannot count the response's tokens ({error_text(exc)})"
        return result

    def _count(self, result: Completion, sse: "_SSEStream") -> None:
        """Token counts: the server's usage (checked), else the tokenizer, else the chunks."""
        usage = sse.usage
        if usage is not None and not isinstance(usage, dict):
            result.error = f"malformed usage: a JSON {type(usage).__name__}, not an object"
        elif usage and usage.get("completion_tokens") is not None:
            n, prompt = usage["completion_tokens"], usage.get("prompt_tokens")
            if not _is_count(n):
                result.error = f"malformed usage: completion_tokens {n!r} is not a count"
            elif n <= 0:
                result.error = f"the server's usage reports {n} completion tokens for {sse.content_chunks} content chunks"
            elif sse.content_chunks and n > MAX_TOKENS_PER_CHUNK * sse.content_chunks:
                result.error = (f"inconsistent counts: usage reports {n} completion tokens for {sse.content_chunks} "
                                f"content chunks (more than {MAX_TOKENS_PER_CHUNK} a chunk)")
            elif prompt is not None and not _is_count(prompt):
                result.error = f"malformed usage: prompt_tokens {prompt!r} is not a count"
            else:
                result.output_tokens, result.prompt_tokens, result.token_count_source = n, prompt, "usage"
        elif sse.texts is not None:
            # after the stream has ended: this request's timing is already recorded
            result.output_tokens = len(self._tokenizer.encode("".join(sse.texts), add_special_tokens=False))
            result.token_count_source = "tokenizer"
        else:
            result.output_tokens = sse.content_chunks
            result.token_count_source = "chunks"

    def stop_streaming(self) -> None:
        if self._session is not None:
            aio.run(self._session.aclose())
        self._session = None

    def memory_stats(self) -> dict[str, int] | None:
        return None  # the server's allocator is not ours to read

    def quality_probe(self) -> dict[str, Any] | None:
        return None  # the server's logits are not ours to read

    def stop(self) -> None:
        self.stop_streaming()


class _SSEStream:
    """Called with each piece of a 200 response body and its receive time: splits SSE events,
    keeps the receive time of every chunk that carries content, the usage, and (when a tokenizer
    will count tokens) the text. Raises on a malformed line or an error event."""

    __slots__ = ("stamps", "chat", "texts", "pending", "usage", "content_chunks", "done", "reasoning_chunks",
                 "first_content_ns", "empty_stamps")

    def __init__(self, stamps: list[int], chat: bool, keep_text: bool):
        self.stamps, self.chat = stamps, chat
        self.texts: list[str] | None = [] if keep_text else None
        self.pending = b""
        self.usage: dict[str, Any] | None = None
        self.content_chunks = 0
        self.done = False
        self.reasoning_chunks = 0
        self.first_content_ns: int | None = None
        self.empty_stamps: list[int] = []  # chunks with a choice but no text, before the finish

    def __call__(self, data: bytes, t: int) -> None:
        # fast path, most of a stream: exactly one single-line `data: ...` event in this piece
        if not self.pending and data[:6] == b"data: " and data.count(b"\n") == 2 and data[-2:] == b"\n\n":
            if not self.done:
                self._data(data[6:-2].strip(), t)
            return
        pending = self.pending + data if self.pending else data
        if b"\r\n" in pending:
            pending = pending.replace(b"\r\n", b"\n")
        if b"\n\n" not in pending:
            self.pending = pending
            return
        *events, self.pending = pending.split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                if line.startswith(DATA) and not self.done:  # else: comments (": keep-alive"), names, ids
                    self._data(line[5:].strip(), t)

    def _data(self, payload: bytes, t: int) -> None:
        """One `data:` line's payload, received at `t`."""
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise StreamError(f"malformed SSE data line: {payload[:60]!r}") from None
        if not isinstance(obj, dict):
            raise StreamError(f"malformed SSE event: a JSON {type(obj).__name__} where an object belongs")
        if "error" in obj:
            raise StreamError(f"server error in stream: {_error_message(payload)}")
        usage = obj.get("usage")
        if usage:
            self.usage = usage
        choices = obj.get("choices")
        if not choices:
            return
        choice = choices[0] if isinstance(choices, list) else None
        if not isinstance(choice, dict):
            raise StreamError("malformed SSE event: `choices` is not a list of objects")
        if not self.chat:
            piece = choice.get("text")
        else:
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise StreamError("malformed SSE event: `delta` is not an object")
            piece = delta.get("content")
            if not piece:
                for name in REASONING_FIELDS:
                    if piece := delta.get(name):
                        self.reasoning_chunks += 1
                        break
            elif self.first_content_ns is None:
                self.first_content_ns = t
        if piece:
            if not isinstance(piece, str):
                raise StreamError(f"malformed SSE event: content {piece!r:.40} is not text")
            self.stamps.append(t)
            self.content_chunks += 1
            if self.texts is not None:
                self.texts.append(piece)
        elif choice.get("token_ids") or (self.chat and isinstance(choice.get("delta"), dict)
                                         and choice["delta"].get("token_ids")):
            self.stamps.append(t)  # tokens without text (special tokens), as vLLM sends them with their ids
            self.content_chunks += 1
        elif not (self.chat and set(choice.get("delta") or {}) <= {"role"} and (choice.get("delta") or {}).get("role")):
            # a keep-alive, a finish, or a token that decodes to nothing: usage decides
            self.empty_stamps.append(t if choice.get("finish_reason") is None else -t)

    def tokens_without_text(self) -> bool:
        """A stream whose every token decoded to nothing (a greedy run of special tokens): no text
        at all, one empty chunk per token the server's usage counts (vLLM's last token chunk also
        carries the finish reason; other servers send the finish in a chunk of its own). Those
        chunks are its tokens."""
        n = (self.usage or {}).get("completion_tokens") if isinstance(self.usage, dict) else None
        if self.content_chunks or not self.empty_stamps or not _is_count(n) or n <= 0:
            return False
        chunks = self.empty_stamps
        if len(chunks) == n + 1 and chunks[-1] < 0:
            chunks = chunks[:-1]  # a finish chunk of its own, after the tokens
        self.stamps.extend(abs(t) for t in chunks[:n])
        self.content_chunks = len(self.stamps)
        return True


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _flat_ids(ids: Any) -> list[int]:
    """What `apply_chat_template(tokenize=True)` returned, as one list of ids."""
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids[0]) if ids and isinstance(ids[0], list) else list(ids)


def _describe(exc: Exception) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "no data before the stall or request timeout"
    return repr(exc)


def _error_message(raw: bytes) -> str:
    """The `error.message` of an OpenAI-style error body, else the body; scrubbed of secrets
    before it is cut to 200 characters (a cut must not leave half a key behind)."""
    text = None
    try:
        obj = orjson.loads(raw)
        err = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(err, dict) and err.get("message"):
            text = str(err["message"])
        elif isinstance(err, str):
            text = err
        elif isinstance(obj, dict) and obj.get("detail"):
            text = str(obj["detail"])
    except orjson.JSONDecodeError:
        pass
    if text is None:
        text = raw[:4096].decode("utf-8", "replace")
    return scrub(text)[:200]
