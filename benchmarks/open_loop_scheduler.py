"""How exactly does the open-loop scheduler hit its rate? (a benchmark, not a test)

Drives `colobench.loadgen.streaming.open_loop` against a backend that returns its one token at
once, at 100, 500 and 1000 requests/s (Poisson), and prints for each rate the achieved rate's
error against the requested one and the schedule lag (how late each request was sent).

    python benchmarks/open_loop_scheduler.py [--seconds 5] [--rates 100,500,1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from colobench.analysis import metrics  # noqa: E402
from colobench.analysis.distribution import Distribution  # noqa: E402
from colobench.clock import now_ns  # noqa: E402
from colobench import aio  # noqa: E402
from colobench.loadgen import streaming  # noqa: E402
from colobench.loadgen.recorder import Recorder  # noqa: E402
from colobench.records import RecordWriter, read_records  # noqa: E402
from colobench.workload.arrivals import arrival_offsets_s, count_for_duration  # noqa: E402
from colobench.workload.synthetic import build_requests  # noqa: E402


class InstantBackend:
    """One token, no delay: everything measured is the load generator itself."""

    async def stream(self, request):
        yield [now_ns()]


def measure(rate: float, seconds: float, folder: Path) -> dict:
    count = count_for_duration(rate, seconds)
    requests = build_requests(count, 4, 1, 32000, seed=0)
    offsets = arrival_offsets_s(count, rate, "poisson", seed=0).tolist()
    path = folder / f"rate-{rate:g}.jsonl"
    recorder = Recorder(RecordWriter(path), "bench", "bench", repetition=1)
    cpu0 = os.times()
    aio.run(streaming.open_loop(InstantBackend(), requests, offsets, recorder))
    cpu1 = os.times()
    records = read_records(path)
    achieved = metrics.achieved_rate_req_s(records)
    lag = Distribution.of([metrics.schedule_lag_ns(r) for r in records]).scaled(1e-6)
    return {"requested_rate": rate, "requests": count, "achieved_rate": round(achieved, 3),
            "rate_error_pct": round((achieved / rate - 1) * 100, 3),
            "lag_mean_ms": round(lag.mean, 4), "lag_p50_ms": round(lag.p50, 4), "lag_p99_ms": round(lag.p99, 4),
            "lag_max_ms": round(lag.max, 4),
            "cpu_s_per_request_us": round(((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / count * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="100,500,1000")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rate in (float(r) for r in args.rates.split(",")):
            rows.append(measure(rate, args.seconds, Path(tmp)))
    print(f"{'rate req/s':>10} {'n':>6} {'achieved':>10} {'error %':>8} {'lag mean ms':>11} {'p50':>7} {'p99':>7} "
          f"{'max':>7} {'cpu us/req':>10}")
    for r in rows:
        print(f"{r['requested_rate']:>10g} {r['requests']:>6} {r['achieved_rate']:>10.2f} {r['rate_error_pct']:>8.3f} "
              f"{r['lag_mean_ms']:>11.4f} {r['lag_p50_ms']:>7.4f} {r['lag_p99_ms']:>7.4f} {r['lag_max_ms']:>7.3f} "
              f"{r['cpu_s_per_request_us']:>10.1f}")
    print(json.dumps(rows, separators=(",", ":")))


if __name__ == "__main__":
    main()
