"""A fake *shared device*: several served models on one simulated accelerator of known capacity.

`colobench fake-server --models a,b --decode-tok-s N --prefill-tok-s M --itl-ms C` serves every
model in `--models` from one simulated device, so the latency of each rises with the joint load in
a way that can be computed by hand. The device works in a fluid sense, one thing at a time:

* **Prefill first.** Requests of all models wait in ONE first-in first-out prefill queue. The head
  request's prompt is processed at M prompt tokens per second (a prompt of p tokens takes p/M
  seconds of device time); while any prefill runs, decoding is paused (a server without chunked
  prefill stalls its decode steps the same way). The request's first token is emitted when its
  prefill completes: TTFT = time waited in the queue + p/M. (`--ttft-ms` and `--jitter-ms` are
  ignored in this mode: no fixed overhead is added.)
* **Decode shares N.** When no prefill runs, the decode budget of N tokens per second is shared
  equally by all streams in decode, of all models together, each stream capped at one token per
  `itl_ms` (the per-stream minimum inter-token time C). With k streams in decode each makes
  min(1000/C, N/k) tokens per second; what the caps leave of N is not handed to anyone (every
  stream has the same cap, so this equal share is also the water-filling share). Progress is kept
  as a fraction per stream, so no budget is lost to rounding: a stream's next token is emitted the
  moment its progress reaches the next whole token. A request produces exactly n = max_tokens
  tokens: the first from its prefill, then n - 1 decoded ones.

Consequence (the capacity is linear and computable): a request of model i costs the device

    device_s_i = p_i / M + (n_i - 1) / N          seconds

(p_i prompt tokens, n_i output tokens, of which the first comes out of the prefill; for long
outputs this is the familiar p/M + n/N). Below saturation the device is busy for
sum_i rate_i * device_s_i of every second, so the set of sustainable request rates is

    sum_i rate_i * (p_i / M + (n_i - 1) / N) <= 1,

the solo capacity of a model is cap_i = 1 / (p_i / M + (n_i - 1) / N) requests per second
(`shared_device_capacity`), and the joint capacity boundary of two models is the straight line
rate_A / cap_A + rate_B / cap_B = 1. Past it the decode streams pile up and every stream's share
N/k, so its time per output token, grows without bound (prefill keeps priority, so TTFT stays
bounded as long as the prompts alone fit: sum_i rate_i * p_i / M < 1). The per-stream cap only
shapes latency below saturation (TPOT = max(C, k/N) with k streams in decode); a backlog grows k
until N binds, so it does not move the knee.

Per-model costs and hidden penalties (what `benchmarks/predict.py` needs: models of different
shapes, and interference the co-location predictor cannot read off solo profiles). All off by
default, so every formula above holds exactly:

* `model_costs[m] = (prefill_x, decode_x)`: a model's prompt token costs prefill_x / M seconds and
  its decoded token decode_x budget tokens (a bigger model reads more bytes per step). Its solo
  capacity is 1 / (prefill_x p/M + decode_x (n-1)/N).
* `cross_model_penalty` kappa: while streams of m distinct models decode at once the budget and
  every stream's cap are divided by 1 + kappa (m - 1) (two sets of weights evict each other from
  the caches: every step is slower);
* `crowding_penalty` beta above `crowding_streams` K: with k > K streams in decode the budget is
  further divided by 1 + beta (k - K) / K (a KV cache past its sweet spot).

The device's own counters (`work_s`: per model, prefill seconds and decode budget used, in
seconds of the nominal budget N; what `/metrics` exports as `colobench:device_*_seconds_total`)
count nominal work, never the penalties: a solo run's counters say how much of the device a model
needs, not how much two models lose together.

`SharedDevice` is the model itself, pure and clock-free: the caller advances it by a duration and
gets back the tokens emitted meanwhile, each at its exact virtual time, so tests drive it with a
virtual clock. `SharedDeviceDriver` runs it in real time for the asyncio server: one background
task advances it by the measured elapsed `time.perf_counter()` and wakes the streams whose tokens
are due, sleeping until the next event (or until a new request arrives).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

# A token (or a prefill) this close to done, in tokens, counts as done: float steps that land on an
# event exactly may fall short of it by a rounding error.
_DUE_TOKENS = 1e-9


def shared_device_capacity(prompt_tokens: float, output_tokens: float, decode_tok_s: float,
                           prefill_tok_s: float) -> float:
    """Requests per second one model alone can sustain on the shared device: 1 / (p/M + (n-1)/N),
    for p prompt tokens, n output tokens (the first comes out of the prefill), decode budget N and
    prefill rate M in tokens per second. Infinite for a request that costs no device time."""
    if decode_tok_s <= 0 or prefill_tok_s <= 0:
        raise ValueError("decode_tok_s and prefill_tok_s must be > 0")
    device_s = max(0.0, prompt_tokens) / prefill_tok_s + max(0.0, output_tokens - 1) / decode_tok_s
    return math.inf if device_s == 0 else 1.0 / device_s


@dataclass(eq=False)
class DeviceRequest:
    """One request on the device. Times are on the device's virtual clock (`SharedDevice.now_s`)."""
    model: str
    prompt_tokens: int
    output_tokens: int
    arrived_s: float
    prefill_left_tok: float = 0.0  # prompt tokens still to prefill
    decoded_tok: float = 0.0  # decode progress in tokens (fractional), after the first token
    emitted: int = 0  # tokens emitted so far (the first comes from the prefill)
    first_token_s: float | None = None
    finished_s: float | None = None
    token_times_s: list[float] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.emitted >= self.output_tokens


@dataclass(frozen=True)
class TokenEvent:
    """Token `index` (0 = the first) of `request` was emitted at virtual time `time_s`."""
    request: DeviceRequest
    index: int
    time_s: float


class SharedDevice:
    """The shared device as a fluid model (see the module docstring), advanced by its caller.

    `decode_tok_s` N: decode budget shared by all streams in decode; `prefill_tok_s` M: prompt
    tokens per second of the one prefill at a time; `itl_s`: each stream's minimum time between
    tokens (0: no cap). `keep_token_times`: record every token's time on its request (for tests).
    """

    def __init__(self, decode_tok_s: float, prefill_tok_s: float, itl_s: float = 0.0,
                 keep_token_times: bool = False, model_costs: dict[str, tuple[float, float]] | None = None,
                 cross_model_penalty: float = 0.0, crowding_penalty: float = 0.0, crowding_streams: int = 16):
        if decode_tok_s <= 0 or prefill_tok_s <= 0:
            raise ValueError("decode_tok_s and prefill_tok_s must be > 0")
        if itl_s < 0:
            raise ValueError("itl_s must be >= 0")
        if cross_model_penalty < 0 or crowding_penalty < 0 or crowding_streams < 1:
            raise ValueError("penalties must be >= 0 and crowding_streams >= 1")
        if any(x <= 0 for cost in (model_costs or {}).values() for x in cost):
            raise ValueError("model costs must be > 0")
        self.model_costs = dict(model_costs or {})
        self.cross_model_penalty, self.crowding_penalty = float(cross_model_penalty), float(crowding_penalty)
        self.crowding_streams = int(crowding_streams)
        # per model: [prefill seconds, decode budget used in seconds of N] (nominal, no penalties)
        self.work_s: dict[str, list[float]] = {}
        self.decode_tok_s = float(decode_tok_s)
        self.prefill_tok_s = float(prefill_tok_s)
        self.stream_cap_tok_s = math.inf if itl_s == 0 else 1.0 / itl_s
        self.keep_token_times = keep_token_times
        self.now_s = 0.0
        self.prefill_queue: deque[DeviceRequest] = deque()
        self.decoding: list[DeviceRequest] = []
        self.prefill_busy_s = 0.0  # device time spent prefilling
        self.decode_busy_s = 0.0  # device time spent decoding (at least one stream in decode)
        self.decoded_tokens = 0.0  # decode budget actually used, in tokens

    # -- what the caller does -------------------------------------------------------------------

    def add_request(self, model: str, prompt_tokens: int, output_tokens: int) -> DeviceRequest:
        """A request arrives now: it joins the back of the prefill queue. A request of no output
        tokens finishes at once (and emits nothing)."""
        request = DeviceRequest(model=model, prompt_tokens=max(0, int(prompt_tokens)),
                                output_tokens=max(0, int(output_tokens)), arrived_s=self.now_s,
                                prefill_left_tok=float(max(0, int(prompt_tokens))) * self._cost(model)[0])
        if request.output_tokens == 0:
            request.finished_s = self.now_s
        else:
            self.prefill_queue.append(request)
        return request

    def remove(self, request: DeviceRequest) -> None:
        """Drop a request (its client went away): it stops using the device; prefill work already
        spent on it is lost."""
        if request in self.prefill_queue:
            self.prefill_queue.remove(request)
        if request in self.decoding:
            self.decoding.remove(request)

    def advance(self, dt_s: float) -> list[TokenEvent]:
        """Let `dt_s` seconds of device time pass; the tokens emitted meanwhile, in time order, each
        at its exact time. Exact for any step size: the fluid rates only change at events, and a
        step never crosses one."""
        if dt_s < 0:
            raise ValueError("dt_s must be >= 0")
        events: list[TokenEvent] = []
        end_s = self.now_s + dt_s
        while True:
            self._settle(events)
            left_s = end_s - self.now_s
            if left_s <= 0:
                break
            step_s = self.next_event_s()
            if step_s is None or step_s >= left_s:
                self._progress(left_s)
                self.now_s = end_s
                self._settle(events)
                break
            self._progress(step_s)
            self.now_s += step_s
        return events

    def next_event_s(self) -> float | None:
        """Device time from now to the next emitted token (or prefill completion, which emits
        one); None when the device is idle."""
        if self.prefill_queue:
            return max(0.0, self.prefill_queue[0].prefill_left_tok) / self.prefill_tok_s
        if self.decoding:
            share = self._share_tok_s()
            return min(max(0.0, r.emitted - r.decoded_tok) / self._rate(r, share) for r in self.decoding)
        return None

    # -- state ----------------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self.prefill_queue and not self.decoding

    def stream_tok_s(self) -> float:
        """Each decoding stream's rate now (tokens per second): min(cap, N/k); 0 during prefill.
        (With model costs, a stream of decode cost x makes min(cap, share / x).)"""
        if self.prefill_queue or not self.decoding:
            return 0.0
        return min(self.stream_cap_tok_s, self._share_tok_s())

    def _cost(self, model: str) -> tuple[float, float]:
        return self.model_costs.get(model, (1.0, 1.0))

    def _share_tok_s(self) -> float:
        """Each decoding stream's equal share of the budget, after the hidden penalties."""
        k = len(self.decoding)
        budget = self.decode_tok_s
        models = len({r.model for r in self.decoding})
        if self.cross_model_penalty and models > 1:
            budget /= 1.0 + self.cross_model_penalty * (models - 1)
        if self.crowding_penalty and k > self.crowding_streams:
            budget /= 1.0 + self.crowding_penalty * (k - self.crowding_streams) / self.crowding_streams
        return budget / k

    def _rate(self, r: DeviceRequest, share_tok_s: float) -> float:
        """Stream `r`'s token rate: its share of the budget over its decode cost, capped."""
        cap = self.stream_cap_tok_s
        if self.cross_model_penalty:
            models = len({d.model for d in self.decoding})
            cap /= 1.0 + self.cross_model_penalty * (models - 1)
        return min(cap, share_tok_s / self._cost(r.model)[1])

    def _work(self, model: str) -> list[float]:
        return self.work_s.setdefault(model, [0.0, 0.0])

    # -- inside ---------------------------------------------------------------------------------

    def _progress(self, dt_s: float) -> None:
        if dt_s <= 0:
            return
        if self.prefill_queue:  # prefill has priority, and decode waits
            head = self.prefill_queue[0]
            head.prefill_left_tok -= dt_s * self.prefill_tok_s
            self.prefill_busy_s += dt_s
            self._work(head.model)[0] += dt_s
        elif self.decoding:
            share = self._share_tok_s()
            for r in self.decoding:
                rate = self._rate(r, share)
                r.decoded_tok += rate * dt_s
                self.decoded_tokens += rate * dt_s
                self._work(r.model)[1] += rate * dt_s * self._cost(r.model)[1] / self.decode_tok_s
            self.decode_busy_s += dt_s

    def _emit(self, r: DeviceRequest, events: list[TokenEvent]) -> None:
        events.append(TokenEvent(r, r.emitted, self.now_s))
        if self.keep_token_times:
            r.token_times_s.append(self.now_s)
        if r.emitted == 0:
            r.first_token_s = self.now_s
        r.emitted += 1
        if r.done:
            r.finished_s = self.now_s

    def _settle(self, events: list[TokenEvent]) -> None:
        """Emit everything due now: completed prefills (several, if prompts are empty) and decoded
        tokens."""
        while self.prefill_queue and self.prefill_queue[0].prefill_left_tok <= _DUE_TOKENS:
            r = self.prefill_queue.popleft()
            r.prefill_left_tok = 0.0
            self._emit(r, events)
            if not r.done:
                self.decoding.append(r)
        for r in list(self.decoding):
            # emitted - 1 tokens decoded so far; the next is due when progress reaches `emitted`
            while not r.done and r.decoded_tok >= r.emitted - _DUE_TOKENS:
                self._emit(r, events)
            if r.done:
                self.decoding.remove(r)


class DeviceStream:
    """A request's side of the real-time driver: wait until it has emitted enough tokens."""

    def __init__(self, request: DeviceRequest):
        self.request = request
        self.emitted_ns: list[int] = []  # perf_counter_ns when the driver saw each token due
        self._changed = asyncio.Event()

    @property
    def emitted(self) -> int:
        return self.request.emitted

    async def wait_tokens(self, count: int) -> None:
        """Until at least `count` tokens (capped at the request's output) have been emitted."""
        count = min(count, self.request.output_tokens)
        while self.request.emitted < count:
            self._changed.clear()
            await self._changed.wait()


class SharedDeviceDriver:
    """Runs a `SharedDevice` in real time inside an asyncio loop: advances it by the measured
    elapsed time of `clock` (seconds) and wakes the streams whose tokens fell due. The background
    task starts with the first request and sleeps until the next event or a new arrival."""

    def __init__(self, device: SharedDevice, clock: Callable[[], float] = time.perf_counter):
        self.device = device
        self._clock = clock
        self._last_s: float | None = None
        self._streams: dict[DeviceRequest, DeviceStream] = {}
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def submit(self, model: str, prompt_tokens: int, output_tokens: int) -> DeviceStream:
        """A request arrives now (call from inside the running loop)."""
        self._ensure_running()
        self._sync()
        stream = DeviceStream(self.device.add_request(model, prompt_tokens, output_tokens))
        if not stream.request.done:
            self._streams[stream.request] = stream
        assert self._wake is not None
        self._wake.set()  # the next event may now be sooner
        return stream

    def release(self, stream: DeviceStream) -> None:
        """The request is over for its caller (finished, or the client went away)."""
        self._sync()
        self.device.remove(stream.request)
        self._streams.pop(stream.request, None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._last_s = self._clock()
            self._task = asyncio.get_running_loop().create_task(self._run())

    def sync(self) -> None:
        """Advance the device to now (before reading its counters)."""
        self._sync()

    def _sync(self) -> None:
        """Advance the device to now and wake the streams that got tokens."""
        now_s = self._clock()
        dt_s = 0.0 if self._last_s is None else max(0.0, now_s - self._last_s)
        self._last_s = now_s
        events = self.device.advance(dt_s)
        if not events:
            return
        seen_ns = time.perf_counter_ns()
        woken = set()
        for e in events:
            stream = self._streams.get(e.request)
            if stream is None:
                continue
            stream.emitted_ns.append(seen_ns)
            woken.add(stream)
            if e.request.done:
                self._streams.pop(e.request, None)
        for stream in woken:
            stream._changed.set()

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            self._sync()
            delay_s = self.device.next_event_s()
            self._wake.clear()
            timer = loop.call_later(delay_s, self._wake.set) if delay_s is not None else None
            try:
                await self._wake.wait()
            finally:
                if timer is not None:
                    timer.cancel()
