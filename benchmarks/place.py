"""How good `colobench place`'s greedy search and the baselines are against the exhaustive optimum,
all judged by the same predictor (no run): random placement problems drawn from a set of profiles.

    python benchmarks/place.py --profiles /tmp/pb-char2/characterize --problems 40

Each problem: K services (4 to 6) drawn from the profiles (a model may appear twice), each at
0.5x to 1.5x its profiled rate with an SLO it meets alone with room (TPOT 1.6x and TTFT 3x its solo
p99), on M identical devices (2 or 3). Printed per method: for `max_goodput`, its predicted
goodput over the optimum's (mean and worst); for `min_devices`, how often it met every SLO and its
devices against the optimum's and against memory-only first fit's. This measures the search, not
the predictor (benchmarks/predict.py does that); `--verify` is what checks a placement by running
it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from colobench.analysis.placement import GB, DeviceSpec, Placer, Service
from colobench.characterize import load_profiles

METHODS = ("exhaustive", "greedy", "separate", "memory_first_fit", "muxserve_greedy")


def problem(profiles: list, rng: random.Random) -> tuple[list[Service], list[DeviceSpec]]:
    k, m = rng.randint(4, 6), rng.randint(2, 3)
    services = []
    for j in range(k):
        p = rng.choice(profiles)
        scale = rng.uniform(0.5, 1.5)
        slo = {"tpot_ms": round(1.6 * p.latency.tpot_ms.p99, 2), "ttft_ms": round(3 * p.latency.ttft_ms.p99, 1)}
        services.append(Service(name=f"{p.instance}-{j}", profile=p, rate=(p.load.request_rate or 1.0) * scale,
                                slo=slo, memory_bytes=rng.choice((10, 20, 30)) * GB))
    return services, [DeviceSpec(name=f"d{i}", memory_bytes=80 * GB, cores=16) for i in range(m)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=Path, required=True, help="a characterisation or folder of profiles")
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.95)
    args = parser.parse_args()
    profiles = load_profiles(args.profiles)
    rng = random.Random(args.seed)
    ratio: dict[str, list[float]] = {m: [] for m in METHODS}
    feasible = {m: 0 for m in METHODS}
    devices: dict[str, list[int]] = {m: [] for m in METHODS}
    started = time.monotonic()
    for _ in range(args.problems):
        services, devs = problem(profiles, rng)
        goodput = Placer(services, devs, "max_goodput", args.target).run()
        best = goodput.optimum_goodput_req_s or 0.0
        for m in METHODS:
            ratio[m].append(goodput.methods[m].goodput_req_s / best if best else 1.0)
        many = [DeviceSpec(name=f"d{i}", memory_bytes=80 * GB, cores=16) for i in range(len(services))]
        fewest = Placer(services, many, "min_devices", args.target).run()
        for m in METHODS:
            p = fewest.methods[m]
            feasible[m] += p.feasible
            if p.feasible:
                devices[m].append(p.devices_used)
    print(f"{args.problems} problems from {len(profiles)} profiles in {time.monotonic() - started:.0f} s "
          f"(target {args.target:.0%})")
    print(f"{'method':<18}{'goodput/opt mean':>18}{'worst':>8}{'min_devices: met':>18}{'mean devices':>14}")
    for m in METHODS:
        mean_dev = statistics.mean(devices[m]) if devices[m] else float("nan")
        print(f"{m:<18}{statistics.mean(ratio[m]):>17.1%}{min(ratio[m]):>8.1%}"
              f"{feasible[m]:>12}/{args.problems:<5}{mean_dev:>14.2f}")


if __name__ == "__main__":
    main()
