"""One detector per root cause. Each takes the data of one point (or one instance-phase) and
returns findings; none prints, none guesses without numbers.

Each registers itself by its scope (`point_detector`, `phase_detector`, `sweep_detector`); the
diagnosis runs every registered detector, in the order they are defined here. Their thresholds
are in the one table of `analysis.checks.Thresholds`; each detector's docstring says what it
looks for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from colobench.analysis import metrics as m
from colobench.analysis.diagnosis.remedies import remedy
from colobench.analysis.diagnosis.robust import merge_windows, outliers
from colobench.analysis.checks import THRESHOLDS as T
from colobench.analysis.distribution import difference_is_significant
from colobench.analysis.model import Check, Finding, FindingKind, InstanceFacts, PhaseMetrics, Subject, Window
from colobench.devices import kind_of
from colobench.records import RequestRecord

# out of memory as CUDA, Ascend (torch_npu's "NPU out of memory", CANN's EL0004 "Failed to allocate
# memory"), the CPU allocator and the kernel say it
OOM = re.compile(r"out of memory|OutOfMemoryError|Cannot allocate memory|Failed to allocate memory|\bEL0004\b|"
                 r"\bMemoryError\b|oom-kill", re.IGNORECASE)


@dataclass
class PhaseData:
    point: str
    run_id: str
    phase: str
    name: str
    device: str
    backend: str
    records: list[RequestRecord]  # measured, successful
    warmup: list[RequestRecord]
    metrics: PhaseMetrics
    facts: InstanceFacts
    samples: list[dict[str, Any]]
    gc: list[dict[str, Any]]
    origin_ns: int  # the run's first start: windows are also given in seconds from here
    logical_cores: int = 1
    failed: list[RequestRecord] = field(default_factory=list)  # measured requests that failed
    worker_reason: str | None = None  # why its worker stopped, when it did not complete
    log_tail: Callable[[], str] = lambda: ""  # the end of its worker logs, read when a detector asks

    @property
    def subject(self) -> Subject:
        return Subject(point=self.point, instance=self.name, phase=self.phase)

    def windows(self, windows: list[list[int]]) -> list[Window]:
        return [Window(run_id=self.run_id, start_ns=a, end_ns=b, start_s=round((a - self.origin_ns) / 1e9, 3),
                       end_s=round((b - self.origin_ns) / 1e9, 3)) for a, b in windows]

    def finding(self, kind: FindingKind, severity: str, title: str, evidence: dict[str, Any], windows: list[list[int]],
                score: float) -> Finding:
        return Finding(kind=kind, severity=severity, subjects=[self.subject], title=title, evidence=evidence,
                       windows=self.windows(windows), score=score, point=self.point,
                       recommendation=remedy(kind, self.device))


@dataclass
class PointData:
    id: str
    axes: dict[str, Any]
    phases: dict[tuple[str, str], PhaseData] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)


PointDetector = Callable[["PointData"], list[Finding]]
PhaseDetector = Callable[[PhaseData], list[Finding]]
SweepDetector = Callable[[list["PointData"]], list[Finding]]
# every detector, in the order it runs (the order ties between equally ranked findings keep)
POINT_DETECTORS: list[PointDetector] = []  # a point's co-located instances together
PHASE_DETECTORS: list[PhaseDetector] = []  # one instance in one phase
SWEEP_DETECTORS: list[SweepDetector] = []  # across a sweep's points


def point_detector(func: PointDetector) -> PointDetector:
    POINT_DETECTORS.append(func)
    return func


def phase_detector(func: PhaseDetector) -> PhaseDetector:
    PHASE_DETECTORS.append(func)
    return func


def sweep_detector(func: SweepDetector) -> SweepDetector:
    SWEEP_DETECTORS.append(func)
    return func


def _window(p: PhaseData) -> list[list[int]]:
    """The phase's measured windows (one per repetition; interleaved with other phases' windows)."""
    if p.metrics.repetition_windows_ns:
        return [list(w) for w in p.metrics.repetition_windows_ns]
    return [list(p.metrics.window_ns)] if p.metrics.window_ns else []


def _device_samples(p: PhaseData) -> list[dict[str, Any]]:
    return [s for s in p.samples if s["device"] == p.device and any(a <= s["t_ns"] <= b for a, b in _window(p))]


def _slow_steps(p: PhaseData) -> list[list[int]]:
    """[start, end] of decode steps that took far longer than usual (median + 6 MAD), one per step
    (requests of a static batch share their steps)."""
    gaps: dict[tuple[int, int], int] = {}
    for r in p.records:
        for a, b in zip(r.token_ns, r.token_ns[1:]):
            gaps[(a, b)] = b - a
    if not gaps:
        return []
    keys = list(gaps)
    idx = outliers(np.array([gaps[k] for k in keys], dtype=np.float64))
    return [list(keys[i]) for i in idx]


# ---- co-location ---------------------------------------------------------------------------------

IMPLAUSIBLE_MBU_PCT = 100.0  # above the peak: not memory traffic (the `implausible` check says why)

@point_detector
def bandwidth_contention(point: PointData) -> list[Finding]:
    """Co-located step time up by 20% or more while memory bandwidth sits near the device's peak
    (telemetry's DRAM/HBM bandwidth utilisation, else the instances' summed MBU)."""
    out = []
    coloc = {n: p for (ph, n), p in point.phases.items() if ph == "colocated"}
    summed_mbu = sum(p.metrics.mbu_pct or 0 for p in coloc.values())
    for name, p in coloc.items():
        solo = point.phases.get(("solo", name))
        if solo is None or not solo.metrics.mean_tpot_ms or not p.metrics.mean_tpot_ms:
            continue
        ratio = p.metrics.mean_tpot_ms / solo.metrics.mean_tpot_ms
        telemetry = p.metrics.device_telemetry
        measured = (telemetry.dram_bw_util_pct or telemetry.hbm_bw_util_pct) if telemetry else None
        measured_bw = measured.mean if measured else None
        # the instances' MBU added up, unless that is impossible (then the bandwidth is not known)
        bandwidth = measured_bw if measured_bw is not None else (
            summed_mbu if 0 < summed_mbu <= IMPLAUSIBLE_MBU_PCT else None)
        significant = difference_is_significant([m.tpot_ns(r) for r in p.records if m.tpot_ns(r)],
                                                [m.tpot_ns(r) for r in solo.records if m.tpot_ns(r)])
        if ratio >= T.slowdown_for_contention and significant and bandwidth is not None \
                and bandwidth >= T.bandwidth_near_peak_pct:
            source = "measured" if measured_bw is not None else "the instances' MBU added up"
            out.append(p.finding(
                "bandwidth_contention", "high" if ratio >= 1.5 else "medium",
                f"memory-bandwidth contention: {name}'s TPOT rises {ratio:.2f}x while bandwidth sits at "
                f"{bandwidth:.0f}% of peak ({source})",
                {"tpot_solo_ms": solo.metrics.mean_tpot_ms, "tpot_colocated_ms": p.metrics.mean_tpot_ms,
                 "slowdown": ratio, "bandwidth_pct_of_peak": bandwidth, "bandwidth_source": source},
                _window(p), ratio))
    return out


@point_detector
def bandwidth_near_peak(point: PointData) -> list[Finding]:
    """Memory bandwidth at `T.bandwidth_near_peak_pct` of the device's peak or more: one instance
    alone, or the instances of the co-located run on one device together. The evidence is the
    table inference engineers build by hand: each instance's bandwidth alone and together, the
    sum, and the peak with its source."""
    out = []
    by_device: dict[str, list[PhaseData]] = {}
    for p in point.phases.values():
        if p.metrics.mbu_pct is not None:
            by_device.setdefault(p.device, []).append(p)
    for device, phases in by_device.items():
        solo = [p for p in phases if p.phase == "solo"]
        coloc = [p for p in phases if p.phase == "colocated"]
        together = sum(p.metrics.mbu_pct for p in coloc) if len(coloc) > 1 else None
        worst_alone = max((p.metrics.mbu_pct for p in solo), default=None)
        if max(together or 0, worst_alone or 0) < T.bandwidth_near_peak_pct:
            continue
        peak = coloc[0].metrics.roofline.peak if coloc else solo[0].metrics.roofline.peak
        rows = [{"instance": p.name, "phase": p.phase, "bandwidth_gb_s": round(p.metrics.achieved_bandwidth_bytes_s / 1e9, 2),
                 "mbu_pct": round(p.metrics.mbu_pct, 1)} for p in solo + coloc]
        if together is not None:
            rows.append({"instance": "together", "phase": "colocated",
                         "bandwidth_gb_s": round(sum(p.metrics.achieved_bandwidth_bytes_s for p in coloc) / 1e9, 2),
                         "mbu_pct": round(together, 1)})
        worst = max(together or 0, worst_alone or 0)
        wrong = [p for p in solo + coloc if p.metrics.mbu_pct > IMPLAUSIBLE_MBU_PCT]
        if wrong or worst > IMPLAUSIBLE_MBU_PCT:  # no cause is built on a figure that cannot be true
            out.append(_implausible_bandwidth(device, wrong or coloc, together, peak))
            continue
        parts = []
        if together is not None:
            parts.append(f"together {together:.0f}% (" + ", ".join(f"{p.name} {p.metrics.mbu_pct:.0f}%" for p in coloc)
                         + ")")
        if solo:
            parts.append("alone " + ", ".join(f"{p.name} {p.metrics.mbu_pct:.0f}%" for p in solo))
        note = ""
        source = peak.source if peak is not None else ""
        anchor = (coloc or solo)[0]
        out.append(anchor.finding(
            "bandwidth_near_peak", "high" if worst >= 95 else "medium",
            f"memory bandwidth near the peak of {device} ({peak.memory_bandwidth_gb_s:,.1f} GB/s, {source}): "
            + "; ".join(parts) + note,
            {"peak_gb_s": peak.memory_bandwidth_gb_s if peak else None, "peak_source": source,
             "threshold_pct": T.bandwidth_near_peak_pct, "table": rows},
            [w for p in solo + coloc for w in _window(p)], worst / 100))
    return out


def _implausible_bandwidth(device: str, phases: list[PhaseData], together: float | None, peak: Any) -> Finding:
    """The finding in place of a bandwidth cause when the figure itself cannot be true: which
    figure, and how to fix it (a measured peak, or a bytes model that counts what crosses the bus)."""
    figures = ", ".join(f"{p.name} ({p.phase}) {p.metrics.mbu_pct:.0f}%" for p in phases)
    if together is not None and together > IMPLAUSIBLE_MBU_PCT:
        figures += f"; together {together:.0f}%"
    source = f"{peak.memory_bandwidth_gb_s:,.1f} GB/s, {peak.source}" if peak is not None else "no peak figure"
    anchor = phases[0]
    return anchor.finding(
        "implausible_figure", "high",
        f"cannot judge memory bandwidth on {device}: MBU {figures} of the peak ({source}) is impossible as memory "
        "traffic, so no bandwidth cause or remedy is given",
        {"figure": "mbu_pct", "values": {f"{p.name}/{p.phase}": p.metrics.mbu_pct for p in phases},
         "together_pct": together, "peak_gb_s": peak.memory_bandwidth_gb_s if peak is not None else None,
         "peak_source": peak.source if peak is not None else None},
        [w for p in phases for w in _window(p)], 1.0)


@point_detector
def compute_contention(point: PointData) -> list[Finding]:
    """One instance's prefill windows line up with the other's slow decode steps on a shared
    accelerator: at least half of the slow steps overlap a prefill, and at least twice as often as
    chance would give. (Instances sharing host cores compete for CPU: `cpu_contention`.)"""
    out = []
    coloc = [p for (ph, _), p in point.phases.items() if ph == "colocated" and kind_of(p.device).accelerator]
    for victim in coloc:
        slow = _slow_steps(victim)
        windows = _window(victim)
        if len(slow) < 5 or not windows:
            continue
        span = sum(w1 - w0 for w0, w1 in windows)
        for culprit in coloc:
            if culprit is victim:
                continue
            prefill = merge_windows([[m.start_ns(r), r.token_ns[0]] for r in culprit.records])
            covered = sum(max(0, min(b, w1) - max(a, w0)) for a, b in prefill for w0, w1 in windows) / max(1, span)
            hits = [s for s in slow if any(a < s[1] and s[0] < b for a, b in prefill)]
            fraction = len(hits) / len(slow)
            if fraction >= T.slow_steps_overlap_fraction and fraction >= T.slow_steps_over_chance * covered:
                dev = victim.metrics.device_telemetry
                util = dev.util_pct.mean if dev is not None and dev.util_pct else None
                out.append(victim.finding(
                    "compute_contention", "high" if util is not None and util >= 90 else "medium",
                    f"compute contention: {len(hits)} of {len(slow)} slow decode steps of {victim.name} overlap "
                    f"prefills of {culprit.name} ({fraction * 100:.0f}%, chance {covered * 100:.0f}%)",
                    {"slow_steps": len(slow), "overlapping": len(hits), "overlap_fraction": fraction,
                     "chance_fraction": covered, "culprit": culprit.name, "device_util_pct": util},
                    merge_windows(hits)[:20], fraction / max(covered, 1e-3)))
    return out


@point_detector
def cpu_contention(point: PointData) -> list[Finding]:
    """Workers fighting over host cores: load average above the core count during a phase,
    co-located CPU workers asking for more threads than there are cores, or processes outside the
    run taking `T.outside_busy_pct` of a core or more while the host is busy (named: a CPU hog
    explains slow steps that would otherwise be blamed on the partner)."""
    out = []
    coloc = [p for (ph, _), p in point.phases.items() if ph == "colocated"]
    host_compute = [p for p in coloc if not kind_of(p.device).accelerator and kind_of(p.device).visible]
    threads = sum(p.facts.cpu_threads or 1 for p in host_compute)
    for p in point.phases.values():
        host = p.metrics.host
        load = host.load_1m.mean if host is not None and host.load_1m else None
        busy = host.cpu_pct.mean if host is not None and host.cpu_pct else None
        others = host.others if host is not None else []
        outside = sum(o.cpu_pct for o in others)
        over_threads = p.phase == "colocated" and p in host_compute and threads > p.logical_cores
        hog = outside >= T.outside_busy_pct and busy is not None and busy >= T.host_busy_pct
        if not ((load is not None and load > p.logical_cores) or over_threads or hog):
            continue
        named = ", ".join(f"{o.name} (pid {o.pid}, {o.cpu_pct:.0f}% of a core)" for o in others[:3])
        out.append(p.finding(
            "cpu_contention", "high" if outside >= 100 else "medium",
            f"CPU contention on the host: load {load or 0:.1f} on {p.logical_cores} cores"
            + (f", {threads} worker threads" if over_threads else "")
            + (f"; outside the run: {named}" if others else ""),
            {"load_1m": load, "logical_cores": p.logical_cores, "worker_threads": threads if over_threads else None,
             "host_cpu_pct": busy, "outside_cpu_pct": outside or None,
             "outside_processes": [o.model_dump() for o in others] or None},
            _window(p), max((load or threads) / max(1, p.logical_cores), outside / 100)))
    return out


@point_detector
def client_bound(point: PointData) -> list[Finding]:
    """The load generator judged itself the limit (its CPU, event-loop lag, concurrency or rate
    short): the `client_bound` checks of the point."""
    out = []
    for c in point.checks:
        p = point.phases.get((c.subject.phase, c.subject.instance)) if c.kind == "client_bound" else None
        if p is not None:
            out.append(p.finding("client_bound", "high", f"the load generator was the bottleneck for {p.name}",
                                 {"detail": c.sentence, "client": p.metrics.client.model_dump() if p.metrics.client
                                  else None}, _window(p), 1.0))
    return out


# ---- one instance-phase ----------------------------------------------------------------------------

@phase_detector
def host_bound_single(p: PhaseData) -> list[Finding]:
    """An accelerator worker's CPU thread is pegged while the device is mostly idle."""
    if not kind_of(p.device).accelerator:
        return []
    host = p.metrics.host
    worker = host.worker_cpu_pct.mean if host is not None and host.worker_cpu_pct else None
    util = p.metrics.mean_device_util_pct
    if worker is None or util is None or worker < T.worker_pegged_pct or util >= T.host_bound_low_util_pct:
        return []
    return [p.finding("host_bound", "high", f"host-bound: {p.name}'s worker thread is at {worker:.0f}% of a core "
                      f"while the device is busy {util:.0f}% of the time",
                      {"worker_cpu_pct": worker, "device_util_pct": util}, _window(p), worker / max(util, 1))]


@phase_detector
def warmup_outliers(p: PhaseData) -> list[Finding]:
    """Warm-up requests far slower than the measured median (compilation, allocator growth)."""
    if not p.warmup or not p.records:
        return []
    median = float(np.median([m.e2el_ns(r) for r in p.records]))
    slow = [r for r in p.warmup if r.ok and r.done_ns and m.e2el_ns(r) >= T.warmup_outlier_ratio * median]
    if not slow:
        return []
    worst = max(m.e2el_ns(r) for r in slow) / median
    return [p.finding("warmup_outliers", "low", f"{len(p.warmup)} warm-up requests excluded: the slowest took "
                      f"{worst:.1f}x the measured median ({len(slow)} above {T.warmup_outlier_ratio:g}x)",
                      {"warmup_requests": len(p.warmup), "slow_warmup_requests": len(slow), "worst_ratio": worst,
                       "measured_median_e2el_ms": median / 1e6},
                      merge_windows([[m.start_ns(r), r.done_ns] for r in slow]), worst)]


@phase_detector
def throttling(p: PhaseData) -> list[Finding]:
    """Throttle reasons reported, or clocks more than 20% below their median, during the phase."""
    samples = _device_samples(p)
    if not samples:
        return []
    flagged = [s for s in samples if [r for r in s["metrics"].get("throttle_reasons") or []
                                      if r not in ("applications_clocks", "display_clocks")]]
    clocks = [s["metrics"]["sm_clock_mhz"] for s in samples if s["metrics"].get("sm_clock_mhz")]
    if clocks:
        median = float(np.median(clocks))
        flagged += [s for s in samples if s["metrics"].get("sm_clock_mhz")
                    and s["metrics"]["sm_clock_mhz"] < T.clock_drop_fraction * median and s not in flagged]
    if not flagged:
        return []
    windows = merge_windows([[s["t_ns"] - 50_000_000, s["t_ns"] + 50_000_000] for s in flagged], 200_000_000)
    slow = _slow_steps(p)
    in_windows = [s for s in slow if any(a <= s[1] and s[0] <= b for a, b in windows)]
    reasons = sorted({r for s in flagged for r in s["metrics"].get("throttle_reasons") or []})
    return [p.finding("throttling", "high" if in_windows else "medium",
                      f"throttling on {p.device}: {', '.join(reasons) or 'clock drop'} in {len(flagged)} samples"
                      + (f", covering {len(in_windows)} of {len(slow)} slow steps" if slow else ""),
                      {"reasons": reasons, "samples": len(flagged), "sm_clock_min_mhz": min(clocks) if clocks else None,
                       "sm_clock_median_mhz": float(np.median(clocks)) if clocks else None,
                       "slow_steps_in_windows": len(in_windows)}, windows, len(flagged))]


@phase_detector
def memory_pressure(p: PhaseData) -> list[Finding]:
    """Device memory at 95% or more of its total, or an out-of-memory failure with evidence: an
    out-of-memory error in a request, in the worker's reason for stopping, or in its log. A worker
    killed by a signal is not out of memory by that alone (kill -9 looks the same)."""
    out = []
    telemetry = p.metrics.device_telemetry
    used, total = (telemetry.mem_used_bytes_peak, telemetry.mem_total_bytes) if telemetry else (None, None)
    oom_texts = [e for e in list(p.metrics.errors) + [p.worker_reason or ""] if OOM.search(e)]
    oom_texts += [line.strip()[:200] for line in p.log_tail().splitlines() if OOM.search(line)][:3]
    if used and total and used >= T.memory_full_fraction * total:
        out.append(p.finding("memory_pressure", "medium", f"{p.device} memory at {used / total * 100:.0f}% of "
                             f"{total / 2**30:.0f} GiB", {"peak_used_bytes": used, "total_bytes": total},
                             _window(p), used / total))
    if oom_texts:
        out.append(p.finding("memory_pressure", "high", f"out of memory in {p.name}: {oom_texts[0]}",
                             {"errors": oom_texts}, _window(p), 2.0))
    return out



@phase_detector
def endpoint_down(p: PhaseData) -> list[Finding]:
    """The worker was stopped by its circuit breaker (`endpoint_down`: the server went away;
    `failing`: every request failed in process): when the last request succeeded, when the
    failures began, how many, and the last error."""
    worker_reason = p.worker_reason
    if not worker_reason or not worker_reason.startswith(("endpoint_down", "failing")):
        return []
    kind = worker_reason.split(":", 1)[0]
    last_ok = max((r.done_ns for r in p.records if r.done_ns), default=None)
    after = [r for r in p.failed if last_ok is None or m.start_ns(r) >= last_ok]
    first_fail = min((m.start_ns(r) for r in after), default=None)
    last_fail = max((r.done_ns or m.start_ns(r) for r in after), default=None)
    n = sum(1 + r.also_failed for r in after)
    at = ((last_ok if last_ok is not None else first_fail) - p.origin_ns) / 1e9 if (last_ok or first_fail) else None
    what = "server went away" if kind == "endpoint_down" else "instance kept failing"
    title = (f"{p.name}'s {what}" + (f" at {at:.1f} s into {p.run_id}" if at is not None else "")
             + f": {n} request(s) failed after the last success; the instance was stopped ({worker_reason})")
    start = last_ok if last_ok is not None else first_fail
    windows = [[start, last_fail]] if start is not None and last_fail is not None and last_fail >= start else []
    return [p.finding(kind, "high", title,
                      {"last_success_s": round((last_ok - p.origin_ns) / 1e9, 3) if last_ok else None,
                       "first_failure_s": round((first_fail - p.origin_ns) / 1e9, 3) if first_fail else None,
                       "failed_after": n, "last_error": after[-1].error if after else None, "reason": worker_reason},
                      windows, 3.0)]


@phase_detector
def fragmentation(p: PhaseData) -> list[Finding]:
    """The caching allocator holds memory no tensor uses: more than `T.fragmentation_pct` of what it
    reserved, at the peak or at the end of the phase."""
    a = p.metrics.allocator
    worst = max(a.fragmentation_pct_peak or 0.0, a.fragmentation_pct_end or 0.0) if a is not None else 0.0
    if a is None or worst <= T.fragmentation_pct:
        return []
    gib = 2**30
    return [p.finding(
        "fragmentation", "high" if worst > 2 * T.fragmentation_pct else "medium",
        f"allocator fragmentation in {p.name}: {worst:.0f}% of the reserved memory holds no tensor (at the end "
        f"{a.reserved_bytes / gib:.2f} GiB reserved, {a.allocated_bytes / gib:.2f} GiB allocated; at the peak "
        f"{a.max_reserved_bytes / gib:.2f} / {a.max_allocated_bytes / gib:.2f} GiB)",
        {"fragmentation_pct_peak": a.fragmentation_pct_peak, "fragmentation_pct_end": a.fragmentation_pct_end,
         "reserved_bytes": a.reserved_bytes, "allocated_bytes": a.allocated_bytes,
         "max_reserved_bytes": a.max_reserved_bytes, "max_allocated_bytes": a.max_allocated_bytes,
         "threshold_pct": T.fragmentation_pct}, _window(p), worst / 100)]


@phase_detector
def input_length_variance(p: PhaseData) -> list[Finding]:
    """End-to-end latency spread explained by prompt and output lengths (R^2 of a linear fit)."""
    if len(p.records) < 20:
        return []
    y = np.array([m.e2el_ns(r) for r in p.records], dtype=np.float64)
    x = np.array([[r.prompt_tokens, r.output_tokens] for r in p.records], dtype=np.float64)
    if y.mean() == 0 or y.std() / y.mean() <= 0.10 or np.all(x.std(axis=0) == 0):
        return []
    design = np.column_stack([np.ones(len(y)), x[:, x.std(axis=0) > 0]])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    r2 = 1 - float(((y - design @ coef) ** 2).sum()) / float(((y - y.mean()) ** 2).sum())
    if r2 < T.length_r2:
        return []
    return [p.finding("input_length_variance", "low", f"{r2 * 100:.0f}% of {p.name}'s end-to-end latency variance "
                      "follows its prompt and output lengths, not the system",
                      {"r2": r2, "e2el_cv_pct": y.std() / y.mean() * 100}, _window(p), r2)]


@phase_detector
def batch_padding(p: PhaseData) -> list[Finding]:
    """Static batches of prompts of different lengths are left-padded to their longest: the share
    of prefill positions that were padding, and what that did to TTFT. A five-category prompt mix
    (short questions beside 4k-token documents) at batch 8 makes every request wait for the
    longest prompt's prefill, so a batch sweep over it measures the padding, not the batch size."""
    batches: dict[tuple[int, int], list[RequestRecord]] = {}
    for r in p.records:
        if r.batch_size > 1 and r.batch_id >= 0 and r.scheduled_ns is None:
            batches.setdefault((r.repetition, r.batch_id), []).append(r)
    if p.backend != "transformers" or not batches:
        return []
    positions = sum(max(r.prompt_tokens for r in b) * len(b) for b in batches.values())
    real = sum(r.prompt_tokens for b in batches.values() for r in b)
    share = (positions - real) / positions * 100 if positions else 0.0
    if share < T.padding_share_pct:
        return []
    longest = max(r.prompt_tokens for b in batches.values() for r in b)
    windows = [[min(r.submit_ns for r in b), max(r.first_token_ns or r.submit_ns for r in b)]
               for b in batches.values()]
    return [p.finding("batch_padding", "medium" if share >= 60 else "low",
                      f"{share:.0f}% of {p.name}'s prefill positions were padding: static batches of "
                      f"{max(len(b) for b in batches.values())} pad every prompt to the batch's longest "
                      f"({longest} tokens)",
                      {"padding_pct": share, "batches": len(batches), "longest_prompt_tokens": longest,
                       "mean_prompt_tokens": real / sum(len(b) for b in batches.values()),
                       "median_ttft_ms": p.metrics.median_ttft_ms},
                      merge_windows(windows)[:20], share / 100)]


def _own_admissions(p: PhaseData) -> list[list[int]]:
    """When the instance's own requests were admitted (each request's prefill, [start, first
    token]): under continuous batching the decode step that admits a request is slower, so a
    closed loop's own request waves recur at its request period and are not stalls."""
    if p.metrics.load_model == "static":
        return []
    return merge_windows([[m.start_ns(r), r.token_ns[0]] for r in p.records + p.warmup if r.token_ns])


@phase_detector
def periodic_stalls(p: PhaseData) -> list[Finding]:
    """Slow steps recurring at a fixed period (interval cv <= 0.25), or lining up with Python GC
    pauses recorded in the worker; steps that admitted one of the instance's own requests are
    left out (they recur at the workload's own period)."""
    own = _own_admissions(p)
    slow = [s for s in _slow_steps(p) if not any(a < s[1] and s[0] < b for a, b in own)]
    if len(slow) < T.min_stalls:
        return []
    starts = np.array(sorted(s[0] for s in slow), dtype=np.float64)
    intervals = np.diff(starts)
    periodic = len(intervals) >= T.min_stalls - 1 and intervals.mean() > 0 and \
        intervals.std() / intervals.mean() <= T.periodic_interval_cv
    pauses = [[g["start_ns"] - T.gc_tolerance_ns, g["start_ns"] + g["duration_ns"] + T.gc_tolerance_ns] for g in p.gc]
    by_gc = [s for s in slow if any(a <= s[1] and s[0] <= b for a, b in pauses)]
    gc_share = len(by_gc) / len(slow)
    if not periodic and gc_share < 0.5:
        return []
    period = float(np.median(intervals)) / 1e9 if len(intervals) else None
    what = f"every {period:.2f} s" if periodic and period else "irregularly"
    cause = f"; {len(by_gc)} of them during Python GC pauses" if by_gc else ""
    return [p.finding("periodic_stalls", "medium", f"{len(slow)} stalls in {p.name}'s decode, recurring {what}{cause}",
                      {"stalls": len(slow), "period_s": period if periodic else None, "gc_explained": len(by_gc),
                       "gc_pauses": len(p.gc)}, merge_windows(slow)[:20], len(slow))]


@sweep_detector
def host_bound_sweep(points: list[PointData]) -> list[Finding]:
    """Across a batch-size sweep: step time at the largest batch within 15% of the smallest while
    bandwidth use stays low (MBU under 50%, where the peak is known). Batch sizes are compared
    with every other axis held fixed (a dtype x batch sweep is judged per dtype); one finding per
    instance, from the group whose step time grows least, with the others counted."""
    groups: dict[tuple, list[tuple[int, PhaseData]]] = {}
    for point in points:
        batch = point.axes.get("batch_size")
        if not isinstance(batch, int):
            continue
        others = tuple(sorted((k, str(v)) for k, v in point.axes.items() if k != "batch_size"))
        for (phase, name), p in point.phases.items():
            if phase == "solo" and p.metrics.mean_tpot_ms:
                groups.setdefault((name, others), []).append((batch, p))
    found: dict[str, list[tuple[float, dict, Finding]]] = {}
    for (name, others), rows in groups.items():
        rows.sort(key=lambda r: r[0])
        (b0, first), (b1, last) = rows[0], rows[-1]
        if b1 < 4 * b0:
            continue
        growth = last.metrics.mean_tpot_ms / first.metrics.mean_tpot_ms
        mbu = last.metrics.mbu_pct
        if growth <= T.host_bound_step_growth and mbu is not None and mbu < T.host_bound_low_mbu_pct:
            where = ", ".join(f"{k}={v}" for k, v in others)
            found.setdefault(name, []).append((growth, dict(others), last.finding(
                "host_bound", "high", f"host-bound: {name}'s step time grows only {growth:.2f}x from batch {b0} to "
                f"{b1}{f' ({where})' if where else ''} while bandwidth use is {mbu:.0f}% of peak",
                {"batch_small": b0, "batch_large": b1, "tpot_small_ms": first.metrics.mean_tpot_ms,
                 "tpot_large_ms": last.metrics.mean_tpot_ms, "step_growth": growth, "mbu_pct_large": mbu,
                 **({"held_fixed": dict(others)} if others else {})},
                _window(first) + _window(last), 1 / growth)))
    out = []
    for name, hits in found.items():
        hits.sort(key=lambda h: h[0])
        finding = hits[0][2]
        if len(hits) > 1:
            finding.evidence["also_in_groups"] = len(hits) - 1
        out.append(finding)
    return out
