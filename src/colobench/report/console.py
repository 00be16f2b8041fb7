"""Console tables from a summary: llama-bench style `mean ± std`, the verdicts next to the table.

Only formatting here; every number comes from the summary. Strings that came from outside
(model paths, error text) are escaped before rich renders them, so `[bold]` in a path prints
as written.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from colobench.analysis.distribution import Distribution
from colobench.analysis.registry import console_rows
from colobench.analysis.model import InstanceFacts, PhaseMetrics, Point, Quality, SLOResult, Summary
from colobench.report.cards import Card, Ratio, cards
from colobench.report.findings import notable, print_checks, print_findings, validity_line
from colobench.report.server import server_notes, server_table

MAX_CARDS = 6  # a sweep with more co-located points: the first ones, then the sweep table says the rest
VERDICT_STYLE = {"ok": "green", "bottleneck": "red", "inconclusive": "yellow", "not judged": "yellow"}

def _num(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def _pm(d: Distribution | None) -> str:
    if d is None or not d.count:
        return "-"
    if d.count == 1:
        return _num(d.mean)
    return f"{_num(d.mean)} ± {_num(d.std)}"


def _ratio(v: float | None) -> str:
    if v is None:
        return "-"
    style = "red" if v >= 1.5 else "yellow" if v >= 1.1 else "green"
    return f"[{style}]{v:.2f}x[/]"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def quality_line(q: Quality) -> str:
    """Quality against the reference next to the speed, memory and weight deltas."""
    vs = q.vs_reference
    deltas = ", ".join(f"{label} {vs[key]:.2f}x" for key, label in (("output_throughput", "tok/s"),
                       ("peak_memory_bytes", "memory"), ("weight_bytes", "weights"),
                       ("energy_per_token_j", "J/token")) if vs.get(key) is not None)
    return (f"vs {escape(q.reference)}: token agreement {q.token_agreement * 100:.1f}% (first divergence "
            f"at {q.first_divergence_min}), top-1 {q.top1_agreement * 100:.1f}%, KL {q.kl_divergence:.2e}"
            + (f"; {deltas}" if deltas else ""))


def telemetry_line(mt: PhaseMetrics | None) -> str:
    """One line of what the device and host did: utilisation, memory, bandwidth against the peak,
    power and energy per token, the workers' CPU."""
    if mt is None or mt.roofline is None and mt.host is None:
        return ""
    parts = []
    if mt.mean_device_util_pct is not None:  # a CPU run's is the workers' CPU, in % of one core
        parts.append(f"util {mt.mean_device_util_pct:.0f}%" if mt.device_telemetry is not None
                     else f"worker CPU {mt.mean_device_util_pct:.0f}% of a core")
    if mt.peak_memory_bytes:
        whose = "server " if mt.memory_source else ""
        parts.append(f"{whose}peak mem {_bytes(mt.peak_memory_bytes)}")
    bw = mt.achieved_bandwidth_bytes_s
    if bw:
        if mt.mbu_pct is None:
            mbu = " (no peak figure)"
        elif mt.mbu_pct > 100:
            mbu = f" = {mt.mbu_pct:.0f}% of peak: implausible (see the checks)"
        else:
            mbu = f" = {mt.mbu_pct:.0f}% of peak"
        peak = mt.roofline.peak if mt.roofline is not None else None
        if peak is not None and peak.source.startswith("measured") and mt.mbu_pct is not None:
            mbu += f" (the measured {peak.memory_bandwidth_gb_s:.0f} GB/s copy bandwidth)"
        parts.append(f"decode {bw / 1e9:.1f} GB/s{mbu}")
    if mt.roofline is not None and mt.roofline.gpm_dram_bw_util_pct is not None:
        parts.append(f"GPM DRAM {mt.roofline.gpm_dram_bw_util_pct:.0f}%")
    if mt.mfu_pct is not None:
        parts.append(f"prefill MFU {mt.mfu_pct:.1f}%")
    power = mt.device_telemetry.power_w.mean if mt.device_telemetry and mt.device_telemetry.power_w else None
    if power is not None:
        parts.append(f"{power:.0f} W")
    if mt.energy_per_token_j is not None:
        shared = " (device shared)" if mt.energy_shared else ""
        parts.append(f"{mt.energy_per_token_j * 1e3:.2f} mJ/token{shared}")
    host = mt.host
    if host is not None and host.samples and host.cpu_pct and host.load_1m:
        parts.append(f"host CPU {host.cpu_pct.mean:.0f}%, load {host.load_1m.mean:.1f}")
    return ", ".join(parts)


def instance_header(name: str, facts: InstanceFacts, repetitions: int | None,
                    measured: PhaseMetrics | None = None) -> str:
    wl = facts.workload
    load = facts.load_model or "static"
    parallel = facts.parallel
    if load == "static":
        shape = f"static batch {parallel or wl.get('batch_size')}"
    elif load == "closed":
        shape = f"closed loop, concurrency {parallel or wl.get('concurrency')}"
    elif facts.trace:
        tr = facts.trace
        speed = f", {tr.get('speed'):g}x speed" if tr.get("speed") not in (None, 1, 1.0) else ""
        shape = (f"trace {escape(str(tr.get('file')))} ({tr.get('format')}: {tr.get('requests')} requests over "
                 f"{_num(tr.get('span_s'))} s{speed}, mean prompt {_num(tr.get('mean_input_tokens'), 0)} and output "
                 f"{_num(tr.get('mean_output_tokens'), 1)} tokens, {tr.get('with_blocks')} with shared blocks)")
    elif isinstance(wl.get("ramp"), dict):
        ramp = wl["ramp"]
        shape = (f"open loop, {wl.get('arrival')}, ramp {_num(wl.get('rate'))} -> {_num(ramp.get('to_rate'))} req/s in "
                 f"{ramp.get('steps')} {'segments of a line' if ramp.get('shape') == 'linear' else 'steps'}")
    else:
        shape = f"open loop, {wl.get('arrival')} {wl.get('rate')} req/s"
    size = f", {facts.parameters / 1e6:,.1f} M params, {_bytes(facts.weight_bytes)} weights" if facts.parameters else ""
    info = facts.device_info or {}
    dev_name = f" ({escape(str(info['name']))})" if info.get("name") else ""
    endpoint = facts.endpoint
    if endpoint:
        where = (f"[bold]{escape(name)}[/]: {escape(facts.model)} at {escape(str(endpoint.get('base_url')))} "
                 f"({endpoint.get('api')} API, {endpoint.get('client_processes', 1)} client process(es)); ")
    else:
        where = (f"[bold]{escape(name)}[/]: {escape(facts.model)} on {escape(facts.device)}"
                 f"{dev_name}, {facts.dtype}, {facts.cpu_threads} CPU thread(s){size}; ")
    prompt = _length(wl.get("prompt_tokens"))
    if wl.get("prompts") and measured is not None and measured.mean_prompt_tokens is not None:
        source = wl["prompts"].get("file") or f"builtin:{wl['prompts'].get('builtin')}"
        prompt = (f"{escape(str(source))} ({measured.mean_prompt_tokens:.0f} tokens mean, "
                  f"{measured.min_prompt_tokens}..{measured.max_prompt_tokens})")
    reps = f"{repetitions if repetitions is not None else '?'} repetitions"
    if facts.trace:
        return f"{where}{shape} x {reps}"
    return (f"{where}"
            f"{shape}, prompt {prompt}, output {_length(wl.get('output_tokens'))}, "
            f"{_bound(wl, facts.requests_raised_to)} x {reps}")


def _length(value: Any) -> str:
    if isinstance(value, dict):
        if value.get("mean") is not None:
            return f"{value['mean']}±{value.get('std')}"
        return f"{value.get('min')}..{value.get('max')}"
    return str(value)


def _bound(wl: dict[str, Any], raised_to: int | None = None) -> str:
    if wl.get("duration_s"):
        return f"{wl['duration_s']:g} s"
    if raised_to:
        return f"{raised_to} requests (-r {wl.get('requests')} raised to whole batches at the peak)"
    return f"{wl.get('requests')} requests"


def instance_table(solo: PhaseMetrics | None, coloc: PhaseMetrics | None) -> Table:
    table = Table(title=None, show_edge=False, header_style="bold")
    table.add_column("metric")
    for phase, label in ((solo, "solo"), (coloc, "co-located")):
        if phase:
            table.add_column(f"{label} mean ± std", justify="right")
            table.add_column("p50", justify="right")
            table.add_column("p99", justify="right")
    if solo and coloc:
        table.add_column("p50 ratio", justify="right")
        table.add_column("p99 ratio", justify="right")
    for label, key in console_rows():
        dists = [getattr(p.distributions, key, None) if p else None for p in (solo, coloc)]
        if not any(dists):
            continue  # a metric of some phases only (TTFC without reasoning)
        row = [label]
        for phase, d in zip((solo, coloc), dists):
            if phase:
                row += [_pm(d), _num(d.p50 if d else None), _num(d.p99 if d else None)]
        if solo and coloc:
            s, c = dists
            for q in ("p50", "p99"):
                sv, cv = getattr(s, q, None), getattr(c, q, None)
                row.append(_ratio(cv / sv) if sv and cv is not None else "-")
        table.add_row(*row)
    return table


def category_table(solo: PhaseMetrics | None, coloc: PhaseMetrics | None) -> Table | None:
    """Every prompt category's latency and speed, per phase (the five-category baseline)."""
    phases = [(label, mt) for label, mt in (("solo", solo), ("co-located", coloc)) if mt is not None and mt.by_category]
    if not phases:
        return None
    table = Table(show_edge=False, header_style="bold", title="per prompt category", title_justify="left")
    for col in ("category", "phase", "requests", "prompt tokens", "TTFT p50 ms", "TTFT p99 ms", "TPOT ms",
                "TPOT p99 ms", "E2E ms", "tok/s a request"):
        table.add_column(col, justify="left" if col in ("category", "phase") else "right")
    for label, mt in phases:
        for cat, c in mt.by_category.items():
            prompt = (f"{_num(c.mean_prompt_tokens, 0)} ({c.min_prompt_tokens}..{c.max_prompt_tokens})"
                      if c.mean_prompt_tokens is not None else "-")
            table.add_row(escape(cat), label, str(c.completed), prompt, _num(c.median_ttft_ms), _num(c.p99_ttft_ms),
                          _num(c.mean_tpot_ms), _num(c.p99_tpot_ms), _num(c.mean_e2el_ms),
                          _num(c.output_tok_s_per_request, 1))
    return table


def sweep_category_table(summary: Summary) -> Table | None:
    """Per prompt category at every point of a sweep (when the prompts name categories): the
    five-category baseline of each variant, side by side."""
    rows = [(p, phase, name, cat, c) for p in summary.points for phase, name, mt in p.rows()
            for cat, c in (mt.by_category or {}).items()]
    if not rows:
        return None
    table = Table(show_edge=False, header_style="bold", title="per prompt category", title_justify="left")
    table.add_column("point", no_wrap=True, min_width=max(len(p.id) for p, *_ in rows))
    for col in ("instance", "phase", "category", "requests", "prompt tokens", "TTFT p50 ms", "TPOT ms", "E2E ms",
                "tok/s a request"):
        table.add_column(col, justify="left" if col in ("instance", "phase", "category") else "right")
    for p, phase, name, cat, c in rows:
        table.add_row(escape(p.id), escape(name), phase, escape(cat), str(c.completed),
                      _num(c.mean_prompt_tokens, 0), _num(c.median_ttft_ms), _num(c.mean_tpot_ms),
                      _num(c.mean_e2el_ms), _num(c.output_tok_s_per_request, 1))
    return table


def _ratio_text(r: Ratio) -> str:
    text = escape(r.text())
    if r.beyond_noise:
        return f"[bold]{text}[/]"
    return text


def card_panel(c: Card) -> Panel:
    """One co-located group's headline: scaling with interval and verdict, then one line per
    instance (slowdowns with intervals, throughput, overlap, validity)."""
    style = VERDICT_STYLE.get(c.verdict, "white")
    lines = [f"[{style}]{escape(c.scaling_text())}[/]"]
    for i in c.instances:
        validity = " / ".join(f"{'[green]' if v == 'VALID' else '[red]'}{phase} {v}[/]"
                              for phase, v in i.validity.items())
        if i.excluded:
            lines.append(f"  [bold]{escape(i.name)}[/]: [red]no partner under load: no slowdown[/]; {validity}")
            continue
        overlap = f"overlap {i.overlap_fraction * 100:.0f}%" if i.overlap_fraction is not None else "overlap -"
        ratios = ", ".join(_ratio_text(r) for r in [*i.slowdowns, i.throughput])
        lines.append(f"  [bold]{escape(i.name)}[/]: {ratios}; {overlap}; {validity}")
        if i.predicted:
            lines.append(f"[dim]    {escape(i.predicted)}[/]")
    if c.verdict in ("inconclusive", "not judged") and c.sentence:
        lines.append(f"[dim]  {escape(c.sentence)}[/]")
    return Panel("\n".join(lines), title=escape(c.title), title_align="left", expand=False)


def print_cards(summary: Summary, console: Console) -> None:
    """The headline first: one card per co-located group (bold: beyond noise)."""
    shown = cards(summary)
    for c in shown[:MAX_CARDS]:
        console.print(card_panel(c))
    if len(shown) > MAX_CARDS:
        console.print(f"[dim]  (+{len(shown) - MAX_CARDS} more co-located points: see the sweep table)[/]")


def interference_table(point: Point) -> Table | None:
    inter = point.interference
    if not inter.slowdown:
        return None
    table = Table(show_edge=False, header_style="bold", title="slowdown (co-located / solo)", title_justify="left")
    for col in ("instance", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "E2E p50", "E2E p99",
                "tok/s solo", "tok/s co-loc", "beyond noise"):
        table.add_column(col, justify="left" if col == "instance" else "right")
    for name, s in inter.slowdown.items():
        solo, coloc = point.metrics("solo", name), point.metrics("colocated", name)
        table.add_row(escape(name), *(_ratio(getattr(s, k)) for k in ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99",
                                                                      "e2el_p50", "e2el_p99")),
                      _num(solo.output_throughput if solo else None, 1),
                      _num(coloc.output_throughput if coloc else None, 1),
                      ", ".join(_metric_label(k) for k, v in s.beyond_noise.items() if v)
                      or ("none" if any(v is not None for v in s.beyond_noise.values()) else "no interval"))
    return table


def _metric_label(key: str) -> str:
    """`tpot_p50` -> `TPOT p50`, `output_throughput` -> `tok/s`."""
    if key == "output_throughput":
        return "tok/s"
    metric, _, q = key.partition("_")
    return f"{metric.upper().replace('E2EL', 'E2E')} {q}"


def _fmt_axis(value: Any) -> str:
    return escape(str(value))


def _pair(a: float | None, b: float | None) -> str:
    return "-" if a is None and b is None else f"{_num(a, 1)}/{_num(b, 1)}"


def _energy(mt: Any) -> str:
    """Energy per token (mJ) and tokens per joule, or why not."""
    if mt.energy_per_token_j is not None:
        return f"{mt.energy_per_token_j * 1e3:.3g}, {_num(mt.tokens_per_j, 1)}"
    return "unmeasured" if "energy_j" in mt.unmeasured else "-"


def sweep_table(summary: Summary) -> Table:
    """One row per point, phase and instance: the one-model-versus-two table (seed 001): output
    tok/s, TTFT and TPOT p50 / p99, scaling, utilisation (the device's; the workers' CPU on a CPU
    run), peak memory, energy per token and tokens per joule ("unmeasured" where nothing reads
    power: `sweep_notes` says why). Latencies in ms."""
    axes = summary.sweep_axes
    table = Table(show_edge=False, header_style="bold", title="sweep", title_justify="left")
    widest_id = max((len(p.id) for p in summary.points), default=5)
    # the point id names the row in the advice table and in `compare`: never cut, whatever the width
    table.add_column("point", no_wrap=True, min_width=widest_id)
    rows = [(p, phase, name, mt) for p in summary.points for phase, name, mt in p.rows()]
    with_slo = any(mt.slo is not None for _, _, _, mt in rows)
    with_rate = any(mt.open_loop is not None for _, _, _, mt in rows)
    with_agreement = any(mt.token_agreement is not None for _, _, _, mt in rows)
    columns = [*axes, "instance", "phase", "load", "ok/failed", "tok/s", "TTFT p50/p99", "TPOT p50/p99",
               *(["rate req/s"] if with_rate else []), *(["SLO met", "goodput req/s"] if with_slo else []),
               "scaling", "util %", "peak mem", "mJ/tok, tok/J", *(["agreement"] if with_agreement else [])]
    for col in columns:
        table.add_column(col, justify="left" if col in ("instance", "phase", "load", *axes) else "right")
    for point, phase, name, mt in rows:
        scaling = point.interference.throughput_scaling
        ol = mt.open_loop
        table.add_row(escape(point.id), *(_fmt_axis(point.axes.get(a)) for a in axes), escape(name),
                      phase, f"{mt.load_model or '-'} x{mt.parallel or '-'}", f"{mt.completed}/{mt.failed}",
                      _num(mt.output_throughput, 1), _pair(mt.median_ttft_ms, mt.p99_ttft_ms),
                      _pair(mt.median_tpot_ms, mt.p99_tpot_ms),
                      *([f"{_num(ol.achieved_rate, 1)}/{_num(ol.requested_rate, 1)}" if ol else "-"] if with_rate else []),
                      *([f"{mt.slo_attainment * 100:.1f}%" if mt.slo_attainment is not None else "-",
                         _num(mt.goodput)] if with_slo else []),
                      f"{scaling:.2f}x" if scaling is not None and phase == "colocated" else "-",
                      _num(mt.mean_device_util_pct, 0) if mt.mean_device_util_pct is not None else "-",
                      _bytes(mt.peak_memory_bytes), _energy(mt),
                      *([f"{mt.token_agreement * 100:.0f}%" if mt.token_agreement is not None else "-"]
                        if with_agreement else []))
    for point in summary.points:
        if not point.phases:
            table.add_row(escape(point.id), *(_fmt_axis(point.axes.get(a)) for a in axes), "-", "-", "-",
                          "[red]no data[/]", *["-"] * (len(columns) - len(axes) - 4))
    return table


def sweep_notes(summary: Summary) -> list[str]:
    """Why a column of the sweep table is empty or unmeasured, said once: what util % is, and
    each distinct reason an instance gave for its energy."""
    rows = [(p.id, name, mt) for p in summary.points for _, name, mt in p.rows()]
    notes = []
    on_cpu = any(f.device == "cpu" for p in summary.points for f in p.instances.values())
    if rows:
        notes.append("util %: the device's busy share" + ("; on the CPU, the instance's workers' CPU (% of one core)"
                                                         if on_cpu else ""))
    reasons: dict[str, list[str]] = {}
    for point, name, mt in rows:
        if mt.energy_per_token_j is None and "energy_j" in mt.unmeasured:
            reasons.setdefault(mt.unmeasured["energy_j"], []).append(f"{point or '-'}/{name}")
    for why, where in reasons.items():
        which = "every row" if len(where) == len(rows) else ", ".join(where[:4]) + (" ..." if len(where) > 4 else "")
        notes.append(f"energy unmeasured ({which}): {why}")
    return notes


def batch_scaling_tables(summary: Summary) -> list[Table]:
    tables = []
    for group in summary.batch_scaling:
        others = ", ".join(f"{k}={v}" for k, v in group.axes.items())
        title = f"batch scaling: {group.instance} ({group.phase}{', ' + others if others else ''})"
        table = Table(show_edge=False, header_style="bold", title=escape(title), title_justify="left")
        for col in ("batch", "tok/s", "speed-up", "linearity", "request latency ms", "step latency ms"):
            table.add_column(col, justify="right")
        for row in group.rows:
            lin = row.linearity
            colour = "green" if lin and lin >= 0.8 else "yellow" if lin and lin >= 0.5 else "red"
            table.add_row(str(row.batch_size), _num(row.output_throughput, 1),
                          f"{row.speedup:.2f}x" if row.speedup else "-",
                          f"[{colour}]{lin * 100:.0f}%[/]" if lin else "-",
                          _num(row.mean_e2el_ms), _num(row.mean_tpot_ms))
        tables.append(table)
    return tables


def _advised(scenario: str, value: float | None) -> str:
    if value is None:
        return "-"
    if scenario == "memory":
        return _bytes(int(value))
    if scenario == "sharing":
        return f"{value:.2f}x"
    return _num(value)


def advice_table(summary: Summary) -> Table | None:
    """Per use (interactive, throughput, memory, sharing), the variant to run within the quality
    guard, its figure and the runner-up; per workload when the sweep also varied the workload."""
    if not summary.advice:
        return None
    table = Table(show_edge=False, header_style="bold", title="advice per scenario (within the quality guard)",
                  title_justify="left")
    fixed = any(a.within for a in summary.advice)
    for col in ("use", *(("workload",) if fixed else ()), "instance", "run", "by", "figure", "beside it",
                "runner-up", "margin", "left out"):
        table.add_column(col, justify="right" if col == "figure" else "left")
    for a in summary.advice:
        also = ", ".join(f"{k.removesuffix('_bytes').replace('_', ' ')} {_advised('memory' if 'bytes' in k else '', v)}"
                         for k, v in a.also.items() if v is not None)
        runner = f"{escape(a.runner_up)} ({_advised(a.scenario, a.runner_up_value)})" if a.runner_up else "-"
        left = ", ".join(f"{escape(p)}: {escape(why)}" for p, why in list(a.excluded.items())[:2])
        more = len(a.excluded) - 2
        workload = (escape(" ".join(f"{k}={v}" for k, v in a.within.items())),) if fixed else ()
        table.add_row(a.scenario, *workload, escape(a.instance), escape(a.choice), a.figure,
                      _advised(a.scenario, a.value), escape(also) or "-", runner, _margin_text(a.margin),
                      (left + (f" (+{more} more)" if more > 0 else "")) or "-")
    return table


def _margin_text(margin: str) -> str:
    """The pick's margin over the runner-up: green when clear, yellow when the runner-up would do
    as well as far as the repetitions can tell."""
    colour = {"clear": "green", "within noise": "yellow", "inconclusive": "yellow"}.get(margin)
    return f"[{colour}]{margin}[/]" if colour else margin


def print_sweep(summary: Summary, console: Console) -> None:
    console.print()
    console.print(sweep_table(summary))
    for note in sweep_notes(summary):
        console.print(f"  [dim]{escape(note)}[/]")
    advice = advice_table(summary)
    if advice is not None:
        console.print()
        console.print(advice)
    for table in [sweep_category_table(summary), *batch_scaling_tables(summary)]:
        if table is not None:
            console.print()
            console.print(table)
    for p in summary.points:
        for phase, name, mt in p.rows():
            if mt.quality:
                console.print(f"quality {escape(p.id)} {escape(name)} ({phase}): {quality_line(mt.quality)}")
    print_checks(notable(summary.checks), console, with_point=True)
    for problem in summary.problems:
        console.print(f"  [red]problem[/] {escape(problem)}")
    print_attempts(summary, console)


def slo_line(slo: SLOResult) -> str:
    """`ttft_ms <= 200, tpot_ms <= 50: 97.9% of 48 requests good, goodput 4.71 req/s; missed most: tpot_ms (1)`."""
    objectives = ", ".join(f"{k} <= {v:g}" for k, v in slo.objectives.items())
    share = f"{slo.attainment * 100:.1f}%" if slo.attainment is not None else "-"
    text = (f"{objectives}: {share} of {slo.requests} requests good, goodput {_num(slo.goodput_req_s)} req/s")
    if slo.worst:
        count = slo.failed if slo.worst == "failed" else slo.missed.get(slo.worst, 0)
        text += f"; missed most: {slo.worst} ({count})"
    return text


def _phase_lines(label: str, mt: PhaseMetrics) -> list[str]:
    """The dim lines under an instance's table: SLO, open loop, client, validity, quality, telemetry."""
    lines = []
    if mt.slo is not None:
        colour = "green" if (mt.slo.attainment or 0) >= 0.99 else "yellow"
        lines.append(f"  {label} SLO: [{colour}]{escape(slo_line(mt.slo))}[/]")
    ol = mt.open_loop
    if ol:
        # no requested rate: a trace replay, each request due at its trace time
        sent = (f"open loop: {_num(ol.achieved_rate)} req/s sent for {_num(ol.requested_rate)} requested"
                if ol.requested_rate is not None else
                f"trace replay: {_num(ol.achieved_rate)} req/s, each request sent at its trace time")
        lines.append(f"[dim]  {label} {sent}, schedule lag mean {_num(ol.mean_schedule_lag_ms, 3)} ms, p99 "
                     f"{_num(ol.p99_schedule_lag_ms, 3)} ms[/]")
    for step in mt.by_step:  # a ramped open loop: latency against the rate, step by step
        lines.append(f"[dim]  {label} ramp step {step.step} ({_num(step.start_s, 1)}-{_num(step.end_s, 1)} s): "
                     f"{_num(step.achieved_rate, 1)} req/s sent for {_num(step.requested_rate, 1)}, TTFT p50/p99 "
                     f"{_pair(step.median_ttft_ms, step.p99_ttft_ms)} ms, TPOT p50/p99 "
                     f"{_pair(step.median_tpot_ms, step.p99_tpot_ms)} ms, {step.completed} ok, {step.failed} failed[/]")
    if mt.by_turn:  # later turns of a session find the earlier ones in a server's prefix cache
        turns = "; ".join(f"turn {int(t) + 1}: {_num(c.median_ttft_ms)} ms ({c.completed})" for t, c in mt.by_turn.items())
        lines.append(f"[dim]  {label} TTFT p50 by turn (requests): {turns}[/]")
    if mt.client and mt.backend == "openai":
        sources = ", ".join(f"{k} {v}" for k, v in (mt.token_count_source or {}).items())
        rss = f", {_bytes(mt.client.rss_bytes_peak)} resident" if mt.client.rss_bytes_peak else ""
        lines.append(f"[dim]  {label} client: {_num((mt.client.cpu_util_max or 0) * 100, 0)}% of a core at most{rss}, "
                     f"event-loop lag p99 {_num(mt.client.loop_lag_p99_ms)} ms, mean concurrency "
                     f"{_num(mt.mean_concurrency, 1)}, error rate {_num((mt.error_rate or 0) * 100, 1)}%; token "
                     f"counts from {sources or '-'}[/]")
    return lines


def print_point(point: Point, console: Console) -> None:
    """One point's instances (tables, validity, quality, telemetry) and their interference."""
    for name, facts in point.instances.items():
        solo, coloc = point.metrics("solo", name), point.metrics("colocated", name)
        console.print()
        console.print(instance_header(name, facts, (solo or coloc).repetitions if (solo or coloc) else None,
                                      solo or coloc))
        if not (solo or coloc):
            console.print("  no measurements", style="yellow")
            continue
        console.print(instance_table(solo, coloc))
        categories = category_table(solo, coloc)
        if categories is not None:
            console.print(categories)
        server = server_table(solo, coloc)
        if server is not None:
            console.print(server)
        phases = [(label, mt) for label, mt in (("solo", solo), ("co-located", coloc)) if mt is not None]
        for label, mt in phases:
            for line in _phase_lines(label, mt) + server_notes(label, mt):
                console.print(line)
        for label, mt in phases:
            console.print(f"  {label}: {validity_line(mt)}")
        for label, mt in phases:
            if mt.quality:
                console.print(f"  {label} quality: {quality_line(mt.quality)}")
        for label, mt in phases:
            line = telemetry_line(mt)
            if line:
                console.print(f"  {label} telemetry: {escape(line)}", style="dim")
        for label, mt in phases:
            if mt.allocator is not None:
                a = mt.allocator
                frag = max(a.fragmentation_pct_peak or 0, a.fragmentation_pct_end or 0)
                console.print(f"  {label} allocator: reserved {_bytes(a.max_reserved_bytes)} / allocated "
                              f"{_bytes(a.max_allocated_bytes)} at the peak, {_bytes(a.reserved_bytes)} / "
                              f"{_bytes(a.allocated_bytes)} at the end: fragmentation "
                              + (f"[yellow]{frag:.0f}%[/]" if frag > 15 else f"{frag:.0f}%"), style="dim")
        peaks = [f"{label} {_bytes(mt.peak_memory_bytes)}" for label, mt in phases if mt.peak_memory_bytes]
        source = next((mt.memory_source for _, mt in phases if mt.memory_source), None)
        if peaks:
            console.print(f"  peak memory: {', '.join(peaks)}" + (f" (the server's: {escape(source)})" if source else ""),
                          style="dim")
        elif facts.endpoint:
            reason = next((mt.unmeasured.get("peak_memory_bytes") for _, mt in phases
                           if mt.unmeasured.get("peak_memory_bytes")), None)
            if reason:
                console.print(f"  peak memory: unmeasured ({escape(reason)})", style="dim")
    table = interference_table(point)
    if table is not None:
        console.print()
        console.print(table)
    for device, e in point.energy.colocated.items():
        if e.energy_j is not None:
            console.print(f"co-located energy on {device}: {e.energy_j:.1f} J for {e.output_tokens} tokens of "
                          f"{', '.join(e.instances)} = {e.energy_per_token_j * 1e3:.2f} mJ/token, "
                          f"{e.tokens_per_j:.1f} tokens/J ({e.method})")
    inter = point.interference
    if inter.throughput_scaling is not None:
        iv = inter.throughput_scaling_interval
        console.print(f"aggregate throughput scaling: [bold]{inter.throughput_scaling:.2f}x[/]"
                      + (f" [{iv[0]:.2f}, {iv[1]:.2f}]" if iv else " (no interval)") + f" (ideal {inter.ideal_scaling}x)")


def print_attempts(summary: Summary, console: Console) -> None:
    """Earlier unfinished attempts `--resume` kept aside: where, and that they are not counted."""
    for p in summary.points:
        for run_id, run in p.runs.items():
            for a in run.attempts:
                console.print(f"[dim]  note: {escape(run_id)}: an earlier unfinished attempt ({escape(str(a.status))}, "
                              f"{a.records} measured records) is kept in {escape(a.folder)}, not counted[/]")


def print_summary(summary: Summary, console: Console) -> None:
    print_cards(summary, console)
    if summary.is_sweep:
        print_sweep(summary, console)
        print_findings(summary.findings, console, limit=10)
        return
    point = summary.point()
    print_point(point, console)
    for device, power in summary.idle_power_w.items():
        console.print(f"idle power of {device} before the first run: {power:.0f} W", style="dim")
    print_checks(notable(summary.checks), console)
    for problem in summary.problems:
        console.print(f"  [red]problem[/] {escape(problem)}")
    print_attempts(summary, console)
    print_findings(summary.findings, console)
