"""The fake server's tokenizer and prefix cache: what a real engine does to a prompt before it
computes anything, small enough to reason about in a test.

Tokenizer. Real tokenizers make benchmark prompts awkward in two ways the fake one copies: a
common word is often several tokens (a small vocabulary splits "the" into two pieces; the field
report behind this module saw 2.7 tokens a word), and a chat template adds tokens of its own. The
fake one cuts every word into pieces of `chars_per_token` characters (default 2: "the" is two
tokens, "of" one, "between" four) and gives each piece an id from a hash, so a prompt's ids are
stable and two different texts share a prefix of ids only where they share a prefix of words. A
chat costs 3 template tokens per message (role, end, newline) and 1 for the generation prompt.

Prefix cache. vLLM and SGLang keep the KV cache of earlier prompts in blocks (vLLM: 16 tokens)
keyed by the hash of the block and everything before it, and a new request whose first blocks
match skips their prefill. `PrefixCache` does the same with the ids above: the hit is the number
of leading full blocks already seen, times the block size (never the whole prompt: the last token
is always computed, as in vLLM), and the counters are vLLM's (`prefix_cache_queries` and
`prefix_cache_hits`, in tokens). The cache holds a bounded number of blocks, least recently used
out first. The server makes a hit's prefill cheaper (TTFT scaled by the share not hit; on the
shared device, fewer prompt tokens to prefill), so a benchmark that resends its prompts sees the
same bias it would see on a real engine.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import OrderedDict
from typing import Any

VOCAB_SIZE = 32_000
FIRST_WORD_ID = 1_000  # ids below are the template's and special tokens
TEMPLATE_IDS = {"system": 3, "user": 4, "assistant": 5, "tool": 6}
END_ID, NEWLINE_ID, GENERATION_PROMPT_ID, OTHER_ROLE_ID = 7, 8, 9, 10
CHAT_TOKENS_PER_MESSAGE = 3
CHAT_GENERATION_PROMPT_TOKENS = 1
BLOCK_TOKENS = 16
CACHE_BLOCKS = 65_536  # about a million tokens: a few minutes of a benchmark's prompts


class FakeTokenizer:
    def __init__(self, chars_per_token: int = 2):
        self.chars_per_token = chars_per_token

    def encode(self, text: str) -> list[int]:
        n = self.chars_per_token
        return [FIRST_WORD_ID + zlib.crc32(word[k:k + n].encode()) % (VOCAB_SIZE - FIRST_WORD_ID)
                for word in text.split() for k in range(0, len(word), n)]

    def count(self, text: str) -> int:
        return sum(-(-len(word) // self.chars_per_token) for word in text.split())

    def chat(self, messages: list[Any]) -> list[int]:
        ids: list[int] = []
        for m in messages:
            m = m if isinstance(m, dict) else {}
            ids += [TEMPLATE_IDS.get(str(m.get("role")), OTHER_ROLE_ID), *self.encode(str(m.get("content", ""))),
                    END_ID, NEWLINE_ID]
        return ids + [GENERATION_PROMPT_ID]

    def prompt_ids(self, body: dict[str, Any], chat: bool) -> list[int]:
        """The ids of a request's prompt: a chat through the template, text encoded, or a list of
        token ids as sent (vLLM, SGLang and transformers serve accept them on /v1/completions)."""
        if chat:
            return self.chat(body.get("messages") or [])
        prompt = body.get("prompt", "")
        if isinstance(prompt, list):
            return [int(t) for t in prompt]
        return self.encode(str(prompt))


def valid_token_ids(prompt: Any) -> bool:
    """A `prompt` that is a non-empty list of token ids inside the vocabulary."""
    return (isinstance(prompt, list) and bool(prompt)
            and all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < VOCAB_SIZE for t in prompt))


class PrefixCache:
    """vLLM-style automatic prefix caching over token ids, in full blocks of `block_tokens`."""

    def __init__(self, block_tokens: int = BLOCK_TOKENS, max_blocks: int = CACHE_BLOCKS):
        self.block_tokens, self.max_blocks = block_tokens, max_blocks
        self.blocks: OrderedDict[bytes, None] = OrderedDict()
        self.queries_tokens = 0
        self.hits_tokens = 0

    def lookup_and_insert(self, ids: list[int]) -> int:
        """Tokens of `ids` served from the cache (leading full blocks seen before); then every full
        block of `ids` is cached. Counts the query."""
        b = self.block_tokens
        chain = hashlib.blake2b(digest_size=16)
        keys = []
        for start in range(0, len(ids) - len(ids) % b, b):
            chain.update(b"".join(t.to_bytes(4, "little") for t in ids[start:start + b]))
            keys.append(chain.copy().digest())
        hit_blocks = 0
        for key in keys:
            if key not in self.blocks:
                break
            hit_blocks += 1
        hit = min(hit_blocks * b, max(0, len(ids) - 1))  # the last prompt token is always computed
        for key in keys:
            self.blocks[key] = None
            self.blocks.move_to_end(key)
        while len(self.blocks) > self.max_blocks:
            self.blocks.popitem(last=False)
        self.queries_tokens += len(ids)
        self.hits_tokens += hit
        return hit

    def reset(self) -> None:
        self.blocks.clear()
