"""Optimization variants side by side (a benchmark, not a test).

For each preset: bf16 (float32 on CPU) eager at batch 1, compiled at batch 1, eager at batch 8,
and int8 weight-only at batch 1, 128-token prompts, measured by colobench itself in one run;
prints tokens/s, TPOT, achieved bandwidth and MBU, and the ratios the optimization issue targets:
compiled / eager at batch 1 (>= 4x on an H100), batch 8 / batch 1 throughput (>= 7x), int8 /
bf16 at batch 1 (>= 1.4x), and compiled batch 1 against the bandwidth roofline (>= 70%).

    python benchmarks/optimization.py                                  # CPU: the tiny preset
    python benchmarks/optimization.py --presets tiny,llama-3.2-1b      # CPU, both presets (slow)
    python benchmarks/optimization.py --device cuda:0 --presets llama-3.2-1b
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from colobench import api  # noqa: E402
from colobench.specs import experiment_from_dict  # noqa: E402

VARIANTS = [("eager-bs1", {"graph": "eager"}, 1), ("compiled-bs1", {"graph": "compiled"}, 1),
            ("eager-bs8", {"graph": "eager"}, 8), ("int8-bs1", {"graph": "eager", "quantization": "int8"}, 1)]


def measure(preset: str, device: str, output_tokens: int, requests: int) -> dict:
    dtype = "float32" if device == "cpu" else "bfloat16"
    instances = [{"name": label, "model": preset, "device": device, "dtype": dtype, **fields,
                  "workload": {"batch_size": batch, "requests": max(requests, batch * 2)}}
                 for label, fields, batch in VARIANTS]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for inst in instances:  # one instance at a time: each alone on the device
            spec = experiment_from_dict({"name": inst["name"], "repetitions": 2, "instances": [inst],
                                         "workload": {"prompt_tokens": 128, "output_tokens": output_tokens}}, "bench")
            summary = api.run_experiment(spec, out=Path(tmp) / inst["name"]).summary
            m = summary["phases"]["solo"][inst["name"]]
            rows[inst["name"]] = {"tok_s": m["output_throughput"], "tpot_ms": m["mean_tpot_ms"],
                                  "bandwidth_gb_s": (m.get("achieved_bandwidth_bytes_s") or 0) / 1e9,
                                  "mbu_pct": m.get("mbu_pct"), "warmup_s": m.get("warmup_s"),
                                  "weight_bytes": summary["instances"][inst["name"]].get("weight_bytes")}
    base = rows["eager-bs1"]["tok_s"]
    ratios = {"compiled_over_eager_bs1": rows["compiled-bs1"]["tok_s"] / base,
              "bs8_over_bs1": rows["eager-bs8"]["tok_s"] / base,
              "int8_over_bf16_bs1": rows["int8-bs1"]["tok_s"] / base,
              "compiled_bs1_mbu_pct": rows["compiled-bs1"]["mbu_pct"]}
    return {"preset": preset, "device": device, "rows": rows, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--presets", default="tiny")
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=8)
    args = parser.parse_args()
    results = [measure(p, args.device, args.output_tokens, args.requests) for p in args.presets.split(",")]
    for r in results:
        print(f"\n{r['preset']} on {r['device']}")
        print(f"{'variant':<14}{'tok/s':>10}{'TPOT ms':>10}{'GB/s':>8}{'MBU %':>8}{'warm-up s':>11}{'weights MiB':>13}")
        for label, row in r["rows"].items():
            mbu = f"{row['mbu_pct']:.1f}" if row["mbu_pct"] is not None else "-"
            print(f"{label:<14}{row['tok_s']:>10.1f}{row['tpot_ms']:>10.2f}{row['bandwidth_gb_s']:>8.1f}{mbu:>8}"
                  f"{row['warmup_s'] or 0:>11.1f}{(row['weight_bytes'] or 0) / 2**20:>13.1f}")
        q = r["ratios"]
        print(f"compiled/eager bs1 {q['compiled_over_eager_bs1']:.2f}x, bs8/bs1 {q['bs8_over_bs1']:.2f}x, "
              f"int8/bf16 bs1 {q['int8_over_bf16_bs1']:.2f}x")
    print(json.dumps(results, separators=(",", ":")))


if __name__ == "__main__":
    main()
