"""Synthetic text prompts of an exact token count, for servers that take text (chat APIs, and
completions APIs that refuse token ids).

A word is not a token. Common English words are one token in large vocabularies but two or three
in small ones (a field run on a tiny checkpoint's tokenizer measured 2.7 tokens a word), and a
chat template adds tokens of its own. So the word costs are measured, not assumed: with a counter
at hand (the instance's tokenizer, or the server's `POST /tokenize`), `calibrate` counts
`"the w"` and `"the w w w"` for every word w of `WORDS`: the difference from `"the"` alone is what
w adds after a space, kept when it is the same every time (a word-level pre-tokenizer makes it
so: GPT-2's byte-level BPE, SentencePiece's "▁" pieces). A prompt of T tokens is then `"the"`
followed by words whose costs add up to T minus what `"the"` costs with the template, composed
exactly (random words, then a small change-making step for the remainder). Every prompt is
counted once more and a prompt that came out other than asked is recomposed with its budget
moved by the difference, for a few rounds: the counts are affine in the budget when the costs
are right, so one round fixes what context changed, and nothing oscillates.

Without a counter the words are assumed to cost one token each, and the server's `usage` says
how close that came (the `prompt_length` check).

Each window of a run gets new words (its `salt`), so no two requests share a prompt; a
`shared_prefix` puts the same words in front of a share of the requests on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from colobench.workload.synthetic import Request, derived_seed, sample_lengths, shared_prefix_flags

BASE_WORD = "the"  # every synthetic prompt starts with it: the first word tokenizes unlike the others
WORDS = tuple(("the of and to in is was for that on as with by at from his an were are which this be or "
               "has had not but one all new more time first two may some than other also been into only "
               "its after these over most year who can when would there many made people state world such "
               "city while part where between both system under during each well back long found work "
               "house water school light river paper music party market night story money field order "
               "power place point group table train green plant heart north south small large young early "
               "still great common simple quick ready clear open close start change answer number").split())
FIT_ROUNDS = 4

TokenCounter = Callable[[list[str]], list[int]]


@dataclass(frozen=True)
class WordCosts:
    """Tokens each word adds after a space, and what `BASE_WORD` alone costs (template included)."""

    costs: dict[str, int] = field(default_factory=lambda: {w: 1 for w in WORDS})
    base_tokens: int = 1
    tail_tokens: int = 0  # of base_tokens, those after the content (a chat template's closing tokens)
    measured: bool = False

    def compose(self, budget: int, rng: np.random.Generator) -> list[str]:
        """Words whose costs add up to `budget` exactly where the costs allow (with a one-token
        word, always); else to the nearest sum below it."""
        if budget <= 0:
            return []
        words, costs = list(self.costs), np.array(list(self.costs.values()))
        biggest = int(costs.max())
        picked: list[str] = []
        remaining = budget
        while remaining > 2 * biggest:
            k = int(rng.integers(0, len(words)))
            picked.append(words[k])
            remaining -= int(costs[k])
        return picked + self._change(remaining, rng)

    def _change(self, amount: int, rng: np.random.Generator) -> list[str]:
        """Words adding up to `amount` (at most a few words: coin change over the costs), else the
        largest sum below it."""
        by_cost: dict[int, list[str]] = {}
        for word, cost in self.costs.items():
            by_cost.setdefault(cost, []).append(word)
        best: dict[int, list[int]] = {0: []}
        for total in range(1, amount + 1):
            for cost in sorted(by_cost):
                if total - cost in best and (total not in best or len(best[total - cost]) + 1 < len(best[total])):
                    best[total] = best[total - cost] + [cost]
        reach = max(t for t in best if t <= amount)
        return [by_cost[c][int(rng.integers(0, len(by_cost[c])))] for c in best[reach]]


def calibrate(counter: TokenCounter) -> WordCosts | None:
    """Each word's cost measured with `counter` (one call); None when no word has a steady cost."""
    texts = [BASE_WORD] + [f"{BASE_WORD} {w}" for w in WORDS] + [f"{BASE_WORD} {w} {w} {w}" for w in WORDS]
    counts = counter(texts)
    base, n = counts[0], len(WORDS)
    costs = {}
    for k, word in enumerate(WORDS):
        one, three = counts[1 + k] - base, counts[1 + n + k] - base
        if one >= 1 and three == 3 * one:
            costs[word] = one
    return WordCosts(costs, base, measured=True) if costs else None


@dataclass(frozen=True)
class TextPrompts:
    requests: list[Request]
    off: int  # prompts whose count still differs from the target (0 when exact or not counted)
    counted: bool  # a counter checked every prompt


def build_text_requests(count: int, prompt_tokens: Any, output_tokens: Any, seed: int,
                        text_pool: list[dict[str, Any]] | None = None, counter: TokenCounter | None = None, *,
                        costs: WordCosts | None = None, salt: tuple[str, ...] = (), shared_prefix: Any = None,
                        prefix_salt: tuple[str, ...] = (), sessions: Any = None,
                        blocks: Callable[[WordCosts], list[tuple[list[str], int]]] | None = None) -> TextPrompts:
    """Requests with text prompts for HTTP backends: from `text_pool` (`{"text"}` / `{"messages"}`
    entries, seeded order) or synthetic text of `prompt_tokens` tokens (composed from `costs`,
    checked and fitted with `counter` when there is one). Lengths and output lengths come from
    `seed`, the words from `seed` and `salt` (see `build_requests`). `blocks(costs)`: each
    request's leading words and what they cost in tokens (a trace's shared blocks), its own words
    composed after them."""
    rng = np.random.default_rng(seed)
    outputs = sample_lengths(output_tokens, count, rng)
    if text_pool:
        order = rng.permutation(len(text_pool))
        requests = []
        for k in range(count):
            item = text_pool[order[k % len(order)]]
            messages = tuple(item["messages"]) if item.get("messages") else None
            requests.append(Request(k, (), int(item.get("output_tokens") or outputs[k]), text=item.get("text"),
                                    messages=messages, category=item.get("category")))
        return TextPrompts(requests, 0, False)
    costs = costs or WordCosts()
    lengths = [int(n) for n in sample_lengths(prompt_tokens, count, rng)]
    shared = shared_prefix_flags(count, shared_prefix, seed, sessions)
    prefix: list[str] = []
    if shared.any():
        # the prefix's words cover what the template's closing tokens would otherwise take, so the
        # leading ids (template head, the words) shared by these prompts are `tokens` long
        prefix = costs.compose(shared_prefix.tokens - costs.base_tokens + costs.tail_tokens,
                               np.random.default_rng(derived_seed(seed, "shared-prefix", *prefix_salt)))
    heads = [[BASE_WORD] + (prefix if shared[k] else []) for k in range(count)]
    budgets = [n - costs.base_tokens - (shared_prefix.tokens - costs.base_tokens + costs.tail_tokens if shared[k] else 0)
               for k, n in enumerate(lengths)]
    if blocks is not None:
        for k, (words, cost) in enumerate(blocks(costs)):
            heads[k] = [BASE_WORD] + words
            budgets[k] = lengths[k] - costs.base_tokens - cost
    base_seed = derived_seed(seed, *salt)

    def text(k: int) -> str:
        # each prompt its own generator: a refit recomposes one prompt, the others stay as they are
        rng_k = np.random.default_rng([base_seed, k])
        return " ".join(heads[k] + costs.compose(budgets[k], rng_k))

    texts = [text(k) for k in range(count)]
    off = 0
    if counter is not None and count:
        counts = list(counter(texts))
        for _ in range(FIT_ROUNDS):
            todo = [k for k in range(count) if counts[k] != lengths[k] and budgets[k] + lengths[k] - counts[k] >= 0]
            if not todo:
                break
            for k in todo:
                budgets[k] += lengths[k] - counts[k]
                texts[k] = text(k)
            for k, c in zip(todo, counter([texts[k] for k in todo])):
                counts[k] = c
        off = sum(c != n for c, n in zip(counts, lengths))
    if sessions is None:
        requests = [Request(k, (), int(outputs[k]), text=texts[k], prompt_target=lengths[k]) for k in range(count)]
        return TextPrompts(requests, off, counter is not None)
    # later turns are chats: the earlier messages, a stand-in of each answer, the new message; the
    # server counts them (usage), no target is claimed for them
    answer_seed = derived_seed(seed, *salt, "answers")
    requests, history = [], []
    for k in range(count):
        session, turn = divmod(k, sessions.turns)
        history = history if turn else []
        if turn == 0:
            requests.append(Request(k, (), int(outputs[k]), text=texts[k], prompt_target=lengths[k], session=session))
        else:
            requests.append(Request(k, (), int(outputs[k]), messages=tuple(history + [{"role": "user", "content": texts[k]}]),
                                    session=session, turn=turn, think_s=sessions.think_time_s))
        answer = " ".join(costs.compose(int(outputs[k]), np.random.default_rng([answer_seed, k])))
        history = history + [{"role": "user", "content": texts[k]}, {"role": "assistant", "content": answer}]
    return TextPrompts(requests, off, counter is not None)
