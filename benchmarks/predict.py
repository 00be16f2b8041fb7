"""How well `colobench predict` foresees co-location from solo profiles: a model zoo, every pair run
together, scored against the prediction made before the pair ran, with the A/A noise floor beside.

    python benchmarks/predict.py --out /tmp/predict-bench              # the fake shared device (~30 min)
    python benchmarks/predict.py --part cpu --out /tmp/predict-cpu     # tiny checkpoints on this CPU
    python benchmarks/predict.py --part device --device cuda:0 --out /tmp/predict-gpu   # presets on a card
    python benchmarks/predict.py --rescore --out /tmp/predict-bench   # score those runs again (no run)

**Fake shared device** (`--part fake`): one `colobench fake-server` serves six "models" whose
shapes echo real ones (per-model prefill and decode costs: a 7B model's token costs more of the
device than a 0.5B's; prompts from 128 to 3,072 tokens, outputs from 16 to 192; compute-bound RAG
and long-context, decode-bound code and batch traffic) plus the `probe` model. The device carries
penalties the predictor cannot read off any solo profile: while two models decode at once every
step is `--cross-model-penalty` slower, and past `--crowding-streams` streams the decode budget
shrinks (`serve.shared_device`). The device's own counters count nominal work, never the
penalties.

1. `colobench characterize` of all six alone, then beside a prefill probe (compute) and a decode
   probe (memory bandwidth) at two levels each: six profiles with sensitivity curves.
2. Every pair (15) run as an ordinary experiment (solo phases and the co-located one), open loop,
   Poisson arrivals, each model with its SLO.
3. `--aa` pairs run a second time: the A/A noise floor of every figure on this box, now.
4. The prediction of each pair from the two profiles alone (the predictor has no parameter fitted
   across models: each model's calibration is its own probe runs, so every pair is predicted with
   both its models held out), scored against the measured co-located figures: the absolute error
   of TPOT p50, TTFT p50 and throughput (median and 90th percentile), how often the measured
   slowdown fell inside the predicted interval, and the pairs predicted to meet an SLO
   (`--slo-target`) that the measurement missed. Physics alone (the profiles without their
   curves) is scored beside it.
5. `--region-pairs K`: `colobench capacity` of the first K pairs, and the region predicted from
   the profiles and the measured solo capacities: per-direction error of the boundary.

**CPU** (`--part cpu`): tiny Llama-shaped checkpoints of different widths and depths (random
weights, built here) run in process, one thread each by default (`--cpu-threads`), closed loop.
Profiles with host-CPU probe curves (a probe of 1 and 2 cores); every pair run; TPOT and
throughput scored as above. Two threads each on a 2-core box collapse beside a 1-core probe
(OpenMP's threads wait on one another while one is descheduled: a repetition took 7 minutes
instead of 30 s), which is a finding, not a benchmark that ends.

**Accelerator** (`--part device`): two random-weight presets (`--presets`, 0.5B and 1B by
default) on `--device`, beside `device_time` and `memory_bandwidth` kernels (`devices.pressure`),
every pair (a preset with itself included) run time-sliced on the card; `benchmarks/gpu.sh` runs
it within its budget.

Figures for docs/benchmarks.md; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from capacity import start_fake_server  # benchmarks/capacity.py, beside this script
from colobench import api
from colobench.analysis.instance_profile import InstanceProfile
from colobench.analysis.predict import predict, predict_region
from colobench.capacity import load_capacity, run_capacity
from colobench.characterize import capacity_caps, characterize, load_profiles
from colobench.specs import experiment_from_dict

# name: (prefill cost x, decode cost x, prompt tokens, output tokens, rate req/s)
ZOO: dict[str, tuple[float, float, int, int, float]] = {
    "qwen-0.5b-chat": (0.5, 0.5, 512, 64, 10.0),
    "llama-1b-code": (1.0, 1.0, 128, 192, 4.0),
    "llama-3b-rag": (1.6, 1.6, 3072, 16, 3.0),
    "mistral-7b-chat": (2.0, 2.0, 256, 64, 6.0),
    "llama-8b-long": (2.2, 2.2, 2048, 32, 3.0),
    "tiny-batch": (0.3, 0.3, 128, 128, 20.0),
}
DEVICE = {"decode_tok_s": 4000.0, "prefill_tok_s": 60000.0, "itl_ms": 4.0}
PROBES = {"compute": (0.15, 0.3), "memory_bandwidth": (0.3, 0.6, 0.9)}


def slo_of(name: str) -> dict[str, float]:
    """An SLO each model meets alone with room: TPOT 2x the stream cap, TTFT 3x its prefill + 15 ms."""
    px, _, prompt, _, _ = ZOO[name]
    prefill_ms = px * prompt / DEVICE["prefill_tok_s"] * 1e3
    return {"tpot_ms": 2 * DEVICE["itl_ms"], "ttft_ms": round(3 * prefill_ms + 15, 1)}


def start_server(penalty: float, crowding: float, crowding_streams: int) -> tuple[subprocess.Popen, str]:
    costs = ",".join(f"{n}={px}:{dx}" for n, (px, dx, *_ ) in ZOO.items())
    return start_fake_server(
        "--models", ",".join([*ZOO, "probe"]), "--decode-tok-s", str(DEVICE["decode_tok_s"]), "--prefill-tok-s",
        str(DEVICE["prefill_tok_s"]), "--itl-ms", str(DEVICE["itl_ms"]), "--model-costs", costs,
        "--cross-model-penalty", str(penalty), "--crowding-penalty", str(crowding), "--crowding-streams",
        str(crowding_streams), "--no-prefix-cache")


def fake_instance(name: str, base: str) -> dict[str, Any]:
    _, _, prompt, output, rate = ZOO[name]
    return {"name": name, "model": name, "backend": "openai", "base_url": base, "metrics_url": "auto",
            "slo": slo_of(name), "workload": {"prompt_tokens": prompt, "output_tokens": output, "rate": rate,
                                              "arrival": "poisson"}}


def spec_of(name: str, instances: list[dict[str, Any]], args: argparse.Namespace, **extra: Any):
    return experiment_from_dict({"name": name, "repetitions": args.reps, "instances": instances,
                                 "workload": {"duration_s": args.duration}, **extra}, "benchmark")


# ---- measuring ----------------------------------------------------------------------------------

def measure_pair(a: str, b: str, instances: dict[str, dict[str, Any]], out: Path, args: argparse.Namespace,
                 label: str = "") -> dict[str, Any]:
    spec = spec_of(f"{a}--{b}", [instances[a], instances[b]], args)
    result = api.run_experiment(spec, out / f"pair-{a}+{b}{label}", source="benchmark")
    return measured_of(result.summary, a, b)


def measured_of(summary: Any, a: str, b: str) -> dict[str, Any]:
    point = summary.point()
    measured = {}
    for name in (a, b):
        m, s = point.metrics("colocated", name), point.interference.slowdown.get(name)
        solo = point.metrics("solo", name)
        if m is None or s is None:
            continue
        measured[name] = {"tpot_p50_ms": m.median_tpot_ms, "ttft_p50_ms": m.median_ttft_ms,
                          "output_tok_s": m.output_throughput, "slo_attainment": m.slo_attainment,
                          "slowdown": {k: getattr(s, k) for k in ("ttft_p50", "tpot_p50", "output_throughput")},
                          "solo": {"tpot_p50_ms": solo.median_tpot_ms if solo else None,
                                   "ttft_p50_ms": solo.median_ttft_ms if solo else None,
                                   "output_tok_s": solo.output_throughput if solo else None},
                          "valid": bool(m.validity and m.validity.verdict == "VALID")}
    return measured


# ---- scoring ------------------------------------------------------------------------------------

FIGURES = {"tpot_p50": "tpot_p50_ms", "ttft_p50": "ttft_p50_ms", "output_throughput": "output_tok_s"}


def score(profiles: dict[str, InstanceProfile], pairs: dict[tuple[str, str], dict[str, Any]], target: float,
          curves: bool = True) -> dict[str, Any]:
    errors: dict[str, list[float]] = {k: [] for k in FIGURES}
    inside: dict[str, list[bool]] = {k: [] for k in FIGURES}
    slo = {"predicted_meets": 0, "false_meets": 0, "instances": 0}
    rows = []
    for (a, b), measured in pairs.items():
        chosen = [profiles[a], profiles[b]]
        if not curves:
            chosen = [p.model_copy(update={"sensitivity": {}}) for p in chosen]
        prediction = predict(chosen, target=target)
        for name in (a, b):
            if name not in measured:
                continue
            got, pred = measured[name], prediction.instances[name]
            row = {"pair": f"{a}+{b}", "instance": name, "driver": pred.driver}
            for key, figure in FIGURES.items():
                value = got[figure]
                if value is None or pred.predicted.get(figure) is None:
                    continue
                err = pred.predicted[figure] / value - 1
                errors[key].append(abs(err))
                row[f"{key}_err_pct"] = round(err * 100, 1)
                slowdown = got["slowdown"].get(key)
                if slowdown is not None:
                    lo, hi = pred.intervals[key]
                    inside[key].append(lo <= slowdown <= hi)
                    row[f"{key}_slowdown"] = {"measured": round(slowdown, 3), "predicted": round(pred.slowdown[key], 3)}
            if pred.slo_verdict is not None and got["slo_attainment"] is not None:
                slo["instances"] += 1
                if pred.slo_verdict == "meets":
                    slo["predicted_meets"] += 1
                    slo["false_meets"] += got["slo_attainment"] < target
                row["slo"] = {"predicted": pred.slo_verdict, "measured_attainment": round(got["slo_attainment"], 4)}
            rows.append(row)

    def stats(values: list[float]) -> dict[str, float | None]:
        if not values:
            return {"median_pct": None, "p90_pct": None, "n": 0}
        ordered = sorted(values)
        return {"median_pct": round(statistics.median(ordered) * 100, 1),
                "p90_pct": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] * 100, 1), "n": len(values)}
    return {"errors": {k: stats(v) for k, v in errors.items()},
            "coverage_pct": {k: round(sum(v) / len(v) * 100, 1) if v else None for k, v in inside.items()},
            "slo": slo, "rows": rows}


def noise_floor(first: dict[tuple[str, str], dict[str, Any]], second: dict[tuple[str, str], dict[str, Any]]
                ) -> dict[str, Any]:
    """|run 2 / run 1 - 1| of every co-located figure of the pairs run twice."""
    out: dict[str, list[float]] = {k: [] for k in FIGURES}
    for pair, measured in second.items():
        for name, got in measured.items():
            before = first.get(pair, {}).get(name)
            for key, figure in FIGURES.items():
                if before and before[figure] and got[figure] is not None:
                    out[key].append(abs(got[figure] / before[figure] - 1))
    return {k: {"median_pct": round(statistics.median(v) * 100, 1) if v else None,
                "p90_pct": round(sorted(v)[min(len(v) - 1, int(0.9 * len(v)))] * 100, 1) if v else None, "n": len(v)}
            for k, v in out.items()}


def report(title: str, scored: dict[str, Any], physics: dict[str, Any], floor: dict[str, Any] | None) -> None:
    print(f"\n{title}")
    print(f"{'figure':<20}{'median |err|':>14}{'p90 |err|':>12}{'physics med':>13}{'physics p90':>13}"
          f"{'A/A median':>12}{'A/A p90':>10}{'inside 95%':>12}{'n':>5}")
    for key in FIGURES:
        e, ph = scored["errors"][key], physics["errors"][key]
        fl = (floor or {}).get(key, {})
        print(f"{key:<20}{e['median_pct']!s:>13}%{e['p90_pct']!s:>11}%{ph['median_pct']!s:>12}%{ph['p90_pct']!s:>12}%"
              f"{fl.get('median_pct')!s:>11}%{fl.get('p90_pct')!s:>9}%{scored['coverage_pct'][key]!s:>11}%{e['n']:>5}")
    s = scored["slo"]
    print(f"SLO: {s['predicted_meets']} of {s['instances']} instance-pairs predicted to meet; {s['false_meets']} of "
          f"them missed when measured")


# ---- the fake shared device ---------------------------------------------------------------------

def run_fake(args: argparse.Namespace) -> dict[str, Any]:
    proc, base = start_server(args.cross_model_penalty, args.crowding_penalty, args.crowding_streams)
    out = args.out
    try:
        instances = {n: fake_instance(n, base) for n in ZOO}
        t0 = time.monotonic()
        spec = spec_of("zoo", list(instances.values()), args)
        _, found = characterize(spec, out / "characterize", {k: v for k, v in PROBES.items()}, probe_model="probe",
                                note=lambda text: print(f"  characterize: {text}", flush=True))
        profiles = {p.instance: p for p in found.values()}
        print(f"characterized {len(profiles)} models in {time.monotonic() - t0:.0f} s", flush=True)
        if args.characterize_only:
            return {"characterized": sorted(profiles)}
        pairs, again = {}, {}
        for k, (a, b) in enumerate(itertools.combinations(ZOO, 2)):
            t1 = time.monotonic()
            pairs[(a, b)] = measure_pair(a, b, instances, out, args)
            print(f"  pair {k + 1}/{len(ZOO) * (len(ZOO) - 1) // 2} {a}+{b}: {time.monotonic() - t1:.0f} s", flush=True)
        for a, b in list(pairs)[:args.aa]:
            again[(a, b)] = measure_pair(a, b, instances, out, args, "-aa")
        scored, physics = score(profiles, pairs, args.slo_target), score(profiles, pairs, args.slo_target, curves=False)
        floor = noise_floor(pairs, again) if again else None
        report("fake shared device: co-located figures predicted from solo profiles, against the measurement",
               scored, physics, floor)
        region = []
        for a, b in list(pairs)[:args.region_pairs]:
            spec = spec_of(f"cap-{a}--{b}", [instances[a], instances[b]], args)
            cap = run_capacity(spec, out / f"capacity-{a}+{b}", target=args.slo_target, precision=0.1, probe_s=2.0,
                               rays=5)
            caps, shares = capacity_caps(out / f"capacity-{a}+{b}")
            if cap.region is None or len(caps) != 2:
                continue
            pred = predict_region([profiles[a], profiles[b]], caps, shares)
            for measured_point, predicted_point in zip(cap.region.boundary, pred.boundary):
                region.append({"pair": f"{a}+{b}", "share": measured_point.share, "measured_load": measured_point.load,
                               "predicted_load": predicted_point.load,
                               "error_pct": round((predicted_point.load / measured_point.load - 1) * 100, 1)})
            print(f"  region {a}+{b}: " + ", ".join(f"f={r['share']:.2f} {r['error_pct']:+.1f}%" for r in region
                                                   if r["pair"] == f"{a}+{b}"), flush=True)
        if region:
            errs = sorted(abs(r["error_pct"]) for r in region)
            print(f"region: per-direction |error| median {statistics.median(errs):.1f}%, max {errs[-1]:.1f}% over "
                  f"{len(errs)} directions")
        return {"scored": scored, "physics": physics, "noise_floor": floor, "region": region,
                "device": DEVICE, "zoo": ZOO, "penalties": {"cross_model": args.cross_model_penalty,
                                                            "crowding": args.crowding_penalty,
                                                            "crowding_streams": args.crowding_streams}}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


# ---- the CPU ------------------------------------------------------------------------------------

CPU_ZOO = {  # name: (hidden, layers, intermediate, vocab, batch, prompt, output)
    "narrow-2l": (128, 2, 512, 32000, 1, 64, 64),
    "wide-4l": (512, 4, 2048, 32000, 1, 64, 32),
    "deep-8l": (256, 8, 1024, 32000, 1, 256, 32),
    "batch-4": (256, 4, 1024, 32000, 4, 128, 32),
}


def build_checkpoints(folder: Path) -> dict[str, Path]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = {}
    for name, (hidden, layers, inter, vocab, *_ ) in CPU_ZOO.items():
        path = folder / name
        if not (path / "config.json").is_file():
            torch.manual_seed(0)
            config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                                 num_attention_heads=max(2, hidden // 64), num_key_value_heads=max(1, hidden // 128),
                                 max_position_embeddings=4096, tie_word_embeddings=True)
            LlamaForCausalLM(config).save_pretrained(path)
        out[name] = path
    return out


def run_in_process(args: argparse.Namespace, instances: dict[str, dict[str, Any]],
                   probes: dict[str, tuple[float, ...]], title: str, target: str | None = None) -> dict[str, Any]:
    """Characterise in-process instances, run every pair, score (the CPU and the accelerator parts)."""
    out = args.out
    t0 = time.monotonic()
    spec = experiment_from_dict({"name": "zoo", "repetitions": args.reps, "instances": list(instances.values())},
                                "benchmark")
    _, found = characterize(spec, out / "characterize", probes, target=target,
                            note=lambda text: print(f"  characterize: {text}", flush=True))
    profiles = {p.instance: p for p in found.values()}
    print(f"characterized {len(profiles)} models in {time.monotonic() - t0:.0f} s", flush=True)
    pairs, again = {}, {}
    for a, b in itertools.combinations(instances, 2):
        spec = experiment_from_dict({"name": f"{a}--{b}", "repetitions": args.reps,
                                     "instances": [instances[a], instances[b]]}, "benchmark")
        pairs[(a, b)] = measured_of(api.run_experiment(spec, out / f"pair-{a}+{b}", source="benchmark").summary, a, b)
        print(f"  pair {a}+{b} done", flush=True)
    for a, b in list(pairs)[:args.aa]:
        spec = experiment_from_dict({"name": f"{a}--{b}-aa", "repetitions": args.reps,
                                     "instances": [instances[a], instances[b]]}, "benchmark")
        again[(a, b)] = measured_of(api.run_experiment(spec, out / f"pair-{a}+{b}-aa", source="benchmark").summary,
                                    a, b)
    scored, physics = score(profiles, pairs, args.slo_target), score(profiles, pairs, args.slo_target, curves=False)
    floor = noise_floor(pairs, again) if again else None
    report(title, scored, physics, floor)
    return {"scored": scored, "physics": physics, "noise_floor": floor}


def run_cpu(args: argparse.Namespace) -> dict[str, Any]:
    for name in list(CPU_ZOO)[args.cpu_models:]:
        del CPU_ZOO[name]
    paths = build_checkpoints(args.out / "checkpoints")
    instances = {}
    for name, (*_, batch, prompt, output) in CPU_ZOO.items():
        instances[name] = {"name": name, "model": str(paths[name]), "device": "cpu", "cpu_threads": args.cpu_threads,
                           "workload": {"batch_size": batch, "prompt_tokens": prompt, "output_tokens": output,
                                        "requests": args.cpu_requests * batch}}
    return {**run_in_process(args, instances, {"host_cpu": tuple(args.cpu_levels)},
                             f"CPU ({os.cpu_count()} cores, {args.cpu_threads} threads an instance): co-located "
                             "figures predicted from solo profiles"), "zoo": CPU_ZOO}


def run_device(args: argparse.Namespace) -> dict[str, Any]:
    """Random-weight presets on an accelerator (`--device cuda:0`), beside device probes."""
    instances = {}
    for k, model in enumerate(args.presets):
        batch = (8, 8, 1, 32)[k % 4]
        name = f"{model}-b{batch}"
        instances[name] = {"name": name, "model": model, "device": args.device, "dtype": "bfloat16",
                           "workload": {"batch_size": batch, "prompt_tokens": 128, "output_tokens": 64,
                                        "requests": batch * args.cpu_requests}}
    return run_in_process(args, instances, {"device_time": (0.3, 0.6), "memory_bandwidth": (0.3, 0.6)},
                          f"{args.device}: co-located figures predicted from solo profiles", target=args.device)


def rescore(args: argparse.Namespace) -> dict[str, Any]:
    """Score the runs already in `--out` again with today's predictor (no new run)."""
    out = args.out
    profiles = {p.instance: p for p in load_profiles(args.profiles or out / "characterize")}
    pairs, again = {}, {}
    for folder in sorted(out.glob("pair-*")):
        a, b = folder.name.removeprefix("pair-").removesuffix("-aa").split("+")
        (again if folder.name.endswith("-aa") else pairs)[(a, b)] = measured_of(api.load_summary(folder), a, b)
    scored, physics = score(profiles, pairs, args.slo_target), score(profiles, pairs, args.slo_target, curves=False)
    floor = noise_floor(pairs, again) if again else None
    report(f"rescored {out}: co-located figures predicted from solo profiles, against the measurement", scored,
           physics, floor)
    region = []
    for folder in sorted(out.glob("capacity-*")):
        a, b = folder.name.removeprefix("capacity-").split("+")
        cap = load_capacity(folder)
        caps, shares = capacity_caps(folder)
        if cap.region is None or len(caps) != 2:
            continue
        pred = predict_region([profiles[a], profiles[b]], caps, shares)
        for m, q in zip(cap.region.boundary, pred.boundary):
            region.append({"pair": f"{a}+{b}", "share": m.share, "measured_load": m.load, "predicted_load": q.load,
                           "error_pct": round((q.load / m.load - 1) * 100, 1), "limited_by": q.limited_by})
    for r in region:
        print(f"  region {r['pair']} f={r['share']:.2f}: measured load {r['measured_load']:.3f}, predicted "
              f"{r['predicted_load']:.3f} ({r['error_pct']:+.1f}%; {r['limited_by']})")
    if region:
        errs = sorted(abs(r["error_pct"]) for r in region)
        print(f"region: per-direction |error| median {statistics.median(errs):.1f}%, max {errs[-1]:.1f}% over "
              f"{len(errs)} directions")
    return {"scored": scored, "physics": physics, "noise_floor": floor, "region": region}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("fake", "cpu", "device"), default="fake")
    parser.add_argument("--device", default="cuda:0", help="device part: the accelerator")
    parser.add_argument("--presets", nargs="+", default=["qwen2.5-0.5b", "llama-3.2-1b", "qwen2.5-0.5b"],
                        help="device part: presets, at batch 8, 8, 1, 32 in turn")
    parser.add_argument("--rescore", action="store_true", help="score the runs already in --out again (no run)")
    parser.add_argument("--profiles", type=Path, default=None, help="--rescore: profiles from this characterisation "
                        "(default OUT/characterize)")
    parser.add_argument("--characterize-only", action="store_true", help="fake: only step 1 (profiles into OUT)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/colobench-predict-bench"))
    parser.add_argument("--only", type=int, default=None, help="the first N models of the zoo (a quick look)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0, help="fake: seconds a repetition")
    parser.add_argument("--aa", type=int, default=4, help="pairs run twice (the A/A noise floor)")
    parser.add_argument("--region-pairs", type=int, default=2)
    parser.add_argument("--slo-target", type=float, default=0.95)
    parser.add_argument("--cross-model-penalty", type=float, default=0.1)
    parser.add_argument("--crowding-penalty", type=float, default=0.5)
    parser.add_argument("--crowding-streams", type=int, default=12)
    parser.add_argument("--cpu-threads", type=int, default=1, help="cpu: torch threads an instance (2 on a 2-core "
                        "box oversubscribes it beside a probe: OpenMP's spinning threads then slow 10x and more)")
    parser.add_argument("--cpu-requests", type=int, default=12, help="cpu: batches a repetition")
    parser.add_argument("--cpu-levels", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--cpu-models", type=int, default=3, help="cpu: the first N checkpoints of the zoo")
    args = parser.parse_args()
    if args.only:
        for zoo in (ZOO, CPU_ZOO):
            for name in list(zoo)[args.only:]:
                del zoo[name]
    if args.rescore:
        results = rescore(args)
        (args.out / "rescored.json").write_text(json.dumps(results, indent=1, default=str))
        return
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out}: not empty; choose another --out")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = {"fake": run_fake, "cpu": run_cpu, "device": run_device}[args.part](args)
    results["wall_s"] = round(time.monotonic() - started)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"\n{args.part}: {results['wall_s']} s; results in {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
