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

from dataclasses import dataclass
from typing import Any, Callable

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
    """`count` lengths from a fixed int or a `LengthDist`-like object (mean/std or min/max)."""
    if isinstance(length, (int, np.integer)):
        return np.full(count, int(length), dtype=np.int64)
    if getattr(length, "mean", None) is not None:
        drawn = np.rint(rng.normal(length.mean, length.std or 0.0, size=count))
        return np.clip(drawn, 1, length.upper_bound()).astype(np.int64)
    return rng.integers(length.min, length.max + 1, size=count, dtype=np.int64)


def build_requests(count: int, prompt_tokens: Any, output_tokens: Any, vocab_size: int, seed: int,
                   prompt_pool: list[Any] | None = None) -> list[Request]:
    """`count` requests with ids 0..count-1. With a `prompt_pool` (token-id lists, or `{"ids",
    "category"}` entries), prompts come from it (their own lengths and categories); otherwise
    they are synthetic with `prompt_tokens` lengths."""
    rng = np.random.default_rng(seed)
    outputs = sample_lengths(output_tokens, count, rng)
    if prompt_pool:
        order = rng.permutation(len(prompt_pool))
        picked = [prompt_pool[order[k % len(order)]] for k in range(count)]
        return [Request(k, tuple(p["ids"] if isinstance(p, dict) else p), int(outputs[k]),
                        category=p.get("category") if isinstance(p, dict) else None) for k, p in enumerate(picked)]
    else:
        lengths = sample_lengths(prompt_tokens, count, rng)
        low, high = token_id_range(vocab_size)
        flat = rng.integers(low, high, size=int(lengths.sum()), dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        prompts = [tuple(flat[bounds[k]:bounds[k + 1]].tolist()) for k in range(count)]
    return [Request(k, prompts[k], int(outputs[k])) for k in range(count)]


# Common English words, most of which are one token in every mainstream tokenizer, so a synthetic
# text prompt of N words is close to N tokens. Close is not exact: with a tokenizer at hand (the
# instance's `tokenizer`, or the server's /tokenize) prompts are fitted to the exact length.
WORDS = ("the of and to in is was for that on as with by at from his an were are which this be or "
         "has had not but one all new more time first two may some than other also been into only "
         "its after these over most year who can when would there many made people state world such "
         "some city while part where between both system under during each well back long found work").split()
SHORT_WORDS = ("the", "of", "and", "to", "in", "is", "on", "as", "at", "by")  # one token nearly everywhere
FIT_ROUNDS = 6

TokenCounter = Callable[[list[str]], list[int]]


def fit_prompts(words: list[list[str]], targets: list[int], count: TokenCounter,
                rng: np.random.Generator) -> tuple[list[str], list[int]]:
    """Texts whose token counts (as `count` says: the server's tokenizer, chat template included)
    equal their targets: words are dropped while a prompt is too long (each costs at least one
    token) and short one-token words added while it is too short, in rounds, every prompt of a
    round counted in one call. A target the tokenizer cannot reach (below a chat template's own
    tokens) keeps its nearest text. Returns the texts and their final counts."""
    texts = [" ".join(w) for w in words]
    counts = list(count(texts))
    for _ in range(FIT_ROUNDS):
        todo = [k for k in range(len(words)) if counts[k] != targets[k]]
        if not todo:
            break
        moved = []
        for k in todo:
            d = targets[k] - counts[k]
            if d < 0 and words[k]:
                del words[k][max(0, len(words[k]) + d):]
            elif d > 0:
                words[k] += rng.choice(SHORT_WORDS, size=d).tolist()
            else:
                continue  # too long with no words left: the template alone is longer
            moved.append(k)
        if not moved:
            break
        for k, c in zip(moved, count([" ".join(words[k]) for k in moved])):
            texts[k], counts[k] = " ".join(words[k]), c
    return texts, counts


def build_text_requests(count: int, prompt_tokens: Any, output_tokens: Any, seed: int,
                        text_pool: list[dict[str, Any]] | None = None,
                        counter: TokenCounter | None = None) -> list[Request]:
    """Requests with text prompts for HTTP backends: from `text_pool` (`{"text"}` / `{"messages"}`
    entries, seeded order) or synthetic sentences of `prompt_tokens` tokens: fitted exactly with
    `counter`, else of as many words (the server's usage then says how close that came)."""
    rng = np.random.default_rng(seed)
    outputs = sample_lengths(output_tokens, count, rng)
    requests = []
    if text_pool:
        order = rng.permutation(len(text_pool))
        for k in range(count):
            item = text_pool[order[k % len(order)]]
            messages = tuple(item["messages"]) if item.get("messages") else None
            requests.append(Request(k, (), int(outputs[k]), text=item.get("text"), messages=messages,
                                    category=item.get("category")))
        return requests
    lengths = [int(n) for n in sample_lengths(prompt_tokens, count, rng)]
    words = np.array(WORDS)
    drawn = [words[rng.integers(0, len(words), size=n)].tolist() for n in lengths]
    texts = fit_prompts(drawn, lengths, counter, rng)[0] if counter is not None and count else [" ".join(w) for w in drawn]
    return [Request(k, (), int(outputs[k]), text=texts[k], prompt_target=lengths[k]) for k in range(count)]


def static_batches(requests: list[Request], batch_size: int, warmup: bool = False) -> list[Batch]:
    """Consecutive requests grouped in batches of `batch_size` (the last one may be smaller)."""
    return [Batch(k // batch_size, tuple(requests[k:k + batch_size]), warmup)
            for k in range(0, len(requests), batch_size)]
