"""Local launcher against Ray launcher on the same experiment (a benchmark, not a test).

Runs one co-location experiment (two instances, solo baselines, then together) with the local
launcher and then as Ray actors on a private Ray instance, and prints side by side: wall time
of the whole experiment, the start skew of the co-located instances (largest gap between their
first measured submissions in a repetition), each instance's TPOT and tokens/s, and for Ray the
clock-offset estimates with their error bound. A launcher that distorts the measurement shows
up as a TPOT or throughput gap beyond the run-to-run noise, or a start skew far above the local
launcher's.

    python benchmarks/ray_launcher.py                           # CPU, tiny preset
    python benchmarks/ray_launcher.py --device cuda:0 --preset llama-3.2-1b
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from colobench import api  # noqa: E402
from colobench.records import read_jsonl  # noqa: E402
from colobench.specs import experiment_from_dict  # noqa: E402


def start_skew_ms(run_dir: Path, names: list[str]) -> float:
    firsts: dict[tuple[str, int], int] = {}
    for name in names:
        for r in read_jsonl(run_dir / "runs" / "colocated" / "records" / f"{name}.jsonl"):
            if not r["warmup"]:
                key = (name, r["repetition"])
                firsts[key] = min(firsts.get(key, r["submit_ns"]), r["submit_ns"])
    reps = {rep for _, rep in firsts}
    return max(max(firsts[(n, rep)] for n in names) - min(firsts[(n, rep)] for n in names) for rep in reps) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--requests", type=int, default=32)
    args = parser.parse_args()
    names = ["a", "b"]
    base = {"name": "launchers", "repetitions": 3, "telemetry": {"idle_s": 0},
            "workload": {"prompt_tokens": 128, "output_tokens": 64, "requests": args.requests, "batch_size": 4},
            "instances": [{"name": n, "model": args.preset, "device": args.device} for n in names]}
    rows = {}
    with tempfile.TemporaryDirectory(prefix="cbbench") as tmp:
        for launcher in ("local", "ray"):
            data = dict(base)
            if launcher == "ray":
                data["launch"] = {"kind": "ray", "address": "local", "temp_dir": str(Path(tmp) / "session")}
            t0 = time.perf_counter()
            result = api.run_experiment(experiment_from_dict(data, "bench"), out=Path(tmp) / launcher)
            wall = time.perf_counter() - t0
            summary = result.summary
            rows[launcher] = {"wall_s": wall, "skew_ms": start_skew_ms(result.run_dir, names), "summary": summary}
            if launcher == "ray":
                manifest = json.loads((result.run_dir / "manifest.json").read_text())
                clocks = {n: a["clock"] for n, a in manifest["ray"]["colocated"]["actors"].items()}
    print(f"{'':28}{'local':>14}{'ray':>14}")
    print(f"{'experiment wall time s':28}{rows['local']['wall_s']:>14.1f}{rows['ray']['wall_s']:>14.1f}")
    print(f"{'co-located start skew ms':28}{rows['local']['skew_ms']:>14.2f}{rows['ray']['skew_ms']:>14.2f}")
    for phase in ("solo", "colocated"):
        for n in names:
            for key, label in (("mean_tpot_ms", "TPOT ms"), ("output_throughput", "tok/s")):
                lo, ra = (rows[x]["summary"]["phases"][phase][n][key] for x in ("local", "ray"))
                print(f"{f'{phase} {n} {label}':28}{lo:>14.2f}{ra:>14.2f}   ray/local {ra / lo:.3f}")
    scaling = [rows[x]["summary"]["interference"]["throughput_scaling"] for x in ("local", "ray")]
    print(f"{'throughput scaling':28}{scaling[0]:>14.2f}{scaling[1]:>14.2f}")
    for n, c in clocks.items():
        print(f"ray clock {n}: estimated offset {c['offset_ns'] / 1e3:.1f} us +- {c['error_ns'] / 1e3:.1f} us "
              f"(median round trip {c['rtt_median_ns'] / 1e3:.0f} us), applied {c['applied_offset_ns']} ns, "
              f"drift over the run {c.get('drift_ns', 0) / 1e3:.1f} us")


if __name__ == "__main__":
    main()
