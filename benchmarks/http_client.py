"""Is colobench's HTTP load generator ever the bottleneck? (a benchmark, not a test)

Side by side in one run, against `colobench fake-server` on loopback (its own process), with
128 output tokens per request:

1. CPU cost per streamed token at zero inter-token delay, closed loop at concurrency 64 and
   256: colobench's client (recording every chunk's time to a JSONL file) against a bare aiohttp
   streaming loop written here (`async for line in resp.content`, json.loads, a timestamp per
   token, kept in memory). CPU is this process's user + system time; the server's is not counted.
2. Timing accuracy with a true 50 ms TTFT and 10 ms inter-token delay, Poisson arrivals at 20
   and 150 requests/s and closed loop at concurrency 64: the mean of measured TTFT minus the
   server's own TTFT (its receive time to its first content chunk, from the server's trace),
   and measured ITL against the server's true send gaps (mean and p99).
3. Poisson arrivals at 500 requests/s: achieved rate against the target.

    python benchmarks/http_client.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import aiohttp  # noqa: E402

from colobench.analysis import metrics  # noqa: E402
from colobench.backends.openai_http import OpenAIBackend  # noqa: E402
from colobench import aio  # noqa: E402
from colobench.loadgen import streaming  # noqa: E402
from colobench.loadgen.recorder import Recorder  # noqa: E402
from colobench.records import RecordWriter, read_records  # noqa: E402
from colobench.specs import EndpointConfig  # noqa: E402
from colobench.workload.arrivals import arrival_offsets_s  # noqa: E402
from colobench.workload.text_prompts import build_text_requests  # noqa: E402

TOKENS = 128


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(ttft_ms: float, itl_ms: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "colobench", "fake-server", "--port", str(port), "--ttft-ms",
                             str(ttft_ms), "--itl-ms", str(itl_ms), "--trace"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/v1/models", timeout=1)
            return proc, base
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("fake server did not start")


def server_trace(base: str) -> list[list[int]]:
    return json.loads(urllib.request.urlopen(base + "/colobench/trace", timeout=10).read())


def cpu_s() -> float:
    import resource

    t = resource.getrusage(resource.RUSAGE_SELF)  # microseconds (os.times() counts 10 ms ticks)
    return t.ru_utime + t.ru_stime


# ---- the bare baseline -------------------------------------------------------------------------

async def bare_one(session: aiohttp.ClientSession, url: str, body: bytes, out: list) -> None:
    sent = time.perf_counter_ns()
    stamps = []
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        async for line in resp.content:
            if not line.startswith(b"data: "):
                continue
            data = line[6:].strip()
            if data == b"[DONE]":
                break
            obj = json.loads(data)
            if obj["choices"] and obj["choices"][0].get("text"):
                stamps.append(time.perf_counter_ns())
    out.append((sent, stamps))


async def bare_run(url: str, n: int, concurrency: int | None, offsets: list[float] | None) -> list:
    body = json.dumps({"model": "fake-model", "prompt": "hello " * 32, "max_tokens": TOKENS, "stream": True}).encode()
    out: list = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        if offsets is None:
            queue = iter(range(n))

            async def slot():
                for _ in queue:
                    await bare_one(session, url, body, out)

            await asyncio.gather(*(slot() for _ in range(concurrency)))
        else:
            start = time.perf_counter()
            tasks = []
            for off in offsets:
                delay = start + off - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(bare_one(session, url, body, out)))
            await asyncio.gather(*tasks)
    return out


# ---- colobench -------------------------------------------------------------------------------

def colobench_run(base: str, n: int, concurrency: int | None, offsets: list[float] | None, folder: Path,
                  cpu: list[float] | None = None) -> list:
    """Run colobench's client; `cpu` gets the CPU seconds of the run itself (reading the records
    back afterwards, for the benchmark, is not the load generator's cost)."""
    c0 = cpu_s()
    backend = OpenAIBackend("fake-model", EndpointConfig(base_url=base + "/v1", exact_output_fields=[]))
    backend.start()
    requests = build_text_requests(n, 32, TOKENS, seed=0).requests
    path = folder / f"cb-{time.perf_counter_ns()}.jsonl"
    recorder = Recorder(RecordWriter(path), "bench", "bench", repetition=1)
    if offsets is None:
        aio.run(streaming.closed_loop(backend, iter(requests), concurrency, recorder))
    else:
        aio.run(streaming.open_loop(backend, requests, offsets, recorder))
    backend.stop()
    recorder.writer.close()
    if cpu is not None:
        cpu.append(cpu_s() - c0)
    return read_records(path)


def cpu_per_token(base: str, concurrency: int, n: int, folder: Path) -> dict:
    server_trace(base)
    c0 = cpu_s()
    bare = asyncio.run(bare_run(base + "/v1/completions", n, concurrency, None))
    c1 = cpu_s()
    spent: list[float] = []
    records = colobench_run(base, n, concurrency, None, folder, spent)
    bare_tokens = sum(len(s) for _, s in bare)
    ours_tokens = sum(r.output_tokens for r in records if r.ok)
    return {"concurrency": concurrency, "requests": n,
            "bare_us_per_token": round((c1 - c0) / bare_tokens * 1e6, 2),
            "colobench_us_per_token": round(spent[0] / ours_tokens * 1e6, 2),
            "colobench_tokens_per_cpu_s": round(ours_tokens / spent[0]),
            "failed": sum(1 for r in records if not r.ok)}


def server_truth(traces: list[list[int]]) -> tuple[float, np.ndarray]:
    ttft_ms = float(np.mean([(t[1] - t[0]) / 1e6 for t in traces if len(t) > 1]))
    gaps_ms = np.concatenate([np.diff(t[1:]) / 1e6 for t in traces if len(t) > 2])
    return ttft_ms, gaps_ms


def accuracy(base: str, label: str, n: int, concurrency: int | None, rate: float | None, folder: Path) -> dict:
    offsets = arrival_offsets_s(n, rate, "poisson", seed=1).tolist() if rate else None
    server_trace(base)
    bare = asyncio.run(bare_run(base + "/v1/completions", n, concurrency, offsets))
    bare_server_ttft, bare_gaps = server_truth(server_trace(base))
    bare_ttft = float(np.mean([(s[0] - sent) / 1e6 for sent, s in bare]))
    bare_itl = np.concatenate([np.diff(s) / 1e6 for _, s in bare])
    records = colobench_run(base, n, concurrency, offsets, folder)
    server_ttft, gaps = server_truth(server_trace(base))
    ok = [r for r in records if r.ok]
    ttft = float(np.mean([metrics.ttft_ns(r) / 1e6 for r in ok]))
    itl = np.concatenate([np.diff(r.token_ns) / 1e6 for r in ok])
    row = {"load": label, "requests": n,
           "bare_ttft_overhead_ms": round(bare_ttft - bare_server_ttft, 4),
           "colobench_ttft_overhead_ms": round(ttft - server_ttft, 4),
           "bare_itl_mean_error_us": round((bare_itl.mean() - bare_gaps.mean()) * 1e3, 2),
           "colobench_itl_mean_error_us": round((itl.mean() - gaps.mean()) * 1e3, 2),
           "colobench_itl_p99_error_ms": round(float(np.percentile(itl, 99) - np.percentile(gaps, 99)), 4),
           "failed": len(records) - len(ok)}
    if rate:
        row["achieved_rate"] = round(metrics.achieved_rate_req_s(records), 2)
    return row


def achieved_rate(base: str, rate: float, seconds: float, folder: Path) -> dict:
    n = int(rate * seconds)
    offsets = arrival_offsets_s(n, rate, "poisson", seed=2).tolist()
    records = colobench_run(base, n, None, offsets, folder)
    achieved = metrics.achieved_rate_req_s(records)
    lags = [metrics.schedule_lag_ns(r) / 1e6 for r in records]
    return {"rate": rate, "requests": n, "achieved_rate": round(achieved, 2),
            "error_pct": round((achieved / rate - 1) * 100, 3), "lag_mean_ms": round(float(np.mean(lags)), 4),
            "lag_p99_ms": round(float(np.percentile(lags, 99)), 4), "failed": sum(1 for r in records if not r.ok)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    args = parser.parse_args()
    scale = 0.25 if args.quick else 1.0
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        proc, base = start_server(0, 0)
        try:
            results["cpu"] = [cpu_per_token(base, c, int(1024 * scale), folder) for c in (64, 256)]
        finally:
            proc.terminate()
            proc.wait(10)
        proc, base = start_server(50, 10)
        try:
            results["accuracy"] = [
                accuracy(base, "poisson 20/s", int(200 * scale), None, 20.0, folder),
                accuracy(base, "poisson 150/s", int(1500 * scale), None, 150.0, folder),
                accuracy(base, "closed c=64", int(640 * scale), 64, None, folder),
            ]
        finally:
            proc.terminate()
            proc.wait(10)
        proc, base = start_server(0, 0)
        try:
            results["rate"] = [achieved_rate(base, 500.0, 10 * scale, folder)]
        finally:
            proc.terminate()
            proc.wait(10)
    print("CPU per streamed token (zero delay, 128 tokens/request):")
    for r in results["cpu"]:
        print(f"  concurrency {r['concurrency']:>3}: bare aiohttp {r['bare_us_per_token']:6.2f} us, colobench "
              f"{r['colobench_us_per_token']:6.2f} us ({r['colobench_tokens_per_cpu_s']:,} tokens per CPU-second)")
    print("Timing against the server's own trace (TTFT 50 ms, ITL 10 ms):")
    for r in results["accuracy"]:
        print(f"  {r['load']:<14} TTFT overhead bare {r['bare_ttft_overhead_ms']:.3f} ms, colobench "
              f"{r['colobench_ttft_overhead_ms']:.3f} ms; ITL mean error bare {r['bare_itl_mean_error_us']:.1f} us, "
              f"colobench {r['colobench_itl_mean_error_us']:.1f} us; ITL p99 error {r['colobench_itl_p99_error_ms']:.3f} ms"
              + (f"; achieved {r['achieved_rate']} req/s" if "achieved_rate" in r else ""))
    for r in results["rate"]:
        print(f"Poisson {r['rate']:g}/s: achieved {r['achieved_rate']} req/s ({r['error_pct']:+.3f}%), schedule lag mean "
              f"{r['lag_mean_ms']} ms, p99 {r['lag_p99_ms']} ms")
    print(json.dumps(results, separators=(",", ":")))


if __name__ == "__main__":
    main()
