"""Tables of `colobench characterize` (each instance's demand and sensitivity curves) and
`colobench predict` (the predicted co-located figures, their intervals, the SLO verdict and the
resource that drives the slowdown)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from colobench.analysis.instance_profile import RESOURCES, InstanceProfile
from colobench.analysis.predict import Prediction
from colobench.text import printable


def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def print_profiles(profiles: list[InstanceProfile], console: Console) -> None:
    table = Table(title="solo profiles: demand at the measured load, and sensitivity (TPOT p50 slowdown at "
                  "each probe level achieved)", title_justify="left")
    for col in ("instance", "load", "TTFT p50 ms", "TPOT p50 ms", *RESOURCES, "sensitivity"):
        table.add_column(col, overflow="fold")
    for p in profiles:
        load = (f"{p.load.request_rate:.2f} req/s" if p.load.request_rate is not None else "-") + \
            ("" if p.load.mode == "open" else " (closed)")
        curves = "; ".join(f"{r}: " + ", ".join(f"{lv.level:.2f}->{_f(lv.slowdown.get('tpot_p50'))}x"
                                                 for lv in levels) for r, levels in p.sensitivity.items())
        table.add_row(printable(p.instance), load, _f(p.latency.ttft_ms.p50 if p.latency.ttft_ms else None, "{:.1f}"),
                      _f(p.latency.tpot_ms.p50 if p.latency.tpot_ms else None, "{:.2f}"),
                      *[_f(p.demand[r].value) if r in p.demand else "-" for r in RESOURCES], curves or "-")
    console.print(table)


def print_prediction(prediction: Prediction, console: Console, measured: dict[str, dict[str, float | None]] | None = None
                     ) -> None:
    """The prediction per instance; with `measured` (instance -> slowdown key -> value), beside it."""
    table = Table(title="predicted co-location (slowdown = together / alone, 95% interval)", title_justify="left")
    cols = ["instance", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "throughput", "SLO", "driver"]
    for col in cols:
        table.add_column(col, overflow="fold")
    for name, inst in prediction.instances.items():
        def cell(key: str) -> str:
            lo, hi = inst.intervals.get(key, (None, None))
            text = f"{inst.slowdown[key]:.2f}x [{_f(lo)}, {_f(hi)}]"
            if measured and name in measured and measured[name].get(key) is not None:
                text += f"\nmeasured {measured[name][key]:.2f}x"
            return text
        slo = "-"
        if inst.slo_attainment is not None:
            slo = f"{inst.slo_verdict}: {inst.slo_attainment:.1%}"
        table.add_row(printable(name), *(cell(k) for k in ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99",
                                                           "output_throughput")),
                      slo, printable(inst.driver_sentence) + (" (saturated)" if inst.saturated else ""))
    console.print(table)
    region = prediction.region
    if region is not None and region.boundary:
        rt = Table(title=f"predicted capacity region of {' + '.join(region.instances)} (load = sum rate/solo "
                   "capacity; 1.0 = perfect sharing)", title_justify="left")
        for col in ("share", *[f"{n} req/s" for n in region.instances], "load", "limited by"):
            rt.add_column(col)
        for b in region.boundary:
            rt.add_row(f"{b.share:.2f}", *(f"{b.rates[n]:.2f}" for n in region.instances), f"{b.load:.3f}",
                       printable(b.limited_by))
        console.print(rt)
    for note in prediction.notes:
        console.print(f"note: {printable(note)}")
