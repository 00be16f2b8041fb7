"""The HTML report from stored run directories, in a real headless Chromium with the network off;
compare with hand-computed ratios; exports."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from colobench import api
from colobench.analysis.compare import compare, entries, overall
from colobench.analysis.distribution import Distribution
from colobench.analysis.model import Distributions, PhaseMetrics, Point, RepetitionStats, Summary
from colobench.report import exports
from colobench.specs import experiment_from_dict

pytestmark = pytest.mark.xdist_group("report")  # one worker builds the module's runs once

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CANARY = "<script>document.body.insertAdjacentHTML('beforeend','<div id=pwned></div>')</script>"


def _fake(name: str, **timings) -> dict:
    return {"name": name, "model": "fake", "backend": "fake", "fake": {"ttft_ms": 2, "tpot_ms": 1, **timings}}


@pytest.fixture(scope="module")
def coloc_run(tmp_path_factory) -> Path:
    """A co-located fake run whose failures carry server text with a script in it."""
    out = tmp_path_factory.mktemp("report") / "coloc"
    spec = experiment_from_dict({"name": "report", "repetitions": 2,
                                 "instances": [_fake("a", fail_batches=[2]), _fake("b")],
                                 "workload": {"requests": 12, "output_tokens": 8}}, "t")
    api.run_experiment(spec, out=out)
    for path in out.glob("runs/*/records/a.jsonl"):  # what a hostile server might answer
        path.write_text(path.read_text().replace("simulated out of memory", f"HTTP 500: {CANARY}"))
    return out


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "sweep"
    spec = experiment_from_dict({"name": "sw", "repetitions": 1, "instances": [_fake("a")],
                                 "workload": {"requests": 8, "output_tokens": 4, "batch_size": [1, 2, 4]}}, "t")
    api.run_experiment(spec, out=out)
    return out


def _external_refs(text: str) -> list[str]:
    """src/href attributes of real tags (script bodies are raw text to a parser, so plotly.js's
    own strings do not count)."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend(v for k, v in attrs if k in ("src", "href") and v and not v.startswith("#"))

    Parser().feed(text)
    return found


def test_report_files(coloc_run: Path, sweep_run: Path):
    for run in (coloc_run, sweep_run):
        path = api.write_html_report(run)
        text = path.read_text()
        assert _external_refs(text) == []  # nothing fetched from anywhere: one offline file
        assert "Plotly" in text and "colobenchReady" in text
        assert CANARY not in text and "<div id=pwned" not in text
    coloc = (coloc_run / "report.html").read_text()
    assert "&lt;script&gt;" in coloc  # the server's text is shown, escaped
    for section in ("latency: solo against co-located", "throughput", "timelines", "findings", "metrics", "validity",
                        "headline"):
        assert section in coloc
    assert "sweep" in (sweep_run / "report.html").read_text()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed (make test installs it as root)")
def test_report_in_a_headless_browser(coloc_run: Path, tmp_path: Path):
    report = api.write_html_report(coloc_run)
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
             "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1400,3000",
             "--virtual-time-budget=8000", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([*flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-colobench-ready="1"' in dom.stdout  # the page's own script ran to the end
    assert dom.stdout.count('class="main-svg"') >= 6  # plotly drew the figures
    assert 'id="pwned"' not in dom.stdout  # the server's script did not run
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and "Uncaught" in line]
    assert not console_errors, console_errors
    ARTIFACTS.mkdir(exist_ok=True)
    shot = subprocess.run([*flags, f"--screenshot={ARTIFACTS / 'report.png'}", report.as_uri()], capture_output=True,
                          text=True, timeout=180)
    assert shot.returncode == 0 and (ARTIFACTS / "report.png").stat().st_size > 10_000


def _metrics(tput, tputs, ttft, ttfts, p99, p99s, memory=2**30):
    """A phase of five repetitions: its headlines and the repetitions' values behind them."""
    none = Distribution(count=0)
    reps = RepetitionStats(repetitions=[1, 2, 3, 4, 5], output_throughput=tputs, mean_ttft_ms=ttfts,
                           p99_ttft_ms=p99s, request_throughput=[v / 10 for v in tputs])
    return PhaseMetrics(completed=50, failed=0, output_throughput=tput, request_throughput=tput / 10,
                        mean_ttft_ms=ttft, p99_ttft_ms=p99, peak_memory_bytes=memory, repetition_stats=reps,
                        distributions=Distributions(output_throughput_tok_s=none, ttft_ms=none, tpot_ms=none,
                                                    itl_ms=none, e2el_ms=none, request_throughput_req_s=none))


def _summary(*points: Point) -> Summary:
    return Summary(experiment="x", points=list(points), sweep_axes=["batch_size"] if len(points) > 1 else [])


def test_compare_hand_computed():
    a = _summary(Point(phases={"solo": {"fp16": _metrics(100.0, [95, 98, 100, 102, 105], 20.0, [19, 21, 20, 19.5, 20.5],
                                                         30.0, [29, 30, 31, 30, 30])}}))
    b = _summary(Point(phases={"solo": {"int8": _metrics(150.0, [140, 145, 150, 155, 160], 20.5, [19, 22, 20, 21, 20.5],
                                                         45.0, [44, 45, 46, 45, 45])}}))
    rows = {r.metric: r for r in compare([entries(a), entries(b)])}  # no common name: paired by phase
    tput = rows["output_throughput"]
    assert tput.subject == "solo" and tput.ratios == [1.5]
    # Welch over the five repetitions of each, by hand, on the log scale: se(log b/a) = sqrt(va/a^2 + vb/b^2)
    va, vb = np.var([95, 98, 100, 102, 105], ddof=1) / 5, np.var([140, 145, 150, 155, 160], ddof=1) / 5
    df = (va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 4)
    half = stats.t.ppf(0.975, df) * np.sqrt(va / 100 ** 2 + vb / 150 ** 2)
    assert tput.intervals[0] == pytest.approx((1.5 * np.exp(-half), 1.5 * np.exp(half)))
    assert tput.verdicts == ["better"]
    ttft = rows["mean_ttft_ms"]
    assert ttft.ratios[0] == pytest.approx(1.025) and ttft.verdicts == ["noise"]  # the interval holds 1
    assert rows["p99_ttft_ms"].ratios == [1.5] and rows["p99_ttft_ms"].verdicts == ["worse"]
    assert rows["peak_memory_bytes"].verdicts == ["single figure"]
    assert overall(list(rows.values())) == ("3 of 4 metrics differ: solo output_throughput better (1.500x), solo "
                                            "request_throughput better (1.500x), solo p99_ttft_ms worse (1.500x)")
    # an INVALID side describes no system: named, not judged
    from colobench.analysis.model import Validity

    invalid = b.points[0].phases["solo"]["int8"].model_copy(update={"validity": Validity(verdict="INVALID")})
    c = _summary(Point(phases={"solo": {"int8": invalid}}))
    judged = compare([entries(a), entries(c)])
    assert {r.verdicts[0] for r in judged} == {"invalid side"}
    assert overall(judged) == "not judged: solo INVALID in one of the runs (see `colobench diagnose`)"
    sweep = _summary(a.points[0].model_copy(update={"id": "x-b1"}), a.points[0].model_copy(update={"id": "x-b2"}))
    with pytest.raises(ValueError, match="name one"):
        entries(sweep)
    assert entries(sweep, "x-b2")[("solo", "fp16")].output_throughput == 100.0


def test_compare_cli_and_exports(coloc_run: Path, sweep_run: Path, tmp_path: Path, cli_env: dict):
    from conftest import run_cli

    proc = run_cli(["compare", f"{sweep_run}:sw-b1", f"{sweep_run}:sw-b4", "--md", "--csv", str(tmp_path / "c.csv"),
                    "--html", str(tmp_path / "c.html")], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "| a (solo) | output_throughput |" in proc.stdout and (tmp_path / "c.csv").read_text().count("\n") > 5
    assert "Plotly" in (tmp_path / "c.html").read_text()
    bad = run_cli(["compare", f"{sweep_run}"], cli_env, tmp_path)
    assert bad.returncode == 2 and "at least two runs" in bad.stderr
    rows = exports.metric_rows(api.load_summary(sweep_run))
    assert [r["batch_size"] for r in rows] == [1, 2, 4] and all(r["completed"] == 8 for r in rows)
    assert exports.to_markdown(rows).splitlines()[0].startswith("| point | batch_size | phase | instance |")
    n_csv = exports.export_records(coloc_run, tmp_path / "r.csv")
    n_parquet = exports.export_records(coloc_run, tmp_path / "r.parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "r.parquet")
    assert n_csv == n_parquet == table.num_rows > 0 and "ttft_ms" in table.column_names
    md = run_cli(["report", str(coloc_run), "--md", "--csv", str(tmp_path / "m.csv")], cli_env, tmp_path)
    assert md.returncode == 0 and "| point | phase | instance |" in md.stdout
    whole = json.loads(run_cli(["report", str(coloc_run), "--json"], cli_env, tmp_path).stdout)
    assert whole["schema"] == "colobench.summary/2" and whole["points"][0]["phases"]["colocated"]["a"]["completed"]


def test_large_runs_are_downsampled_for_plotting_only():
    from colobench.report.html import MAX_POINTS, _downsample

    x = list(range(100_000))
    xs, ys, cut = _downsample(x, [v * 2 for v in x])
    assert cut and len(xs) == len(ys) == MAX_POINTS and xs[0] == 0 and xs[-1] == 99_999
    assert all(y == 2 * v for v, y in zip(xs, ys))
    assert _downsample([1, 2], [3, 4]) == ([1, 2], [3, 4], False)


def test_decode_bandwidth_over_time_by_hand():
    """The timeline's bandwidth row: bytes per step over each request's own TPOT, against the
    peak. 1 GB per step at 5 ms per token is 200 GB/s: 20% of a 1000 GB/s card; at 1 ms, 100%."""
    from colobench.analysis.model import Peak, Roofline
    from colobench.records import RequestRecord
    from colobench.report.html import _request_bandwidth

    mt = _metrics(100.0, [100] * 5, 20.0, [20] * 5, 30.0, [30] * 5).model_copy(update={"roofline": Roofline(
        bytes_per_step=1e9, peak=Peak(name="card", memory_bandwidth_gb_s=1000.0))})
    ms = 1_000_000

    def rec(k: int, step_ms: int) -> RequestRecord:
        start = k * 100 * ms
        tokens = [start + 10 * ms + i * step_ms * ms for i in range(5)]
        return RequestRecord(instance="a", run_id="r", repetition=1, request_id=k, batch_id=k, batch_size=1,
                             prompt_tokens=8, output_tokens=5, submit_ns=start, token_ns=tokens, done_ns=tokens[-1])

    records = {("solo", "a"): [rec(0, 5), rec(1, 1)]}
    x, y = _request_bandwidth(records, Point(phases={"solo": {"a": mt}}), origin=0)[("solo", "a")]
    assert y == pytest.approx([20.0, 100.0]) and x == pytest.approx([0.03, 0.114])
    unknown_peak = mt.model_copy(update={"roofline": Roofline(bytes_per_step=1e9)})
    assert _request_bandwidth(records, Point(phases={"solo": {"a": unknown_peak}}), origin=0) == {}


def test_seed_001_table_one_model_versus_two(tmp_path: Path):
    """The sweep table seed 001 asks for, per point and phase: output tok/s, TTFT and TPOT
    p50/p99, scaling, utilisation, peak memory, J/token and tokens/J, "unmeasured" with why (no
    energy counter on a CPU box): in the console, the markdown and the CSV."""
    import csv as csv_mod

    from rich.console import Console

    from colobench.report.console import print_sweep

    spec = experiment_from_dict({"name": "seed", "repetitions": 1, "instances": [_fake("a"), _fake("b")],
                                 "workload": {"requests": 4, "output_tokens": 4, "batch_size": [1, 2]}}, "t")
    summary = api.run_experiment(spec, out=tmp_path / "seed").summary
    rows = exports.metric_rows(summary)
    markdown = exports.to_markdown(rows)
    header = markdown.splitlines()[0]
    for column in ("output_throughput", "median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "p99_tpot_ms", "scaling",
                   "mean_device_util_pct", "peak_memory_bytes", "energy_per_token_j", "tokens_per_j"):
        assert f"| {column} |" in header, column
    colocated = [r for r in rows if r["phase"] == "colocated"]
    assert colocated and all(r["scaling"] is not None for r in colocated)
    assert all(r["scaling"] is None for r in rows if r["phase"] == "solo")
    assert all(r["tokens_per_j"] is None and "energy_per_token_j: CPU runs have no energy counter" in r["unmeasured"]
               for r in rows)
    assert "| unmeasured | unmeasured |" in markdown
    assert "- unmeasured tokens_per_j: CPU runs have no energy counter here" in markdown.splitlines()
    exports.write_csv(rows, tmp_path / "seed.csv")
    with open(tmp_path / "seed.csv", newline="") as f:
        written = list(csv_mod.DictReader(f))
    assert "tokens_per_j" in written[0] and "scaling" in written[0] and "_why" not in written[0]
    console = Console(record=True, width=250)
    print_sweep(summary, console)
    text = console.export_text()
    for title in ("tok/s", "TTFT p50/p99", "TPOT p50/p99", "scaling", "util %", "peak mem", "mJ/tok, tok/J"):
        assert title in text, title
    assert "energy unmeasured (every row): CPU runs have no energy counter here" in text
