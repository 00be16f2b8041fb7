"""Pressure probes: calibrated co-runners of known, adjustable demand on one shared resource.

An instance run alone, then beside a probe at a few levels, gives its *sensitivity curve*
(slowdown against pressure), as Bubble-Up measures CPU services; a partner's solo *demand* on the
same resource, in the same unit, then says where on the curve the pair sits (`analysis.predict`).
The probes also make co-location measurable on a CPU box, where two single-threaded tiny workers
on separate cores barely touch each other. One probe runs in its own process (`colobench
pressure`, started and stopped by `colobench characterize`); what it achieved is measured and
reported, because the curve's x must be the pressure the instance really had beside it.

Targets and resources:

- `host` / `host_cpu`: `ceil(level)` processes, each busy for level/ceil(level) of every
  `PERIOD_S` (level in cores); achieved = the processes' CPU seconds per second.
- an accelerator (`cuda:0`, `npu:0`; `devices.pressure`): `device_time` (a loop of small
  kernels), `compute` (large matmuls), `memory_bandwidth` (a streaming copy), each a duty cycle
  in [0, 1]; achieved = the measured duty.
- an endpoint (`http://host:port/v1`, model `--model`): `compute` sends prefill-only requests
  (one output token, fresh random token ids so no prefix cache skips them) at level / s per
  second, s being one such request's time alone, measured first (at most `MAX_IN_FLIGHT` in
  flight: a probe the device cannot keep up with skips sends, and counts them); `memory_bandwidth`
  keeps k streams of long outputs decoding, k = level / (the budget share one stream takes, by the
  device's counters), or without counters level x (tokens/s of 64 streams) / (tokens/s of one). Where the server exports a device's own work counters (colobench's fake shared
  device: `colobench:device_*_seconds_total`), achieved = the probe model's work seconds per
  second; elsewhere the asked level, said so.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import random
import signal
import threading
import time
from typing import Any, Callable

import aiohttp
import psutil

from colobench.backends.openai_admin import fetch_metrics
from colobench.devices.pressure import DevicePressure
from colobench.telemetry.prometheus import parse

PERIOD_S = 0.01
HOST_RESOURCES = ("host_cpu",)
ENDPOINT_RESOURCES = ("compute", "memory_bandwidth")
PREFILL_PROMPT_TOKENS = 256
DECODE_OUTPUT_TOKENS = 256
CALIBRATION_STREAMS = 64
MAX_IN_FLIGHT = 8  # prefill probe requests in flight at most (sends past it are skipped and counted)
COUNTER = {"compute": "colobench:device_prefill_seconds_total",
           "memory_bandwidth": "colobench:device_decode_seconds_total"}


def _spin(duty: float, stop: Any) -> None:
    """Busy for `duty` of every period, asleep the rest, until `stop` is set."""
    while not stop.is_set():
        start = time.perf_counter()
        while time.perf_counter() - start < duty * PERIOD_S:
            pass
        rest = PERIOD_S - (time.perf_counter() - start)
        if rest > 0:
            time.sleep(rest)


class HostCpuPressure:
    """`level` cores of busy loops, spread over ceil(level) processes."""

    def __init__(self, level: float):
        if level < 0:
            raise ValueError(f"host_cpu level is in cores, >= 0, not {level}")
        self.level = level
        self.procs: list[Any] = []
        self.t0 = 0.0
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._ctx = ctx

    def start(self) -> dict[str, Any]:
        n = math.ceil(self.level)
        for _ in range(n):
            p = self._ctx.Process(target=_spin, args=(self.level / n, self._stop), daemon=True)
            p.start()
            self.procs.append(p)
        self.t0 = time.perf_counter()
        self._cpu0 = self._cpu()
        return {"processes": n}

    def _cpu(self) -> float:
        total = 0.0
        for p in self.procs:
            try:
                t = psutil.Process(p.pid).cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def stop(self) -> dict[str, Any]:
        cpu, wall = self._cpu() - self._cpu0, time.perf_counter() - self.t0
        self._stop.set()
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
        return {"achieved": cpu / wall if wall else 0.0, "source": "the probe processes' CPU seconds per second"}


def _metrics_url(base_url: str) -> str:
    return base_url.rstrip("/").removesuffix("/v1") + "/metrics"


class EndpointPressure:
    """Requests of model `model` at an OpenAI-compatible endpoint, at a calibrated level."""

    def __init__(self, base_url: str, model: str, resource: str, level: float, api_key: str | None = None,
                 metrics_url: str | None = None, seed: int | None = None):
        if resource not in ENDPOINT_RESOURCES:
            raise ValueError(f"an endpoint probe presses {' or '.join(ENDPOINT_RESOURCES)}, not {resource!r}")
        if level < 0:
            raise ValueError(f"a pressure level is >= 0, not {level}")
        self.base_url, self.model, self.resource, self.level = base_url.rstrip("/"), model, resource, level
        self.metrics_url = metrics_url or _metrics_url(base_url)
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.rng = random.Random(seed)  # unseeded: every probe's prompts are new to a prefix cache
        self.failed = self.sent = self.skipped = 0

    def _ids(self, n: int) -> list[int]:
        return [self.rng.randrange(1000, 30000) for _ in range(n)]

    async def _one(self, session: aiohttp.ClientSession, prompt_tokens: int, output_tokens: int) -> float | None:
        body = {"model": self.model, "prompt": self._ids(prompt_tokens), "max_tokens": output_tokens,
                "min_tokens": output_tokens, "ignore_eos": True, "stream": False}
        t0 = time.perf_counter()
        self.sent += 1
        try:
            async with session.post(f"{self.base_url}/completions", json=body, headers=self.headers) as resp:
                await resp.read()
                if resp.status != 200:
                    self.failed += 1
                    return None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            self.failed += 1
            return None
        return time.perf_counter() - t0

    def _counter(self) -> float | None:
        text, _ = fetch_metrics(self.metrics_url)
        if text is None:
            return None
        try:
            return parse(text, self.model).get(COUNTER[self.resource])
        except ValueError:
            return None

    async def calibrate(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        if self.resource == "compute":
            times = [t for _ in range(3) if (t := await self._one(session, PREFILL_PROMPT_TOKENS, 1)) is not None]
            if not times:
                raise RuntimeError(f"the endpoint {self.base_url} failed every calibration request")
            self.service_s = sorted(times)[len(times) // 2]
            return {"prefill_request_s": self.service_s, "rate_req_s": self.level / self.service_s}
        c0, t0 = self._counter(), time.perf_counter()
        one = await self._one(session, 1, DECODE_OUTPUT_TOKENS)
        c1, t1 = self._counter(), time.perf_counter()
        if one is None:
            raise RuntimeError(f"the endpoint {self.base_url} failed a calibration request")
        if c0 is not None and c1 is not None and c1 > c0:
            # the device's own counter: the share of the budget one stream takes
            per_stream_share = (c1 - c0) / (t1 - t0)
            self.streams = max(0, round(self.level / per_stream_share))
            return {"stream_share": per_stream_share, "streams": self.streams}
        # no counters: one stream's tokens/s against the tokens/s of many at once (the budget)
        t0 = time.perf_counter()
        results = await asyncio.gather(*(self._one(session, 1, 64) for _ in range(CALIBRATION_STREAMS)))
        wall = time.perf_counter() - t0
        if not all(results):
            raise RuntimeError(f"the endpoint {self.base_url} failed calibration requests")
        per_stream, total = DECODE_OUTPUT_TOKENS / one, CALIBRATION_STREAMS * 64 / wall
        self.streams = max(0, round(self.level * total / per_stream))
        return {"stream_tok_s": per_stream, "streams_tok_s": total, "streams": self.streams}

    async def run(self, stop: asyncio.Event, on_ready: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
        async with aiohttp.ClientSession(timeout=timeout,
                                         connector=aiohttp.TCPConnector(limit=0)) as session:
            calibration = await self.calibrate(session)
            c0, t0, sent0 = self._counter(), time.perf_counter(), self.sent
            on_ready({"calibration": calibration})
            tasks: set[asyncio.Task] = set()
            if self.resource == "compute":
                interval = self.service_s / self.level if self.level > 0 else math.inf
                next_at = time.perf_counter()
                while not stop.is_set():
                    if len(tasks) < MAX_IN_FLIGHT:
                        task = asyncio.ensure_future(self._one(session, PREFILL_PROMPT_TOKENS, 1))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    else:  # the device is behind: a probe that floods it is no calibrated level
                        self.skipped += 1
                    next_at += interval
                    try:
                        await asyncio.wait_for(stop.wait(), max(0.0, min(next_at - time.perf_counter(), 3600)))
                    except asyncio.TimeoutError:
                        pass
            else:
                async def stream() -> None:
                    while not stop.is_set():
                        await self._one(session, 1, DECODE_OUTPUT_TOKENS)
                tasks = {asyncio.ensure_future(stream()) for _ in range(self.streams)}
                await stop.wait()
            c1, t1, sent1 = self._counter(), time.perf_counter(), self.sent
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        out: dict[str, Any] = {"sent": self.sent, "failed": self.failed, "skipped": self.skipped}
        if self.resource == "memory_bandwidth":
            out["streams"] = self.streams
        if c0 is not None and c1 is not None and t1 > t0:
            out.update(achieved=(c1 - c0) / (t1 - t0), source=f"the device's own counter {COUNTER[self.resource]}")
            if self.resource == "compute" and sent1 > sent0:
                out["job_s"] = (c1 - c0) / (sent1 - sent0)  # device seconds one prefill request held
        else:
            out.update(achieved=self.level, source="the asked level (the server exports no device work counters)")
            if self.resource == "compute":
                out["job_s"] = self.service_s
        return out


def run_probe(target: str, resource: str, level: float, emit: Callable[[dict[str, Any]], None],
              model: str | None = None, api_key: str | None = None, metrics_url: str | None = None,
              duration_s: float | None = None) -> dict[str, Any]:
    """Run one probe until SIGTERM or SIGINT (or `duration_s`): `emit` gets {"ready": ...} once it
    presses, and the result (what it achieved) is returned. Raises ValueError for a bad target,
    resource or level, RuntimeError when it cannot calibrate."""
    head = {"target": target, "resource": resource, "nominal": level}
    stop = threading.Event()

    def on_signal(*_: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if target.startswith(("http://", "https://")):
            if not model:
                raise ValueError("an endpoint probe needs --model (the served model it sends to)")
            probe = EndpointPressure(target, model, resource, level, api_key, metrics_url)

            async def main() -> dict[str, Any]:
                done = asyncio.Event()
                loop = asyncio.get_running_loop()

                async def watch() -> None:
                    deadline = time.perf_counter() + (duration_s if duration_s is not None else math.inf)
                    while not stop.is_set() and time.perf_counter() < deadline:
                        await asyncio.sleep(0.05)
                    done.set()
                watcher = loop.create_task(watch())
                try:
                    return await probe.run(done, lambda ready: emit({**head, "ready": True, **ready}))
                finally:
                    watcher.cancel()
            return {**head, **asyncio.run(main())}
        if target == "host":
            if resource not in HOST_RESOURCES:
                raise ValueError(f"a host probe presses {' or '.join(HOST_RESOURCES)}, not {resource!r}")
            host = HostCpuPressure(level)
            emit({**head, "ready": True, **host.start()})
            stop.wait(duration_s)
            return {**head, **host.stop()}
        device = DevicePressure(target, resource, level)
        device.start()
        emit({**head, "ready": True})
        stop.wait(duration_s)
        result = device.stop()
        return {**head, **result, "achieved": result["duty"], "source": "the kernel's measured duty cycle"}
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
