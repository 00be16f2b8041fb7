"""The host reference and cross-run verdicts: a run times a fixed workload between its
repetitions, and `compare` calls what a shift of the host explains "host shift", a change beyond
it better or worse, and with several runs per side uses the variance between runs. The figures
here are planted (samples and repetition values written by hand); nothing depends on this
machine's speed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from colobench.analysis.compare import compare, entries, overall, shifts_of
from colobench.analysis.distribution import Distribution, welch
from colobench.analysis.host_reference import host_reference, host_shift
from colobench.analysis.model import (Distributions, HostWindow, PhaseMetrics, Point, RepetitionStats, Stat,
                                      Summary)
from colobench.cli.app import SIDE_BREAK, _args
from colobench.rundir import HostReferenceSample, read_host_reference
from colobench.telemetry.host_reference import HostReference, time_workload


def _samples(cpu_ms: list[float], copy: list[float] | None = None, threads: int = 2) -> list[HostReferenceSample]:
    copy = copy or [15.0 + 0.1 * k for k in range(len(cpu_ms))]
    return [HostReferenceSample(at="start" if k == 0 else f"repetition {k + 1}", unix_s=1e9 + k, threads=threads,
                                cpu_ms=c, copy_gb_s=g, others_cpu_pct=0.0) for k, (c, g) in enumerate(zip(cpu_ms, copy))]


QUIET = [20.0, 20.3, 19.8, 20.1, 20.2, 19.9]
HOGGED = [40.1, 39.6, 40.4, 40.0, 39.8, 40.2]


def test_the_reference_workload_is_written_and_read_back(tmp_path: Path, host_reference_on):
    figures = time_workload(1, rounds=2)
    assert figures["cpu_ms"] > 0 and figures["copy_gb_s"] > 0
    ref = HostReference(tmp_path / "host_reference.jsonl", threads=64)
    assert 1 <= ref.threads <= 64  # never more threads than this process may use
    ref.sample("start", first=True)
    ref.sample("end")
    samples = read_host_reference(tmp_path / "host_reference.jsonl")
    assert [s.at for s in samples] == ["start", "end"]
    assert samples[0].facts and samples[0].facts["allowed_cpus"] == ref.threads or ref.threads < 64
    assert samples[1].facts is None and samples[1].cpu_ms > 0
    # a line that is not a sample is named and skipped
    with open(tmp_path / "host_reference.jsonl", "a") as f:
        f.write(json.dumps({"at": "x", "unix_s": 1, "threads": 0, "cpu_ms": 1, "copy_gb_s": 1}) + "\n")
    problems: list[str] = []
    assert len(read_host_reference(tmp_path / "host_reference.jsonl", problems)) == 2
    assert problems and "sample 3 skipped" in problems[0]


def test_host_shift_beyond_its_noise_and_within_it():
    quiet, hogged = host_reference(_samples(QUIET)), host_reference(_samples(HOGGED))
    assert quiet.samples == 6 and quiet.cpu_ms.ci95_low is not None
    shift = host_shift(quiet, hogged, 0.05)
    assert shift.shifted and shift.moved == {"compute": True, "memory": False}
    assert shift.compute == pytest.approx(np.mean(HOGGED) / np.mean(QUIET))
    assert shift.sentence("B").startswith("the host ran 2.00x slower in B (compute 2.00x [")
    # what it explains: all of it for a host-bound instance, little for one that mostly waits
    assert shift.band(1.0) == pytest.approx((0.0, math.log(shift.compute)))
    assert shift.band(0.05)[1] == pytest.approx(0.05 * math.log(shift.compute))
    same = host_shift(quiet, host_reference(_samples([20.1, 19.9, 20.2, 20.0, 19.8, 20.3])), 0.05)
    assert not same.shifted and same.sentence().startswith("host reference unchanged within its noise")
    assert host_shift(quiet, None, 0.05).unavailable.startswith("not recorded in the second run")
    # another host: the facts that differ are named beside the figures
    moved = _samples(QUIET)
    moved[0] = moved[0].model_copy(update={"facts": {"hostname": "b", "governor": "powersave"}})
    first = _samples(QUIET)
    first[0] = first[0].model_copy(update={"facts": {"hostname": "a", "governor": "performance"}})
    elsewhere = host_shift(host_reference(first), host_reference(moved), 0.05)
    assert "hostname a -> b; governor performance -> powersave" in elsewhere.sentence()
    other = host_shift(quiet, host_reference(_samples(HOGGED, threads=1)), 0.05)
    assert "not comparable (2 threads against 1" in other.unavailable and not other.shifted


def _phase(tputs: list[float], ttfts: list[float], worker_cpu_pct: float | None) -> PhaseMetrics:
    none = Distribution(count=0)
    reps = RepetitionStats(repetitions=list(range(1, len(tputs) + 1)), output_throughput=tputs, mean_ttft_ms=ttfts,
                           request_throughput=[v / 10 for v in tputs])
    host = HostWindow(samples=10, worker_cpu_pct=Stat(mean=worker_cpu_pct, peak=worker_cpu_pct)) \
        if worker_cpu_pct is not None else None
    return PhaseMetrics(completed=50, failed=0, output_throughput=float(np.mean(tputs)),
                        request_throughput=float(np.mean(tputs)) / 10, mean_ttft_ms=float(np.mean(ttfts)),
                        repetition_stats=reps, host=host, backend="fake",
                        distributions=Distributions(output_throughput_tok_s=none, ttft_ms=none, tpot_ms=none,
                                                    itl_ms=none, e2el_ms=none, request_throughput_req_s=none))


def _run(factor_cpu: float, factor_sleepy: float, cpu: float | None = 100.0) -> Summary:
    """Two instances: `busy` spends all its time on the host CPU (or `cpu`%), `sleepy` 3%."""
    base_t, base_l = [100, 101, 99, 100.5, 99.5], [20, 20.2, 19.8, 20.1, 19.9]
    busy = _phase([v / factor_cpu for v in base_t], [v * factor_cpu for v in base_l], cpu)
    sleepy = _phase([v / factor_sleepy for v in base_t], [v * factor_sleepy for v in base_l], 3.0)
    return Summary(experiment="x", points=[Point(phases={"solo": {"busy": busy, "sleepy": sleepy}})])


def test_compare_names_the_host_shift_and_what_lies_beyond_it():
    a, b = _run(1.0, 1.0), _run(1.9, 1.10)  # the host ran 2x slower in B; sleepy is 10% slower of its own
    shifts = shifts_of([host_reference(_samples(QUIET)), host_reference(_samples(HOGGED))])
    rows = compare([entries(a), entries(b)], shifts=shifts)
    said = {(r.subject, r.metric): r.verdicts[0] for r in rows}
    assert said[("busy (solo)", "output_throughput")] == "host shift"
    assert said[("busy (solo)", "mean_ttft_ms")] == "host shift"
    assert said[("sleepy (solo)", "output_throughput")] == "worse"  # 3% on the CPU: the shift explains ~2%
    assert said[("sleepy (solo)", "mean_ttft_ms")] == "worse"
    sentence = overall(rows, 0, shifts[0], "B")
    assert sentence.startswith("the host ran 2.00x slower in B (compute 2.00x")
    assert "3 of 6 metrics differ beyond that: sleepy (solo) output_throughput worse" in sentence
    assert "3 moved with the host" in sentence
    # without the host reference the same rows are all "worse": what the runs could not tell apart
    plain = compare([entries(a), entries(b)])
    assert {r.verdicts[0] for r in plain} == {"worse"}
    # a host-bound instance faster although the host was slower: better, beyond the shift
    faster = compare([entries(a), entries(_run(0.8, 1.0))], shifts=shifts)
    assert {r.verdicts[0] for r in faster if r.subject.startswith("busy")} == {"better"}
    # an instance without host telemetry counts as host-bound: the shift may explain all of it
    unknown = compare([entries(_run(1.0, 1.0, cpu=None)), entries(_run(1.9, 1.0, cpu=None))], shifts=shifts)
    assert {r.verdicts[0] for r in unknown if r.subject.startswith("busy")} == {"host shift"}
    # an unchanged host: its sentence follows the verdict, which is as without it
    calm = shifts_of([host_reference(_samples(QUIET)), host_reference(_samples(QUIET[::-1]))])
    rows = compare([entries(a), entries(b)], shifts=calm)
    assert {r.verdicts[0] for r in rows} == {"worse"}
    assert "host reference unchanged within its noise" in overall(rows, 0, calm[0])


def test_several_runs_per_side_use_the_variance_between_runs():
    # within each run the repetitions agree to 0.5%, but the runs of a side differ by 8%: between
    # single runs that is "worse"; as samples of a side, their spread is the uncertainty
    def run(level: float) -> Summary:
        return Summary(experiment="x", points=[Point(phases={"solo": {"m": _phase(
            [level * v for v in (100, 100.5, 99.5, 100.2, 99.8)], [20 * 100 / level] * 5, 100.0)}})])

    side_a, side_b = [run(100), run(92), run(104)], [run(90), run(103), run(97)]
    one = compare([entries(side_a[0]), entries(side_b[0])])
    assert next(r for r in one if r.metric == "output_throughput").verdicts == ["worse"]
    rows = compare([[entries(s) for s in side_a], [entries(s) for s in side_b]])
    tput = next(r for r in rows if r.metric == "output_throughput")
    run_means_a = [s.points[0].phases["solo"]["m"].repetition_stats.summary("output_throughput").mean for s in side_a]
    run_means_b = [s.points[0].phases["solo"]["m"].repetition_stats.summary("output_throughput").mean for s in side_b]
    expected = welch(Distribution.of_repetitions(run_means_a), Distribution.of_repetitions(run_means_b))
    assert tput.intervals[0] == pytest.approx((expected.low, expected.high))
    assert tput.values[0] == pytest.approx(np.mean([s.points[0].phases["solo"]["m"].output_throughput
                                                    for s in side_a]))
    assert tput.verdicts == ["noise"]


def test_compare_cli_with_two_sides(tmp_path: Path, cli_env: dict):
    from conftest import run_cli

    assert _args(["compare", "a", "b", "--", "c", "d"]) == ["compare", "a", "b", SIDE_BREAK, "c", "d"]
    assert _args(["run", "--", "x"]) == ["run", "--", "x"]
    files = []
    for k, level in enumerate((100, 92, 104, 90, 103, 97)):
        summary = Summary(experiment="x", points=[Point(phases={"solo": {"m": _phase(
            [level * v for v in (100, 100.5, 99.5, 100.2, 99.8)], [20 * 100 / level] * 5, 100.0)}})],
            host_reference=host_reference(_samples(QUIET if k < 3 else HOGGED)))
        path = tmp_path / f"s{k}.json"
        path.write_text(json.dumps(summary.to_json()))
        files.append(str(path))
    proc = run_cli(["compare", *files[:3], "--", *files[3:], "--json"], cli_env, tmp_path)
    out = json.loads(proc.stdout)
    assert out["sides"] == [files[:3], files[3:]] and out["host_shifts"][0]["shifted"]
    assert out["overall"][0].split(": ", 1)[1].startswith("the host ran 2.00x slower in ")
    assert any("run both variants as a sweep in one run" in s for s in out["overall"])
    bad = run_cli(["compare", files[0], "--"], cli_env, tmp_path)
    assert bad.returncode == 2 and "one `--` between two sides" in bad.stderr


def test_the_reference_can_be_turned_off(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("COLOBENCH_HOST_REFERENCE", "0")
    ref = HostReference(tmp_path / "h.jsonl", threads=1)
    assert ref.sample("start", first=True) is None and not (tmp_path / "h.jsonl").exists()


def test_device_reference_through_the_devices_layer(monkeypatch):
    """The device reference's code on the CPU (the same calls a CUDA or Ascend card takes), and
    the subprocess wrapper's answer when the device cannot be opened: a reason, never a crash."""
    from colobench.devices.reference import device_reference
    from colobench.telemetry.host_reference import device_reference_subprocess

    figures = device_reference("cpu", matmul_n=64, copy_mib=1, rounds=2)
    assert figures["device"] == "cpu" and figures["matmul_tflops"] > 0 and figures["copy_gb_s"] > 0
    failed = device_reference_subprocess("nosuchkind:0", timeout_s=120)
    assert set(failed) == {"error"} and failed["error"]
