"""One self-contained `report.html` per run directory: opens offline (an air-gapped cluster), no CDN.

plotly.js is embedded once, inline; each figure is a `<div>` with its data. Sections, headline
first: one card per co-located group (scaling with its interval and verdict, each instance's
slowdowns with intervals, overlap and validity), the setup (devices, models, versions,
validity), the metrics table, latency distributions per instance (solo against co-located:
histograms and CDFs), throughput and scaling against the ideal, one timeline per point (every
phase on one time axis: each request's TPOT and each token's ITL over time, the phases' windows
marked, each request's decode bandwidth against the device's peak with the 80% alert line,
device and host telemetry under it, the findings' windows shaded), sweeps (throughput
and latency against the swept value, with the bandwidth roofline) and the findings. Each
instance keeps one colour in every figure; solo is drawn open or dashed, co-located filled.

Large runs stay usable: histograms and CDFs are computed here (a few hundred numbers per
series, whatever the request count) and timelines plot at most `MAX_POINTS` points per series,
evenly spaced; statistics always come from every record. Every string that came from outside
(model paths, server errors, finding text) is HTML-escaped; only instance names, which the
specs restrict to [A-Za-z0-9._-], go into the figures' data.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from colobench.analysis import metrics as m
from colobench.analysis.checks import THRESHOLDS
from colobench.analysis.distribution import Distribution
from colobench.analysis.model import Finding, PhaseMetrics, Point, Summary
from colobench.analysis.registry import METRICS
from colobench.analysis.telemetry import is_host
from colobench.records import read_records
from colobench.rundir import Manifest, PlannedRun, RunDir
from colobench.secrets import scrub
from colobench.report.cards import Card, Ratio, cards
from colobench.report.findings import evidence_text
from colobench.report.server import server_html
from colobench.telemetry.replay import read_samples

MAX_POINTS = 5000
HIST_BINS = 60
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
AGGREGATE_COLOUR = "#444444"
FINDING_COLOUR = "#d62728"
PHASE_DASH = {"solo": "dash", "colocated": "solid"}
PHASE_OPACITY = {"solo": 0.45, "colocated": 0.85}


def instance_colours(summary: Summary) -> dict[str, str]:
    """One colour per instance name, the same in every figure of the report."""
    names = list(dict.fromkeys(n for p in summary.points for n in p.instances))
    return {n: PALETTE[k % len(PALETTE)] for k, n in enumerate(names)}


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fig_html(fig: Any) -> str:
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 40})
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})


def _downsample(x: list[float], y: list[float]) -> tuple[list[float], list[float], bool]:
    if len(x) <= MAX_POINTS:
        return x, y, False
    idx = np.linspace(0, len(x) - 1, MAX_POINTS).astype(int)
    return [x[i] for i in idx], [y[i] for i in idx], True


def _run_records(run_dir: RunDir, run_id: str, name: str) -> list[Any]:
    return [r for f in run_dir.run(run_id).instance_records(name) for r in read_records(f)]


def latency_figures(run_dir: RunDir, runs: list[PlannedRun], name: str, colour: str) -> str:
    """Histograms and CDFs of TTFT, TPOT and E2E latency, solo against co-located."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    series: dict[str, dict[str, np.ndarray]] = {}
    for run in runs:
        if not any(i.name == name for i in run.instances):
            continue
        ok = m.measured(_run_records(run_dir, run.run_id, name))
        series[run.phase] = {
            "TTFT ms": np.array([m.ttft_ns(r) / 1e6 for r in ok]),
            "TPOT ms": np.array([t / 1e6 for r in ok if (t := m.tpot_ns(r))]),
            "E2E ms": np.array([m.e2el_ns(r) / 1e6 for r in ok]),
        }
    if not series:
        return "<p>no measured requests</p>"
    labels = ["TTFT ms", "TPOT ms", "E2E ms"]
    fig = make_subplots(rows=2, cols=3, subplot_titles=[f"{k} histogram" for k in labels] + [f"{k} CDF" for k in labels],
                        vertical_spacing=0.15)
    for col, label in enumerate(labels, start=1):
        values = [v[label] for v in series.values() if len(v[label])]
        if not values:
            continue
        edges = np.histogram_bin_edges(np.concatenate(values), bins=HIST_BINS)
        for phase, data in series.items():
            x = data[label]
            if not len(x):
                continue
            counts, _ = np.histogram(x, bins=edges)
            centres = (edges[:-1] + edges[1:]) / 2
            fig.add_trace(go.Bar(x=centres, y=counts, name=phase, legendgroup=phase, showlegend=col == 1,
                                 marker_color=colour, opacity=PHASE_OPACITY.get(phase, 0.6)), row=1, col=col)
            qs = np.linspace(0, 100, 201)
            fig.add_trace(go.Scatter(x=np.percentile(x, qs), y=qs / 100, mode="lines", name=phase, legendgroup=phase,
                                     showlegend=False, line={"color": colour, "dash": PHASE_DASH.get(phase)}),
                          row=2, col=col)
    fig.update_layout(barmode="overlay", height=560, title=f"{name}: latency, solo against co-located")
    return _fig_html(fig)


def throughput_figure(point: Point, colours: dict[str, str]) -> str:
    import plotly.graph_objects as go

    names = list(point.instances)
    fig = go.Figure()
    for phase in ("solo", "colocated"):
        fig.add_trace(go.Bar(x=names, y=[mt.output_throughput if (mt := point.metrics(phase, n)) else None
                                         for n in names], name=phase, marker_color=[colours[n] for n in names],
                             opacity=PHASE_OPACITY[phase],
                             marker_pattern_shape="/" if phase == "solo" else ""))
    inter = point.interference
    if inter.throughput_scaling is not None:
        solo = point.phases.get("solo", {})
        mean_solo = np.mean([v.output_throughput for v in solo.values() if v.output_throughput])
        coloc_total = sum(v.output_throughput or 0 for v in point.phases.get("colocated", {}).values())
        fig.add_trace(go.Bar(x=["aggregate (co-located)"], y=[coloc_total], name="aggregate",
                             marker_color=AGGREGATE_COLOUR))
        fig.add_hline(y=mean_solo * inter.ideal_scaling, line_dash="dash",
                      annotation_text=f"ideal {inter.ideal_scaling}x solo", line_color="#2ca02c")
        fig.add_hline(y=mean_solo * 0.75 * inter.ideal_scaling, line_dash="dot",
                      annotation_text="bottleneck below", line_color="#ff7f0e")
    fig.update_layout(height=380, yaxis_title="output tokens/s",
                      title=f"throughput (scaling {inter.throughput_scaling or 0:.2f}x)")
    return _fig_html(fig)


def _point_samples(run_dir: RunDir, runs: list[PlannedRun]) -> list[dict[str, Any]]:
    """Telemetry of a point's runs (interleaved runs share one file), each sample once, in time order."""
    seen, out = set(), []
    for run in runs:
        for sample in read_samples(run_dir.run(run.run_id).telemetry):
            key = (sample["t_ns"], sample["device"], sample.get("source"))
            if key not in seen:
                seen.add(key)
                out.append(sample)
    return sorted(out, key=lambda s: s["t_ns"])


def _request_bandwidth(records: dict[tuple[str, str], list[Any]], point: Point,
                       origin: int) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    """Each request's decode bandwidth as a share of the device's peak, at its completion: the
    phase's bytes per decode step (weights and KV cache, see `roofline`) over the request's own
    TPOT. Over time, alone and together on one axis: where the co-located pair nears the peak."""
    out = {}
    for (phase, name), rs in records.items():
        mt = point.metrics(phase, name)
        roof = mt.roofline if mt is not None else None
        peak_gb_s = roof.peak.memory_bandwidth_gb_s if roof is not None and roof.peak is not None else None
        if roof is None or not roof.bytes_per_step or not peak_gb_s:
            continue
        pairs = [((r.done_ns - origin) / 1e9, 100 * roof.bytes_per_step / (t / 1e9) / (peak_gb_s * 1e9))
                 for r in rs if (t := m.tpot_ns(r))]
        x, y, _ = _downsample([a for a, _ in pairs], [b for _, b in pairs])
        if x:
            out[(phase, name)] = (x, y)
    return out


def timeline_figure(run_dir: RunDir, runs: list[PlannedRun], point: Point, findings: list[Finding],
                    colours: dict[str, str]) -> str:
    """Every phase of one point on one time axis: each request's TPOT (at its completion) and each
    token's ITL, the phases' repetition windows marked, device and host telemetry below, the
    findings' windows shaded."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    records = {(run.phase, i.name): m.measured(_run_records(run_dir, run.run_id, i.name))
               for run in runs for i in run.instances}
    starts = [m.start_ns(r) for rs in records.values() for r in rs]
    if not starts:
        return "<p>no measured requests</p>"
    origin = min(starts)
    samples = _point_samples(run_dir, runs)
    device_samples = [s for s in samples if not is_host(s["device"]) and not s["device"].startswith("server:")]
    host = [s for s in samples if is_host(s["device"])]
    bandwidth = _request_bandwidth(records, point, origin)
    rows = 2 + (1 if bandwidth else 0) + (1 if device_samples else 0) + (1 if host else 0)
    titles = ["TPOT ms per request (at its completion)", "ITL ms per token"] + (
        [f"decode bandwidth, % of peak (bytes per step / TPOT; alert at {THRESHOLDS.bandwidth_near_peak_pct:.0f}%)"]
        if bandwidth else []) + (["device"] if device_samples else []) + (["host CPU %"] if host else [])
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.06,
                        row_heights=[0.3, 0.3] + [0.4 / max(1, rows - 2)] * (rows - 2))
    note = ""
    for (phase, name), rs in records.items():
        colour, label = colours.get(name, PALETTE[-1]), f"{name} {phase}"
        symbol = "circle-open" if phase == "solo" else "circle"
        pairs = [((r.done_ns - origin) / 1e9, t / 1e6) for r in rs if (t := m.tpot_ns(r)) is not None]
        x, y, cut = _downsample([a for a, _ in pairs], [b for _, b in pairs])
        fig.add_trace(go.Scattergl(x=x, y=y, mode="markers", name=label, legendgroup=label,
                                   marker={"size": 5, "color": colour, "symbol": symbol}), row=1, col=1)
        gaps = [((r.token_ns[k] - origin) / 1e9, (r.token_ns[k] - r.token_ns[k - 1]) / 1e6)
                for r in rs for k in range(1, len(r.token_ns))]
        gx, gy, gcut = _downsample([a for a, _ in gaps], [b for _, b in gaps])
        fig.add_trace(go.Scattergl(x=gx, y=gy, mode="markers", name=label, legendgroup=label, showlegend=False,
                                   marker={"size": 3, "color": colour, "symbol": symbol, "opacity": 0.6}), row=2, col=1)
        if cut or gcut:
            note = f" (at most {MAX_POINTS} evenly spaced points per series; statistics use all)"
    windows = [(f"{name} alone", colours.get(name, PALETTE[-1]), 0.07, mt.repetition_windows_ns)
               for name, mt in point.phases.get("solo", {}).items()]
    together = list(point.phases.get("colocated", {}).values())
    if together:  # one band per co-located repetition: from the first instance's start to the last's end
        per_rep = zip(*(mt.repetition_windows_ns for mt in together if mt.repetition_windows_ns))
        windows.append(("together", AGGREGATE_COLOUR, 0.1, [(min(a for a, _ in ws), max(b for _, b in ws))
                                                             for ws in per_rep]))
    for label, colour, opacity, spans in windows:
        for k, (a, b) in enumerate(spans):
            extra = {"annotation_text": label, "annotation_position": "top left",
                     "annotation_font_size": 10} if k == 0 else {}
            fig.add_vrect(x0=(a - origin) / 1e9, x1=(b - origin) / 1e9, row=1, col=1, line_width=0,
                          fillcolor=colour, opacity=opacity, **extra)
    row = 3
    if bandwidth:
        for (phase, name), (x, y) in bandwidth.items():
            label = f"{name} {phase}"
            fig.add_trace(go.Scattergl(x=x, y=y, mode="markers", name=label, legendgroup=label, showlegend=False,
                                       marker={"size": 5, "color": colours.get(name, PALETTE[-1]),
                                               "symbol": "circle-open" if phase == "solo" else "circle"}),
                          row=row, col=1)
        fig.add_hline(y=THRESHOLDS.bandwidth_near_peak_pct, line_dash="dash", line_color=FINDING_COLOUR, row=row, col=1)
        top = max(max(y) for _, y in bandwidth.values())
        fig.update_yaxes(range=[0, max(105.0, top * 1.05)], row=row, col=1)
        row += 1
    if device_samples:
        for device in sorted({s["device"] for s in device_samples}):
            rows_d = [s for s in device_samples if s["device"] == device]
            t = [(s["t_ns"] - origin) / 1e9 for s in rows_d]
            for key, label in (("util_pct", "util %"), ("power_w", "power W"), ("dram_bw_util_pct", "DRAM bw %"),
                               ("hbm_bw_util_pct", "HBM bw %")):
                values = [s["metrics"].get(key) for s in rows_d]
                if any(v is not None for v in values):
                    fig.add_trace(go.Scatter(x=t, y=values, mode="lines", name=f"{device} {label}"), row=row, col=1)
            mem = [s["metrics"].get("mem_used_bytes") for s in rows_d]
            if any(v is not None for v in mem):
                fig.add_trace(go.Scatter(x=t, y=[v / 2**30 if v else None for v in mem], mode="lines",
                                         name=f"{device} memory GiB"), row=row, col=1)
        row += 1
    for device in sorted({s["device"] for s in host}):  # one host, or one per node of a Ray run
        rows_h = [s for s in host if s["device"] == device]
        t = [(s["t_ns"] - origin) / 1e9 for s in rows_h]
        fig.add_trace(go.Scatter(x=t, y=[s["metrics"].get("cpu_pct") for s in rows_h], mode="lines",
                                 name=f"{device} CPU %", line={"color": AGGREGATE_COLOUR}), row=row, col=1)
        for worker in sorted({w for s in rows_h for w in s["metrics"].get("workers", {})}):
            name = next((n for n in colours if worker == n or worker.startswith(n + ".")), worker)
            fig.add_trace(go.Scatter(x=t, y=[s["metrics"].get("workers", {}).get(worker, {}).get("cpu_pct")
                                             for s in rows_h], mode="lines", name=f"{worker} CPU %",
                                     line={"color": colours.get(name, PALETTE[-1]), "dash": "dot"}), row=row, col=1)
    run_ids = {run.run_id for run in runs}
    for w in (w for f in findings for w in f.windows if w.run_id in run_ids):
        fig.add_vrect(x0=(w.start_ns - origin) / 1e9, x1=(w.end_ns - origin) / 1e9, fillcolor=FINDING_COLOUR,
                      opacity=0.12, line_width=0)
    title = f"timeline{': point ' + point.id if point.id else ''}, every phase on one axis{note}"
    fig.update_layout(height=320 + 170 * rows, title=title)
    fig.update_xaxes(title_text="seconds from the point's first request", row=rows, col=1)
    return _fig_html(fig)


def sweep_figure(summary: Summary) -> str:
    """Throughput and step latency against each swept value, with the decode ceiling."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    axes = summary.sweep_axes
    if not summary.points or not axes:
        return ""
    axis = axes[0]
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"output tokens/s against {axis}", f"TPOT ms against {axis}"])
    series: dict[tuple[str, str, str], list[tuple[Any, Any]]] = {}
    for p in summary.points:
        rest = ", ".join(f"{a}={p.axes.get(a)}" for a in axes[1:])
        for phase, name, mt in p.rows():
            series.setdefault((name, phase, rest), []).append((p.axes.get(axis), mt))
    for (name, phase, rest), rows in series.items():
        label = f"{name} {phase}" + (f" ({rest})" if rest else "")
        xs = [str(x) for x, _ in rows]
        fig.add_trace(go.Scatter(x=xs, y=[mt.output_throughput for _, mt in rows], mode="lines+markers",
                                 name=label), row=1, col=1)
        fig.add_trace(go.Scatter(x=xs, y=[mt.mean_tpot_ms for _, mt in rows], mode="lines+markers",
                                 name=label, showlegend=False), row=1, col=2)
        ceiling = [mt.roofline.decode_ceiling_tok_s if mt.roofline else None for _, mt in rows]
        if any(c for c in ceiling):
            fig.add_trace(go.Scatter(x=xs, y=ceiling, mode="lines", line={"dash": "dash"},
                                     name=f"{label}: bandwidth roofline"), row=1, col=1)
    fig.update_layout(height=420, title="sweep")
    return _fig_html(fig)


def _quality_html(summary: Summary) -> str:
    """Quality of each variant against its reference, and the generated texts side by side."""
    rows, texts = [], []
    for p in summary.points:
        for phase, name, mt in p.rows():
            q = mt.quality
            if not q:
                continue
            ratio = " ".join(f"{k}={v:.2f}x" for k, v in q.vs_reference.items() if v is not None)
            rows.append(f"<tr><td>{_e(p.id)}</td><td>{_e(name)} ({_e(phase)})</td><td>{_e(q.reference)}</td>"
                        f"<td>{q.token_agreement * 100:.1f}%</td><td>{q.first_divergence_min}</td>"
                        f"<td>{q.top1_agreement * 100:.1f}%</td><td>{q.kl_divergence:.3e}</td><td>{_e(ratio)}</td></tr>")
            for pair in q.texts:
                texts.append(f"<tr><td>{_e(name)}</td><td><pre>{_e(pair.reference)}</pre></td>"
                             f"<td><pre>{_e(pair.variant)}</pre></td></tr>")
    if not rows:
        return "<p>No quality comparison (no variant sweep and no reference instance).</p>"
    out = ("<table><tr><th>point</th><th>instance</th><th>reference</th><th>token agreement</th><th>first divergence"
           "</th><th>top-1</th><th>KL (nats)</th><th>vs reference</th></tr>" + "".join(rows) + "</table>")
    if texts:
        out += ("<h3>generated text, reference against variant</h3><table><tr><th>instance</th><th>reference</th>"
                "<th>variant</th></tr>" + "".join(texts) + "</table>")
    return out


def _findings_html(findings: list[Finding]) -> str:
    if not findings:
        return "<p>No finding: nothing in the records or telemetry points to a cause.</p>"
    items = []
    for f in findings:
        windows = ", ".join(f"{w.start_s:.2f}-{w.end_s:.2f} s ({w.run_id})" for w in f.windows[:5])
        evidence = ", ".join(f"{_e(k)}={_e(evidence_text(v))}" for k, v in f.evidence.items()
                             if v is not None and k != "table")
        table = f.evidence.get("table")
        table_html = ""
        if isinstance(table, list) and table and all(isinstance(r, dict) for r in table):
            cols = list(dict.fromkeys(k for r in table for k in r))
            table_html = ("<table class='evidence'><tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>"
                          + "".join("<tr>" + "".join(f"<td>{_e(evidence_text(r.get(c))) if r.get(c) is not None else '-'}"
                                                     "</td>" for c in cols) + "</tr>" for r in table) + "</table>")
        items.append(f"<li class='sev-{_e(f.severity)}'><b>{_e(f.severity)}</b> {_e(f.title)}"
                     f"{' [' + _e(f.point) + ']' if f.point else ''}<br><small>windows: {_e(windows or '-')}"
                     f"<br>evidence: {evidence}</small>{table_html}<br>do: {_e(f.recommendation)}</li>")
    return "<ol>" + "".join(items) + "</ol>"


def _header(manifest: Manifest, summary: Summary) -> str:
    env = manifest.environment.model_dump()
    versions = ", ".join(f"{_e(k)} {_e(v)}" for k, v in (env.get("versions") or {}).items() if v)
    def device_line(d: str, i: dict[str, Any]) -> str:
        extra = i.get("extra") or {}
        facts = [i.get("driver")] + [f"{k} {extra[k]}" for k in ("npu_driver", "npu_firmware", "torch_npu")
                                      if extra.get(k)]
        shown = ", ".join(str(f) for f in facts if f)
        return f"{_e(d)}: {_e(i.get('name'))}" + (f" ({_e(shown)})" if shown else "")

    devices = "; ".join(device_line(d, i) for d, i in manifest.devices.items()) or "-"
    facts = {k: v for p in summary.points for k, v in p.instances.items()}
    rows = []
    for name, f in facts.items():
        params = f"{f.parameters / 1e6:,.1f} M" if f.parameters else "-"
        weights = f"{f.weight_bytes / 2**20:,.1f} MiB" if f.weight_bytes else "-"
        rows.append(f"<tr><td>{_e(name)}</td><td>{_e(f.model)}</td><td>{_e(f.backend)}</td>"
                    f"<td>{_e(f.device)}</td><td>{_e(f.dtype)}</td><td>{params}</td><td>{weights}</td></tr>")
    verdicts, failures = [], []
    for p in summary.points:
        for phase, name, mt in p.rows():
            where = f"{_e(p.id + ' ' if p.id else '')}{_e(name)} ({_e(phase)})"
            v = mt.validity
            if v is not None:
                verdicts.append(f"<li>{where}: <b class='{'ok' if v.verdict == 'VALID' else 'bad'}'>{_e(v.verdict)}"
                                f"</b> {_e('; '.join(v.reasons))}</li>")
            failures += [f"<li>{where}: {count} x <code>{_e(reason)}</code></li>" for reason, count in mt.errors.items()]
    problems = "".join(f"<li class='bad'>{_e(p)}</li>" for p in summary.problems)
    if failures:
        problems += "<li>failed requests:<ul>" + "".join(failures) + "</ul></li>"
    return (f"<div class='card'><h1>colobench: {_e(summary.experiment)}</h1>"
            f"<p>{_e(manifest.created_utc)} on {_e(env.get('hostname'))} ({_e(env.get('cpu_model'))}, "
            f"{_e(env.get('logical_cores'))} cores). Devices: {devices}.</p><p><small>{versions}</small></p>"
            f"<table><tr><th>instance</th><th>model</th><th>backend</th><th>device</th><th>dtype</th>"
            f"<th>parameters</th><th>weights</th></tr>{''.join(rows)}</table>"
            f"<h3>validity</h3><ul>{''.join(verdicts)}</ul>{'<ul>' + problems + '</ul>' if problems else ''}</div>")


def _ratio_html(r: Ratio) -> str:
    text = _e(r.text())
    return f"<b>{text}</b>" if r.beyond_noise else text


def cards_html(all_cards: list[Card], colours: dict[str, str]) -> str:
    """The headline: one card per co-located group (bold: beyond noise)."""
    out = []
    for c in all_cards:
        verdict = {"ok": "ok", "bottleneck": "bad"}.get(c.verdict, "warn")
        lines = []
        for i in c.instances:
            validity = " / ".join(f"<span class='{'ok' if v == 'VALID' else 'bad'}'>{_e(ph)} {_e(v)}</span>"
                                  for ph, v in i.validity.items())
            swatch = f"<span class='swatch' style='background:{colours.get(i.name, PALETTE[-1])}'></span>"
            if i.excluded:
                lines.append(f"<li>{swatch}<b>{_e(i.name)}</b>: <span class='bad'>no partner under load: no "
                             f"slowdown</span>; {validity}</li>")
                continue
            overlap = f"overlap {i.overlap_fraction * 100:.0f}%" if i.overlap_fraction is not None else "overlap -"
            ratios = ", ".join(_ratio_html(r) for r in [*i.slowdowns, i.throughput])
            predicted = f"<br><small>{_e(i.predicted)}</small>" if i.predicted else ""
            lines.append(f"<li>{swatch}<b>{_e(i.name)}</b>: {ratios}; {overlap}; {validity}{predicted}</li>")
        why = f"<p><small>{_e(c.sentence)}</small></p>" if c.verdict in ("inconclusive", "not judged") else ""
        out.append(f"<div class='card headline'><h2>{_e(c.title)}</h2><p class='{verdict} big'>{_e(c.scaling_text())}"
                   f"</p><ul>{''.join(lines)}</ul>{why}</div>")
    return "".join(out)


def _cell(d: Distribution | None) -> str:
    if d is None or not d.count:
        return "-"
    spread = f" ± {d.std:.3g}" if d.count > 1 else ""
    return f"{d.mean:.3g}{spread}<br><small>p50 {d.p50:.3g}, p99 {d.p99:.3g}</small>"


def _throughput_cell(mt: PhaseMetrics) -> str:
    if mt.output_throughput is None:
        return "-"
    reps = mt.repetition_stats.summary("output_throughput") if mt.repetition_stats is not None else None
    slo = mt.slo
    goodput = (f"<br><small>SLO met {slo.attainment * 100:.1f}%, goodput {_f(slo.goodput_req_s)} req/s</small>"
               if slo is not None and slo.attainment is not None else "")
    if reps is None or reps.ci95_low is None:
        return f"{mt.output_throughput:.4g}{goodput}"
    return f"{mt.output_throughput:.4g}<br><small>[{reps.ci95_low:.4g}, {reps.ci95_high:.4g}]</small>{goodput}"


def _memory_cell(mt: PhaseMetrics) -> str:
    """Peak memory, and the allocator's reserved / allocated with its fragmentation."""
    parts = [f"peak {mt.peak_memory_bytes / 2**30:.2f} GiB"] if mt.peak_memory_bytes else []
    a = mt.allocator
    if a is not None:
        frag = max(a.fragmentation_pct_peak or 0, a.fragmentation_pct_end or 0)
        parts.append(f"<small>reserved {a.max_reserved_bytes / 2**30:.2f} / allocated {a.max_allocated_bytes / 2**30:.2f}"
                     f" GiB, fragmentation <span class='{'warn' if frag > 15 else 'ok'}'>{frag:.0f}%</span></small>")
    return "<br>".join(parts) or "-"


def categories_html(summary: Summary) -> str:
    """Per prompt category (when the prompts name one): each instance-phase's figures."""
    rows = []
    for p in summary.points:
        for phase, name, mt in p.rows():
            for cat, c in mt.by_category.items():
                rows.append("<tr>" + (f"<td>{_e(p.id)}</td>" if summary.is_sweep else "")
                            + f"<td>{_e(name)}</td><td>{_e(phase)}</td><td>{_e(cat)}</td><td>{c.completed}</td>"
                              f"<td>{_f(c.mean_prompt_tokens, '.0f')} ({c.min_prompt_tokens}..{c.max_prompt_tokens})</td>"
                              f"<td>{_f(c.median_ttft_ms)}</td><td>{_f(c.p99_ttft_ms)}</td><td>{_f(c.mean_tpot_ms)}</td>"
                              f"<td>{_f(c.mean_e2el_ms)}</td><td>{_f(c.output_tok_s_per_request)}</td></tr>")
    if not rows:
        return ""
    head = ("<tr>" + ("<th>point</th>" if summary.is_sweep else "") + "<th>instance</th><th>phase</th><th>category"
            "</th><th>requests</th><th>prompt tokens</th><th>TTFT p50 ms</th><th>TTFT p99 ms</th><th>TPOT ms</th>"
            "<th>E2E ms</th><th>tok/s a request</th></tr>")
    return f"<h3>per prompt category</h3><table>{head}{''.join(rows)}</table>"


def advice_html(summary: Summary) -> str:
    """The advice table: per use, the variant to run, its figure, the runner-up, what was left out
    (per workload when the sweep also varied the workload)."""
    if not summary.advice:
        return ""
    fixed = any(a.within for a in summary.advice)
    rows = []
    for a in summary.advice:
        value = f"{a.value / 2**30:.2f} GiB" if a.scenario == "memory" else _f(a.value)
        runner = (f"{_e(a.runner_up)} ({a.runner_up_value / 2**30:.2f} GiB)" if a.scenario == "memory" and a.runner_up
                  else f"{_e(a.runner_up)} ({_f(a.runner_up_value)})" if a.runner_up else "-")
        left = "<br>".join(f"{_e(p)}: {_e(why)}" for p, why in a.excluded.items()) or "-"
        workload = f"<td>{_e(' '.join(f'{k}={v}' for k, v in a.within.items()))}</td>" if fixed else ""
        rows.append(f"<tr><td>{_e(a.scenario)}</td>{workload}<td>{_e(a.instance)}</td><td><b>{_e(a.choice)}</b></td>"
                    f"<td>{_e(a.figure)}</td><td>{value}</td><td>{runner}</td><td>{_e(a.margin)}</td>"
                    f"<td><small>{left}</small></td></tr>")
    return ("<h3>advice per scenario (within the quality guard)</h3><table><tr><th>use</th>"
            + ("<th>workload</th>" if fixed else "") + "<th>instance</th>"
            "<th>run</th><th>by</th><th>figure</th><th>runner-up</th><th>margin</th><th>left out</th></tr>" + "".join(rows)
            + "</table>")


def _f(value: float | None, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)


def metrics_table_html(summary: Summary, colours: dict[str, str]) -> str:
    """Every instance-phase's headline metrics (mean ± std over requests, p50, p99; throughput
    as tokens over time with the 95% interval from the repetitions) and validity. The latency
    columns are the registry's (`analysis.registry`), each shown when some phase has it."""
    shown = [m for m in METRICS if m.html and any(getattr(mt.distributions, m.distribution_key, None) is not None
                                                  for p in summary.points for _, _, mt in p.rows())]
    head = ("<tr>" + ("<th>point</th>" if summary.is_sweep else "") + "<th>instance</th><th>phase</th>"
            + "".join(f"<th>{_e(m.title)}</th>" for m in shown)
            + "<th>output tok/s</th><th>memory</th><th>reps</th><th>validity</th></tr>")
    rows = []
    for p in summary.points:
        for phase, name, mt in p.rows():
            v = mt.validity
            verdict = (f"<span class='{'ok' if v.verdict == 'VALID' else 'bad'}'>{_e(v.verdict)}</span>"
                       f"<br><small>{_e('; '.join(v.reasons))}</small>" if v is not None else "-")
            swatch = f"<span class='swatch' style='background:{colours.get(name, PALETTE[-1])}'></span>"
            cells = "".join(f"<td>{_cell(getattr(mt.distributions, m.distribution_key, None))}</td>" for m in shown)
            rows.append("<tr>" + (f"<td>{_e(p.id)}</td>" if summary.is_sweep else "")
                        + f"<td>{swatch}{_e(name)}</td><td>{_e(phase)}</td>{cells}"
                          f"<td>{_throughput_cell(mt)}</td><td>{_memory_cell(mt)}</td><td>{mt.repetitions}</td>"
                          f"<td>{verdict}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1500px}
.card{background:#f6f8fa;border:1px solid #ddd;border-radius:8px;padding:12px 20px;margin-bottom:16px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
.ok{color:#2a7}.bad{color:#c33}.sev-high b{color:#c33}.sev-medium b{color:#c80}.sev-low b{color:#38c}
.warn{color:#c80}.big{font-size:18px;font-weight:600}.headline{background:#fff;border-width:2px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
table.evidence td,table.evidence th{font-size:12px;padding:1px 6px}
h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}"""


def render(run_dir: RunDir, summary: Summary, manifest: Manifest) -> str:
    """The whole page, plotly.js included."""

    plan = manifest.plan
    colours = instance_colours(summary)
    parts = [cards_html(cards(summary), colours), _header(manifest, summary),
             "<h2>metrics</h2>", metrics_table_html(summary, colours), categories_html(summary),
             server_html(summary, _e)]
    if summary.is_sweep:
        parts += ["<h2>sweep</h2>", advice_html(summary), sweep_figure(summary)]
    for p in summary.points:
        runs = plan.runs_of(p.id)
        parts.append(f"<h2>point {_e(p.id)}</h2>" if summary.is_sweep else "<h2>latency: solo against co-located</h2>")
        for name in p.instances:
            parts.append(latency_figures(run_dir, runs, name, colours.get(name, PALETTE[-1])))
        if not summary.is_sweep:
            parts += ["<h2>throughput</h2>", throughput_figure(p, colours)]
    parts.append("<h2>timelines</h2>")
    for p in summary.points:
        runs = plan.runs_of(p.id)
        parts.append(timeline_figure(run_dir, runs, p, summary.findings, colours))
    parts += ["<h2>quality</h2>", _quality_html(summary)]
    parts += ["<h2>findings</h2>", _findings_html(summary.findings)]
    title = _e(f"colobench report: {summary.experiment}")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{title}</title><style>{STYLE}</style>"
            f"<script type='text/javascript'>{PLOTLY_JS}</script></head><body>"
            + "\n".join(parts)
            + "<script>document.body.dataset.colobenchReady='1';</script></body></html>")


PLOTLY_JS = "/*colobench: plotly.js*/"  # where a page's plotly.js goes, after the page is scrubbed


def scrubbed_page(page: str) -> str:
    """`page` scrubbed of secrets (`colobench.secrets`), then plotly.js put in at `PLOTLY_JS`: the
    library is never scrubbed (a numeric key such as 12345678 also occurs in its code, and
    masking it there would break every chart)."""
    from plotly.offline import get_plotlyjs

    return scrub(page).replace(PLOTLY_JS, get_plotlyjs(), 1)


def write_report(run_dir: RunDir, summary: Summary, manifest: Manifest) -> Path:
    path = run_dir.report
    tmp = path.with_suffix(".html.tmp")
    try:  # whole or not at all: a full disk leaves neither half a report nor a temporary file
        tmp.write_text(scrubbed_page(render(run_dir, summary, manifest)), encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def comparison_page(header: list[str], table_rows: list[list[str]], rows: list[dict[str, Any]], runs: list[str],
                    sentences: list[str]) -> str:
    """An offline page with the comparison table and a chart of the ratios."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for k in range(1, len(runs)):
        fig.add_trace(go.Bar(x=[f"{r['subject']} {r['metric']}" for r in rows],
                             y=[r["ratios"][k - 1] for r in rows], name=f"run {k + 1} / run 1"))
    fig.add_hline(y=1.0, line_dash="dash")
    fig.update_layout(height=500, title="ratio to the first run")
    table = ("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"
             + "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in table_rows)
             + "</table>")
    runs_html = "".join(f"<li>run {k + 1}: {_e(r)}</li>" for k, r in enumerate(runs))
    return scrubbed_page("<!DOCTYPE html><html><head><meta charset='utf-8'><title>colobench comparison</title>"
            f"<style>{STYLE}</style><script type='text/javascript'>{PLOTLY_JS}</script></head><body>"
            f"<h1>colobench comparison</h1><ul>{runs_html}</ul>"
            + "".join(f"<p><b>{_e(x)}</b></p>" for x in sentences) + f"{_fig_html(fig)}{table}</body></html>")
