"""docs/playbooks.md cannot rot: every ```bash block whose first line is `# playbook N` runs here,
on the tiny preset and the CPU, with the environment the document names ($MODEL, $MODEL2,
$DEVICE, $OUT, $CKPT), and the outputs must hold what the document says answers each question.

The runs are smaller than the document's (`SMALLER`: fewer requests and tokens per repetition, the
same commands and repetitions otherwise): what is checked is that each command runs and prints its
answer, not the answer's numbers. An answer that is a verdict only a quiet host can give is checked
against what the run itself recorded (`ADVICE`: the advice table and its margins when a variant was
a candidate, else every variant left out as INVALID), and planted, with known timings, in
`test_a_planted_sweep_prints_its_advice_and_margin`.

Run by hand to refresh the document's excerpts (keeps each playbook's output in OUTDIR; the
document's own sizes unless --smaller):
    python tests/test_playbooks.py OUTDIR [N ...] [--smaller]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "playbooks.md"
BLOCK = re.compile(r"```bash\n(# playbook (\d+)\n.*?)```", re.DOTALL)

# what, in each playbook's output, answers its questions (the document points at the same lines)
EXPECTED: dict[int, list[str]] = {
    1: [r"scaling \d\.\d\dx \[\d\.\d\d, \d\.\d\d\] of ideal 2x", r"TPOT std/mean|stable \(|acceptable \(",
        r"slowdown \(co-located / solo\)", r"logs: \d+ file\(s\) .* and 1 from",
        r"no difference|differ:|differs? beyond that|not judged: [\s\S]*? INVALID in one of the runs"],
    2: [r"\| point \| scenario \| phase \| instance \|", r"\| tiny-x2-short \|", r"\| tiny-x2-mixed \|",
        r"scaling \d\.\d\dx", r"\| p99_tpot_ms \|.*\| tokens_per_j \| scaling \| validity \|",
        r"- unmeasured tokens_per_j: CPU runs have no energy counter", r"TTFT p50/p99"],
    3: [r"measured copy", r"batch scaling: tiny-1 \(solo, dtype=float32\)", r"mbu_pct", r"\| float32 \| 8 \|"],
    4: [r"async-timing trap", r"synchronised step", r"top operators", r"tiny-compiled"],
    5: [r"per prompt category", r"long_summary", r"quality .*token agreement",
        r"prefill positions were padding", r"closed loop, concurrency 8"],
}

# the runs (folders under $OUT) whose advice table answers a question of the playbook: "does INT8
# help?" (the `sharing` row), "which knob?" (the `margin` over the runner-up), "INT8, batch 1 to 8?"
ADVICE: dict[int, list[str]] = {1: ["pb1-int8"], 4: ["pb4"], 5: ["pb5", "pb5-batch"]}
ADVICE_TABLE = [r"advice per scenario", r"margin"]  # and each row's use and margin

# smaller runs, per playbook: the document's repetitions, requests per repetition and output
# tokens, and what the test runs. Playbooks 1 and 4 keep three repetitions (their answers are
# intervals and margins) and 3 x 4 requests (above the 10 a VALID phase needs). Playbooks 2 and 3
# answer with tables (a scenario sets 128 output tokens in 2), so one repetition there. Playbook 5
# keeps its 8 requests (the seeded draw from the built-in set reaches its long_summary prompt at the
# seventh), over two repetitions. Each must be found in its playbook, so a change there is noticed.
SMALLER: dict[int, list[tuple[str, str]]] = {
    1: [("-r 8", "-r 4"), ("-n 32", "-n 8")],
    2: [("--repetitions 3", "--repetitions 1"), ("-r 4", "-r 1")],
    3: [("--repetitions 3", "--repetitions 1"), ("-n 32", "-n 8")],
    4: [("-r 8", "-r 4"), ("-n 32", "-n 8")],
    5: [("--repetitions 3", "--repetitions 2"), ("-n 32", "-n 8")],
}


def playbooks(text: str | None = None) -> dict[int, str]:
    """The document's playbook blocks by number."""
    found = {int(m.group(2)): m.group(1) for m in BLOCK.finditer(text if text is not None else DOC.read_text())}
    return dict(sorted(found.items()))


def smaller(number: int, block: str) -> str:
    """Playbook `number`'s block with its runs made smaller (`SMALLER`; whole flags: `-r 8`, not `-r 80`)."""
    for big, small in SMALLER[number]:
        block = re.sub(rf"(?<!\S){re.escape(big)}(?!\S)", small, block)
    return block


def loose(pattern: str) -> re.Pattern:
    """A pattern in which a space also matches where the console wrapped the line."""
    return re.compile(pattern.replace(" ", r"\s+"))


def literal(text: str) -> str:
    """`text` as a pattern for `loose`: its characters as they are, a space for any whitespace."""
    return re.escape(text).replace("\\ ", " ")


def advice_missing(run_dir: Path, text: str) -> list[str]:
    """What `text` lacks of the advice `run_dir` recorded: when any variant was a candidate, the
    table, its margin column and each row's use and margin; when none was (each variant's phase
    INVALID, as on a busy host, or outside the quality guard), the checks that made them INVALID."""
    from colobench.analysis.advice import Guard

    summary = json.loads((run_dir / "summary.json").read_text())
    rows = summary["advice"]
    if rows:
        wanted = ADVICE_TABLE + sorted({literal(r[key]) for r in rows for key in ("scenario", "margin")})
        return [w for w in wanted if not loose(w).search(text)]
    guard, missing = Guard(), []
    for point in summary["points"]:
        for name in point["instances"]:
            label = "solo" if name in (point["phases"].get("solo") or {}) else "colocated"
            phase = point["phases"][label][name]
            quality = phase.get("quality")
            outside = quality is not None and (quality["token_agreement"] < guard.min_token_agreement
                                               or quality["kl_divergence"] > guard.max_kl)
            if phase["validity"]["verdict"] == "VALID" and not outside:
                missing.append(f"{point['id']} {name}: a candidate, yet no advice")
            elif not outside:  # why it is INVALID: the checks name it (`unstable  tiny-eager tiny (solo), ...`)
                invalid = [c for c in summary["checks"] if c["level"] == "invalid"
                           and c["subject"] == {"point": point["id"], "instance": name, "phase": label}]
                missing += [f"{c['verdict']} for {point['id']}" for c in invalid
                            if not re.search(rf"{re.escape(c['verdict'])}\s[^:]*?{re.escape(point['id'])}\s", text)]
                if not invalid:
                    missing.append(f"{point['id']} {name}: INVALID, yet no check says why")
    return missing


def run_block(block: str, env: dict[str, str], cwd: Path, timeout_s: float = 600) -> subprocess.CompletedProcess:
    """A block as a user would paste it: bash, stopping at the first failing command."""
    return subprocess.run(["bash", "-euo", "pipefail", "-c", block], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout_s)


def playbook_env(base: dict[str, str], out: Path, ckpt: Path) -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)  # `colobench` as installed beside this interpreter
    return {**base, "MODEL": "tiny", "MODEL2": "tiny", "DEVICE": "cpu", "OUT": str(out), "CKPT": str(ckpt),
            "PATH": bindir + os.pathsep + base.get("PATH", ""), "COLUMNS": "160"}


def test_the_document_has_five_playbooks():
    found = playbooks()
    assert sorted(found) == [1, 2, 3, 4, 5]
    for n, block in found.items():
        assert "colobench" in block, f"playbook {n} runs no colobench command"
    for n, pairs in SMALLER.items():
        for big, _ in pairs:
            assert big not in smaller(n, found[n]) != found[n], f"playbook {n} no longer says {big!r}"
    for n, folders in ADVICE.items():
        assert all(re.search(rf"-o \$OUT/{re.escape(folder)}(\s|$)", found[n]) for folder in folders), (n, folders)


@pytest.fixture(scope="session")
def playbook_cache(tmp_path_factory, cache_dir: Path) -> Path:
    """The playbooks' own cache, a copy of the session's presets: playbook 3's `devices --probe`
    stores the CPU's measured peak in the cache, and every later run on that cache uses it (an MBU
    where another test expects "no peak figure")."""
    path = tmp_path_factory.getbasetemp() / "playbooks-cache"
    shutil.copytree(cache_dir, path, dirs_exist_ok=True)
    return path


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("number", [1, 2, 3, 4, 5])
def test_playbook_runs_and_answers(number: int, tmp_path_factory, cli_env: dict, tokenizer_checkpoint: Path,
                                   playbook_cache: Path):
    # one $OUT (and cache) for the playbooks a worker runs, as a reader's session would be
    out = tmp_path_factory.getbasetemp() / "playbooks"
    out.mkdir(exist_ok=True)
    env = playbook_env({**cli_env, "COLOBENCH_CACHE": str(playbook_cache)}, out, tokenizer_checkpoint)
    proc = run_block(smaller(number, playbooks()[number]), env, out)
    text = proc.stdout + proc.stderr
    (out / f"playbook-{number}.txt").write_text(text)  # beside its runs, to read when it fails
    assert proc.returncode == 0, f"playbook {number} failed:\n{text[-4000:]}"
    assert "Traceback" not in text
    for pattern in EXPECTED[number]:
        assert loose(pattern).search(text), f"playbook {number}: nothing matches {pattern!r}\n{text[-4000:]}"
    for folder in ADVICE.get(number, []):
        missing = advice_missing(out / folder, text)
        assert not missing, f"playbook {number}, $OUT/{folder}: missing {missing}\n{text[-4000:]}"


# a sweep whose advice is known on any host: batch 2 gives twice the tokens per second of batch 1
# at the same TPOT (the fake backend's steps are sleeps of fixed length), three repetitions each.
# Nine requests a repetition: enough for a VALID phase (27 of the 10 needed), too few for the
# in-window trend check (a sleep overshoots by a millisecond or two on a busy host, and that moves).
PLANTED = """
name: planted
repetitions: 3
telemetry: {idle_s: 0}
workload: {requests: 9, output_tokens: 6, batch_size: [1, 2]}
instances: [{name: a, model: fake, backend: fake, fake: {ttft_ms: 20, tpot_ms: 20}}]
"""


@pytest.mark.slow
def test_a_planted_sweep_prints_its_advice_and_margin(tmp_path: Path, cli_env: dict):
    """The advice table and a margin verdict, which playbook 4 shows only when its runs come out
    VALID (a quiet host): planted with the fake backend, where they come out the same on any host."""
    from conftest import run_cli

    exp = tmp_path / "planted.yaml"
    exp.write_text(PLANTED)
    proc = run_cli(["run", str(exp), "-o", str(tmp_path / "run")], {**cli_env, "COLUMNS": "160"}, tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    rows = {r["scenario"]: r for r in json.loads((tmp_path / "run" / "summary.json").read_text())["advice"]}
    throughput = rows["throughput"]
    assert (throughput["choice"], throughput["runner_up"], throughput["margin"]) == ("planted-b2", "planted-b1", "clear")
    for pattern in ADVICE_TABLE + [r"clear|within noise|inconclusive"]:
        assert loose(pattern).search(text), f"nothing matches {pattern!r}\n{text[-4000:]}"
    assert not advice_missing(tmp_path / "run", text)


if __name__ == "__main__":
    # refresh: run the playbooks (all, or those named) and keep each one's output
    keep = Path(sys.argv[1]).resolve()
    keep.mkdir(parents=True, exist_ok=True)
    small = "--smaller" in sys.argv[2:]
    wanted = [int(a) for a in sys.argv[2:] if a != "--smaller"] or list(playbooks())
    ckpt = Path(os.environ.get("CKPT", keep / "ckpt"))
    (keep / "out").mkdir(exist_ok=True)
    for n in wanted:
        block = smaller(n, playbooks()[n]) if small else playbooks()[n]
        proc = run_block(block, playbook_env(dict(os.environ), keep / "out", ckpt), keep)
        (keep / f"playbook-{n}.txt").write_text(proc.stdout + proc.stderr)
        print(f"playbook {n}: exit {proc.returncode}")
