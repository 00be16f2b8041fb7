"""The metric registry is the one place a metric is declared: its summary keys, distribution,
per-repetition values and every table's columns follow from its entry."""

from __future__ import annotations

import pytest

from colobench.analysis import metrics as m
from colobench.analysis.compare import METRICS as COMPARED
from colobench.analysis.model import Distributions, PhaseMetrics, RepetitionStats
from colobench.analysis.phase import instance_phase_metrics
from colobench.analysis.registry import COLUMNS, METRICS, STATS, Metric, console_rows
from colobench.records import RequestRecord
from colobench.report import exports


def _record(k: int, prompt: int, ttft_ms: float, rep: int = 1) -> RequestRecord:
    t0 = 1_000_000_000 * k
    first = t0 + int(ttft_ms * 1e6)
    return RequestRecord(instance="a", run_id="solo-a", repetition=rep, request_id=k, batch_id=k, batch_size=1,
                         prompt_tokens=prompt, output_tokens=3, submit_ns=t0,
                         token_ns=[first, first + 5_000_000, first + 10_000_000], done_ns=first + 10_000_000)


@pytest.mark.parametrize("metric", METRICS, ids=lambda x: x.name)
def test_every_metric_has_its_keys_everywhere(metric: Metric):
    assert all(metric.key(s) in PhaseMetrics.model_fields for s in STATS)
    assert metric.distribution_key in Distributions.model_fields
    assert all(metric.repetition_key(s) in RepetitionStats.model_fields for s in metric.repetition)
    assert all(metric.key(s) in exports.COLUMNS for s in metric.csv)
    assert all(metric.key(s) in exports.MARKDOWN_COLUMNS for s in metric.markdown)
    assert {metric.key(s) for s in metric.compare} <= {k for k, _, _ in COMPARED}
    assert ((metric.title, metric.distribution_key) in console_rows()) == metric.console
    assert metric.doc and metric.formula.__doc__


def test_columns_keep_vllm_names_and_their_order():
    csv = exports.COLUMNS
    assert csv[:5] == ["completed", "failed", "error_rate", "output_throughput", "request_throughput"]
    assert csv.index("mean_ttft_ms") < csv.index("median_ttft_ms") < csv.index("p99_ttft_ms") < csv.index("mean_tpot_ms")
    assert "median_itl_ms" not in csv and "p99_itl_ms" in csv and csv[-2:] == ["slo_attainment", "goodput"]
    assert [k for k, _, _ in COMPARED][:4] == ["output_throughput", "request_throughput", "mean_ttft_ms", "p99_ttft_ms"]
    assert ("peak_memory_bytes", None, False) in COMPARED  # a single figure: a ratio, no interval
    assert len({c.key if not isinstance(c, Metric) else c.name for c in COLUMNS}) == len(COLUMNS)


def test_a_registered_metric_is_computed_from_its_formula():
    """TTFT per 1k prompt tokens, added as one entry: by hand, in the phase's keys, its distribution
    and its per-repetition values."""
    records = [_record(1, 100, 20.0), _record(2, 400, 40.0), _record(3, 1000, 50.0, rep=2), _record(4, 0, 9.0, rep=2)]
    assert m.ttft_per_ktok_ns(records[0]) == pytest.approx(200e6) and m.ttft_per_ktok_ns(records[3]) is None
    mt = instance_phase_metrics(records)
    assert mt.mean_ttft_per_ktok_ms == pytest.approx((200 + 100 + 50) / 3)
    assert mt.median_ttft_per_ktok_ms == pytest.approx(100) and mt.distributions.ttft_per_ktok_ms.count == 3
    assert mt.repetition_stats.mean_ttft_per_ktok_ms == [pytest.approx(150), pytest.approx(50)]
    assert mt.mean_ttft_ms == pytest.approx((20 + 40 + 50 + 9) / 4)  # the others untouched


def test_a_metric_of_some_phases_only_is_absent_elsewhere():
    """TTFC applies to streams with reasoning: without it, no distribution and no keys set."""
    mt = instance_phase_metrics([_record(1, 10, 5.0), _record(2, 10, 6.0)])
    assert mt.distributions.ttfc_ms is None and mt.mean_ttfc_ms is None and mt.p99_ttfc_ms is None
    assert "mean_ttfc_ms" in exports.COLUMNS  # the CSV keeps the column (empty), so files of a sweep line up
