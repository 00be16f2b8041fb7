"""What finding the capacity costs: the search of `colobench capacity` against a grid sweep of
equal precision, both on the fake shared device whose answer is known in closed form.

    python benchmarks/capacity.py                      # precision 0.1 (about 10 minutes here)
    python benchmarks/capacity.py --precision 0.2 --probe-s 1.5 --out /tmp/capbench

Two models `a` and `b` on one `colobench fake-server --decode-tok-s N --prefill-tok-s M` (a request
costs p/M + (n-1)/N seconds of device time; alone a model carries 1 / that, together they share
it along the straight line). Both methods use the same probe (an ordinary colobench run, open
loop, constant arrivals, one window of at least `--probe-s` seconds):

- search: doubling from 0.6 x the computed capacity, bisection to `--precision`, then 5 rays of
  the co-location region (what `colobench capacity` does);
- grid: each model alone at every multiple of precision x capacity up to 1.5 x capacity, and the
  region at every point of a (1/precision) x (1/precision) grid over the two-cards rectangle.

Printed per method: probes, wall time, the solo capacities' error against the computed one, and the
boundary's error (each boundary point's true load sum(rate / capacity) minus 1; for the grid, its
frontier: the highest passing point of each column). Figures for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from colobench.analysis.capacity import Probe
from colobench.capacity import CapacitySearch, run_capacity
from colobench.serve.shared_device import shared_device_capacity
from colobench.specs import experiment_from_dict

PROMPT, OUTPUT = 16, 8
DECODE_TOK_S, PREFILL_TOK_S, ITL_MS = 500.0, 8000.0, 5.0
SLO = {"tpot_ms": 20.0, "ttft_ms": 100.0}


def start_fake_server(*flags: str) -> tuple[subprocess.Popen, str]:
    """`colobench fake-server FLAGS` on a free port, in its own session; (process, base URL) once
    it answers (benchmarks/predict.py starts its device the same way)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "colobench", "fake-server", "--port", str(port), *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{base}/models", timeout=1).close()
            return proc, base
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the fake server did not come up")


def start_server() -> tuple[subprocess.Popen, str]:
    return start_fake_server("--models", "a,b", "--decode-tok-s", str(DECODE_TOK_S), "--prefill-tok-s",
                             str(PREFILL_TOK_S), "--itl-ms", str(ITL_MS))


def experiment(base: str):
    inst = {"backend": "openai", "base_url": base, "slo": SLO,
            "workload": {"prompt_tokens": PROMPT, "output_tokens": OUTPUT, "arrival": "constant"}}
    return experiment_from_dict({"name": "capbench", "instances": [{**inst, "name": "a", "model": "a"},
                                                                    {**inst, "name": "b", "model": "b"}]}, "benchmark")


def frontier_error(passing: list[Probe], truth: float) -> float:
    """max |true load - 1| over the highest passing grid point of each column (rate of a)."""
    columns: dict[float, float] = {}
    for p in passing:
        a, b = p.rates.get("a", 0.0), p.rates.get("b", 0.0)
        columns[a] = max(columns.get(a, 0.0), b)
    return max(abs((a + b) / truth - 1) for a, b in columns.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", type=float, default=0.1)
    parser.add_argument("--probe-s", type=float, default=1.5)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--out", type=Path, default=Path("/tmp/colobench-capacity-bench"))
    args = parser.parse_args()
    truth = shared_device_capacity(PROMPT, OUTPUT, DECODE_TOK_S, PREFILL_TOK_S)
    print(f"fake shared device: decode {DECODE_TOK_S:g} tok/s, prefill {PREFILL_TOK_S:g} tok/s, ITL >= {ITL_MS:g} ms; "
          f"prompt {PROMPT}, output {OUTPUT}: computed capacity {truth:.2f} req/s per model alone, the line "
          f"rate_a + rate_b = {truth:.2f} together")
    proc, base = start_server()
    try:
        spec = experiment(base)
        started = time.monotonic()
        found = run_capacity(spec, args.out / "search", target=args.target, precision=args.precision,
                             probe_s=args.probe_s, rays=5, start_rate=0.6 * truth)
        search_s = time.monotonic() - started
        solo_err = max(abs(s.max_rate / truth - 1) for s in found.solo.values())
        ray_err = max(abs(sum(b.rates.values()) / truth - 1) for b in found.region.boundary)
        print(f"search: {found.probes} probes in {search_s:.0f} s ({search_s / found.probes:.1f} s a probe); solo "
              f"capacities {', '.join(f'{n} {s.max_rate:.2f}' for n, s in found.solo.items())} req/s (error at most "
              f"{solo_err * 100:.1f}%); boundary true load within {ray_err * 100:.1f}% of 1; sharing efficiency "
              f"{found.region.sharing_efficiency:.2f}")

        grid = CapacitySearch(spec, args.out / "grid", target=args.target, precision=args.precision,
                              probe_s=args.probe_s)
        (args.out / "grid").mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        steps = math.ceil(1 / args.precision)
        solo_caps = {}
        for name in ("a", "b"):
            rates = [k * args.precision * truth for k in range(1, math.ceil(1.5 / args.precision) + 1)]
            passing = [r for r in rates if grid.probe({name: r}, r, f"grid-{name}").passed]
            solo_caps[name] = max(passing) if passing else 0.0
        passing_pairs = []
        for i in range(1, steps + 1):
            for j in range(1, steps + 1):
                rates = {"a": i / steps * truth, "b": j / steps * truth}
                p = grid.probe(rates, 0.0, "grid-ab")
                if p.passed:
                    passing_pairs.append(p)
        grid_s = time.monotonic() - started
        grid_solo_err = max(abs(c / truth - 1) for c in solo_caps.values())
        print(f"grid: {grid.count} probes in {grid_s:.0f} s ({grid_s / grid.count:.1f} s a probe); solo capacities "
              f"{', '.join(f'{n} {c:.2f}' for n, c in solo_caps.items())} req/s (error at most "
              f"{grid_solo_err * 100:.1f}%); frontier true load within "
              f"{frontier_error(passing_pairs, truth) * 100 if passing_pairs else float('nan'):.1f}% of 1")
        print(f"the search took {found.probes / grid.count * 100:.0f}% of the grid's probes and "
              f"{search_s / grid_s * 100:.0f}% of its time")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


if __name__ == "__main__":
    main()
