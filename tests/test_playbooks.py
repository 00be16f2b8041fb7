"""docs/playbooks.md cannot rot: every ```bash block whose first line is `# playbook N` runs here,
on the tiny preset and the CPU, with the environment the document names ($MODEL, $MODEL2,
$DEVICE, $OUT, $CKPT), and the outputs must hold what the document says answers each question.

Run by hand to refresh the document's excerpts (keeps each playbook's output in OUTDIR):
    python tests/test_playbooks.py OUTDIR [N ...]
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "playbooks.md"
BLOCK = re.compile(r"```bash\n(# playbook (\d+)\n.*?)```", re.DOTALL)

# what, in each playbook's output, answers its questions (the document points at the same lines)
EXPECTED: dict[int, list[str]] = {
    1: [r"scaling \d\.\d\dx \[\d\.\d\d, \d\.\d\d\] of ideal 2x", r"TPOT std/mean|stable \(|acceptable \(",
        r"slowdown \(co-located / solo\)", r"logs: \d+ file\(s\) .* and 1 from", r"no difference|differ:",
        r"advice per scenario", r"sharing"],
    2: [r"\| point \| scenario \| phase \| instance \|", r"\| tiny-x2-short \|", r"\| tiny-x2-mixed \|",
        r"scaling \d\.\d\dx"],
    3: [r"measured copy", r"batch scaling: tiny-1 \(solo, dtype=float32\)", r"mbu_pct", r"\| float32 \| 8 \|"],
    4: [r"async-timing trap", r"synchronised step", r"top operators", r"tiny-compiled",
        r"margin", r"clear|within noise|inconclusive"],
    5: [r"per prompt category", r"long_summary", r"quality .*token agreement", r"advice per scenario",
        r"prefill positions were padding", r"closed loop, concurrency 8"],
}


def playbooks(text: str | None = None) -> dict[int, str]:
    """The document's playbook blocks by number."""
    found = {int(m.group(2)): m.group(1) for m in BLOCK.finditer(text if text is not None else DOC.read_text())}
    return dict(sorted(found.items()))


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


@pytest.mark.slow
@pytest.mark.parametrize("number", [1, 2, 3, 4, 5])
def test_playbook_runs_and_answers(number: int, tmp_path_factory, cli_env: dict, tokenizer_checkpoint: Path):
    # one $OUT for all five, as a reader's session would be (playbook 3's probe is then known to 5)
    out = tmp_path_factory.getbasetemp() / "playbooks"
    out.mkdir(exist_ok=True)
    proc = run_block(playbooks()[number], playbook_env(cli_env, out, tokenizer_checkpoint), out)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"playbook {number} failed:\n{text[-4000:]}"
    assert "Traceback" not in text
    for pattern in EXPECTED[number]:  # a space also matches where the console wrapped the line
        assert re.search(pattern.replace(" ", r"\s+"), text), \
            f"playbook {number}: nothing matches {pattern!r}\n{text[-4000:]}"


if __name__ == "__main__":
    # refresh: run the playbooks (all, or those named) and keep each one's output
    keep = Path(sys.argv[1]).resolve()
    keep.mkdir(parents=True, exist_ok=True)
    wanted = [int(a) for a in sys.argv[2:]] or list(playbooks())
    ckpt = Path(os.environ.get("CKPT", keep / "ckpt"))
    (keep / "out").mkdir(exist_ok=True)
    for n in wanted:
        proc = run_block(playbooks()[n], playbook_env(dict(os.environ), keep / "out", ckpt), keep)
        (keep / f"playbook-{n}.txt").write_text(proc.stdout + proc.stderr)
        print(f"playbook {n}: exit {proc.returncode}")
