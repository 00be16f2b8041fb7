"""Token-exact synthetic prompts from a seeded generator.

A prompt here is a list of token ids, so its length is exact by construction (text prompts
re-tokenise to a different length on every tokenizer). Ids are drawn uniformly from the
ordinary part of the vocabulary: the lowest ids and the top of large vocabularies, where
tokenizers put control tokens (Llama-3 keeps 256 of them above id 128000), are avoided, so
no prompt contains an end-of-sequence or chat-template marker by accident.

The same (seed, count, length, vocabulary) always gives the same prompts, in every process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOW_RESERVED_IDS = 10
HIGH_RESERVED_IDS = 512


@dataclass(frozen=True)
class Batch:
    """Requests generated together in one static batch."""

    batch_id: int
    request_ids: tuple[int, ...]
    prompts: tuple[tuple[int, ...], ...]
    output_tokens: int
    warmup: bool


def token_id_range(vocab_size: int) -> tuple[int, int]:
    """Half-open [low, high) range of ids synthetic prompts draw from."""
    high_reserved = HIGH_RESERVED_IDS if vocab_size > 8 * HIGH_RESERVED_IDS else 0
    low = min(LOW_RESERVED_IDS, vocab_size - 1)
    return low, max(low + 1, vocab_size - high_reserved)


def synthetic_prompts(count: int, prompt_tokens: int, vocab_size: int, seed: int) -> np.ndarray:
    """`count` prompts of exactly `prompt_tokens` ids each, shape (count, prompt_tokens), int64."""
    low, high = token_id_range(vocab_size)
    rng = np.random.default_rng(seed)
    return rng.integers(low, high, size=(count, prompt_tokens), dtype=np.int64)


def make_batches(
    count: int, batch_size: int, prompt_tokens: int, output_tokens: int, vocab_size: int, seed: int,
    warmup: bool = False,
) -> list[Batch]:
    """`count` requests in static batches of `batch_size` (the last one smaller when `count` is
    not a multiple), request ids 0..count-1, prompts from `synthetic_prompts(seed)`."""
    prompts = synthetic_prompts(count, prompt_tokens, vocab_size, seed)
    batches: list[Batch] = []
    for start in range(0, count, batch_size):
        end = min(start + batch_size, count)
        rows = tuple(tuple(int(t) for t in prompts[k]) for k in range(start, end))
        batches.append(Batch(len(batches), tuple(range(start, end)), rows, output_tokens, warmup))
    return batches
