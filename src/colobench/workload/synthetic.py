"""Token-exact requests from a seeded generator.

A prompt here is a list of token ids, so its length is exact by construction (text prompts
re-tokenise to a different length on every tokenizer). Synthetic ids are drawn uniformly from
the ordinary part of the vocabulary: the lowest ids and the top of large vocabularies, where
tokenizers put control tokens (Llama-3 keeps 256 of them above id 128000), are avoided, so no
prompt contains an end-of-sequence or chat-template marker by accident.

Lengths are fixed or drawn from a distribution (`{mean, std}` normal, rounded and at least 1;
`{min, max}` uniform). Prompts from a file or the built-in set arrive as a pool of token-id
lists and are used in a seeded shuffled order, cycling when more requests than prompts are
needed. The same seed always gives the same requests, in every process.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

LOW_RESERVED_IDS = 10
HIGH_RESERVED_IDS = 512


@dataclass(frozen=True)
class Request:
    request_id: int
    prompt: tuple[int, ...]  # token ids (in-process backends; empty for text prompts)
    output_tokens: int
    text: str | None = None  # text prompt (HTTP backends)
    messages: tuple[dict[str, str], ...] | None = None  # chat prompt (HTTP backends)
    prompt_target: int | None = None  # synthetic text: the prompt length asked for, in tokens
    category: str | None = None  # the prompt's category (built-in prompts, files whose lines name one)
    session: int | None = None  # multi-turn: the session this turn belongs to
    turn: int = 0  # multi-turn: 0 for a session's first request
    think_s: float = 0.0  # multi-turn: the pause after the previous turn's answer before this one
    at_s: float | None = None  # a trace's later turn: its time from the replay's start (sent then, or
    # at once when the previous answer came later: a turn never overtakes the answer it follows)

    @property
    def asked_prompt_tokens(self) -> int | None:
        """The prompt length asked for, in tokens, where there is one: token ids, or a synthetic
        text's target (text from a file has none)."""
        return len(self.prompt) if self.prompt else self.prompt_target

    @property
    def prompt_len(self) -> int:
        """Prompt length in tokens when known (token ids, or a synthetic text's target), else in
        words (text from a file)."""
        if self.prompt:
            return len(self.prompt)
        if self.prompt_target is not None:
            return self.prompt_target
        if self.text is not None:
            return len(self.text.split())
        return sum(len(m["content"].split()) for m in self.messages or ())


@dataclass(frozen=True)
class Batch:
    """Requests generated together in one static batch."""

    batch_id: int
    requests: tuple[Request, ...]
    warmup: bool

    @property
    def prompts(self) -> tuple[tuple[int, ...], ...]:
        return tuple(r.prompt for r in self.requests)

    @property
    def output_tokens(self) -> int:
        """Steps the batch runs: its longest output."""
        return max(r.output_tokens for r in self.requests)


def token_id_range(vocab_size: int) -> tuple[int, int]:
    """Half-open [low, high) range of ids synthetic prompts draw from."""
    high_reserved = HIGH_RESERVED_IDS if vocab_size > 8 * HIGH_RESERVED_IDS else 0
    low = min(LOW_RESERVED_IDS, vocab_size - 1)
    return low, max(low + 1, vocab_size - high_reserved)


def sample_lengths(length: Any, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` lengths from a fixed int, a `LengthDist`-like object (mean/std or min/max), or a
    sequence of lengths (a trace's: cycled when more are asked for)."""
    if isinstance(length, (int, np.integer)):
        return np.full(count, int(length), dtype=np.int64)
    if isinstance(length, (list, tuple, np.ndarray)):
        given = np.asarray(length, dtype=np.int64)
        return np.resize(given, count) if count else given[:0]
    if getattr(length, "mean", None) is not None:
        drawn = np.rint(rng.normal(length.mean, length.std or 0.0, size=count))
        return np.clip(drawn, 1, length.upper_bound()).astype(np.int64)
    return rng.integers(length.min, length.max + 1, size=count, dtype=np.int64)


def derived_seed(seed: int, *salt: str) -> int:
    """A seed for one part of a run (an instance's window, its filler, its shared prefix) derived
    from the workload's seed: reproducible, and different for every salt."""
    digest = hashlib.blake2b(repr((seed, *salt)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def shared_prefix_flags(count: int, shared_prefix: Any, seed: int, sessions: Any = None) -> np.ndarray:
    """Which of `count` requests start with the shared prefix: `share` of them, the same ones in
    every window (drawn from the workload's seed); in sessions, first turns only (later turns
    carry the first one's prompt)."""
    if shared_prefix is None:
        return np.zeros(count, dtype=bool)
    flags = np.random.default_rng(derived_seed(seed, "shared-prefix-share")).random(count) < shared_prefix.share
    if sessions is not None:
        flags &= np.arange(count) % sessions.turns == 0
    return flags


def build_requests(count: int, prompt_tokens: Any, output_tokens: Any, vocab_size: int, seed: int,
                   prompt_pool: list[Any] | None = None, *, salt: tuple[str, ...] = (),
                   id_pool: list[int] | None = None, shared_prefix: Any = None,
                   prefix_salt: tuple[str, ...] = (), sessions: Any = None) -> list[Request]:
    """`count` requests with ids 0..count-1. With a `prompt_pool` (token-id lists, or `{"ids",
    "category"}` entries), prompts come from it (their own lengths and categories); otherwise
    they are synthetic with `prompt_tokens` lengths.

    Lengths, output lengths and the pool's order come from `seed` alone, so every window of a run
    asks for the same work; the synthetic ids come from `seed` and `salt` (the instance, its run
    and repetition), so no two windows send the same prompt and a server's prefix cache has
    nothing to find unless the workload asks for it: with `shared_prefix` (`tokens`, `share`),
    that share of the requests starts with the same `tokens` ids (one prefix per `prefix_salt`,
    kept across windows, as a system prompt is). Ids are drawn from `id_pool` (a server's word
    ids) when given, else from the ordinary part of the vocabulary. With `sessions` (`turns`,
    `think_time_s`), request k is turn k % turns of session k // turns: its prompt is the whole
    conversation so far, each new message `prompt_tokens` long."""
    rng = np.random.default_rng(seed)
    outputs = sample_lengths(output_tokens, count, rng)
    if prompt_pool:
        order = rng.permutation(len(prompt_pool))
        picked = [prompt_pool[order[k % len(order)]] for k in range(count)]
        # an entry's own output length (`output: data`: its reference answer's) wins over the workload's
        return [Request(k, tuple(p["ids"] if isinstance(p, dict) else p),
                        int(p.get("output_tokens") or outputs[k]) if isinstance(p, dict) else int(outputs[k]),
                        category=p.get("category") if isinstance(p, dict) else None) for k, p in enumerate(picked)]
    lengths = sample_lengths(prompt_tokens, count, rng)
    content = np.random.default_rng(derived_seed(seed, *salt)) if salt else rng

    def draw(rng_: np.random.Generator, n: int) -> np.ndarray:
        if id_pool:
            return np.asarray(id_pool, dtype=np.int64)[rng_.integers(0, len(id_pool), size=n)]
        low, high = token_id_range(vocab_size)
        return rng_.integers(low, high, size=n, dtype=np.int64)

    shared = shared_prefix_flags(count, shared_prefix, seed, sessions)
    prefix: list[int] = []
    if shared.any():
        prefix = draw(np.random.default_rng(derived_seed(seed, "shared-prefix", *prefix_salt)),
                      shared_prefix.tokens).tolist()
    tails = [int(n) - len(prefix) if shared[k] else int(n) for k, n in enumerate(lengths)]
    flat = draw(content, int(sum(max(0, t) for t in tails)))
    prompts, at = [], 0
    for k, tail in enumerate(tails):
        tail = max(0, tail)
        prompts.append(tuple((prefix if shared[k] else []) + flat[at:at + tail].tolist()))
        at += tail
    if sessions is None:
        return [Request(k, prompts[k], int(outputs[k])) for k in range(count)]
    # a stand-in for each answer: the server cached its own answer, not these ids, so a later
    # turn hits the earlier prompts' blocks (what a real client would resend is the real answer)
    answers = [draw(content, int(n)).tolist() for n in outputs]
    out, context = [], []
    for k in range(count):
        session, turn = divmod(k, sessions.turns)
        context = (context if turn else []) + list(prompts[k])
        out.append(Request(k, tuple(context), int(outputs[k]), session=session, turn=turn,
                           think_s=sessions.think_time_s if turn else 0.0))
        context = context + answers[k]
    return out


def static_batches(requests: list[Request], batch_size: int, warmup: bool = False) -> list[Batch]:
    """Consecutive requests grouped in batches of `batch_size` (the last one may be smaller)."""
    return [Batch(k // batch_size, tuple(requests[k:k + batch_size]), warmup)
            for k in range(0, len(requests), batch_size)]
