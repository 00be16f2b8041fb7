import math

import pytest

from colobench.analysis import metrics as m
from colobench.analysis.checks import phase_checks, point_checks
from colobench.analysis.distribution import Distribution
from colobench.analysis.interference import interference, slowdown, throughput_scaling
from colobench.analysis.model import ClientLoad, Distributions, PhaseMetrics, RepetitionStats
from colobench.analysis.phase import instance_phase_metrics
from colobench.records import RequestRecord

MS = 1_000_000


def rec(submit_ms, token_ms, rep=1, warmup=False, ok=True, rid=0):
    tokens = [int(t * MS) for t in token_ms]
    return RequestRecord(instance="a", run_id="r", repetition=rep, request_id=rid, batch_id=rid, batch_size=1,
                         prompt_tokens=10, output_tokens=len(tokens), submit_ns=int(submit_ms * MS), token_ns=tokens,
                         done_ns=tokens[-1] if tokens else None, warmup=warmup, ok=ok,
                         error=None if ok else "RuntimeError: boom")


def test_single_request_formulas():
    r = rec(0, [50, 60, 75, 90])
    assert m.ttft_ns(r) == 50 * MS
    assert m.e2el_ns(r) == 90 * MS
    assert m.tpot_ns(r) == (90 - 50) / 3 * MS
    assert m.itl_ns(r) == [10 * MS, 15 * MS, 15 * MS]
    assert m.tpot_ns(rec(0, [5])) is None and m.itl_ns(rec(0, [5])) == []


def test_throughput_over_window():
    records = [rec(0, [10, 20, 30, 40], rid=0), rec(40, [50, 60, 70, 80], rid=1)]
    assert m.window_s(records) == 0.08
    assert math.isclose(m.output_throughput_tok_s(records), 8 / 0.08)
    assert math.isclose(m.request_throughput_req_s(records), 2 / 0.08)


def test_measured_excludes_warmup_and_failures():
    records = [rec(0, [1, 2], warmup=True, rep=0), rec(0, [1, 2], ok=False), rec(0, [1, 2])]
    assert len(m.measured(records)) == 1


def test_instance_phase_metrics_hand_computed():
    # repetition 1: two requests back to back; repetition 2: one slower request
    records = [
        rec(0, [10, 20, 30], rep=1, rid=0),
        rec(30, [40, 50, 60], rep=1, rid=1),
        rec(1000, [1020, 1040, 1060], rep=2, rid=0),
        rec(0, [1, 2, 3], rep=0, warmup=True),
        rec(2000, [], rep=2, ok=False, rid=1),
    ]
    out = instance_phase_metrics(records).model_dump()
    assert out["completed"] == 3 and out["failed"] == 1 and out["warmup_requests"] == 1
    assert out["repetitions"] == 2
    assert out["total_output_tokens"] == 9 and out["total_input_tokens"] == 30
    # TTFTs 10, 10, 20 ms
    assert math.isclose(out["mean_ttft_ms"], 40 / 3)
    assert math.isclose(out["median_ttft_ms"], 10)
    # TPOTs 10, 10, 20 ms; ITLs 10,10,10,10,20,20
    assert math.isclose(out["mean_tpot_ms"], 40 / 3)
    assert math.isclose(out["mean_itl_ms"], 80 / 6)
    # E2E 30, 30, 60
    assert math.isclose(out["mean_e2el_ms"], 40)
    # tokens over time: 9 tokens over the two windows of 0.06 s each; 3 requests over 0.12 s
    assert math.isclose(out["output_throughput"], 9 / 0.12)
    assert math.isclose(out["request_throughput"], 3 / 0.12)
    # the distribution behind the interval: one rate per repetition (6 / 0.06 and 3 / 0.06)
    assert out["repetition_stats"]["output_throughput"] == pytest.approx([100, 50])
    assert out["errors"] == {"RuntimeError: boom": 1}
    for key in ("mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "p99_ttft_ms", "p99_tpot_ms", "p99_itl_ms",
                "p99_e2el_ms", "output_throughput", "request_throughput"):
        assert key in out


def _phase(median_ttft, p99_ttft, tput, tpot_cv=0.05, completed=200, reps=5, **extra):
    """A phase whose `reps` repetitions' mean TPOTs have the cv `tpot_cv` (requests agree with them)."""
    d = Distribution(count=completed, mean=2.0, cv=0.01)
    # 2 +- delta, alternating (and one 2.0 when `reps` is odd): a sample std of exactly tpot_cv * 2
    delta = 2.0 * tpot_cv * (math.sqrt((reps - 1) / reps) if reps % 2 == 0 else 1.0)
    means = ([2.0] if reps % 2 else []) + [2.0 + delta * (-1) ** k for k in range(reps - reps % 2)]
    stats = RepetitionStats(repetitions=list(range(1, reps + 1)), mean_tpot_ms=means,
                            output_throughput=[tput] * reps)
    return PhaseMetrics(median_ttft_ms=median_ttft, p99_ttft_ms=p99_ttft, median_tpot_ms=2.0, p99_tpot_ms=3.0,
                        median_e2el_ms=100.0, p99_e2el_ms=150.0, output_throughput=tput, completed=completed,
                        failed=0, warmup_requests=1, repetitions=reps, repetition_stats=stats, distributions=Distributions(
                            ttft_ms=d, tpot_ms=d, itl_ms=d, e2el_ms=d, output_throughput_tok_s=d,
                            request_throughput_req_s=d), **extra)


def _verdicts(solo, coloc):
    """Every check of a point: (kind, subject label) -> verdict."""
    checks = point_checks("", interference(solo, coloc))
    for phase, by in (("solo", solo), ("colocated", coloc)):
        checks += [c for name, mt in by.items() for c in phase_checks("", phase, name, mt, [])]
    return checks


def test_interference_hand_computed():
    solo = {"a": _phase(10, 20, 100), "b": _phase(10, 20, 300)}
    coloc = {"a": _phase(15, 50, 80), "b": _phase(10, 20, 200)}
    s = slowdown(solo["a"], coloc["a"])
    assert s.ttft_p50 == 1.5 and s.ttft_p99 == 2.5 and s.tpot_p50 == 1.0
    assert s.output_throughput == 0.8
    # (80 + 200) / mean(100, 300) = 280 / 200
    assert math.isclose(throughput_scaling(solo, coloc), 1.4)
    block = interference(solo, coloc)
    assert block.ideal_scaling == 2
    (scaling,) = [c for c in _verdicts(solo, coloc) if c.kind == "scaling"]
    assert scaling.verdict == "bottleneck" and scaling.threshold == 1.5 and scaling.subject.instance is None


def test_interference_verdicts_ok_unstable_and_few():
    solo = {"a": _phase(10, 20, 100), "b": _phase(10, 20, 100, tpot_cv=0.2)}
    coloc = {"a": _phase(11, 22, 95, completed=10), "b": _phase(11, 22, 95)}
    verdicts = {(c.kind, c.subject.label): c for c in _verdicts(solo, coloc)}
    assert verdicts[("scaling", "aggregate")].verdict == "ok"
    assert verdicts[("stability", "b (solo)")].verdict == "unstable"
    assert verdicts[("stability", "b (solo)")].level == "invalid"
    assert verdicts[("stability", "a (solo)")].verdict == "acceptable"  # cv 5%: acceptable, not yet stable
    assert verdicts[("sample_size", "a (colocated)")].verdict == "few_requests"


def test_one_stability_threshold_everywhere():
    """The stability verdict and the validity band come from one table: 5% stable, 10% acceptable."""
    from colobench.analysis.checks import THRESHOLDS, stability_band

    assert (THRESHOLDS.stable_cv, THRESHOLDS.acceptable_cv) == (0.05, 0.10)
    assert [stability_band(cv) for cv in (0.04, 0.05, 0.10, 0.11)] == ["stable", "acceptable", "acceptable", "unstable"]
    # above 10% but within what 5 repetitions can tell apart from 10%: inconclusive, not INVALID
    assert [stability_band(cv, 5) for cv in (0.12, 0.15, 0.16)] == ["inconclusive", "inconclusive", "unstable"]
    assert stability_band(0.12, 50) == "unstable"
    (check,) = [c for c in phase_checks("", "solo", "a", _phase(1, 1, 1, tpot_cv=0.08), []) if c.kind == "stability"]
    assert check.threshold == THRESHOLDS.acceptable_cv and check.verdict == "acceptable"


def test_solo_only_has_no_scaling():
    block = interference({"a": _phase(10, 20, 100)}, {})
    assert block.throughput_scaling is None and block.slowdown == {}


def _endpoint_phase(**extra):
    fields = dict(backend="openai", load_model="closed", parallel=64, mean_concurrency=63.0,
                  client=ClientLoad(cpu_util_max=0.3, loop_lag_p99_ms=1.0), token_count_source={"usage": 200},
                  output_length_mismatch=0)
    return _phase(10, 20, 100, **{**fields, **extra})


@pytest.mark.parametrize("extra, fragment", [
    ({"client": ClientLoad(cpu_util_max=0.97, loop_lag_p99_ms=1.0)}, "97% of a core"),
    ({"client": ClientLoad(cpu_util_max=0.6, loop_lag_p99_ms=25.0)}, "event-loop lag p99 25.0 ms"),
    ({"client": ClientLoad(cpu_util_max=0.6, loop_lag_p99_ms=1.0), "mean_concurrency": 30.0},
     "mean concurrency 30.0 of 64 asked"),
])
def test_client_bound_verdicts(extra, fragment):
    """The load generator is the bottleneck only when it is busy itself."""
    bound = [c for c in _verdicts({"a": _endpoint_phase(**extra)}, {}) if c.verdict == "client_bound"]
    assert len(bound) == 1 and fragment in bound[0].sentence and bound[0].level == "invalid"
    assert bound[0].subject.instance == "a" and bound[0].subject.phase == "solo"


def test_lag_while_the_client_idles_is_host_contention():
    """Event-loop lag while the client used 0.7% of a core is other processes' doing: a warning
    that points at the host, never client_bound (the issue's misdiagnosis)."""
    checks = _verdicts({"a": _endpoint_phase(client=ClientLoad(cpu_util_max=0.007, loop_lag_p99_ms=25.0))}, {})
    assert not [c for c in checks if c.verdict == "client_bound"]
    (host,) = [c for c in checks if c.kind == "host_contention"]
    assert host.level == "warning" and "0.7% of a core" in host.sentence


def test_healthy_endpoint_has_no_client_or_count_verdicts():
    kinds = {c.kind for c in _verdicts({"a": _endpoint_phase()}, {})}
    assert not kinds & {"client_bound", "output_length", "token_count"}


def test_inexact_lengths_and_chunk_counts_are_flagged():
    verdicts = {c.verdict for c in _verdicts({"a": _endpoint_phase(output_length_mismatch=3,
                                                                   token_count_source={"chunks": 200})}, {})}
    assert {"inexact_lengths", "chunk_counts"} <= verdicts


def test_tpot_uses_token_count_not_chunks():
    r = rec(0, [50, 60, 70])  # three chunks
    r.output_tokens = 9  # carrying nine tokens
    assert m.tpot_ns(r) == (70 - 50) / 8 * MS
    assert m.output_throughput_tok_s([r]) == 9 / 0.07


def test_scaling_above_ideal_questions_the_baselines():
    solo = {"a": _phase(10, 20, 100), "b": _phase(10, 20, 100)}
    coloc = {"a": _phase(10, 20, 120), "b": _phase(10, 20, 120)}
    verdicts = {c.verdict for c in _verdicts(solo, coloc)}
    assert "above_ideal" in verdicts and "ok" in verdicts
