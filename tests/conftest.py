"""Shared fixtures: a private preset cache per test session (per pytest-xdist worker), ports of
this worker's own, fake servers that are waited for by their own banner, and helpers to run the CLI."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from colobench.cli.flags import FLAG_KNOBS, build_spec

# every run times a host reference (~0.1 s at each repetition boundary): the tests that check it
# turn it back on (`host_reference_on`); the rest of the suite does not pay for it
os.environ["COLOBENCH_HOST_REFERENCE"] = "0"


@pytest.fixture
def host_reference_on(monkeypatch):
    monkeypatch.setenv("COLOBENCH_HOST_REFERENCE", "1")

_BY_FLAG = {name: k for k in FLAG_KNOBS for name in (k.meta.flag, *k.meta.aliases)}


# With pytest-xdist (`make test`), tests go to the workers in collection order, a few at a time. The
# longest start first and the rest fill in around them, so the workers finish together: these first
# (in this order), then the other slow tests, then the rest. Ray's two files run on one worker
# (`xdist_group`), one after the other: each starts a Ray instance of its own. Only the order
# changes; a plain `pytest` run sees the same tests.
LONG_FIRST = [
    "tests/test_playbooks.py::test_playbook_runs_and_answers[5]",
    "tests/test_playbooks.py::test_playbook_runs_and_answers[1]",
    "tests/test_capacity.py::test_capacity_of_a_shared_device_matches_the_computed_one",
    "tests/test_ray.py::",
    "tests/test_ray_cluster.py::",
    "tests/test_playbooks.py::test_playbook_runs_and_answers[2]",
    "tests/test_playbooks.py::test_playbook_runs_and_answers[4]",
    "tests/test_playbooks.py::test_playbook_runs_and_answers[3]",
    "tests/test_optimize.py::test_graph_mode_compiles_and_reports_warmup",
    "tests/test_optimize.py::test_int8_sweep_with_quality_and_true_weight_bytes",
]


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        for k, prefix in enumerate(LONG_FIRST):
            if item.nodeid.startswith(prefix):
                return k
        return len(LONG_FIRST) + (0 if item.get_closest_marker("slow") else 1)

    items.sort(key=rank)  # stable: within a rank, the collection order


def flag_spec(models: list[str], flags: dict[str, object] | None = None, endpoints: list[str] | None = None,
              experiment: Path | None = None):
    """`colobench run -m ... --flag value ...` as (spec, source), through the CLI's own parser."""
    knobs = {_BY_FLAG[flag]: value for flag, value in (flags or {}).items()}
    return build_spec(experiment, models, endpoints or [], knobs)


def worker_index() -> int:
    """0 in a plain run; N in pytest-xdist's worker gwN."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


PORT_BLOCK = 400
_next_port = itertools.count()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now, for a server a test starts. Taken from a block
    of this worker's own below the kernel's ephemeral range (where `bind(0)`, and so colobench's own
    managed servers, and outgoing connections take theirs): two xdist workers never hand the same
    port to two servers, and no client socket sits on it."""
    base = 10000 + worker_index() * PORT_BLOCK
    if base + PORT_BLOCK <= _ephemeral_low():
        for _ in range(PORT_BLOCK):
            port = base + next(_next_port) % PORT_BLOCK
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:  # no room below the ephemeral range: any port the kernel gives
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAKE_BANNER = "fake OpenAI server on http://"


def wait_for_line(proc: subprocess.Popen, log: Path, text: str, timeout_s: float = 120) -> None:
    """Until `log` (the process's output) holds `text`; fails at once if the process exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.is_file() and text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} before printing {text!r}: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"{text!r} never came (after {timeout_s:g} s): {log.read_text(errors='replace')[-2000:]}")


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM to a process started in its own session, SIGKILL if it lingers; nothing if gone."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


@pytest.fixture
def fake_server(tmp_path_factory):
    """Start `colobench fake-server FLAGS` processes, each in its own session on a port of this
    worker's; each is handed over once it has printed its banner (it prints it once it listens:
    the server's own readiness signal, so no poll races its start). Returns (base URL, process).
    Those still alive at the end are stopped."""
    procs = []

    def start(*flags: str, env: dict | None = None) -> tuple[str, subprocess.Popen]:
        port = free_port()
        log = tmp_path_factory.mktemp("fake-server") / "server.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "colobench", "fake-server", "--port", str(port), *flags],
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        procs.append(proc)
        wait_for_line(proc, log, FAKE_BANNER)
        return f"http://127.0.0.1:{port}/v1", proc

    yield start
    for proc in procs:
        stop_process_group(proc)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """Presets built once per test session, away from the user's cache."""
    path = tmp_path_factory.mktemp("preset-cache")
    return path


@pytest.fixture
def cli_env(cache_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["COLOBENCH_CACHE"] = str(cache_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def written(run_dir: Path, point: int = 0) -> dict:
    """A point of a run directory's summary.json, with the summary's checks and problems beside it."""
    import json

    whole = json.loads((Path(run_dir) / "summary.json").read_text())
    return {**whole["points"][point], "checks": whole["checks"], "problems": whole["problems"]}


def invoke(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """`colobench ARGS` through the CLI's `main()` in this process: (exit status, stdout, stderr). The
    same code as a `colobench` process, without the second or so a process takes to start; the
    end-to-end tests start real ones."""
    from colobench import cli

    monkeypatch.setattr(sys, "argv", ["colobench", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "colobench", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def start_cli(args: list[str], env: dict[str, str], cwd: Path, new_session: bool = False) -> subprocess.Popen:
    """`colobench ARGS` in the background. `new_session`: its own process group, with a terminal's
    default SIGINT (a shell's background job ignores SIGINT, and Python keeps an inherited SIG_IGN)."""
    extra = {"start_new_session": True, "preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)} \
        if new_session else {}
    return subprocess.Popen([sys.executable, "-m", "colobench", *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **extra)


def wait_for_records(proc: subprocess.Popen, path: Path, count: int, timeout_s: float = 180) -> None:
    """Until `path` holds `count` measured (not warm-up) records; the test fails if it never does."""
    from colobench.records import read_jsonl

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and sum(1 for r in read_jsonl(path) if not r["warmup"]) >= count:
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{path.name} never held {count} measured records: {proc.communicate()[1][-2000:]}")


def measured(path: Path) -> list[dict]:
    """The measured requests of a records file: not warm-up, not the filler load an instance keeps
    on until its partners are done."""
    from colobench.records import read_jsonl

    return [r for r in read_jsonl(path) if not r["warmup"] and not r.get("load_only")]


def all_counted(metrics, requests: int, records: Path) -> None:
    """Every one of an instance's `requests` ran and completed (its records), and its co-located
    phase counts them: those inside the window in which every partner was under load, the others
    in `outside_overlap`. Worker processes leave the barrier some milliseconds apart, tens on a
    busy host, and a request sent in that gap falls outside: how many do depends on the host; that
    they add up, and that the phase measured something, does not. (`metrics`: a dict or a model.)"""
    get = metrics.get if isinstance(metrics, dict) else lambda key: getattr(metrics, key)
    rows = measured(records)
    assert len(rows) == requests and all(r["ok"] for r in rows), (records, len(rows))
    assert get("completed") + get("outside_overlap") == requests and get("completed") >= 1, \
        (records, get("completed"), get("outside_overlap"))


def pair_experiment(path: Path, cache_dir: Path, instances: list[str], requests: int = 120) -> Path:
    """Two instances together (no solo baselines), one repetition of `requests` requests each:
    long enough to kill or stop one of them mid-run. `instances` are YAML flow mappings."""
    lines = "\n".join(f"  - {i}" for i in instances)
    path.write_text(f"""
name: {path.stem}
repetitions: 1
solo_baselines: false
cache_dir: {cache_dir}
telemetry: {{idle_s: 0, host_interval_s: 0.2}}
workload: {{prompt_tokens: 16, output_tokens: 8, requests: {requests}, batch_size: 1}}
instances:
{lines}
""")
    return path


CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="session")
def tokenizer_checkpoint(tmp_path_factory, cache_dir: Path) -> Path:
    """A local HF checkpoint: the tiny preset's random Llama weights plus a small byte-level BPE
    tokenizer trained here with the `tokenizers` library, and a chat template."""
    import shutil

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from colobench.models.presets import ensure_preset

    path = tmp_path_factory.mktemp("checkpoints") / "tiny-chat"
    shutil.copytree(ensure_preset("tiny", cache_dir), path)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["The quick brown fox jumps over the lazy dog.", "What are the main differences between a CPU and a GPU?",
              "Write a Python function that returns the k most frequent words.", "请简要介绍一下长江的地理特点。",
              "Summarise the following text in three sentences."] * 20
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    return path
