"""Bad input, table-driven: configs, flags, files and paths, ports and endpoints, run directories.

Every case runs the CLI's `main()` in this process (as `colobench ARGS` would, from a fresh
folder with its own empty preset cache) and checks the contract: exit status 2, exactly one line
on stderr naming what is wrong, no traceback, nothing written (no output folder, no file in the
working folder that the case did not put there, nothing built in the cache).

This is the one table of bad input: the end-to-end files run a single case each through a real
`colobench` process (test_e2e, test_e2e_workloads, test_e2e_http), to show the process keeps the
contract that `main()` keeps here, and every other case lives here, where it costs milliseconds.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import invoke

TINY = "instances: [{model: tiny}]\n"


@dataclass
class Case:
    name: str
    args: list[str]
    fragment: str  # what the one line must say
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    out: str | None = None  # an output path that must not come into being
    prefix: str | None = None  # how the one line must begin


def y(body: str) -> dict[str, str]:
    return {"exp.yaml": body}


CONFIGS = [
    Case("malformed yaml", ["run", "exp.yaml"], "malformed YAML", y("instances:\n  - model: tiny\n   device: cpu\n")),
    Case("unknown key with suggestion", ["run", "exp.yaml"], "instances[0].modle: unknown key (did you mean 'model'?)",
         y("instances: [{modle: tiny}]\n")),
    Case("a real key in the wrong section", ["run", "exp.yaml"], "workload.model: unknown key here (it belongs to "
         "another section", y(TINY + "workload: {model: tiny}\n")),
    Case("unknown top-level key", ["run", "exp.yaml"], "repetitons: unknown key (did you mean 'repetitions'?)",
         y(TINY + "repetitons: 3\n")),
    Case("duplicate key", ["run", "exp.yaml"], "key 'workload' given twice",
         y("workload: {requests: 4}\n" + TINY + "workload: {requests: 8}\n")),
    Case("duplicate nested key", ["run", "exp.yaml"], "key 'requests' given twice",
         y(TINY + "workload:\n  requests: 4\n  requests: 5\n")),
    Case("boolean as a count", ["run", "exp.yaml"], "workload.requests: expected a number, not a boolean",
         y(TINY + "workload: {requests: true}\n")),
    Case("boolean as batch", ["run", "exp.yaml"], "workload.batch_size", y(TINY + "workload: {batch_size: false}\n")),
    Case("infinite rate", ["run", "exp.yaml"], "workload.rate: Input should be a finite number",
         y(TINY + "workload: {rate: .inf}\n")),
    Case("nan rate", ["run", "exp.yaml"], "workload.rate", y(TINY + "workload: {rate: .nan}\n")),
    Case("negative prompt", ["run", "exp.yaml"], "(got -3)", y(TINY + "workload: {prompt_tokens: -3}\n")),
    Case("zero requests", ["run", "exp.yaml"], "workload.requests", y(TINY + "workload: {requests: 0}\n")),
    Case("huge batch", ["run", "exp.yaml"], "must be at most 65,536", y(TINY + "workload: {batch_size: 1000000000}\n")),
    Case("huge concurrency", ["run", "exp.yaml"], "workload.concurrency: must be at most",
         y(TINY + "workload: {concurrency: 1000000000}\n")),
    Case("huge repetitions", ["run", "exp.yaml"], "repetitions: Input should be less than or equal to 1000",
         y(TINY + "repetitions: 1000000000000000000000\n")),
    Case("huge requests", ["run", "exp.yaml"], "workload.requests", y(TINY + "workload: {requests: 99999999999}\n")),
    Case("huge output tokens", ["run", "exp.yaml"], "workload.output_tokens",
         y(TINY + "workload: {output_tokens: 99999999999}\n")),
    Case("string count", ["run", "exp.yaml"], "workload.requests", y(TINY + "workload: {requests: lots}\n")),
    Case("mapping where a number goes", ["run", "exp.yaml"], "workload.requests",
         y(TINY + "workload: {requests: {a: 1}}\n")),
    Case("missing model", ["run", "exp.yaml"], "instances[0].model: required field is missing",
         y("instances: [{device: cpu}]\n")),
    Case("no instances", ["run", "exp.yaml"], "instances", y("instances: []\n")),
    Case("bad device string", ["run", "exp.yaml"], "device must be auto, cpu", y("instances: [{model: tiny, device: tpu}]\n")),
    Case("absent cuda card", ["run", "exp.yaml"], "instances[0].device: device not available",
         y("instances: [{model: tiny, device: 'cuda:5'}]\n")),
    Case("absent npu", ["run", "exp.yaml"], "instances[0].device: device not available",
         y("instances: [{model: tiny, device: 'npu:0'}]\n")),
    Case("bad dtype", ["run", "exp.yaml"], "instances[0].dtype", y("instances: [{model: tiny, dtype: fp8}]\n")),
    Case("bad quantization", ["run", "exp.yaml"], "instances[0].quantization",
         y("instances: [{model: tiny, quantization: int3}]\n")),
    Case("headers in process", ["run", "exp.yaml"], "headers applies to backend openai",
         y("instances: [{model: tiny, headers: {X-A: b}}]\n")),
    Case("fake timings on transformers", ["run", "exp.yaml"], "fake applies to backend fake",
         y("instances: [{model: tiny, fake: {ttft_ms: 1}}]\n")),
    Case("base_url in process", ["run", "exp.yaml"], "base_url applies to backend openai",
         y("instances: [{model: tiny, base_url: 'http://127.0.0.1:1/v1'}]\n")),
    Case("openai without url", ["run", "exp.yaml"], "backend openai needs base_url",
         y("instances: [{model: m, backend: openai}]\n")),
    Case("url without scheme", ["run", "exp.yaml"], "base_url must start with http",
         y("instances: [{model: m, backend: openai, base_url: '127.0.0.1:8000/v1'}]\n")),
    Case("bad metrics url", ["run", "exp.yaml"], "instances[0].metrics_url: metrics_url must be auto, off, or an http",
         y("instances: [{model: m, backend: openai, base_url: 'http://127.0.0.1:8000/v1', metrics_url: sometimes}]\n")),
    Case("bad env name", ["run", "exp.yaml"], "is not an environment variable name",
         y("instances: [{model: tiny, env: {BAD-NAME: '1'}}]\n")),
    Case("bad instance name", ["run", "exp.yaml"], "name may hold letters",
         y("instances: [{model: tiny, name: 'a b'}]\n")),
    Case("memory fraction above 1", ["run", "exp.yaml"], "memory_fraction",
         y("instances: [{model: tiny, memory_fraction: 2}]\n")),
    Case("zero telemetry interval", ["run", "exp.yaml"], "telemetry.host_interval_s",
         y(TINY + "telemetry: {host_interval_s: 0}\n")),
    Case("unknown launcher", ["run", "exp.yaml"], "launch.kind", y(TINY + "launch: {kind: slurm}\n")),
    Case("min above max", ["run", "exp.yaml"], "uniform lengths need min <= max",
         y(TINY + "workload: {prompt_tokens: {min: 9, max: 3}}\n")),
    Case("mean without std", ["run", "exp.yaml"], "a normal length needs std",
         y(TINY + "workload: {prompt_tokens: {mean: 9}}\n")),
    Case("rate with static load", ["run", "exp.yaml"], "rate applies to load 'open'",
         y(TINY + "workload: {load: static, rate: 5}\n")),
    Case("closed without concurrency", ["run", "exp.yaml"], "load 'closed' needs a concurrency",
         y(TINY + "workload: {load: closed}\n")),
    Case("shared prefix as long as the prompt", ["run", "exp.yaml"], "must be below the shortest prompt",
         y(TINY + "workload: {prompt_tokens: 32, shared_prefix: {tokens: 32}}\n")),
    Case("shared prefix share above 1", ["run", "exp.yaml"], "shared_prefix.share",
         y(TINY + "workload: {prompt_tokens: 64, shared_prefix: {tokens: 8, share: 2}}\n")),
    Case("shared prefix flag not a number", ["run", "-m", "tiny", "--shared-prefix", "lots"],
         "is not TOKENS or TOKENS:SHARE"),
    Case("sessions on a static load", ["run", "exp.yaml"], "sessions need load 'closed' or 'open'",
         y(TINY + "workload: {sessions: {turns: 3}}\n")),
    Case("one-turn sessions", ["run", "exp.yaml"], "sessions.turns",
         y(TINY + "workload: {concurrency: 2, sessions: {turns: 1}}\n")),
    Case("context exceeded", ["run", "exp.yaml"], "exceed the model's context of 8192 tokens",
         y(TINY + "workload: {prompt_tokens: 8000, output_tokens: 500}\n")),
    Case("does not fit in memory", ["run", "exp.yaml"], "more than the host's",
         y("instances: [{model: llama-3.2-1b, device: cpu}]\n"
           "workload: {batch_size: 65536, prompt_tokens: 4096, output_tokens: 4000}\n")),
    Case("sweep index out of range", ["run", "exp.yaml"], "there are only 1 instances",
         y(TINY + "sweep: {instances.5.workload.rate: [1, 2]}\n")),
    Case("sweep of an unknown field", ["run", "exp.yaml"], "sweep", y(TINY + "sweep: {workload.colour: [1, 2]}\n")),
    Case("unknown scenario", ["run", "exp.yaml"], "scenario", y(TINY + "scenario: nope\n")),
    Case("not a mapping", ["run", "exp.yaml"], "expected a mapping at the top level", y("- model: tiny\n")),
    Case("empty file", ["run", "exp.yaml"], "experiment file is empty", y("")),
    Case("binary file", ["run", "exp.yaml"], "not a text file", {"exp.yaml": b"\x00\x01\x02instances"}),
    Case("missing file", ["run", "nope.yaml"], "experiment file not found"),
    Case("folder as file", ["run", "adir"], "cannot read experiment file", {"adir/x": "x"}),
    Case("missing prompt file", ["run", "exp.yaml"], "none.jsonl: prompt file not found", y("instances: [{model: m, backend: openai, "
                                                                 "base_url: 'http://127.0.0.1:1/v1'}]\n"
                                                                 "workload: {prompts: {file: none.jsonl}}\n")),
    Case("binary prompt file", ["run", "exp.yaml"], "bin.jsonl: not a UTF-8 text file", {
        "exp.yaml": "instances: [{model: m, backend: openai, base_url: 'http://127.0.0.1:1/v1'}]\n"
                    "workload: {prompts: {file: bin.jsonl}}\n", "bin.jsonl": b"\x00\xff\x01binary"}),
    Case("malformed prompt line", ["run", "exp.yaml"], "p.jsonl:2", {
        "exp.yaml": "instances: [{model: m, backend: openai, base_url: 'http://127.0.0.1:1/v1'}]\n"
                    "workload: {prompts: {file: p.jsonl}}\n", "p.jsonl": '{"prompt": "hi"}\n{oops\n'}),
    Case("tokenizer folder missing", ["run", "exp.yaml"], "no such tokenizer folder",
         y("instances: [{model: m, backend: openai, base_url: 'http://127.0.0.1:1/v1', tokenizer: ./nowhere}]\n")),
    # YAML that parses but cannot be an experiment
    Case("list as a mapping key", ["run", "exp.yaml"], "exp.yaml:1: a list used as a mapping key", y("? [a, b]\n: 1\n")),
    Case("mapping as a mapping key", ["run", "exp.yaml"], "exp.yaml:2: a mapping used as a mapping key",
         y(TINY + "workload: {? {a: 1} : 2}\n")),
    Case("self-referencing list anchor", ["run", "exp.yaml"], "an anchor refers to itself", y("instances: &a [*a]\n")),
    Case("self-referencing anchor in extra_body", ["run", "exp.yaml"], "an anchor refers to itself",
         y("instances: [{model: m, backend: openai, base_url: 'http://127.0.0.1:1/v1', extra_body: {a: &x [*x]}}]\n")),
    Case("self-referencing mapping anchor", ["run", "exp.yaml"], "recursive", y("a: &x {b: *x}\n")),
    Case("alias bomb", ["run", "exp.yaml"], "once its aliases are expanded",
         y("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
             f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]\n" for k in range(1, 7)) + TINY)),
    Case("nested too deeply", ["run", "exp.yaml"], "nested too deeply", y("instances: " + "[" * 5000 + "]" * 5000)),
    # endpoints and headers
    Case("header with CR LF", ["run", "exp.yaml"], "the value of header X-A holds a control character", y(
        "instances: [{model: m, backend: openai, base_url: 'http://127.0.0.1:1/v1', headers: {X-A: \"a\\r\\nX-B: c\"}}]\n")),
    Case("header outside latin-1", ["run", "exp.yaml"], "outside Latin-1", y(
        "instances: [{model: m, backend: openai, base_url: 'http://127.0.0.1:1/v1', headers: {X-A: \"\u20ac\"}}]\n")),
    Case("header name with a space", ["run", "exp.yaml"], "is not an HTTP header name", y(
        "instances: [{model: m, backend: openai, base_url: 'http://127.0.0.1:1/v1', headers: {'X A': b}}]\n")),
    Case("metrics url with a bad port", ["run", "exp.yaml"], "metrics_url is not a valid URL", y(
        "instances: [{model: m, backend: openai, base_url: 'http://127.0.0.1:1/v1', "
        "metrics_url: 'http://127.0.0.1:abc/metrics'}]\n")),
    Case("NUL in an env value", ["run", "exp.yaml"], "the value of A holds a NUL byte",
         y("instances: [{model: tiny, env: {A: \"x\\0y\"}}]\n")),
    Case("numeric env value is not echoed", ["run", "exp.yaml"], "servers[0].command", y(
        "servers: [{name: s, command: [no-such-program-colobench, '{port}'], env: {MY_API_KEY: 98765432}}]\n"
        "instances: [{backend: openai, server: s, model: m}]\n")),
    Case("impossible cores in YAML", ["run", "exp.yaml"], "instances[0].cpu_affinity: core(s) 4096 not available here",
         y("instances: [{model: tiny, cpu_affinity: [4096]}]\n")),
    Case("repeated sweep value", ["run", "exp.yaml"], "the value 4.0 is listed twice",
         y(TINY + "workload: {requests: 2}\nsweep: {rate: [4, 4.0]}\n")),
]

# each experiment file named for what is wrong with it, written and run with an --out that must not appear
FILES = [
    Case(f"{name} with an out folder", ["run", name, "-o", "out"], fragment, {name: text}, out="out",
         prefix=f"error: {name}")
    for name, text, fragment in [
        ("malformed.yaml", "instances:\n  - model: tiny\n   device: cpu\n", "malformed YAML"),
        ("unknown.yaml", "instances:\n  - model: tiny\n    colour: red\n", "instances[0].colour: unknown key"),
        ("wrongtype.yaml", "instances: [{model: tiny}]\nworkload: {requests: lots}\n", "workload.requests"),
        ("negative.yaml", "instances: [{model: tiny}]\nworkload: {prompt_tokens: -3}\n", "(got -3)"),
        ("nodevice.yaml", "instances: [{model: tiny, device: 'cuda:5'}]\n",
         "instances[0].device: device not available"),
        ("nockpt.yaml", "instances: [{model: ./missing/checkpoint}]\n", "no such checkpoint folder"),
    ]
]

FLAGS = [
    Case("prompt tokens negative", ["run", "-m", "tiny", "-p", "-1"], "--prompt-tokens"),
    Case("requests zero", ["run", "-m", "tiny", "--requests", "0"], "--requests"),
    Case("device flag unknown", ["run", "-m", "tiny", "--device", "tpu"], "--device"),
    Case("model flag path missing", ["run", "-m", "./nowhere"], "--model"),
    Case("experiment file missing by name", ["run", "missing.yaml"], "missing.yaml: experiment file not found"),
    Case("rate negative", ["run", "-m", "tiny", "--rate", "-2"], "--rate"),
    Case("concurrency zero", ["run", "-m", "tiny", "--concurrency", "0"], "--concurrency"),
    Case("scenario unknown named", ["run", "-m", "tiny", "--scenario", "enormous"], "unknown scenario 'enormous'"),
    Case("text prompts on a preset", ["run", "-m", "tiny", "--prompts", "builtin"], "need a checkpoint with a tokenizer",
         prefix="error: command line: --prompts: "),
    Case("batch not a number", ["run", "-m", "tiny", "--batch-size", "abc"], "--batch-size: 'abc' is not an integer"),
    Case("batch zero", ["run", "-m", "tiny", "-b", "0"], "--batch-size"),
    Case("batch negative", ["run", "-m", "tiny", "-b", "-1"], "--batch-size"),
    Case("rate infinite", ["run", "-m", "tiny", "--rate", "inf"], "--rate"),
    Case("rate nan", ["run", "-m", "tiny", "--rate", "nan"], "--rate"),
    Case("rate zero", ["run", "-m", "tiny", "--rate", "0"], "--rate"),
    Case("repetitions zero", ["run", "-m", "tiny", "--repetitions", "0"], "--repetitions"),
    Case("repetitions huge", ["run", "-m", "tiny", "--repetitions", "1" + "0" * 21], "--repetitions"),
    Case("concurrency huge", ["run", "-m", "tiny", "-c", "1000000000"], "--concurrency"),
    Case("dtype unknown", ["run", "-m", "tiny", "--dtype", "fp8"], "--dtype"),
    Case("device unknown", ["run", "-m", "tiny", "-d", "tpu"], "device must be auto, cpu"),
    Case("model path missing", ["run", "-m", "./no/such/ckpt"], "no such checkpoint folder"),
    Case("unknown flag", ["run", "--nope"], "No such option: --nope"),
    Case("unknown command", ["launch"], "No such command"),
    Case("prompt tokens zero", ["run", "-m", "tiny", "-p", "0"], "--prompt-tokens"),
    Case("output tokens negative", ["run", "-m", "tiny", "-n", "-3"], "--output-tokens"),
    Case("duration zero", ["run", "-m", "tiny", "--duration", "0"], "--duration"),
    Case("seed negative", ["run", "-m", "tiny", "--seed", "-1"], "--seed"),
    Case("memory fraction flag", ["run", "-m", "tiny", "--memory-fraction", "2"], "--memory-fraction"),
    Case("cpu threads zero", ["run", "-m", "tiny", "--cpu-threads", "0"], "--cpu-threads"),
    Case("env bad name", ["run", "-m", "tiny", "--env", "BAD-NAME=1"], "is not an environment variable name"),
    Case("env without value", ["run", "-m", "tiny", "--env", "NOVALUE"], "--env"),
    Case("order unknown", ["run", "-m", "tiny", "--order", "sideways"], "--order"),
    Case("launcher unknown", ["run", "-m", "tiny", "--launcher", "slurm"], "--launcher"),
    Case("arrival unknown", ["run", "-m", "tiny", "--rate", "5", "--arrival", "weird"], "--arrival"),
    Case("scenario unknown", ["run", "-m", "tiny", "--scenario", "nope"], "scenario"),
    Case("cpu affinity garbage", ["run", "-m", "tiny", "--cpu-affinity", "x-y"], "--cpu-affinity"),
    Case("resume without out", ["run", "--resume"], "--resume needs --out"),
    Case("compare one run", ["compare", "a"], "compare needs at least two runs"),
    Case("zero thread count in env", ["run", "-m", "tiny", "--env", "OMP_NUM_THREADS=0"],
         "OMP_NUM_THREADS must be a positive thread count"),
    Case("env key given twice", ["run", "-m", "tiny", "--env", "A=1", "--env", "A=2"], "--env: A given twice"),
    Case("slo objective given twice", ["run", "-m", "tiny", "--slo", "ttft_ms=5,ttft_ms=7"], "--slo: ttft_ms given twice"),
    Case("cpu affinity beyond the host", ["run", "-m", "tiny", "--cpu-affinity", "64"],
         "--cpu-affinity: core(s) 64 not available here"),
    Case("capacity min rate zero", ["capacity", "-m", "tiny", "--slo", "ttft_ms=5", "--min-rate", "0"], "--min-rate"),
    Case("capacity max time zero", ["capacity", "-m", "tiny", "--slo", "ttft_ms=5", "--max-time", "0"], "--max-time"),
    Case("tolerance above 1", ["compare", "a", "b", "--tolerance", "2"], "--tolerance"),
]

PATHS = [
    Case("out is a file", ["run", "-m", "tiny", "-o", "afile"], "--out afile: is a file", {"afile": "x"}),
    Case("out below a file", ["run", "-m", "tiny", "-o", "afile/sub"], "afile is a file, so no folder can be made",
         {"afile": "x"}, out="afile/sub"),
    Case("out on a pseudo filesystem", ["run", "-m", "tiny", "-o", "/proc/colobench-x"], "--out /proc/colobench-x"),
    Case("out not empty", ["run", "-m", "tiny", "-o", "full"], "folder exists and is not empty", {"full/x": "x"}),
    Case("resume without manifest", ["run", "--resume", "-o", "full"], "no manifest.json there", {"full/x": "x"}),
    Case("cache dir is a file", ["run", "-m", "tiny", "--cache-dir", "afile", "-o", "o"], "--cache-dir afile: is a file",
         {"afile": "x"}, out="o"),
    Case("report of nothing", ["report", "nowhere"], "nowhere"),
    Case("report of a plain folder", ["report", "adir"], "not a colobench run directory", {"adir/x": "x"}),
    Case("report of the empty working folder", ["report", "."], "not a colobench run directory"),
    Case("report of a non-summary file", ["report", "notes.txt"], "notes.txt", {"notes.txt": "hello"}),
    Case("report garbage manifest", ["report", "run"], "run/manifest.json: not valid JSON",
         {"run/manifest.json": "garbage"}),
    Case("report csv into a folder", ["report", "run", "--csv", "adir"], "--csv adir: is a folder",
         {"adir/x": "x", "run/manifest.json": "{}"}),
    Case("report csv in a missing folder", ["report", "run", "--csv", "no/such/x.csv"], "no folder no/such",
         {"run/manifest.json": "{}"}),
    Case("compare csv in a missing folder", ["compare", "a", "b", "--csv", "no/such/x.csv"], "--csv no/such/x.csv"),
    Case("compare html into a folder", ["compare", "a", "b", "--html", "adir"], "--html adir: is a folder",
         {"adir/x": "x"}),
    Case("profile out is a file", ["profile", "-m", "tiny", "-o", "afile"], "--out afile: is a file", {"afile": "x"}),
]

ENDPOINTS = [
    Case("port above range", ["fake-server", "--port", "99999"], "--port"),
    Case("port zero", ["fake-server", "--port", "0"], "--port"),
    Case("negative itl", ["fake-server", "--itl-ms", "-5"], "--itl-ms"),
    Case("error rate above 1", ["fake-server", "--error-rate", "2"], "--error-rate"),
    Case("unknown fault", ["fake-server", "--faults", "boom"], "unknown fault"),
    Case("fake server without models", ["fake-server", "--models", ""], "--models: give at least one served model"),
    Case("fake server with an unset key variable", ["fake-server", "--api-key-env", "COLOBENCH_TEST_UNSET_KEY"],
         "environment variable COLOBENCH_TEST_UNSET_KEY is not set"),
    Case("unknown usage mode", ["fake-server", "--usage", "sometimes"], "--usage"),
    Case("unknown reasoning field", ["fake-server", "--reasoning-field", "thoughts"], "--reasoning-field"),
    Case("unreachable endpoint", ["run", "-e", "http://127.0.0.1:1/v1", "-m", "m"], "cannot reach the server"),
    Case("unreachable endpoint names the flag", ["run", "-e", "http://127.0.0.1:1/v1", "-m", "x", "-c", "2"],
         "--endpoint: cannot reach the server"),
    Case("unset api key variable", ["run", "-e", "http://127.0.0.1:1/v1", "-m", "m", "--api-key-env",
                                    "COLOBENCH_TEST_UNSET_KEY"], "environment variable COLOBENCH_TEST_UNSET_KEY is not set"),
    Case("password in an unreachable url", ["run", "-e", "http://user:hunter2secret@127.0.0.1:1/v1", "-m", "m"],
         "cannot reach the server"),
    Case("port not a number", ["run", "-e", "http://127.0.0.1:abc/v1", "-m", "m"],
         "--endpoint: base_url is not a valid URL (Port could not be cast"),
    Case("malformed ipv6 host", ["run", "-e", "http://[::1/v1", "-m", "m"], "Invalid IPv6 URL"),
    Case("port out of range in a url", ["run", "-e", "http://127.0.0.1:99999/v1", "-m", "m"], "Port out of range"),
    Case("url without a host", ["run", "-e", "http:///v1", "-m", "m"], "base_url has no host"),
    Case("url with a space", ["run", "-e", "http://127.0.0.1:1/v1 x", "-m", "m"], "holds a space or a control"),
    Case("api key with CR LF", ["run", "-e", "http://127.0.0.1:1/v1", "-m", "m", "--api-key-env", "COLOBENCH_TEST_KEY"],
         "the API key in COLOBENCH_TEST_KEY holds a control character", env={"COLOBENCH_TEST_KEY": "abc\r\nX-Evil: 1"}),
    Case("api key outside latin-1", ["run", "-e", "http://127.0.0.1:1/v1", "-m", "m", "--api-key-env",
                                     "COLOBENCH_TEST_KEY"], "outside Latin-1", env={"COLOBENCH_TEST_KEY": "cl\u00e9\u20ac"}),
    Case("server pid that does not exist", ["run", "-e", "http://127.0.0.1:1/v1", "-m", "m", "--server-pid", "4194000"],
         "--server-pid: no such process on this host"),
]

CASES = CONFIGS + FILES + FLAGS + PATHS + ENDPOINTS


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_the_suite_is_large_enough():
    counts = {"configs": len(CONFIGS) + len(FILES), "flags": len(FLAGS), "paths": len(PATHS),
              "endpoints": len(ENDPOINTS)}
    assert sum(counts.values()) >= 80, counts


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(case: Case, tmp_path: Path, monkeypatch, capsys):
    for rel, content in case.files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    cache = tmp_path.parent / f"{tmp_path.name}-cache"
    monkeypatch.setenv("COLOBENCH_CACHE", str(cache))
    monkeypatch.delenv("COLOBENCH_TEST_UNSET_KEY", raising=False)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    code, out, err = invoke(case.args, monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert case.fragment in lines[0], lines[0]
    assert case.prefix is None or lines[0].startswith(case.prefix), lines[0]
    assert "Traceback" not in err + out
    assert _tree(tmp_path) == before, "something was written"
    assert not cache.exists() or not any(cache.iterdir()), "something was built in the cache"
    if case.out:
        assert not (tmp_path / case.out).exists()
    assert "hunter2secret" not in err + out and "98765432" not in err + out


def test_port_in_use_is_one_line(monkeypatch, capsys, tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.chdir(tmp_path)
        code, out, err = invoke(["fake-server", "--port", str(port)], monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and f"--port {port}: cannot listen" in lines[0], err


@pytest.mark.parametrize("args, fragment", [(["run", "--bogus"], "No such option: --bogus"),
                                            (["report"], "Missing argument"), ([], "Usage: colobench")])
def test_usage_errors_have_no_traceback(args: list[str], fragment: str, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke(args, monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err + out
    assert fragment in err + out


@pytest.mark.slow  # the session's tokenizer checkpoint: a preset built and a tokenizer trained
@pytest.mark.parametrize("content, fragment", [
    (None, "missing.jsonl: prompt file not found"),
    ("", "holds no prompts"),
    ('{"prompt": "a"}\n{"prompt": \n', "bad.jsonl:2: not valid JSON"),
    ('{"prompt": "a"}\n{"question": "b"}\n', "bad.jsonl:2: line has neither"),
])
def test_bad_prompt_files_with_a_checkpoint(content: str | None, fragment: str, tmp_path: Path, monkeypatch, capsys,
                                            tokenizer_checkpoint: Path):
    """A checkpoint with a tokenizer takes text prompts; a bad prompt file is the one line, as above."""
    name = "missing.jsonl" if content is None else "bad.jsonl"
    if content is not None:
        (tmp_path / name).write_text(content)
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    code, out, err = invoke(["run", "-m", str(tokenizer_checkpoint), "-d", "cpu", "--prompts", name], monkeypatch,
                            capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err + out and _tree(tmp_path) == before


def test_a_server_that_is_not_http_is_one_line(monkeypatch, capsys, tmp_path: Path):
    """A port that answers with an SSH banner (BadStatusLine inside urllib): one line naming it."""
    import threading

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]

        def banner() -> None:
            for _ in range(3):
                try:
                    conn, _ = sock.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

        threading.Thread(target=banner, daemon=True).start()
        monkeypatch.chdir(tmp_path)
        code, out, err = invoke(["run", "-e", f"http://127.0.0.1:{port}/v1", "-m", "m"], monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "it does not speak HTTP: BadStatusLine SSH-2.0-OpenSSH_9.6" in lines[0] and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_a_privileged_port_is_refused_for_a_user(monkeypatch, capsys, tmp_path: Path):
    """Only root may listen below 1024: a managed server there would never answer (it hung 180 s)."""
    import os
    import sys

    (tmp_path / "exp.yaml").write_text(f"servers: [{{name: s, command: [{sys.executable}, -c, 'pass'], port: 90}}]\n"
                                       "instances: [{backend: openai, server: s, model: m}]\n")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke(["run", "exp.yaml", "-o", "out"], monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "servers[0].port: a privileged port (below 1024)" in lines[0], err
    assert not (tmp_path / "out").exists()


def test_log_rules_with_a_list_key_is_one_line(monkeypatch, capsys, tmp_path: Path):
    (tmp_path / "rules.yaml").write_text("? [a]\n: b\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke(["diagnose", "run", "--log-rules", "rules.yaml"], monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "rules.yaml:1: a list used as a mapping key" in lines[0], err


@pytest.mark.parametrize("command", ["run", "capacity"])
def test_a_managed_servers_fixed_port_in_use_is_one_line_and_no_folder(command: str, monkeypatch, capsys,
                                                                        tmp_path: Path):
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "exp.yaml").write_text(
            f"servers: [{{name: s, command: [{sys.executable}, -c, 'pass'], port: {port}}}]\n"
            "instances: [{backend: openai, server: s, model: m, slo: {ttft_ms: 100}}]\n")
        monkeypatch.chdir(tmp_path)
        code, out, err = invoke([command, "exp.yaml", "-o", "out"], monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "servers[0].port: in use on 127.0.0.1" in lines[0], err
    assert not (tmp_path / "out").exists()


# ---- a run directory, corrupted file by file ------------------------------------------------------

CORRUPT = {"syntax": b'{"a": 1,,}', "list": b"[1, 2]", "binary": b"\xff\xfe\x00\x01garbage\x9c", "empty": b"",
           "nulls": None}
RUN_FILES = ["manifest.json", "runs/colocated/run.json", "runs/colocated/records/a.jsonl"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, cache_dir: Path) -> Path:
    import os

    from conftest import pair_experiment, run_cli

    root = tmp_path_factory.mktemp("small-run")
    exp = pair_experiment(root / "small.yaml", cache_dir, [
        f"{{name: {n}, model: fake, backend: fake, fake: {{ttft_ms: 1, tpot_ms: 1}}}}" for n in ("a", "b")],
        requests=6)
    proc = run_cli(["run", str(exp), "-o", str(root / "run")], {**os.environ, "COLOBENCH_CACHE": str(cache_dir)}, root)
    assert proc.returncode == 0, proc.stderr
    return root / "run"


# --resume only of the files it reads before running: a broken record file is an attempt it keeps aside
CORRUPTIONS = [(rel, kind, command) for rel in RUN_FILES for kind in CORRUPT
               for command in ("report", "diagnose", "compare", "resume")
               if not (command == "resume" and rel.endswith(".jsonl"))]


@pytest.mark.parametrize("rel, kind, command", CORRUPTIONS)
def test_a_corrupt_run_directory_is_never_a_traceback(rel: str, kind: str, command: str, small_run: Path,
                                                      tmp_path: Path, monkeypatch, capsys):
    """Every file a reader opens, broken five ways (bad syntax, a list where an object belongs,
    binary, empty, every top-level value null): report, diagnose, compare and --resume end with a
    result (0 or 1) or one line and exit 2; never a traceback."""
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    (run / "summary.json").unlink()
    path = run / rel
    if kind == "nulls":
        if rel.endswith(".jsonl"):
            path.write_text("null\n" * 3)
        else:
            path.write_text(json.dumps({k: None for k in json.loads(path.read_text())}))
    else:
        path.write_bytes(CORRUPT[kind])
    monkeypatch.chdir(tmp_path)
    args = {"report": ["report", "run"], "diagnose": ["diagnose", "run"], "compare": ["compare", "run", str(small_run)],
            "resume": ["run", "--resume", "-o", "run"]}[command]
    code, out, err = invoke(args, monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err + out
    assert code in (0, 1) or (code == 2 and len(lines) == 1), (code, err[-2000:])
    if code == 2:
        assert rel.split("/")[-1] in lines[0] or "run" in lines[0], lines[0]
