"""A/A test of colobench's own verdicts: run the same experiment several times and check that
identical runs are called identical.

    python benchmarks/aa.py                     # 5 pairs of the default job (about 8 minutes here)
    python benchmarks/aa.py --pairs 3 --experiment my.yaml --out /tmp/aa

Each run is `colobench run` as a user runs it (a subprocess, the default job unless an experiment
file is given). Printed:

- per pair, `colobench compare`'s overall sentence and how many metrics it flagged beyond noise
  (better / worse) out of how many it could judge; the average share over the pairs (target: at
  most 1 in 20);
- every run's scaling with its interval and verdict (target: never both "ok" and "bottleneck"
  among runs of the same command).

Exit status 0 when both targets hold, 1 otherwise. Figures for docs/benchmarks.md.

    python benchmarks/aa.py --spaced            # three runs >= 10 minutes apart, a hog during one

Spaced mode is the cross-run test: three identical runs of the experiment, `--gap-min` minutes
between their starts, with a two-process CPU hog (started here, stopped by its pid) running
through the second. Printed: each pairwise `colobench compare` (target: at most 1 in 20 metrics
better or worse, and the pairs with the hogged run name the host shift), then a planted
slowdown: a fake-backend experiment, quiet, against the same with every timing 10% slower and the
hog running (target: reported worse, most metrics beyond the host shift).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import multiprocessing as mp
import os
import signal

from colobench import api
from colobench.analysis.compare import compare, entries, overall, shifts_of

FLAGGED_TARGET = 1 / 20


def run_once(out: Path, experiment: str | None) -> float:
    cmd = [sys.executable, "-m", "colobench", "run", *([experiment] if experiment else []), "-o", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def _spin() -> None:
    while True:
        pass


class Hog:
    """`n` processes spinning on the CPU, from `start()` to `stop()` (ended by their pids)."""

    def __init__(self, n: int = 2):
        self.n, self.procs = n, []

    def __enter__(self) -> "Hog":
        ctx = mp.get_context("spawn")
        self.procs = [ctx.Process(target=_spin, daemon=True) for _ in range(self.n)]
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
            p.join(5)


def judged_pair(a: Path, b: Path) -> tuple[int, int, str, bool]:
    """(flagged better/worse, metrics with an interval, compare's sentence, host shift named)."""
    sa, sb = api.load_summary(a), api.load_summary(b)
    shifts = shifts_of([sa.host_reference, sb.host_reference])
    rows = compare([entries(sa), entries(sb)], shifts=shifts)
    with_interval = [r for r in rows if r.verdicts[0] not in ("single figure", "no interval")]
    flagged = [r for r in with_interval if r.verdicts[0] in ("better", "worse")]
    return len(flagged), len(with_interval), overall(rows, 0, shifts[0], b.name), shifts[0].shifted


PLANTED = """name: planted
repetitions: 5
instances:
  - {{name: a, model: fake, backend: fake, fake: {{ttft_ms: {ttft}, tpot_ms: {tpot}}}}}
  - {{name: b, model: fake, backend: fake, fake: {{ttft_ms: {ttft}, tpot_ms: {tpot}}}}}
workload: {{requests: 16, batch_size: 4, output_tokens: 16, prompt_tokens: 32}}
"""


def spaced(args: argparse.Namespace) -> int:
    runs = [args.out / f"spaced-{k}" for k in (1, 2, 3)]
    started = []
    for k, run in enumerate(runs):
        if k:
            wait = started[-1] + args.gap_min * 60 - time.time()
            if wait > 0 and not (run / "summary.json").exists():
                print(f"waiting {wait / 60:.1f} min before run {k + 1}", flush=True)
                time.sleep(wait)
        started.append(time.time())
        if not (run / "summary.json").exists():
            if k == 1:
                with Hog():
                    wall = run_once(run, args.experiment)
            else:
                wall = run_once(run, args.experiment)
            print(f"run {k + 1}{' (CPU hog running)' if k == 1 else ''}: {wall:.0f} s at "
                  f"{time.strftime('%H:%M:%S')}", flush=True)
    shares, named = [], []
    for i, j in ((0, 1), (0, 2), (1, 2)):
        flagged, judged, sentence, shifted = judged_pair(runs[i], runs[j])
        shares.append(flagged / judged if judged else 0.0)
        if 1 in (i, j):
            named.append(shifted)
        print(f"run {j + 1} against run {i + 1}: {flagged} of {judged} metrics better or worse; {sentence}")
    quiet, slow = args.out / "planted-a", args.out / "planted-b"
    for path, factor in ((quiet, 1.0), (slow, 1.1)):
        spec = path.with_suffix(".yaml")
        spec.write_text(PLANTED.format(ttft=20 * factor, tpot=4 * factor), encoding="utf-8")
        if not (path / "summary.json").exists():
            if factor > 1:
                with Hog():
                    run_once(path, str(spec))
            else:
                run_once(path, str(spec))
    sa, sb = api.load_summary(quiet), api.load_summary(slow)
    shifts = shifts_of([sa.host_reference, sb.host_reference])
    rows = compare([entries(sa), entries(sb)], shifts=shifts)
    timed = [r for r in rows if r.verdicts[0] not in ("single figure", "no interval")]
    worse = [r for r in timed if r.verdicts[0] == "worse"]
    print(f"planted 10% slowdown with the hog in B: {len(worse)} of {len(timed)} metrics worse; "
          f"{overall(rows, 0, shifts[0], 'B')}")
    share = max(shares)
    print(f"\nspaced A/A: at most {share * 100:.1f}% of metrics better or worse in a pair (target at most "
          f"{FLAGGED_TARGET * 100:.0f}%); host shift named in {sum(named)} of {len(named)} pairs with the hogged run; "
          f"planted slowdown: {len(worse)} of {len(timed)} worse")
    ok = share <= FLAGGED_TARGET and all(named) and len(worse) >= len(timed) / 2
    print(json.dumps({"max_flagged_share": round(share, 4), "shift_named": named, "planted_worse": len(worse),
                      "planted_timed": len(timed), "ok": ok}))
    return 0 if ok else 1


def scaling_of(run: Path) -> tuple[str, str]:
    summary = api.load_summary(run)
    check = next((c for c in summary.checks if c.kind == "scaling" and c.subject.instance is None), None)
    inter = summary.point().interference
    iv = inter.throughput_scaling_interval
    shown = (f"{inter.throughput_scaling:.2f}x" + (f" [{iv[0]:.2f}, {iv[1]:.2f}]" if iv else "")
             if inter.throughput_scaling is not None else "-")
    return shown, check.verdict if check else "none"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--experiment", default=None, help="an experiment file (default: the default job)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/colobench-aa"))
    parser.add_argument("--spaced", action="store_true", help="three runs --gap-min apart, a CPU hog during the second, "
                        "and a planted slowdown")
    parser.add_argument("--gap-min", type=float, default=5.0, help="spaced mode: minutes between the runs' starts")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.spaced:
        return spaced(args)
    shares, verdicts, walls = [], [], []
    print(f"A/A: {args.pairs} pairs of {'the default job' if not args.experiment else args.experiment}")
    for k in range(args.pairs):
        a, b = args.out / f"pair{k + 1}-a", args.out / f"pair{k + 1}-b"
        for run in (a, b):
            if not (run / "summary.json").exists():
                walls.append(run_once(run, args.experiment))
        rows = compare([entries(api.load_summary(a)), entries(api.load_summary(b))])
        judged = [r for r in rows if r.verdicts[0] not in ("single figure", "no interval")]
        flagged = [f"{r.subject} {r.metric} {r.verdicts[0]} {r.ratios[0]:.3f}x" for r in judged
                   if r.verdicts[0] in ("better", "worse")]
        shares.append(len(flagged) / len(judged) if judged else float("nan"))
        for run in (a, b):
            verdicts.append(scaling_of(run))
        print(f"pair {k + 1}: {len(flagged)} of {len(judged)} metrics beyond noise; {overall(rows)}")
        for line in flagged:
            print(f"    {line}")
    mean_share = sum(shares) / len(shares)
    print(f"\nflagged beyond noise: {mean_share * 100:.1f}% of compared metrics on average "
          f"(target at most {FLAGGED_TARGET * 100:.0f}%)")
    print("scaling of each run: " + "; ".join(f"{s} {v}" for s, v in verdicts))
    seen = {v for _, v in verdicts}
    flip = {"ok", "bottleneck"} <= seen
    print(f"verdicts seen: {', '.join(sorted(seen))}" + (" (FLIPS between ok and bottleneck)" if flip else ""))
    if walls:
        print(f"wall time per run: {min(walls):.0f}-{max(walls):.0f} s")
    print(json.dumps({"pairs": args.pairs, "mean_flagged_share": round(mean_share, 4), "verdicts": sorted(seen),
                      "flip": flip}))
    return 0 if mean_share <= FLAGGED_TARGET and not flip else 1


if __name__ == "__main__":
    sys.exit(main())
