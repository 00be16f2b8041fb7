"""Goodput under SLOs and the capacity search: goodput and attainment against hand-computed
records, the search and the region's figures against planted truths (pure functions), bad input,
and the whole `colobench capacity` against the fake shared device, whose solo capacities and
co-location boundary are known in closed form (`shared_device_capacity`)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from colobench.analysis.capacity import (BoundaryPoint, CapacityRegion, Probe, knee, ray_rates, rectangle_load,
                                         region_metrics, search, shares)
from colobench.analysis.phase import instance_phase_metrics, slo_result
from colobench.records import RequestRecord
from colobench.serve.shared_device import shared_device_capacity
from conftest import invoke, run_cli

MS = 1_000_000


def _record(k: int, ttft_ms: float, gaps_ms: list[float], ok: bool = True) -> RequestRecord:
    start = k * 1000 * MS
    tokens = [start + int(ttft_ms * MS)]
    for g in gaps_ms:
        tokens.append(tokens[-1] + int(g * MS))
    return RequestRecord(instance="a", run_id="r", repetition=1, request_id=k, batch_id=-1, batch_size=1,
                         prompt_tokens=8, output_tokens=len(tokens), submit_ns=start, scheduled_ns=start,
                         token_ns=tokens if ok else [], done_ns=tokens[-1] if ok else start + MS, ok=ok,
                         error=None if ok else "HTTP 500")


def test_goodput_by_hand():
    """Four completed requests and one failure against TTFT <= 100 ms, TPOT <= 20 ms, ITL <= 24 ms:
    (50 ms, gaps 10/10) good; (150 ms) misses TTFT; (50, gaps 25/25) misses TPOT and ITL; (50,
    gaps 5/35) has TPOT 20 (met) but a 35 ms gap (misses ITL); the failure is not good. 1 of 5."""
    ok = [_record(0, 50, [10, 10]), _record(1, 150, [10, 10]), _record(2, 50, [25, 25]), _record(3, 50, [5, 35])]
    r = slo_result(ok, failed=1, duration_s=4.0, objectives={"ttft_ms": 100, "tpot_ms": 20, "itl_ms": 24})
    assert (r.good, r.requests, r.failed) == (1, 5, 1)
    assert r.attainment == pytest.approx(0.2) and r.goodput_req_s == pytest.approx(0.25)
    assert r.missed == {"ttft_ms": 1, "tpot_ms": 1, "itl_ms": 2}
    assert r.worst == "itl_ms"
    whole = instance_phase_metrics(ok + [_record(4, 0, [], ok=False)], objectives={"e2el_ms": 200})
    assert whole.slo is not None and whole.slo_attainment == whole.slo.attainment
    assert whole.slo.good == 4 and whole.slo.requests == 5 and whole.slo.worst == "failed"  # e2el 70, 170, 100, 90 ms
    assert whole.repetition_stats.slo_attainment == [pytest.approx(0.8)]  # one repetition: the same, per window
    assert whole.repetition_stats.goodput[0] == pytest.approx(whole.goodput)
    assert instance_phase_metrics(ok).slo is None  # no objectives, no SLO figures


# ---- the search, on planted thresholds ---------------------------------------------------------------

def _threshold_probe(limit: float, calls: list[float]):
    def probe(x: float) -> Probe:
        calls.append(x)
        return Probe(rates={"a": x}, scale=x, passed=x <= limit, reason="met" if x <= limit else "missed")
    return probe


@pytest.mark.parametrize("limit,start", [(37.0, 5.0), (37.0, 300.0), (0.7, 1.0), (1000.0, 1.0)])
def test_search_brackets_the_threshold(limit: float, start: float):
    calls: list[float] = []
    lo, hi, probes = search(_threshold_probe(limit, calls), start, precision=0.05)
    assert lo is not None and hi is not None and lo <= limit < hi and (hi - lo) / lo <= 0.05
    assert len(probes) == len(calls) <= 20
    assert all(p.passed == (p.scale <= limit) for p in probes)


def test_search_at_a_ceiling_and_below_a_floor():
    calls: list[float] = []
    lo, hi, _ = search(_threshold_probe(10.0, calls), 1.0, 0.05, ceiling=1.6, grow=1.2)
    assert lo == pytest.approx(1.6) and hi is None and max(calls) <= 1.6  # even the corner passes
    lo, hi, probes = search(_threshold_probe(0.001, []), 1.0, 0.05, floor=0.1)
    assert lo is None and hi is not None and all(not p.passed for p in probes)


def test_region_figures_by_hand():
    """Boundary points on the perfect-sharing line: efficiency 1 and half the rectangle's area;
    at the rectangle's corners: the whole area."""
    caps = {"a": 40.0, "b": 10.0}
    on_line = [BoundaryPoint(share=f, ratio=0, rates=ray_rates(f, 1.0, caps), load=1.0, rectangle_load=rectangle_load(f),
                             first_failing_load=1.1) for f in shares(5)]
    r = region_metrics(CapacityRegion(instances=["a", "b"], solo_caps=caps, boundary=on_line))
    assert r.sharing_efficiency == pytest.approx(1.0) and r.vs_separate_cards == pytest.approx(0.5)
    corner = [BoundaryPoint(share=0.5, ratio=0, rates={"a": 40.0, "b": 10.0}, load=2.0, rectangle_load=2.0,
                            first_failing_load=None)]
    assert region_metrics(CapacityRegion(instances=["a", "b"], solo_caps=caps, boundary=corner)).vs_separate_cards \
        == pytest.approx(1.0)
    assert ray_rates(0.25, 1.0, caps) == {"a": 10.0, "b": 7.5} and rectangle_load(0.25) == pytest.approx(4 / 3)
    assert ray_rates(0.0, 3.0, {"a": 3.0, "b": 6.0, "c": 9.0}) == {"a": 3.0, "b": 6.0, "c": 9.0}  # the diagonal


def test_region_search_on_a_planted_boundary(tmp_path: Path):
    """The orchestration's region search with a planted probe: together the instances carry 0.8 of
    perfect sharing (interference), whatever the mix; with three, the diagonal finds the same."""
    from colobench.capacity import CapacitySearch
    from colobench.specs import experiment_from_dict

    caps = {"a": 40.0, "b": 10.0, "c": 20.0}

    def planted(rates: dict, scale: float, label: str) -> Probe:
        load = sum(r / caps[n] for n, r in rates.items())
        return Probe(rates=rates, scale=scale, passed=load <= (1.0 if len(rates) == 1 else 0.8), reason="planted")

    def searcher(names: list[str]) -> CapacitySearch:
        spec = experiment_from_dict({"instances": [{"name": n, "model": n, "backend": "fake", "slo": {"tpot_ms": 5}}
                                                   for n in names]}, "t")
        s = CapacitySearch(spec, tmp_path, precision=0.02)
        s.probe = planted  # type: ignore[method-assign]
        return s

    two = searcher(["a", "b"]).region({"a": 40.0, "b": 10.0}, rays=5)
    assert len(two.boundary) == 5 and all(b.load == pytest.approx(0.8, rel=0.021) for b in two.boundary)
    assert two.sharing_efficiency == pytest.approx(0.8, rel=0.021) and 0.32 < two.vs_separate_cards < 0.5
    assert [round(b.ratio, 3) for b in two.boundary] == [round((1 - f) * 10 / (f * 40), 3) for f in shares(5)]
    three = searcher(["a", "b", "c"]).region(caps, rays=5)
    (diagonal,) = three.boundary
    assert diagonal.load == pytest.approx(0.8, rel=0.021) and diagonal.ratio is None
    assert diagonal.rates["a"] / 40 == pytest.approx(diagonal.rates["c"] / 20)  # each at the same share of its own


def test_knee_by_hand():
    tpot = {1.0: 10.0, 2.0: 10.5, 4.0: 12.0, 8.0: 40.0, 6.0: 14.0}
    probes = [Probe(rates={"a": r}, scale=r, passed=True, reason="met", p99_tpot_ms={"a": v}) for r, v in tpot.items()]
    assert knee(probes, "a") == 6.0  # 40 > 1.5 x 10 first at 8 req/s
    assert knee(probes[:2], "a") is None


# ---- bad input ---------------------------------------------------------------------------------------

def test_capacity_refuses_what_it_cannot_search(tmp_path: Path, cli_env: dict, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLOBENCH_CACHE", cli_env["COLOBENCH_CACHE"])

    def cli(args: list[str]) -> tuple[int, str]:  # `colobench ARGS` in this process: (exit status, stderr)
        code, _, err = invoke(args, monkeypatch, capsys)
        return code, err

    code, err = cli(["capacity", "-m", "tiny", "-d", "cpu", "-o", str(tmp_path / "x")])
    assert code == 2 and "has no slo" in err and "Traceback" not in err
    code, err = cli(["capacity", "-m", "tiny", "-d", "cpu", "--slo", "tpot_ms=50", "-b", "1,2", "-o", str(tmp_path / "y")])
    assert code == 2 and "remove the sweep" in err
    code, err = cli(["capacity", "-m", "tiny", "-m", "tiny", "-d", "cpu", "--slo", "tpot_ms=50", "--rays", "3", "-o",
                     str(tmp_path / "z")])
    assert code == 2 and "at least 5 rays" in err
    code, err = cli(["run", "-m", "tiny", "--slo", "tpot=5"])
    assert code == 2 and "--slo" in err and len(err.strip().splitlines()) == 1
    for folder in ("x", "y", "z"):
        assert not (tmp_path / folder).exists()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "capacity.json").write_text('{"capacity": {"x": 1}}')
    code, err = cli(["report", str(tmp_path / "broken")])
    assert code == 2 and "not a capacity summary" in err and "Traceback" not in err


# ---- the whole search against the fake shared device -------------------------------------------------

PROMPT, OUTPUT = 16, 8
DECODE_TOK_S, PREFILL_TOK_S, ITL_MS = 500.0, 8000.0, 5.0
# Below the computed capacity a stream's TPOT is max(ITL, streams / decode rate): up to about 16 ms
# near it. An objective of 40 ms leaves room for a busy test host that wakes the server late (a
# starved server stretches the tail, which a 20 ms objective read as a miss at 90% load); past
# the capacity the queue grows, TPOT with it without bound, and the probe fails either way.
SLO = {"tpot_ms": 40, "ttft_ms": 200}


def _shared_device_experiment(path: Path) -> Path:
    """Two models `a` and `b` on one managed fake shared device, each with an SLO."""
    server = {"name": "device", "command": [sys.executable, "-m", "colobench", "fake-server", "--port", "{port}",
                                            "--models", "a,b", "--decode-tok-s", str(DECODE_TOK_S), "--prefill-tok-s",
                                            str(PREFILL_TOK_S), "--itl-ms", str(ITL_MS)], "ready_timeout_s": 60}
    inst = {"backend": "openai", "server": "device", "slo": SLO,
            "workload": {"prompt_tokens": PROMPT, "output_tokens": OUTPUT, "arrival": "constant"}}
    path.write_text(json.dumps({"name": "shared", "servers": [server],  # JSON is YAML
                                "instances": [{**inst, "name": "a", "model": "a"}, {**inst, "name": "b", "model": "b"}]}))
    return path


@pytest.mark.slow
def test_ctrl_c_of_a_capacity_search_keeps_what_it_found_and_no_server(tmp_path: Path, cli_env: dict):
    import os
    import re
    import signal

    import psutil

    from conftest import start_cli

    out = tmp_path / "cap"
    proc = start_cli(["capacity", str(_shared_device_experiment(tmp_path / "e.yaml")), "--probe-s", "30",
                      "--start-rate", "20", "-o", str(out)], cli_env, tmp_path, new_session=True)
    deadline = time.monotonic() + 120
    while not list((out / "probes").glob("001-*/runs/*/records/*.jsonl")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.3)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    pid = int(re.search(r"server device ready on port \d+ \(pid (\d+)\)", stderr).group(1))
    try:
        psutil.wait_procs([psutil.Process(pid)], timeout=30)
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        pass  # gone, as it should be
    found = json.loads((out / "capacity.json").read_text())["capacity"]
    assert found["interrupted"] is True and "Traceback" not in stderr


@pytest.mark.slow
@pytest.mark.timeout(600)  # some fifty probes of 1.5 s each
def test_capacity_of_a_shared_device_matches_the_computed_one(tmp_path: Path, cli_env: dict):
    """Two models on one simulated device, a server colobench manages itself: each alone can
    carry 1 / (p/M + (n-1)/N) req/s, and together they share that budget (the boundary is the
    perfect-sharing line). The search finds both within 10% (its precision); nothing here depends
    on how fast this machine is, only on the simulated device."""
    truth = shared_device_capacity(PROMPT, OUTPUT, DECODE_TOK_S, PREFILL_TOK_S)
    experiment = _shared_device_experiment(tmp_path / "shared.yaml")
    out = tmp_path / "cap"
    # target 90%: a probe is decided with 24 requests of each instance; past the computed capacity
    # the queue grows and attainment collapses, so the capacity found is the same
    proc = run_cli(["capacity", str(experiment), "--probe-s", "1.5", "--precision", "0.1", "--target", "0.9",
                    "--start-rate", f"{truth * 0.6:.3f}", "-o", str(out)], cli_env, tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads((out / "capacity.json").read_text())["capacity"]
    for name in ("a", "b"):
        cap = found["solo"][name]["max_rate"]
        assert cap == pytest.approx(truth, rel=0.10), (name, cap, truth)
        assert found["solo"][name]["probes"], "every probe is kept"
    region = found["region"]
    assert len(region["boundary"]) >= 5
    for point in region["boundary"]:
        true_load = sum(rate / truth for rate in point["rates"].values())  # 1.0 on the computed boundary
        assert true_load == pytest.approx(1.0, rel=0.12), point
    assert region["sharing_efficiency"] == pytest.approx(1.0, abs=0.15)
    assert (out / "capacity.html").stat().st_size > 10_000
    first = sorted((out / "probes").iterdir())[0]
    assert (first / "summary.json").is_file()  # each probe is a run directory `colobench report` reopens
    assert "co-location boundary" in proc.stdout and json.loads(proc.stdout.strip().splitlines()[-1])["capacity"]
    assert "server device ready" in proc.stderr and proc.stderr.count("ready on port") == 1  # started once
    log = (out / "servers" / "device.log").read_text()
    assert "one shared device" in log  # the server's own banner, kept with the search
    again = run_cli(["report", str(out)], cli_env, tmp_path)  # the tables again, from capacity.json alone
    assert again.returncode == 0 and "co-location boundary" in again.stdout and "a alone: capacity" in again.stdout


# ---- verdicts that hold on a noisy host ------------------------------------------------------------

def test_attainment_verdicts_use_an_interval_not_the_point():
    from colobench.analysis.capacity import attainment_verdict

    assert attainment_verdict(200, 200, 0.99) == "pass"
    assert attainment_verdict(100, 100, 0.99) == "inconclusive"  # too few requests to say 99%
    assert attainment_verdict(99, 100, 0.99) == "inconclusive"  # one miss in a hundred: could be either
    assert attainment_verdict(95, 100, 0.99) == "fail"
    assert attainment_verdict(0, 0, 0.99) == "fail"


def _searcher(tmp_path: Path, runs: list[dict], references: list[float] | None = None):
    """A CapacitySearch whose runs are planted: each `_run_once` returns the next of `runs`
    (met and total requests per instance, and what else the run said)."""
    from colobench.capacity import CapacitySearch
    from colobench.specs import experiment_from_dict

    spec = experiment_from_dict({"instances": [{"name": "a", "model": "a", "backend": "fake",
                                                "slo": {"tpot_ms": 5}}]}, "t")
    refs = iter(references or [])
    s = CapacitySearch(spec, tmp_path, target=0.99, host_reference=lambda: next(refs, 1.0))
    planted = iter(runs)
    calls = []

    def run_once(rates, duration, label):
        from colobench.capacity import ProbeRun

        calls.append(label)
        r = next(planted)
        return ProbeRun(folder=label, met={"a": r["met"]}, total={"a": r["total"]}, saturated=r.get("short", []),
                        notes=r.get("notes", []), other_failed=bool(r.get("notes")))

    s._run_once = run_once  # type: ignore[method-assign]
    return s, calls


def test_an_inconclusive_probe_is_extended_and_its_counts_pooled(tmp_path: Path):
    s, calls = _searcher(tmp_path, [{"met": 99, "total": 100}, {"met": 200, "total": 200}])
    p = s.probe({"a": 5.0}, 5.0, "solo-a")
    assert calls == ["solo-a", "solo-a-more1"] and p.extensions == 1
    assert p.passed and p.met_requests == {"a": 299} and p.requests == {"a": 300} and not p.decided_by_point
    s, calls = _searcher(tmp_path / "b", [{"met": 99, "total": 100}] * 3)
    p = s.probe({"a": 5.0}, 5.0, "solo-a")  # exactly at 99% every time: the budget runs out, the point decides
    assert len(calls) == 3 and p.decided_by_point and p.passed and "decided by the point value" in p.reason


def test_a_trend_that_meets_the_slo_is_a_note_and_over_saturation_fails(tmp_path: Path):
    trend = "a: latency rises during the window (steady_state)"
    s, _ = _searcher(tmp_path, [{"met": 300, "total": 300, "notes": [trend]}])
    p = s.probe({"a": 5.0}, 5.0, "solo-a")
    assert p.passed and p.notes == [trend] and p.met_slo_other_failed  # drawn apart, never a failure
    s, _ = _searcher(tmp_path / "b", [{"met": 300, "total": 300, "short": ["a: over-saturated (the queue grows)"]}])
    p = s.probe({"a": 5.0}, 5.0, "solo-a")
    assert not p.passed and p.over_saturated and "over-saturated" in p.reason


def test_a_probe_taken_while_the_host_changed_is_redone(tmp_path: Path):
    # host reference before/after: 10 ms -> 20 ms (the host got busy during the probe), then steady
    s, calls = _searcher(tmp_path, [{"met": 100, "total": 300}, {"met": 300, "total": 300}],
                         references=[0.010, 0.020, 0.020, 0.021])
    p = s.probe({"a": 5.0}, 5.0, "solo-a")
    assert calls == ["solo-a", "solo-a-redo1"] and p.redos == 1 and not p.host_changed and p.passed
    assert p.host_reference_s == (0.020, 0.021) and len(s.history) == 1


def test_the_region_is_monotone_by_construction():
    """A noisy probe that passes a point dominating a failed one is re-probed; still contradicting,
    it fails (conservative); a re-probe that agrees is kept with a note."""
    from colobench.analysis.capacity import Monotone

    runs = []

    def probe(rates, scale, label):
        runs.append(label)
        noisy = rates == {"a": 3.0, "b": 3.0}
        return Probe(rates=rates, scale=scale, passed=noisy or sum(rates.values()) <= 3.0, reason="planted")

    judge = Monotone(probe)
    assert not judge({"a": 2.0, "b": 2.0}, 1.0, "x").passed
    noisy = judge({"a": 3.0, "b": 3.0}, 1.0, "y")  # dominates the failure at (2, 2), passes by noise twice
    assert not noisy.passed and "resolved as a fail" in noisy.reason and runs[1:] == ["y", "y-again"]
    assert judge({"a": 1.0, "b": 1.0}, 1.0, "w").passed and runs[-1] == "w"  # no contradiction: run once


def test_capacity_html_draws_thresholds_kinds_and_cpu_wording():
    from colobench.analysis.capacity import BoundaryPoint, CapacityRegion, CapacitySummary, SoloCapacity
    from colobench.report.capacity import capacity_html, sharing_sentence

    probes = [Probe(rates={"a": 1.0}, scale=1.0, passed=True, reason="met", attainment={"a": 1.0},
                    p99_tpot_ms={"a": 4.0}),
              Probe(rates={"a": 2.0}, scale=2.0, passed=True, reason="met", attainment={"a": 1.0},
                    p99_tpot_ms={"a": 6.0}, notes=["a: trend"], met_slo_other_failed=True),
              Probe(rates={"a": 4.0}, scale=4.0, passed=False, reason="a: SLO met 80%", attainment={"a": 0.8},
                    p99_tpot_ms={"a": 30.0})]
    region = CapacityRegion(instances=["a", "b"], solo_caps={"a": 2.0, "b": 2.0}, sharing_efficiency=1.0,
                            vs_separate_cards=0.5,
                            boundary=[BoundaryPoint(share=0.5, ratio=1.0, rates={"a": 1.0, "b": 1.0}, load=1.0,
                                                    rectangle_load=2.0, first_failing_load=1.1)])
    summary = CapacitySummary(experiment="e", target=0.99, precision=0.05, probe_s=10, device_kind="cpu",
                              objectives={"a": {"tpot_ms": 10.0}},
                              solo={"a": SoloCapacity(instance="a", max_rate=2.0, first_failing_rate=4.0,
                                                      probes=probes)}, region=region)
    page = capacity_html(summary)
    assert "SLO TPOT 10 ms" in page and "target 99%" in page and "met the SLO, another check failed" in page
    assert "card" not in sharing_sentence(region, "cpu") and "these CPU cores" in sharing_sentence(region, "cpu")
    assert "this card" in sharing_sentence(region, "npu")


def test_a_search_that_never_passes_stops_at_its_floor(tmp_path: Path):
    """Every probe fails: the search halves down to its floor (64 times below the start, or
    --min-rate) and says no rate met the SLO down to there, instead of halving on."""
    from colobench.capacity import CapacitySearch
    from colobench.specs import experiment_from_dict

    spec = experiment_from_dict({"instances": [{"name": "a", "model": "a", "backend": "fake",
                                                "slo": {"tpot_ms": 5}}]}, "t")
    notes: list[str] = []

    class Notes:
        def probe_done(self, label, probe) -> None: ...

        def note(self, text: str) -> None:
            notes.append(text)

    for min_rate, lowest in [(None, 64 / 64), (8.0, 8.0)]:
        s = CapacitySearch(spec, tmp_path / str(min_rate), start_rate=64.0, min_rate=min_rate, progress=Notes())
        s.probe = lambda rates, scale, label: Probe(rates=rates, scale=scale, passed=False, reason="planted")
        solo = s.solo("a")
        assert solo.max_rate is None and solo.floor_rate == lowest
        assert min(p.rates["a"] for p in solo.probes) == pytest.approx(lowest)
        assert notes[-1].startswith(f"a: no rate met the SLO down to {lowest:.3g} req/s")


def test_a_search_out_of_time_stops_before_the_probe_and_keeps_what_it_found(tmp_path: Path, monkeypatch):
    """--max-time: the probe that would pass the budget is not started; the summary says why (and
    the command exits 1), with what was found so far."""
    import colobench.capacity as capacity
    from colobench.specs import experiment_from_dict

    spec = experiment_from_dict({"instances": [{"name": "a", "model": "a", "backend": "fake",
                                                "slo": {"tpot_ms": 5}}]}, "t")
    clock = [0.0]
    monkeypatch.setattr(capacity.time, "monotonic", lambda: clock[0])
    ran: list[float] = []

    def probe(self, rates, scale, label):
        self._check_time(rates, label)
        ran.append(rates["a"])
        clock[0] += self._duration(rates)  # a probe takes its window
        return Probe(rates=rates, scale=scale, passed=False, reason="planted")

    monkeypatch.setattr(capacity.CapacitySearch, "probe", probe)
    monkeypatch.setattr(capacity.api, "managed_servers", lambda *a, **k: __import__("contextlib").nullcontext(spec))
    summary = capacity.run_capacity(spec, tmp_path / "cap", start_rate=40.0, probe_s=10.0, max_time_s=100.0)
    assert summary.stopped and "time budget of 100 s spent" in summary.stopped and "needs" in summary.stopped
    assert summary.solo == {} and len(summary.unfinished) == 0 and ran  # the probes ran are in the history
    assert sum(max(10.0, s.min_requests / r) for s in [capacity.CapacitySearch(spec, tmp_path / "x")]
               for r in ran) <= 100.0
    saved = json.loads((tmp_path / "cap" / "capacity.json").read_text())["capacity"]
    assert saved["stopped"] == summary.stopped and saved["max_time_s"] == 100.0
    assert not (tmp_path / "cap" / ".colobench.lock").exists()  # the folder's lock is gone with the search


def test_a_search_stops_halving_when_lower_rates_do_not_help():
    """An SLO below the model's own latency (TTFT 1 ms against a 50 ms prefill): every probe meets
    it 0% of the time whatever the rate; after two halvings that changed nothing the search stops,
    instead of probing ever longer (a 99% probe needs 190 requests: 380 s at 0.5 req/s)."""
    calls: list[float] = []

    def unreachable(x: float) -> Probe:
        calls.append(x)
        return Probe(rates={"a": x}, scale=x, passed=False, reason="planted", attainment={"a": 0.0})

    lo, hi, probes = search(unreachable, 8.0, 0.05, floor=8.0 / 64)
    assert lo is None and calls == [8.0, 4.0, 2.0]

    def improving(x: float) -> Probe:  # queueing: lower rates help, so the search goes on down
        return Probe(rates={"a": x}, scale=x, passed=x <= 0.5, reason="planted", attainment={"a": 1 - x / 10})

    lo, _, _ = search(improving, 8.0, 0.05, floor=8.0 / 64)
    assert lo == pytest.approx(0.5)
