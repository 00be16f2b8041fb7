"""How closely does a trace replay follow the trace? (a benchmark, not a test)

Writes a Mooncake-format trace and an Azure-format CSV at `--rate` requests/s (Poisson gaps,
`--seconds` long), starts `colobench fake-server` on 127.0.0.1, and runs `colobench run` with two
endpoint instances on it, each replaying its own trace, solo and co-located. Printed per instance
and phase: requests sent, the achieved rate, the schedule lag (how late each request left against
its trace time) and the share sent within 1 ms of it. The server is stopped by its pid.

    python benchmarks/trace_replay.py [--rate 200] [--seconds 5] [--out /tmp/colobench-trace]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from colobench import api  # noqa: E402
from colobench.analysis import metrics  # noqa: E402
from colobench.records import read_records  # noqa: E402
from colobench.rundir import RunDir  # noqa: E402

BANNER = "fake OpenAI server on http://"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_traces(out: Path, rate: float, seconds: float) -> tuple[Path, Path]:
    rng = random.Random(7)
    mooncake, azure = out / "mooncake.jsonl", out / "azure.csv"
    t, rows = 0.0, []
    while t < seconds:
        n = rng.randint(64, 256)
        rows.append({"timestamp": round(t * 1000, 3), "input_length": n, "output_length": rng.randint(4, 12),
                     "hash_ids": [len(rows) % 4, 1000 + len(rows)][: (n + 63) // 64]})
        t += rng.expovariate(rate)
    mooncake.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines, t = ["TIMESTAMP,ContextTokens,GeneratedTokens"], 0.0
    while t < seconds:
        lines.append(f"{t:.6f},{rng.randint(64, 256)},{rng.randint(4, 12)}")
        t += rng.expovariate(rate)
    azure.write_text("\n".join(lines) + "\n")
    return mooncake, azure


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/colobench-trace"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    mooncake, azure = write_traces(args.out, args.rate, args.seconds)
    port = free_port()
    log = open(args.out / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "colobench", "fake-server", "--port", str(port)], stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while BANNER not in (args.out / "server.log").read_text(errors="replace"):
            if time.time() > deadline or server.poll() is not None:
                sys.exit("the fake server did not start: see " + str(args.out / "server.log"))
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/v1"
        exp = args.out / "replay.yaml"
        exp.write_text(f"""name: trace-replay
repetitions: 3
workload: {{concurrency: 256}}
instances:
  - {{name: mooncake, model: fake-model, backend: openai, base_url: "{url}", workload: {{trace: "{mooncake}"}}}}
  - {{name: azure, model: fake-model, backend: openai, base_url: "{url}", workload: {{trace: "{azure}"}}}}
""")
        run = args.out / "run"
        if not (run / "summary.json").exists():
            proc = subprocess.run([sys.executable, "-m", "colobench", "run", str(exp), "-o", str(run)],
                                  capture_output=True, text=True)
            if proc.returncode not in (0, 1):
                sys.exit(f"colobench run failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(10)
        log.close()
    summary = api.load_summary(run)
    point = summary.point()
    print(f"trace replay against colobench fake-server, {args.rate:g} req/s for {args.seconds:g} s per trace")
    print("| instance | phase | requests | achieved req/s | lag mean ms | lag p50 ms | lag p99 ms | within 1 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    out = {}
    for phase, name, mt in point.rows():
        run_id = next(r for r, e in point.runs.items() if e.phase == phase and name in e.workers)
        records = [r for r in read_records(RunDir(run).run(run_id).records(name)) if r.ok and not r.warmup
                   and not r.load_only]
        lags = [metrics.schedule_lag_ns(r) / 1e6 for r in records]
        within = sum(1 for x in lags if x <= 1.0) / len(lags) if lags else 0.0
        ol = mt.open_loop
        print(f"| {name} | {phase} | {mt.completed} | {ol.achieved_rate:.1f} | {ol.mean_schedule_lag_ms:.3f} | "
              f"{mt.open_loop.schedule_lag_ms.p50:.3f} | {ol.p99_schedule_lag_ms:.3f} | {within * 100:.1f}% |")
        out[f"{name}/{phase}"] = {"lag_mean_ms": ol.mean_schedule_lag_ms, "within_1ms": within}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
