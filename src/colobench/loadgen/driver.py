"""One instance's load, window by window: what the worker asks of the load generators.

A driver is built once per worker from the instance's workload: its requests (token ids, or text
for a server), the warm-up requests, the static batches or the open-loop schedule. Each measured
window then runs the workload's measured quota (`measured`); in a co-located window an instance
that finishes its quota early keeps the same load on, unmeasured (`filler`, records marked
`load_only`), until every partner has finished too, so the partners' measured requests always
see the same interference. A duration-bounded workload cycles its requests until time is up.

Why the filler matters: two instances with unlike workloads (the `mixed` scenario: short and long
prompts) finish their quotas at very different times; without it the slower one runs its last
requests alone and its "co-located" latency understates the interference.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Iterator

import numpy as np

from colobench import aio
from colobench.clock import now_ns
from colobench.loadgen import streaming
from colobench.loadgen.recorder import Recorder
from colobench.loadgen.static import run_static
from colobench.workload.arrivals import arrival_offsets_s, count_for_duration, instance_seed, ramp_offsets_s
from colobench.workload.synthetic import Request, build_requests, derived_seed, static_batches, token_id_range
from colobench.workload.text_prompts import build_text_requests
from colobench.workload.trace import block_prompts, read_trace

WARMUP_SEED_OFFSET = 1_000_003
FILLER_SEED_OFFSET = 2_000_003
OPEN_LOOP_WARMUP_REQUESTS = 4
FILLER_SCHEDULE_FACTOR = 50  # a filler schedule this many times the measured one (it stops long before)


PEAK_MIN_ROUNDS = 2


def peak_requests(requests: int, parallel: int) -> int:
    """Requests per repetition at "max" batch or concurrency (the `peak` scenario): `requests`
    rounded up to whole batches (rounds of full concurrency), at least `PEAK_MIN_ROUNDS`: a last
    batch of 88 after two of 256 would be a different, smaller batch averaged into the peak, and a
    single batch per repetition has no spread between batches (every request of it shares its
    token times)."""
    rounds = max(PEAK_MIN_ROUNDS, -(-requests // parallel))
    return rounds * parallel


def split(total: int, part: tuple[int, int]) -> int:
    """Part k of n's share of `total` (concurrency) when split as evenly as possible."""
    k, n = part
    return total // n + (1 if k < total % n else 0)


class LoadDriver:
    """The requests and the load model of one worker (client process `part` of its instance).

    Every window gets requests of its own (`new_window`): the same lengths, output lengths and
    arrival schedule, new prompt content, so a server's prefix cache finds nothing from an earlier
    window, an earlier repetition or the other phase (prompts from a file or the built-in set are
    what they are: they repeat when a run sends more requests than the set holds)."""

    def __init__(self, backend: Any, workload: Any, parallel: int, pool: list[Any] | None,
                 part: tuple[int, int] = (0, 1), shared_start: Any = None, name: str = "", salt: str = "",
                 first: tuple[str, int] = ("first", 0)):
        wl = self.wl = workload
        self.backend, self.load, self.shared_start, self.pool = backend, wl.load_model, shared_start, pool
        self.name, self.salt = name, salt  # the instance, and the run directory's salt (see orchestrate.salted)
        # a replayed trace: its rows (cut to --duration) are the requests, their times the schedule
        self.trace = read_trace(wl.trace, wl.trace_format).window(0.0, wl.duration_s) \
            if getattr(wl, "trace", None) else None
        ramp = getattr(wl, "ramp", None)
        self.ramp_offsets = ramp_offsets_s(wl.rate, ramp.to_rate, wl.duration_s, ramp.steps, ramp.shape, wl.arrival,
                                           wl.burstiness, instance_seed(wl.seed, name)).tolist() if ramp else None
        if self.trace is not None:
            count = len(self.trace.rows)
        elif self.ramp_offsets is not None:
            count = max(1, len(self.ramp_offsets))
        elif self.load == "open":
            count = count_for_duration(wl.rate, wl.duration_s) if wl.duration_s else wl.requests
        else:
            # a duration-bounded run cycles through a pool of requests until time is up
            count = wl.requests if not wl.duration_s else max(wl.requests, 4 * parallel)
        self.raised_to = None
        if self.load != "open" and "max" in (wl.batch_size, wl.concurrency):
            whole = peak_requests(count, parallel)
            if whole != count:
                count = self.raised_to = whole
        self.count = count
        n_warm = wl.warmup_requests if wl.warmup_requests is not None else (
            min(parallel, OPEN_LOOP_WARMUP_REQUESTS) if self.load == "open" else parallel)
        self.prompts_off = 0  # prompts whose length a counter found other than asked, after fitting
        self.parallel = parallel
        k, n = self.part = part
        self.warmup_requests = self._part(self._requests(n_warm, wl.seed + WARMUP_SEED_OFFSET, (salt, name, "warmup")))
        self.new_window(*first)  # the first window's requests now: their lengths size the engine
        if n > 1:  # client process k of n: every n-th request of the one schedule, its share of slots
            self.parallel = max(1, split(parallel, part))
        # sessions: the schedule is of session starts, at rate / turns (the rate counts turns)
        turns = wl.sessions.turns if wl.sessions is not None else 1
        units = -(-count // turns)
        if self.trace is not None:  # one offset per unit: a request, or a session's first turn
            self.offsets = [self.trace.rows[u[0]].t_s / wl.trace_speed for u in self.trace.units()][k::n]
        elif self.ramp_offsets is not None:
            self.offsets = (self.ramp_offsets or [0.0])[k::n]
        else:
            self.offsets = arrival_offsets_s(units, wl.rate / turns, wl.arrival, wl.burstiness,
                                             instance_seed(wl.seed, name)).tolist()[k::n] if self.load == "open" else []
        self.batches = static_batches(self.measured_requests, self.parallel) if self.load == "static" else []

    def new_window(self, run_id: str, repetition: int) -> None:
        """This window's requests (and its filler's): the same work as every other window's, with
        prompts of their own. Called before the worker says it is ready, never inside a window;
        the window the driver was built for is not built twice."""
        salt = (self.salt, self.name, run_id, str(repetition))
        if salt == getattr(self, "_salt", None):
            return
        self._salt = salt
        self.measured_requests = self._part(self._requests(self.count, self.wl.seed, salt))
        self._filler_salt = (*salt, "filler")
        self._filler: list[Request] | None = None
        if self.load == "static" and hasattr(self, "batches"):
            self.batches = static_batches(self.measured_requests, self.parallel)

    def filler_requests(self) -> list[Request]:
        """The filler's requests: as many as the window's, prompts of their own (built when a
        filler first runs, after the instance's quota: no measured request waits for them)."""
        if self._filler is None:
            self._filler = self._part(self._requests(self.count, self.wl.seed, self._filler_salt))
        return self._filler

    def _part(self, requests: list[Request]) -> list[Request]:
        """Client process k of n's requests: every n-th request (every n-th session) of the one
        schedule."""
        k, n = self.part
        if n == 1:
            return requests
        units = streaming.sessions_of(requests)[k::n]
        return [r for u in units for r in (u if isinstance(u, list) else (u,))]

    def fresh(self, first: list[Request], salt: tuple[str, ...]) -> Iterator[Any]:
        """`first`'s requests (sessions kept together), then as many more as asked for, each lot
        with prompts of its own: a duration-bounded window or a filler that outlasts its requests
        never resends a prompt (a server's prefix cache would make the repeats cheap). Later lots
        are composed from the measured word costs without another count (text prompts)."""
        yield from streaming.sessions_of(first)
        for lot in itertools.count(1):
            yield from streaming.sessions_of(self._part(self._requests(self.count, self.wl.seed, (*salt, str(lot)),
                                                                       verify=False)))

    def _batches(self, first: list[Request], salt: tuple[str, ...]) -> Iterator[Any]:
        """Static batches of `fresh` requests, endlessly."""
        lot: list[Request] = []
        for unit in self.fresh(first, salt):
            lot.append(unit)
            if len(lot) == len(first):
                yield from static_batches(lot, self.parallel)
                lot = []

    def _requests(self, count: int, seed: int, salt: tuple[str, ...], verify: bool = True) -> list[Request]:
        wl, backend, pool = self.wl, self.backend, self.pool
        if self.trace is not None:
            return self._trace_requests(count, seed, salt, verify)
        shared = getattr(wl, "shared_prefix", None)
        if not backend.vocab_size and not getattr(backend, "prompt_ids", None):  # a server that takes text
            built = build_text_requests(count, wl.prompt_tokens, wl.output_tokens, seed, pool,
                                        getattr(backend, "count_prompt_tokens", None) if verify else None,
                                        costs=getattr(backend, "word_costs", None), salt=salt,
                                        shared_prefix=shared, prefix_salt=(self.name,), sessions=wl.sessions)
            self.prompts_off = max(self.prompts_off, built.off)
            return built.requests
        return build_requests(count, wl.prompt_tokens, wl.output_tokens, backend.vocab_size, seed, pool, salt=salt,
                              id_pool=getattr(backend, "prompt_ids", None), shared_prefix=shared,
                              prefix_salt=(self.name,), sessions=wl.sessions)

    def _trace_requests(self, count: int, seed: int, salt: tuple[str, ...], verify: bool) -> list[Request]:
        """The trace's rows (cycled past its end) as requests: token ids with its shared blocks
        (`trace.block_prompts`), or, for a server that takes text, text of its lengths whose whole
        shared blocks are the same words (a block's words cost `trace_block_tokens` by the
        measured word costs)."""
        # the rows in the order the loops take them: a session's turns together, after its first
        order = [k for unit in self.trace.units() for k in unit]
        rows = [self.trace.rows[order[k % len(order)]] for k in range(count)]
        inputs, outputs = [r.input_tokens for r in rows], [r.output_tokens for r in rows]
        backend = self.backend
        if not backend.vocab_size and not getattr(backend, "prompt_ids", None):
            block_tokens = self.wl.trace_block_tokens

            def blocks(costs: Any) -> list[tuple[list[str], int]]:
                # the whole blocks of each prompt as words costing `block_tokens` each, the same words
                # for the same block id in this replay; the rest of the prompt its own
                words: dict[int, list[str]] = {}
                out = []
                for row in rows:
                    full = max(0, min(len(row.hash_ids), (row.input_tokens - costs.base_tokens - 1) // block_tokens))
                    for h in row.hash_ids[:full]:
                        if h not in words:
                            words[h] = costs.compose(block_tokens, np.random.default_rng(
                                derived_seed(seed, "trace-block", *salt, str(h))))
                    out.append(([w for h in row.hash_ids[:full] for w in words[h]], full * block_tokens))
                return out

            built = build_text_requests(count, inputs, outputs, seed, None,
                                        getattr(backend, "count_prompt_tokens", None) if verify else None,
                                        costs=getattr(backend, "word_costs", None), salt=salt, blocks=blocks)
            self.prompts_off = max(self.prompts_off, built.off)
            return self._with_turns(built.requests, rows)
        id_pool = getattr(backend, "prompt_ids", None)

        def draw(rng: Any, n: int) -> Any:
            if id_pool:
                return np.asarray(id_pool, dtype=np.int64)[rng.integers(0, len(id_pool), size=n)]
            low, high = token_id_range(backend.vocab_size)
            return rng.integers(low, high, size=n, dtype=np.int64)

        prompts = block_prompts(rows, draw, seed, salt, self.wl.trace_block_tokens)
        return self._with_turns([Request(k, prompts[k], outputs[k]) for k in range(count)], rows)

    def _with_turns(self, requests: list[Request], rows: list[Any]) -> list[Request]:
        """A trace's sessions as multi-turn sessions: turn k of a session is due at its trace time
        (`at_s`), never before the previous turn's answer. A cycled row (past the trace's end)
        belongs to a session of its own lap."""
        speed = self.wl.trace_speed
        ids: dict[tuple[int, str], int] = {}
        turns: dict[int, int] = {}
        lap_len = len(self.trace.rows)
        out = []
        for k, (request, row) in enumerate(zip(requests, rows)):
            if row.session is None:
                out.append(request)
                continue
            session = ids.setdefault((k // lap_len, row.session), len(ids))
            turn = turns.get(session, -1) + 1
            turns[session] = turn
            out.append(dataclasses.replace(request, session=session, turn=turn,
                                           at_s=row.t_s / speed if turn else None))
        return out

    @property
    def exact_prompts(self) -> str | None:
        """How the synthetic prompts are exactly the length asked for, or None when they are not
        known to be: token ids are exact by construction; text is exact when a counter found every
        prompt at its target."""
        if self.pool:
            return "token ids" if self.backend.vocab_size else None
        if self.backend.vocab_size:
            return "token ids"
        method = getattr(self.backend, "prompt_method", None)
        if method == "token ids":
            return "token ids (the server counted a probe as sent)"
        return method if method and not self.prompts_off else None

    @property
    def max_request_tokens(self) -> int:
        return max((r.prompt_len + r.output_tokens for r in self.measured_requests + self.warmup_requests), default=1)

    def warmup(self, recorder: Recorder) -> None:
        """Warm-up requests (compilation, allocator growth, caches): recorded, never counted."""
        if self.load == "static":
            run_static(self.backend, static_batches(self.warmup_requests, self.parallel, warmup=True), recorder)
        elif self.warmup_requests:
            aio.run(streaming.closed_loop(self.backend, iter(streaming.sessions_of(self.warmup_requests)),
                                          min(self.parallel, len(self.warmup_requests)), recorder))

    def measured(self, recorder: Recorder, on_done: Callable[[int], None], lags: list[int],
                 on_error: Callable[[], None] | None = None) -> None:
        """One window's measured quota: every request once, or until the duration is up."""
        wl = self.wl
        deadline = now_ns() + int(wl.duration_s * 1e9) if wl.duration_s and self.load != "open" else None
        until = (lambda: now_ns() >= deadline) if deadline else None
        if self.load == "static":
            source = self._batches(self.measured_requests, self._salt) if deadline else self.batches
            run_static(self.backend, source, recorder, until, on_batch=on_done, on_error=on_error)
        elif self.load == "closed":
            units = streaming.sessions_of(self.measured_requests)
            source = self.fresh(self.measured_requests, self._salt) if deadline else iter(units)
            aio.run(streaming.with_loop_monitor(
                streaming.closed_loop(self.backend, source, self.parallel, recorder, until, on_done=on_done), lags))
        else:
            cap = self.parallel if wl.concurrency is not None else None
            start = self.shared_start.value if self.shared_start is not None and self.shared_start.value else None
            aio.run(streaming.with_loop_monitor(
                streaming.open_loop(self.backend, streaming.sessions_of(self.measured_requests), self.offsets, recorder, cap,
                                    on_done=on_done, start_ns=start), lags))

    def filler(self, recorder: Recorder, until: Callable[[], bool], lags: list[int],
               on_error: Callable[[], None] | None = None) -> None:
        """The same load, unmeasured, until `until()` says every partner has finished."""
        if until():
            return
        if self.load == "static":
            run_static(self.backend, self._batches(self.filler_requests(), self._filler_salt), recorder, until,
                       on_error=on_error)
        elif self.load == "closed":
            aio.run(streaming.with_loop_monitor(streaming.closed_loop(
                self.backend, self.fresh(self.filler_requests(), self._filler_salt), self.parallel, recorder,
                until), lags))
        else:
            wl, (k, n) = self.wl, self.part
            count = max(2, len(self.offsets) * n * FILLER_SCHEDULE_FACTOR)
            turns = wl.sessions.turns if wl.sessions is not None else 1
            if self.ramp_offsets is not None:  # the ramp's top rate, as long as a partner still measures
                top = wl.ramp.to_rate
                offsets = arrival_offsets_s(count, top, wl.arrival, wl.burstiness,
                                            instance_seed(wl.seed + FILLER_SEED_OFFSET, self.name)).tolist()[k::n]
            elif self.trace is not None:  # the trace again and again, a mean gap between the replays
                base = [self.trace.rows[u[0]].t_s / wl.trace_speed for u in self.trace.units()]
                period = base[-1] + (base[-1] / max(1, len(base) - 1) if len(base) > 1 else 1.0)
                offsets = [o + j * period for j in range(FILLER_SCHEDULE_FACTOR) for o in base][k::n]
            else:
                offsets = arrival_offsets_s(count, wl.rate / turns, wl.arrival, wl.burstiness,
                                            instance_seed(wl.seed + FILLER_SEED_OFFSET, self.name)).tolist()[k::n]
            requests = self.fresh(self.filler_requests(), self._filler_salt)  # as many as the offsets take
            cap = self.parallel if wl.concurrency is not None else None
            aio.run(streaming.with_loop_monitor(
                streaming.open_loop(self.backend, requests, offsets, recorder, cap, until=until), lags))
