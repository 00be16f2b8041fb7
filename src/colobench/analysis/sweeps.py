"""Sweep tables computed from point summaries.

The batch-size table is the one the classic tuning studies print: for each instance (and each
combination of the other axes), batch size, throughput, speed-up over the smallest batch,
per-request latency, per-step latency, and how close to linear the scaling is:

    speedup(b)   = throughput(b) / throughput(b0)
    linearity(b) = speedup(b) / (b / b0)      1.0 = perfectly linear, the ideal of a
                                              bandwidth-bound decode whose step time stays flat

A decode step reads every weight once whatever the batch, so while the device is bandwidth
bound a larger batch is nearly free (linearity near 1); once compute or the host dominates,
linearity falls.
"""

from __future__ import annotations

from colobench.analysis.model import BatchScaling, BatchScalingRow, PhaseMetrics, Point


def batch_scaling(points: list[Point]) -> list[BatchScaling]:
    """Rows per (instance, phase, other axes) group, sorted by batch size; [] without the axis."""
    if not points or "batch_size" not in points[0].axes:
        return []
    groups: dict[tuple, list[tuple[int, str, PhaseMetrics]]] = {}
    for point in points:
        batch = point.axes["batch_size"]
        if not isinstance(batch, int):
            continue
        others = tuple(sorted((k, str(v)) for k, v in point.axes.items() if k != "batch_size"))
        for phase, name, metrics in point.rows():
            groups.setdefault((name, phase, others), []).append((batch, point.id, metrics))
    tables = []
    for (name, phase, others), rows in groups.items():
        rows.sort(key=lambda r: r[0])
        base_batch, _, base = rows[0]
        base_tput = base.output_throughput
        out_rows = []
        for batch, point_id, metrics in rows:
            tput = metrics.output_throughput
            speedup = tput / base_tput if tput and base_tput else None
            out_rows.append(BatchScalingRow(
                point=point_id, batch_size=batch, output_throughput=tput, speedup=speedup,
                linearity=speedup / (batch / base_batch) if speedup else None, mean_e2el_ms=metrics.mean_e2el_ms,
                mean_tpot_ms=metrics.mean_tpot_ms, completed=metrics.completed))
        tables.append(BatchScaling(instance=name, phase=phase, axes=dict(others), rows=out_rows))
    return tables
