"""Console tables from a summary: llama-bench style `mean ± std`, the verdicts next to the table.

Only formatting here; every number comes from the summary. Strings that came from outside
(model paths, error text) are escaped before rich renders them, so `[bold]` in a path prints
as written.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

ROWS = [  # (label, distribution key, unit note)
    ("TTFT ms", "ttft_ms"),
    ("TPOT ms", "tpot_ms"),
    ("ITL ms", "itl_ms"),
    ("E2E latency ms", "e2el_ms"),
    ("output tok/s", "output_throughput_tok_s"),
    ("requests/s", "request_throughput_req_s"),
]


def _num(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def _pm(d: dict[str, Any] | None) -> str:
    if not d or not d.get("count"):
        return "-"
    if d["count"] == 1:
        return _num(d["mean"])
    return f"{_num(d['mean'])} ± {_num(d['std'])}"


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


def quality_line(q: dict[str, Any]) -> str:
    """Quality against the reference next to the speed, memory and weight deltas."""
    vs = q.get("vs_reference") or {}
    deltas = ", ".join(f"{label} {vs[key]:.2f}x" for key, label in (("output_throughput", "tok/s"),
                       ("peak_memory_bytes", "memory"), ("weight_bytes", "weights"),
                       ("energy_per_token_j", "J/token")) if vs.get(key) is not None)
    return (f"vs {escape(str(q['reference']))}: token agreement {q['token_agreement'] * 100:.1f}% (first divergence "
            f"at {q['first_divergence_min']}), top-1 {q['top1_agreement'] * 100:.1f}%, KL {q['kl_divergence']:.2e}"
            + (f"; {deltas}" if deltas else ""))


def telemetry_line(mt: dict[str, Any] | None) -> str:
    """One line of what the device and host did: utilisation, memory, bandwidth against the peak,
    power and energy per token, the workers' CPU."""
    if not mt or "unmeasured" not in mt:
        return ""
    parts = []
    if mt.get("mean_device_util_pct") is not None:
        parts.append(f"util {mt['mean_device_util_pct']:.0f}%")
    if mt.get("peak_memory_bytes"):
        parts.append(f"peak mem {_bytes(mt['peak_memory_bytes'])}")
    bw = mt.get("achieved_bandwidth_bytes_s")
    if bw:
        mbu = f" = {mt['mbu_pct']:.0f}% of peak" if mt.get("mbu_pct") is not None else " (no peak figure)"
        parts.append(f"decode {bw / 1e9:.1f} GB/s{mbu}")
    gpm = (mt.get("roofline") or {}).get("gpm_dram_bw_util_pct")
    if gpm is not None:
        parts.append(f"GPM DRAM {gpm:.0f}%")
    if mt.get("mfu_pct") is not None:
        parts.append(f"prefill MFU {mt['mfu_pct']:.1f}%")
    power = ((mt.get("device_telemetry") or {}).get("power_w") or {}).get("mean")
    if power is not None:
        parts.append(f"{power:.0f} W")
    if mt.get("energy_per_token_j") is not None:
        shared = " (device shared)" if mt.get("energy_shared") else ""
        parts.append(f"{mt['energy_per_token_j'] * 1e3:.2f} mJ/token{shared}")
    host = mt.get("host") or {}
    if host.get("samples"):
        parts.append(f"host CPU {host['cpu_pct']['mean']:.0f}%, load {host['load_1m']['mean']:.1f}")
    return ", ".join(parts)


def instance_header(name: str, facts: dict[str, Any]) -> str:
    wl = facts.get("workload", {})
    load = facts.get("load_model") or "static"
    parallel = facts.get("parallel")
    if load == "static":
        shape = f"static batch {parallel or wl.get('batch_size')}"
    elif load == "closed":
        shape = f"closed loop, concurrency {parallel or wl.get('concurrency')}"
    else:
        shape = f"open loop, {wl.get('arrival')} {wl.get('rate')} req/s"
    params = facts.get("parameters")
    size = f", {params / 1e6:,.1f} M params, {_bytes(facts.get('weight_bytes'))} weights" if params else ""
    info = facts.get("device_info") or {}
    dev_name = f" ({escape(str(info['name']))})" if info.get("name") else ""
    endpoint = facts.get("endpoint")
    if endpoint:
        where = (f"[bold]{escape(name)}[/]: {escape(str(facts.get('model')))} at {escape(str(endpoint.get('base_url')))} "
                 f"({endpoint.get('api')} API, {endpoint.get('client_processes', 1)} client process(es)); ")
    else:
        where = (f"[bold]{escape(name)}[/]: {escape(str(facts.get('model')))} on {escape(str(facts.get('device')))}"
                 f"{dev_name}, {facts.get('dtype')}, {facts.get('cpu_threads')} CPU thread(s){size}; ")
    return (f"{where}"
            f"{shape}, prompt {_length(wl.get('prompt_tokens'))}, output {_length(wl.get('output_tokens'))}, "
            f"{_bound(wl, facts.get('requests_raised_to'))} x {facts.get('repetitions', '?')} repetitions")


def _length(value: Any) -> str:
    if isinstance(value, dict):
        if value.get("mean") is not None:
            return f"{value['mean']}±{value.get('std')}"
        return f"{value.get('min')}..{value.get('max')}"
    return str(value)


def _bound(wl: dict[str, Any], raised_to: int | None = None) -> str:
    if wl.get("duration_s"):
        return f"{wl['duration_s']:g} s"
    return f"{raised_to or wl.get('requests')} requests"


def instance_table(name: str, solo: dict[str, Any] | None, coloc: dict[str, Any] | None) -> Table:
    table = Table(title=None, show_edge=False, header_style="bold")
    table.add_column("metric")
    if solo:
        table.add_column("solo mean ± std", justify="right")
        table.add_column("p50", justify="right")
        table.add_column("p99", justify="right")
    if coloc:
        table.add_column("co-located mean ± std", justify="right")
        table.add_column("p50", justify="right")
        table.add_column("p99", justify="right")
    if solo and coloc:
        table.add_column("p50 ratio", justify="right")
        table.add_column("p99 ratio", justify="right")
    for label, key in ROWS:
        row = [label]
        for phase in (solo, coloc):
            if phase:
                d = phase["distributions"].get(key) or {}
                row += [_pm(d), _num(d.get("p50")), _num(d.get("p99"))]
        if solo and coloc:
            s, c = solo["distributions"].get(key) or {}, coloc["distributions"].get(key) or {}
            for q in ("p50", "p99"):
                row.append(_ratio(c[q] / s[q]) if s.get(q) and c.get(q) is not None else "-")
        table.add_row(*row)
    return table


def interference_table(summary: dict[str, Any]) -> Table | None:
    inter = summary.get("interference") or {}
    if not inter.get("slowdown"):
        return None
    table = Table(show_edge=False, header_style="bold", title="slowdown (co-located / solo)", title_justify="left")
    for col in ("instance", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "E2E p50", "E2E p99",
                "tok/s solo", "tok/s co-loc", "beyond noise"):
        table.add_column(col, justify="left" if col == "instance" else "right")
    solo = summary["phases"].get("solo", {})
    coloc = summary["phases"].get("colocated", {})
    for name, s in inter["slowdown"].items():
        table.add_row(escape(name), *(_ratio(s.get(k)) for k in ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99",
                                                                  "e2el_p50", "e2el_p99")),
                      _num(solo.get(name, {}).get("output_throughput"), 1),
                      _num(coloc.get(name, {}).get("output_throughput"), 1),
                      ", ".join(k.upper() for k, v in (s.get("beyond_noise") or {}).items() if v) or "none")
    return table


def _fmt_axis(value: Any) -> str:
    return escape(str(value))


def sweep_table(summary: dict[str, Any]) -> Table:
    axes = summary.get("sweep", {}).get("axes", [])
    table = Table(show_edge=False, header_style="bold", title="sweep", title_justify="left")
    for col in ["point", *axes, "instance", "phase", "load", "ok/failed", "tok/s", "TTFT p50 ms", "TPOT ms",
                "E2E p50 ms", "rate req/s", "scaling", "agreement"]:
        table.add_column(col, justify="left" if col in ("point", "instance", "phase", "load", *axes) else "right")
    for point in summary.get("points", []):
        scaling = (point.get("interference") or {}).get("throughput_scaling")
        for phase, by_instance in point.get("phases", {}).items():
            for name, mt in by_instance.items():
                ol = mt.get("open_loop") or {}
                rate = (f"{_num(ol.get('achieved_rate'), 1)}/{_num(ol.get('requested_rate'), 1)}"
                        if ol else "-")
                table.add_row(escape(point["id"]), *(_fmt_axis(point["axes"].get(a)) for a in axes), escape(name),
                              phase, f"{mt.get('load_model') or '-'} x{mt.get('parallel') or '-'}",
                              f"{mt['completed']}/{mt['failed']}", _num(mt.get("output_throughput"), 1),
                              _num(mt.get("median_ttft_ms")), _pm(mt["distributions"].get("tpot_ms")),
                              _num(mt.get("median_e2el_ms")), rate,
                              f"{scaling:.2f}x" if scaling is not None and phase == "colocated" else "-",
                              f"{mt['token_agreement'] * 100:.0f}%" if mt.get("token_agreement") is not None else "-")
        if not point.get("phases"):
            table.add_row(escape(point["id"]), *(_fmt_axis(point["axes"].get(a)) for a in axes), "-", "-", "-",
                          "[red]no data[/]", *["-"] * 7)
    return table


def batch_scaling_tables(summary: dict[str, Any]) -> list[Table]:
    tables = []
    for group in summary.get("batch_scaling", []):
        others = ", ".join(f"{k}={v}" for k, v in group["axes"].items())
        title = f"batch scaling: {group['instance']} ({group['phase']}{', ' + others if others else ''})"
        table = Table(show_edge=False, header_style="bold", title=escape(title), title_justify="left")
        for col in ("batch", "tok/s", "speed-up", "linearity", "request latency ms", "step latency ms"):
            table.add_column(col, justify="right")
        for row in group["rows"]:
            lin = row.get("linearity")
            colour = "green" if lin and lin >= 0.8 else "yellow" if lin and lin >= 0.5 else "red"
            table.add_row(str(row["batch_size"]), _num(row.get("output_throughput"), 1),
                          f"{row['speedup']:.2f}x" if row.get("speedup") else "-",
                          f"[{colour}]{lin * 100:.0f}%[/]" if lin else "-",
                          _num(row.get("mean_e2el_ms")), _num(row.get("mean_tpot_ms")))
        tables.append(table)
    return tables


def print_sweep(summary: dict[str, Any], console: Console) -> None:
    console.print()
    console.print(sweep_table(summary))
    for table in batch_scaling_tables(summary):
        console.print()
        console.print(table)
    for p in summary.get("points", []):
        for phase, by in (p.get("phases") or {}).items():
            for name, mt in by.items():
                if mt.get("quality"):
                    console.print(f"quality {escape(p['id'])} {escape(name)} ({phase}): {quality_line(mt['quality'])}")
    verdicts = [(p["id"], v) for p in summary.get("points", []) for v in (p.get("interference") or {}).get("verdicts", [])
                if v["verdict"] not in ("ok", "stable", "acceptable", "few_requests", "fair", "near_bound")]
    if verdicts:
        console.print()
        console.print("[bold]verdicts[/]")
        for point_id, v in verdicts:
            console.print(f"  [yellow]{v['verdict']:<15}[/] {escape(point_id)} {escape(v['subject'])}: "
                          f"{escape(v['detail'])}")
    for problem in summary.get("problems", []):
        console.print(f"  [red]problem[/] {escape(problem)}")


def validity_line(mt: dict[str, Any] | None) -> str:
    """VALID or INVALID, the stability band, and the reasons and warnings."""
    v = (mt or {}).get("validity")
    if not v:
        return ""
    colour = "green" if v["verdict"] == "VALID" else "red"
    detail = "; ".join(v["reasons"] + v["warnings"])
    stab = f", {v['stability']} ({v['cv_pct']:.1f}% cv)" if v.get("stability") else ""
    return f"[{colour}]{v['verdict']}[/]{stab}" + (f": {escape(detail)}" if detail else "")


def print_findings(summary: dict[str, Any], console: Console, limit: int | None = None) -> None:
    """The ranked findings: severity, what, where (time windows in seconds from the run's start),
    the evidence and what to change."""
    findings = summary.get("findings") or []
    console.print()
    if not findings:
        console.print("[bold]diagnosis[/]: no finding (nothing in the records or telemetry points to a cause)")
        return
    console.print(f"[bold]diagnosis[/]: {len(findings)} finding(s), most important first")
    colour = {"high": "red", "medium": "yellow", "low": "cyan"}
    for k, f in enumerate(findings[:limit] if limit else findings, 1):
        point = f" [{escape(f['point'])}]" if f.get("point") else ""
        console.print(f" {k}. [{colour.get(f['severity'], 'white')}]{f['severity']:<6}[/] {escape(f['title'])}{point}")
        windows = ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in (f.get("windows_s") or [])[:3])
        more = len(f.get("windows_s") or []) - 3
        if windows:
            console.print(f"    windows: {windows}{f' (+{more} more)' if more > 0 else ''} from the run's start",
                          style="dim")
        evidence = ", ".join(f"{k}={_evidence(v)}" for k, v in f["evidence"].items() if v is not None)
        console.print(f"    evidence: {escape(evidence)}", style="dim")
        if f.get("recommendation"):
            console.print(f"    do: {escape(f['recommendation'])}")


def _evidence(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_evidence(v)}" for k, v in value.items() if v is not None) + "}"
    return str(value)


def print_summary(summary: dict[str, Any], console: Console) -> None:
    if "points" in summary:
        print_sweep(summary, console)
        print_findings(summary, console, limit=10)
        return
    phases = summary.get("phases", {})
    names = list(summary.get("instances", {}))
    reps = None
    for name in names:
        facts = dict(summary["instances"][name])
        solo, coloc = phases.get("solo", {}).get(name), phases.get("colocated", {}).get(name)
        reps = (solo or coloc or {}).get("repetitions")
        facts["repetitions"] = reps
        console.print()
        console.print(instance_header(name, facts))
        if solo or coloc:
            console.print(instance_table(name, solo, coloc))
            for label, mt in (("solo", solo), ("co-located", coloc)):
                ol = (mt or {}).get("open_loop")
                if ol:
                    console.print(f"  {label} open loop: {_num(ol.get('achieved_rate'))} req/s sent for "
                                  f"{_num(ol.get('requested_rate'))} requested, schedule lag mean "
                                  f"{_num(ol.get('mean_schedule_lag_ms'), 3)} ms, p99 {_num(ol.get('p99_schedule_lag_ms'), 3)} ms",
                                  style="dim")
            for label, mt in (("solo", solo), ("co-located", coloc)):
                client = (mt or {}).get("client")
                if client and (mt or {}).get("backend") == "openai":
                    sources = ", ".join(f"{k} {v}" for k, v in ((mt or {}).get("token_count_source") or {}).items())
                    console.print(f"  {label} client: {_num((client.get('cpu_util_max') or 0) * 100, 0)}% of a core "
                                  f"at most, event-loop lag p99 {_num(client.get('loop_lag_p99_ms'))} ms, mean "
                                  f"concurrency {_num(mt.get('mean_concurrency'), 1)}, error rate "
                                  f"{_num((mt.get('error_rate') or 0) * 100, 1)}%; token counts from {sources or '-'}",
                                  style="dim")
            for label, mt in (("solo", solo), ("co-located", coloc)):
                if mt and mt.get("validity"):
                    console.print(f"  {label}: {validity_line(mt)}")
            for label, mt in (("solo", solo), ("co-located", coloc)):
                if mt and mt.get("quality"):
                    console.print(f"  {label} quality: {quality_line(mt['quality'])}")
            for label, mt in (("solo", solo), ("co-located", coloc)):
                line = telemetry_line(mt)
                if line:
                    console.print(f"  {label} telemetry: {line}", style="dim")
            peaks = [f"{label} {_bytes(mt['peak_memory_bytes'])}" for label, mt in (("solo", solo), ("co-located", coloc))
                     if mt and mt.get("peak_memory_bytes")]
            if peaks:
                console.print(f"  peak memory: {', '.join(peaks)}", style="dim")
        else:
            console.print("  no measurements", style="yellow")
    table = interference_table(summary)
    if table is not None:
        console.print()
        console.print(table)
    for device, e in ((summary.get("energy") or {}).get("colocated") or {}).items():
        if e.get("energy_j") is not None:
            idle = (summary.get("idle_power_w") or {}).get(device)
            console.print(f"co-located energy on {device}: {e['energy_j']:.1f} J for {e['output_tokens']} tokens of "
                          f"{', '.join(e['instances'])} = {e['energy_per_token_j'] * 1e3:.2f} mJ/token, "
                          f"{e['tokens_per_j']:.1f} tokens/J ({e['method']})"
                          + (f"; idle power {idle:.0f} W" if idle is not None else ""))
    inter = summary.get("interference") or {}
    if inter.get("throughput_scaling") is not None:
        console.print(f"aggregate throughput scaling: [bold]{inter['throughput_scaling']:.2f}x[/] "
                      f"(ideal {inter['ideal_scaling']}x)")
    verdicts = inter.get("verdicts", [])
    if verdicts:
        console.print()
        console.print("[bold]verdicts[/]")
        for v in verdicts:
            colour = {"ok": "green", "stable": "green", "acceptable": "green", "fair": "green",
                      "near_bound": "green"}.get(v["verdict"], "yellow")
            console.print(f"  [{colour}]{v['verdict']:<15}[/] {escape(v['subject'])}: {escape(v['detail'])}")
    for problem in summary.get("problems", []):
        console.print(f"  [red]problem[/] {escape(problem)}")
    if "findings" in summary:
        print_findings(summary, console)
