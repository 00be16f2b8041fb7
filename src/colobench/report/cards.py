"""The headline of a co-located group, as data the console and the HTML both render first.

One card per point that has a co-located run: the aggregate throughput scaling with its 95%
interval and verdict (ok / bottleneck / inconclusive / not judged), and for each instance its
slowdown on the latency it is judged by (TPOT, or end-to-end latency for one-token outputs) and
on TTFT, each with its interval, its throughput ratio, the share of its measured time that
really overlapped its partners, and the validity of its solo and co-located phases. Everything
here is read from the summary; the card only chooses and rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from colobench.analysis.checks import headline as headline_metric
from colobench.analysis.model import Check, Point, Summary

LABELS = {"tpot": "TPOT", "e2el": "E2E", "ttft": "TTFT"}


@dataclass
class Ratio:
    label: str
    value: float | None
    interval: tuple[float, float] | None
    beyond_noise: bool | None

    def text(self) -> str:
        if self.value is None:
            return f"{self.label} -"
        iv = f" [{self.interval[0]:.2f}, {self.interval[1]:.2f}]" if self.interval else " (no interval)"
        return f"{self.label} {self.value:.2f}x{iv}"


@dataclass
class InstanceLine:
    name: str
    device: str
    slowdowns: list[Ratio]
    throughput: Ratio
    overlap_fraction: float | None
    validity: dict[str, str]  # phase -> VALID / INVALID
    excluded: bool = False  # no partner was under load: no slowdown computed
    predicted: str | None = None  # the slowdown the solo profiles predicted, with its driver


@dataclass
class Card:
    point: str
    instances: list[InstanceLine] = field(default_factory=list)
    scaling: float | None = None
    scaling_interval: tuple[float, float] | None = None
    ideal: int | None = None
    verdict: str = "not judged"
    sentence: str = ""

    @property
    def title(self) -> str:
        devices = sorted({i.device for i in self.instances})
        names = " + ".join(i.name for i in self.instances)
        return f"{names} on {', '.join(devices)}" + (f" [{self.point}]" if self.point else "")

    def scaling_text(self) -> str:
        if self.scaling is None:
            return "scaling: not computed"
        iv = (f" [{self.scaling_interval[0]:.2f}, {self.scaling_interval[1]:.2f}]" if self.scaling_interval
              else " (no interval: fewer than 3 repetitions)")
        return f"scaling {self.scaling:.2f}x{iv} of ideal {self.ideal}x: {self.verdict}"


def _scaling_check(checks: list[Check], point: str) -> Check | None:
    return next((c for c in checks if c.kind == "scaling" and c.subject.point == point
                 and c.subject.instance is None), None)


def card(point: Point, checks: list[Check]) -> Card | None:
    """The card of one point, or None when it has no co-located run."""
    coloc = point.phases.get("colocated") or {}
    if not coloc:
        return None
    inter = point.interference
    check = _scaling_check(checks, point.id)
    out = Card(point=point.id, scaling=inter.throughput_scaling, scaling_interval=inter.throughput_scaling_interval,
               ideal=inter.ideal_scaling, verdict=check.verdict.replace("_", " ") if check else "not judged",
               sentence=check.sentence if check else "")
    for name, mt in coloc.items():
        s = inter.slowdown.get(name)
        head = headline_metric(mt)
        ratios = []
        for metric in (head, "ttft"):
            key = f"{metric}_p50"
            ratios.append(Ratio(f"{LABELS[metric]} p50", getattr(s, key) if s else None,
                                s.intervals.get(key) if s else None, s.beyond_noise.get(key) if s else None))
        tput = Ratio("tok/s", s.output_throughput if s else None, s.intervals.get("output_throughput") if s else None,
                     s.beyond_noise.get("output_throughput") if s else None)
        validity = {phase: by[name].validity.verdict for phase, by in point.phases.items()
                    if name in by and by[name].validity is not None}
        predicted = None
        if (pred := inter.predicted.get(name)) is not None and pred.method == "unmeasured":
            predicted = f"no prediction: {pred.driver_sentence}"
        elif pred is not None and f"{head}_p50" in pred.slowdown:
            key = f"{head}_p50"
            lo, hi = pred.intervals[key]
            err = pred.error_pct.get(key)
            predicted = (f"predicted {LABELS[head]} p50 {pred.slowdown[key]:.2f}x [{lo:.2f}, {hi:.2f}] from the solo "
                         f"profiles ({pred.method}" + (f"; off by {err:+.0f}%" if err is not None else "")
                         + f"); {pred.driver_sentence}")
        out.instances.append(InstanceLine(name=name, device=point.instances[name].device if name in point.instances
                                          else "?", slowdowns=ratios, throughput=tput,
                                          overlap_fraction=mt.overlap_fraction, validity=validity,
                                          excluded=name in inter.excluded, predicted=predicted))
    return out


def cards(summary: Summary) -> list[Card]:
    return [c for p in summary.points if (c := card(p, summary.checks)) is not None]
