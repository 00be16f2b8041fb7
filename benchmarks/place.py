"""How good `colobench place` is on the fake shared devices, where the truth is computable: each
method's placement judged by the predictor (what it chose on) and by the device itself, simulated
(`serve.simulate`: the fake server's own model in virtual time, penalties the predictor cannot see
included), against the true optimum found by simulating every group.

    python benchmarks/predict.py --characterize-only --out /tmp/pb      # the six profiles (~6 min)
    python benchmarks/place.py --profiles /tmp/pb/characterize --problems 20

Each problem: K services (4 to 6 distinct models of `benchmarks/predict.py`'s zoo), each at 0.5x
to 1.5x its profiled rate with its SLO (`BENCH_SLO`), 10, 20 or 30 GB each, on M devices (2 or 3; 80
GB each, or with `--hetero` one of 40 GB). The placer sees only the K solo profiles (no pair was
ever run). The device's truth is the simulated attainment of every service of a group run
together for `--sim-s` virtual seconds, Poisson arrivals.

Printed per method:

- `max_goodput` on the M devices: true goodput (rate x simulated attainment, summed) over the true
  optimum's (the best over every way of placing or leaving out each service), mean and worst; and
  over memory-only first fit's;
- `greedy, verified`: greedy, its placement verified (simulated) and the measurement fed back
  into the profiles as `colobench place --verify` does, placed again, until nothing misses or
  `--rounds` verifications are spent;
- the predicted goodput over the predicted optimum's (the search alone, the predictor's view);
- `min_devices` (as many devices as services): placements predicted to meet every SLO, those of
  them the simulation says miss one (a binomial verdict at the target: "fail" only when the
  attainment's interval lies below it), and devices used against the truth's fewest.

Figures for docs/benchmarks.md; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from colobench.analysis.capacity import attainment_verdict
from colobench.analysis.placement import GB, DeviceSpec, Placement, Placer, Service, partitions
from colobench.analysis.predict import SATURATED_FACTOR, observation
from colobench.characterize import load_profiles
from colobench.serve.simulate import SimDevice, SimService, simulate

sys.path.insert(0, str(Path(__file__).parent))
from predict import DEVICE, ZOO  # noqa: E402  (the zoo the profiles were measured on)

# Each model's SLO here: it meets it alone at 1.5x its zoo rate with room (1.5x the simulated p99
# there, and no tighter than `slo_of`: TPOT 8 ms, TTFT 3x the prefill + 15 ms). The long-prompt
# models' TPOT is paused by their own prefills (16 and 32 output tokens), so theirs is looser.
BENCH_SLO = {"qwen-0.5b-chat": {"ttft_ms": 27.8, "tpot_ms": 8.0}, "llama-1b-code": {"ttft_ms": 21.4, "tpot_ms": 8.0},
             "llama-3b-rag": {"ttft_ms": 400.0, "tpot_ms": 52.0}, "mistral-7b-chat": {"ttft_ms": 40.6, "tpot_ms": 8.0},
             "llama-8b-long": {"ttft_ms": 360.0, "tpot_ms": 27.0}, "tiny-batch": {"ttft_ms": 16.9, "tpot_ms": 8.0}}
METHODS = ("exhaustive", "greedy", "separate", "memory_first_fit", "muxserve_greedy")
VERIFIED = "greedy, verified"  # greedy, then --verify and feed back, placed again (simulated)


def sim_device(args: argparse.Namespace) -> SimDevice:
    return SimDevice(DEVICE["decode_tok_s"], DEVICE["prefill_tok_s"], DEVICE["itl_ms"],
                     tuple((n, px, dx) for n, (px, dx, *_) in ZOO.items()), args.cross_model_penalty,
                     args.crowding_penalty, args.crowding_streams)


def problem(profiles: dict, rng: random.Random, hetero: bool) -> tuple[list[Service], list[DeviceSpec]]:
    k, m = rng.randint(4, 6), rng.randint(2, 3)
    services = []
    for name in rng.sample(sorted(profiles), k):
        p = profiles[name]
        services.append(Service(name=name, profile=p, rate=round(ZOO[name][4] * rng.uniform(0.5, 1.5), 2),
                                slo=BENCH_SLO[name], memory_bytes=rng.choice((10, 20, 30)) * GB))
    sizes = [80] * m if not hetero else [80] * (m - 1) + [40]
    return services, [DeviceSpec(name=f"d{i}", memory_bytes=s * GB, cores=16) for i, s in enumerate(sizes)]


def _quantiles(o) -> dict[str, float | None]:
    """p50 and p99 of TTFT and TPOT (ms); None for a device so overloaded that a tenth of its
    requests never finished (what finished is the lucky part)."""
    if not o.ttft_ms or len(o.ttft_ms) < 0.9 * o.requests:
        return {k: None for k in ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99")}
    out = {}
    for name, values in (("ttft", sorted(o.ttft_ms)), ("tpot", sorted(o.tpot_ms))):
        for q in (50, 99):
            out[f"{name}_p{q}"] = values[min(len(values) - 1, int(q / 100 * len(values)))] if values else None
    return out


def _simulate_group(job: tuple) -> tuple[frozenset, dict[str, tuple[int, int, dict]]]:
    """(names, {service: (good, total, quantiles)}) of one group run together on the simulated device."""
    device, members, sim_s, seed = job
    out = simulate(device, [SimService(n, rate, ZOO[n][2], ZOO[n][3], slo) for n, rate, slo in members],
                   duration_s=sim_s, warmup_s=min(5.0, sim_s / 5), seed=seed)
    return frozenset(n for n, *_ in members), {
        n: (round((o.slo_attainment or 0.0) * o.requests), o.requests, _quantiles(o)) for n, o in out.items()}


class Truth:
    """The simulated attainment of every group of one problem's services, computed once each."""

    def __init__(self, services: list[Service], device: SimDevice, sim_s: float, pool: ProcessPoolExecutor,
                 cache: dict[str, Any]):
        self.services = {s.name: s for s in services}
        groups = [frozenset(c) for r in range(1, len(services) + 1) for c in itertools.combinations(self.services, r)]
        jobs = [(device, [(n, self.services[n].rate, self.services[n].slo) for n in sorted(g)], sim_s, 1)
                for g in groups]
        keys = [repr(job) for job in jobs]
        todo = [job for job, key in zip(jobs, keys) if key not in cache]
        for job, (_, counts) in zip(todo, pool.map(_simulate_group, todo)):
            cache[repr(job)] = counts
        self.counts = {g: {n: tuple(v) for n, v in cache[key].items()} for g, key in zip(groups, keys)}

    def goodput(self, group: frozenset) -> float:
        return sum(self.services[n].rate * good / total if total else 0.0
                   for n, (good, total, _) in self.counts[group].items())

    def fits(self, group: frozenset, device: DeviceSpec) -> bool:
        return sum(self.services[n].need_bytes() for n in group) <= device.memory_bytes

    def of(self, placement: Placement, devices: list[DeviceSpec]) -> float:
        by_name = {d.name: d for d in devices}
        total = 0.0
        for g in placement.groups:
            names = frozenset(s.service for s in g.services)
            if names and self.fits(names, by_name[g.device]):
                total += self.goodput(names)
        return total

    def optimum(self, devices: list[DeviceSpec]) -> float:
        """The most true goodput over every subset of the services placed and every way of
        putting its groups onto the devices."""
        best = 0.0
        names = sorted(self.services)
        for r in range(1, len(names) + 1):
            for placed in itertools.combinations(names, r):
                for part in partitions(list(placed), len(devices)):
                    for order in itertools.permutations(devices, len(part)):
                        if all(self.fits(frozenset(g), d) for g, d in zip(part, order)):
                            best = max(best, sum(self.goodput(frozenset(g)) for g in part))
        return best

    def misses(self, placement: Placement, target: float) -> list[str]:
        out = []
        for g in placement.groups:
            counts = self.counts[frozenset(s.service for s in g.services)]
            out += [n for n, (good, total, _) in counts.items() if attainment_verdict(good, total, target) == "fail"]
        return out

    def fewest_devices(self, target: float, memory_bytes: float) -> int | None:
        ok = {g for g, counts in self.counts.items()
              if all(attainment_verdict(good, total, target) == "pass" for good, total, _ in counts.values())
              and sum(self.services[n].need_bytes() for n in g) <= memory_bytes}
        for part in sorted(partitions(sorted(self.services), len(self.services)), key=len):
            if all(frozenset(g) in ok for g in part):
                return len(part)
        return None


def feed_back(services: list[Service], placement: Placement, truth: Truth, target: float) -> list[Service]:
    """What `colobench place --verify` does, on the simulated device: every service of the
    placement gains the co-location it ran in (measured / predicted slowdowns)."""
    by_name = {s.name: s for s in services}
    updated = dict(by_name)
    for g in placement.groups:
        names = [x.service for x in g.services]
        counts = truth.counts[frozenset(names)]
        for x in g.services:
            s = by_name[x.service]
            good, total, quantiles = counts[x.service]
            seen = observation(s.profile, [o for o in names if o != x.service], {o: by_name[o].rate for o in names},
                               quantiles, x.slowdown, good / total if total else None,
                               unmeasured_factor=SATURATED_FACTOR)
            updated[x.service] = s.model_copy(update={"profile": s.profile.model_copy(
                update={"observed": [*s.profile.observed, seen]})})
    return [updated[s.name] for s in services]


def greedy_verified(services: list[Service], devs: list[DeviceSpec], objective: str, truth: Truth, target: float,
                    rounds: int) -> tuple[Placement, int]:
    """Greedy, verified (simulated), fed back and placed again until nothing misses or `rounds`
    verifications are spent: (the best placement verified, by what was measured; the verifications
    it took). Every verification is a measurement, so the user keeps the best one seen."""
    tried: list[tuple[tuple, Placement]] = []
    for k in range(1, rounds + 1):
        p = Placer(services, devs, objective, target).greedy()
        misses = truth.misses(p, target)
        measured = truth.of(p, devs)
        tried.append(((measured,) if objective == "max_goodput" else (not misses, -len(misses), measured), p))
        if not misses or k == rounds:
            break
        services = feed_back(services, p, truth, target)
    return max(tried, key=lambda t: t[0])[1], len(tried)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=Path, required=True, help="the zoo's characterisation (its profiles)")
    parser.add_argument("--problems", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--sim-s", type=float, default=30.0, help="virtual seconds each group is simulated")
    parser.add_argument("--hetero", action="store_true", help="the last device has 40 GB instead of 80")
    parser.add_argument("--cross-model-penalty", type=float, default=0.1)
    parser.add_argument("--crowding-penalty", type=float, default=0.5)
    parser.add_argument("--crowding-streams", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", type=Path, help="keep every simulated group here (a rerun simulates none again)")
    parser.add_argument("--rounds", type=int, default=3, help="verifications the verified greedy may spend")
    args = parser.parse_args()
    profiles = {p.instance: p for p in load_profiles(args.profiles) if p.instance in ZOO}
    if len(profiles) < 4:
        sys.exit(f"{args.profiles}: {len(profiles)} zoo profiles; run benchmarks/predict.py --characterize-only")
    rng = random.Random(args.seed)
    device = sim_device(args)
    every = (*METHODS, VERIFIED)
    ratio: dict[str, list[float]] = {m: [] for m in every}
    predicted_ratio: dict[str, list[float]] = {m: [] for m in METHODS}
    vs_ff: dict[str, list[float]] = {m: [] for m in every}
    meets = {m: 0 for m in every}
    false_meets = {m: 0 for m in every}
    confident = {m: 0 for m in every}
    confident_false = {m: 0 for m in every}
    devices_used: dict[str, list[int]] = {m: [] for m in every}
    rounds_used: list[int] = []
    fewest: list[int] = []
    started = time.monotonic()
    cache: dict[str, Any] = json.loads(args.cache.read_text()) if args.cache and args.cache.is_file() else {}
    with ProcessPoolExecutor(args.workers) as pool:
        for n in range(args.problems):
            services, devs = problem(profiles, rng, args.hetero)
            truth = Truth(services, device, args.sim_s, pool, cache)
            if args.cache:
                args.cache.write_text(json.dumps(cache))
            goodput = Placer(services, devs, "max_goodput", args.target).run()
            opt = truth.optimum(devs)
            ff = truth.of(goodput.methods["memory_first_fit"], devs)
            placements = {**goodput.methods}
            placements[VERIFIED], used = greedy_verified(services, devs, "max_goodput", truth, args.target, args.rounds)
            rounds_used.append(used)
            for m in every:
                got = truth.of(placements[m], devs)
                ratio[m].append(got / opt if opt else 1.0)
                vs_ff[m].append(got / ff if ff else float("nan"))
            for m in METHODS:
                best = goodput.optimum_goodput_req_s
                predicted_ratio[m].append(goodput.methods[m].goodput_req_s / best if best else 1.0)
            many = [DeviceSpec(name=f"d{i}", memory_bytes=80 * GB, cores=16) for i in range(len(services))]
            least = Placer(services, many, "min_devices", args.target).run()
            best_truth = truth.fewest_devices(args.target, 80 * GB)
            if best_truth is not None:
                fewest.append(best_truth)
            chosen = {**least.methods}
            chosen[VERIFIED], _ = greedy_verified(services, many, "min_devices", truth, args.target, args.rounds)
            for m in every:
                p = chosen[m]
                if p.feasible:
                    meets[m] += 1
                    false_meets[m] += bool(truth.misses(p, args.target))
                    devices_used[m].append(p.devices_used)
                if p.confident:
                    confident[m] += 1
                    confident_false[m] += bool(truth.misses(p, args.target))
            print(f"  problem {n + 1}/{args.problems}: {len(services)} services on {len(devs)} devices, true optimum "
                  f"{opt:.2f} req/s, greedy {ratio['greedy'][-1]:.1%}, verified {ratio[VERIFIED][-1]:.1%} in "
                  f"{rounds_used[-1]} run(s), first fit {ratio['memory_first_fit'][-1]:.1%}"
                  f" ({time.monotonic() - started:.0f} s)", flush=True)
    print(f"\n{args.problems} problems from {len(profiles)} profiles in {time.monotonic() - started:.0f} s "
          f"(target {args.target:.0%}, {args.sim_s:g} virtual s per group, penalties cross-model "
          f"{args.cross_model_penalty}, crowding {args.crowding_penalty} past {args.crowding_streams} streams"
          f"{', one 40 GB device' if args.hetero else ''})")
    print(f"{'method':<18}{'pred/pred opt':>14}{'true goodput/opt':>17}{'worst':>8}{'x first fit':>12}"
          f"{'min_devices: meets':>20}{'of them miss':>13}{'mean devices':>14}")
    for m in every:
        mean_dev = statistics.mean(devices_used[m]) if devices_used[m] else float("nan")
        finite = [x for x in vs_ff[m] if x == x]
        pred = f"{statistics.mean(predicted_ratio[m]):.1%}" if m in predicted_ratio else "-"
        print(f"{m:<18}{pred:>14}{statistics.mean(ratio[m]):>16.1%}{min(ratio[m]):>8.1%}"
              f"{statistics.mean(finite) if finite else float('nan'):>11.2f}x"
              f"{meets[m]:>14}/{args.problems:<5}{false_meets[m]:>13}{mean_dev:>14.2f}")
    print(f"{VERIFIED}: {statistics.mean(rounds_used):.1f} verification runs on average (at most {args.rounds})")
    print("min_devices placements whose every verdict is 'meets' (the interval's slow end), and of them the ones "
          "the simulation says miss: " + ", ".join(f"{m} {confident[m]}/{confident_false[m]}" for m in every))
    if fewest:
        print(f"truth: fewest devices where every service meets its SLO (simulated), mean {statistics.mean(fewest):.2f}"
              f" over {len(fewest)} problems")


if __name__ == "__main__":
    main()
