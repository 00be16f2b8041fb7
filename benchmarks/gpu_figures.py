"""The figures `benchmarks/gpu.sh` records, read from its run directories as markdown rows.

    python benchmarks/gpu_figures.py RUN_DIR [RUN_DIR ...]

Per instance-phase of every point: the axes, output tokens/s with its 95% interval over the
repetitions, TPOT, the decode bandwidth and MBU against the card's peak, NVML GPM's measured DRAM
bandwidth beside it (and whether they agree within 10 points), energy per token; per point with
a co-located run, the scaling with its interval and verdict and the device's energy per token of
all instances together; per variant, token agreement against its reference.
"""

from __future__ import annotations

import sys

from colobench import api


def _f(value, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)


def main(paths: list[str]) -> None:
    print("| run | point | instance | phase | tok/s [95% CI] | TPOT ms | bandwidth GB/s | MBU % | GPM DRAM % "
          "| agree | mJ/token | token agreement |")
    print("|" + "---|" * 12)
    cards = []
    for path in paths:
        summary = api.load_summary(path)
        for point in summary.points:
            for phase, name, mt in point.rows():
                reps = mt.repetition_stats.summary("output_throughput") if mt.repetition_stats else None
                ci = f" [{reps.ci95_low:.4g}, {reps.ci95_high:.4g}]" if reps is not None and reps.ci95_low is not None else ""
                roof = mt.roofline
                gpm = roof.gpm_dram_bw_util_pct if roof is not None else None
                agree = "-" if roof is None or roof.gpm_agrees is None else ("yes" if roof.gpm_agrees else "NO")
                bw = mt.achieved_bandwidth_bytes_s / 1e9 if mt.achieved_bandwidth_bytes_s else None
                quality = f"{mt.quality.token_agreement * 100:.1f}%" if mt.quality else "-"
                energy = mt.energy_per_token_j * 1e3 if mt.energy_per_token_j else None
                print(f"| {path} | {point.id or '-'} | {name} | {phase} | {_f(mt.output_throughput, '.4g')}{ci} "
                      f"| {_f(mt.mean_tpot_ms)} | {_f(bw)} | {_f(mt.mbu_pct, '.1f')} | {_f(gpm, '.1f')} | {agree} "
                      f"| {_f(energy)} | {quality} |")
            inter = point.interference
            if inter.throughput_scaling is not None:
                check = next((c for c in summary.checks if c.kind == "scaling" and c.subject.point == point.id
                              and c.subject.instance is None), None)
                iv = inter.throughput_scaling_interval
                shared = "; ".join(f"{dev}: {e.energy_per_token_j * 1e3:.3g} mJ/token together"
                                   for dev, e in point.energy.colocated.items() if e.energy_per_token_j)
                cards.append(f"{path} {point.id or ''}: scaling {inter.throughput_scaling:.2f}x"
                             + (f" [{iv[0]:.2f}, {iv[1]:.2f}]" if iv else "")
                             + f" {check.verdict if check else ''}" + (f"; {shared}" if shared else ""))
    for line in cards:
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
