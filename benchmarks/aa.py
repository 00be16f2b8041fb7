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
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from colobench import api
from colobench.analysis.compare import compare, entries, overall

FLAGGED_TARGET = 1 / 20


def run_once(out: Path, experiment: str | None) -> float:
    cmd = [sys.executable, "-m", "colobench", "run", *([experiment] if experiment else []), "-o", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


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
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
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
