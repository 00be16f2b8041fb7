"""Checks for benchmarks/real_engine.sh: colobench against a real vLLM server, measured both ways.

Standard library plus psutil (the repo's .venv has it). Subcommands:

    watch PORT [PORT ...] --out FILE [--interval S] [--max-s S]
        poll each port's /metrics and the server's process tree (whoever listens on the port,
        and every descendant) until killed or --max-s; one JSON line per scrape
    api PORT MODEL
        one of each request the lead's code depends on; prints each response's shape
    prompts RUN_DIR P
        prompt tokens per instance (its API) and run from the records (usage counts); exit 1 when
        a measured request is off by more than one token
    metrics WATCH_FILE RUN_DIR [--expect-share X]
        each server's own counters over its life (first to last scrape): requests, prompt
        tokens, prefix-cache hit rate (tokens), TTFT / ITL / queue means, preemptions, against
        the client's records; the summary's per-phase server figures where it has them
    contention RUN_DIR WATCH_FILE
        exit 1 when a cpu_contention finding names a process of a server's own tree
    capacity CAP_DIR [CAP_DIR ...]
        each search's capacity, their spread, and probes that met the SLO yet failed
"""
from __future__ import annotations

import argparse
import glob
import json
import re
import statistics
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

COUNTERS = {
    "requests": "vllm:request_success_total",
    "prompt_tokens": "vllm:prompt_tokens_total",
    "generation_tokens": "vllm:generation_tokens_total",
    "prefix_hits": "vllm:prefix_cache_hits_total",
    "prefix_queries": "vllm:prefix_cache_queries_total",
    "preemptions": "vllm:num_preemptions_total",
    "ttft_sum": "vllm:time_to_first_token_seconds_sum",
    "ttft_count": "vllm:time_to_first_token_seconds_count",
    "itl_sum": "vllm:inter_token_latency_seconds_sum",
    "itl_count": "vllm:inter_token_latency_seconds_count",
    "queue_sum": "vllm:request_queue_time_seconds_sum",
    "queue_count": "vllm:request_queue_time_seconds_count",
    "e2e_sum": "vllm:e2e_request_latency_seconds_sum",
    "e2e_count": "vllm:e2e_request_latency_seconds_count",
    "kv_usage": "vllm:kv_cache_usage_perc",
}
LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def scrape(port: int, timeout: float = 3.0) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        text = r.read().decode()
    sums: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            try:
                sums[m.group(1)] += float(m.group(3))
                if m.group(1) == "http_request_duration_seconds_count" and 'handler="/tokenize"' in (m.group(2) or ""):
                    sums["tokenize_calls"] += float(m.group(3))
            except ValueError:
                pass
    out = {k: sums.get(v, 0.0) for k, v in COUNTERS.items()}
    out["tokenize_calls"] = sums.get("tokenize_calls", 0.0)
    return out


def server_tree(port: int) -> list[dict]:
    import psutil
    root = None
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                root = psutil.Process(c.pid)
                break
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return []
    if root is None:
        return []
    out = []
    for p in [root, *root.children(recursive=True)]:
        try:
            out.append({"pid": p.pid, "name": p.name(), "cores": p.cpu_affinity()})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def cmd_watch(a) -> int:
    end = time.monotonic() + a.max_s
    last_tree: dict[int, float] = {}
    with open(a.out, "a") as f:
        while time.monotonic() < end:
            for port in a.ports:
                row = {"t_ns": time.monotonic_ns(), "wall": time.time(), "port": port}
                try:
                    row["m"] = scrape(port)
                except OSError:
                    continue  # not up (yet, or any more)
                if time.monotonic() - last_tree.get(port, -1e9) > 5:  # psutil's walk costs: every 5 s
                    row["tree"] = server_tree(port)
                    last_tree[port] = time.monotonic()
                f.write(json.dumps(row) + "\n")
                f.flush()
            time.sleep(a.interval)
    return 0


def post(port: int, path: str, body: dict, stream: bool = False):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read().decode()
    except urllib.error.HTTPError as e:
        return {"http_error": e.code, "body": e.read().decode()[:300]}
    if not stream:
        return json.loads(raw)
    return [json.loads(x[6:]) if x[6:] != "[DONE]" else "[DONE]" for x in raw.split("\n") if x.startswith("data: ")]


def shape(o, depth=0):
    """Keys and types, values kept when short."""
    if isinstance(o, dict):
        return {k: shape(v, depth + 1) for k, v in o.items() if v is not None}
    if isinstance(o, list):
        if o and all(isinstance(x, int) for x in o):
            return f"[{len(o)} ints]"
        return [shape(x, depth + 1) for x in o[:3]] + ([f"... {len(o)} items"] if len(o) > 3 else [])
    if isinstance(o, str) and len(o) > 40:
        return o[:37] + "..."
    return o


def cmd_api(a) -> int:
    p, m = a.port, a.model
    tok = post(p, "/tokenize", {"model": m, "prompt": "The quick brown fox jumps over the lazy dog."})
    ids = tok.get("tokens", [5, 6, 7])
    eos = 2
    cases = [
        ("POST /tokenize {prompt}", "/tokenize", {"model": m, "prompt": "The quick brown fox jumps over the lazy dog."}, False),
        ("POST /tokenize {messages}", "/tokenize", {"model": m, "messages": [{"role": "user", "content": "The quick brown fox"}]}, False),
        ("POST /v1/completions prompt=[ids]", "/v1/completions",
         {"model": m, "prompt": ids, "max_tokens": 3, "min_tokens": 3, "ignore_eos": True, "temperature": 0}, False),
        ("POST /v1/completions prompt=text", "/v1/completions",
         {"model": m, "prompt": "The quick brown fox", "max_tokens": 3, "ignore_eos": True, "temperature": 0}, False),
        ("POST /v1/completions prompt=[ids] out-of-vocabulary id", "/v1/completions",
         {"model": m, "prompt": [10 ** 7], "max_tokens": 1}, False),
        ("stream /v1/completions, include_usage", "/v1/completions",
         {"model": m, "prompt": ids, "max_tokens": 2, "ignore_eos": True, "temperature": 0, "stream": True,
          "stream_options": {"include_usage": True}}, True),
        ("stream /v1/completions, special tokens only (logit_bias on </s>)", "/v1/completions",
         {"model": m, "prompt": ids, "max_tokens": 2, "ignore_eos": True, "temperature": 0, "stream": True,
          "logit_bias": {str(eos): 100}, "stream_options": {"include_usage": True}}, True),
        ("same, return_token_ids", "/v1/completions",
         {"model": m, "prompt": ids, "max_tokens": 2, "ignore_eos": True, "temperature": 0, "stream": True,
          "logit_bias": {str(eos): 100}, "return_token_ids": True, "stream_options": {"include_usage": True}}, True),
        ("POST /v1/chat/completions", "/v1/chat/completions",
         {"model": m, "messages": [{"role": "user", "content": "The quick brown fox"}], "max_tokens": 2,
          "ignore_eos": True, "temperature": 0}, False),
        ("stream /v1/chat/completions, special tokens only, continuous_usage_stats", "/v1/chat/completions",
         {"model": m, "messages": [{"role": "user", "content": "The quick brown fox"}], "max_tokens": 2,
          "ignore_eos": True, "temperature": 0, "stream": True, "logit_bias": {str(eos): 100},
          "stream_options": {"include_usage": True, "continuous_usage_stats": True}}, True),
    ]
    for title, path, body, stream in cases:
        print(f"## {title}")
        print(json.dumps(shape(post(p, path, body, stream))))
    m0 = scrape(p)
    print("## GET /metrics (summed over labels)")
    print(json.dumps({k: v for k, v in m0.items()}))
    return 0


def records(run_dir: Path):
    for f in sorted(glob.glob(str(run_dir / "runs" / "**" / "records" / "*.jsonl"), recursive=True)):
        run = Path(f).parent.parent.name
        for line in open(f):
            r = json.loads(line)
            r["_run"] = run
            yield r


def instance_apis(run_dir: Path) -> dict[str, str]:
    try:
        man = json.load(open(run_dir / "manifest.json"))
        insts = man.get("experiment", {}).get("instances", [])
        return {i.get("name"): i.get("api", "completions") for i in insts}
    except (OSError, ValueError):
        return {}


def cmd_prompts(a) -> int:
    run_dir = Path(a.run_dir)
    apis = instance_apis(run_dir)
    per: dict[tuple, Counter] = defaultdict(Counter)
    bad = 0
    for r in records(run_dir):
        if not r.get("ok"):
            continue
        kind = "warm-up" if r.get("warmup") else "load-only" if r.get("load_only") else "measured"
        per[(r["instance"], r["_run"], kind)][r.get("prompt_tokens")] += 1
        if kind == "measured" and (r.get("prompt_tokens") is None or abs(r["prompt_tokens"] - a.p) > 1):
            bad += 1
    for (inst, run, kind), c in sorted(per.items()):
        vals = list(c.elements())
        print(f"  {inst} ({apis.get(inst, '?')} API) {run:<10} {kind:<9} n={len(vals):<4} prompt_tokens "
              f"min {min(vals)} max {max(vals)} mean {statistics.mean(vals):.2f} (asked {a.p})")
    for f in glob.glob(str(run_dir / "runs" / "**" / "run.json"), recursive=True):
        txt = open(f).read()
        for m in sorted(set(re.findall(r'"exact_prompts":\s*("[^"]*"|null|false|true)', txt))):
            print(f"  {Path(f).parent.name}: exact_prompts {m}")
    print(f"prompt exactness: {'PASS' if bad == 0 else 'FAIL'} ({bad} measured requests off by more than 1 token)")
    return 0 if bad == 0 else 1


def load_watch(path: str):
    by_port: dict[int, list] = defaultdict(list)
    for line in open(path):
        row = json.loads(line)
        by_port[row["port"]].append(row)
    return by_port


def cmd_metrics(a) -> int:
    run_dir = Path(a.run_dir)
    by_port = load_watch(a.watch)
    man = json.load(open(run_dir / "manifest.json"))
    servers = {s["port"]: s for s in man.get("servers") or []}
    spec_insts = man.get("experiment", {}).get("instances", [])
    inst_of = {i.get("server"): i.get("name") for i in spec_insts}
    recs = defaultdict(Counter)
    client = defaultdict(lambda: defaultdict(list))
    for r in records(run_dir):
        kind = "warmup" if r.get("warmup") else "load_only" if r.get("load_only") else "measured"
        recs[r["instance"]][kind] += 1
        recs[r["instance"]]["prompt_tokens"] += r.get("prompt_tokens") or 0
        t = r.get("token_ns") or []
        if r.get("ok") and t and kind == "measured":
            client[r["instance"]]["ttft"].append((t[0] - r["submit_ns"]) / 1e6)
            client[r["instance"]]["itl"].extend((y - x) / 1e6 for x, y in zip(t, t[1:]))
    rc = 0
    for port, rows in sorted(by_port.items()):
        s = servers.get(port, {})
        name = s.get("name", f"port {port}")
        inst = inst_of.get(name, "?")
        first, last = rows[0]["m"], rows[-1]["m"]
        d = {k: last[k] - first[k] for k in first if k != "kv_usage"}
        hits = d["prefix_hits"] / d["prefix_queries"] if d["prefix_queries"] else float("nan")
        mean = lambda k: 1e3 * d[k + "_sum"] / d[k + "_count"] if d[k + "_count"] else float("nan")  # noqa: E731
        n_client = sum(recs[inst][k] for k in ("measured", "warmup", "load_only"))
        print(f"  {name} (instance {inst}, port {port}): {len(rows)} scrapes over "
              f"{(rows[-1]['t_ns'] - rows[0]['t_ns']) / 1e9:.0f} s, the first after {first['requests']:.0f} requests "
              "(the last can miss the final second before colobench stops the server; the summary lines below "
              "are colobench's own scrapes)")
        print(f"    server: {d['requests']:.0f} requests, {d['prompt_tokens']:.0f} prompt tokens, prefix-cache "
              f"hits {d['prefix_hits']:.0f}/{d['prefix_queries']:.0f} tokens = {100 * hits:.2f}%, "
              f"TTFT mean {mean('ttft'):.2f} ms, ITL mean {mean('itl'):.2f} ms, queue mean {mean('queue'):.3f} ms, "
              f"E2E mean {mean('e2e'):.1f} ms, preemptions {d['preemptions']:.0f}, /tokenize calls {d['tokenize_calls']:.0f}")
        ct, ci = client[inst]["ttft"], client[inst]["itl"]
        print(f"    client: {n_client} requests ({recs[inst]['measured']} measured, {recs[inst]['warmup']} warm-up, "
              f"{recs[inst]['load_only']} load-only), {recs[inst]['prompt_tokens']} prompt tokens; measured TTFT mean "
              f"{statistics.mean(ct) if ct else float('nan'):.2f} ms, ITL mean {statistics.mean(ci) if ci else float('nan'):.2f} ms")
        if a.expect_share is not None:
            ok = abs(100 * hits - 100 * a.expect_share) <= max(5.0, 25 * a.expect_share)
        else:
            ok = hits < 0.01
        want = f"about {100 * a.expect_share:.1f}%" if a.expect_share is not None else "under 1%"
        print(f"    prefix-cache hit rate {100 * hits:.2f}% (want {want}): {'PASS' if ok else 'FAIL'}")
        rc |= 0 if ok else 1
    summ = run_dir / "summary.json"
    if summ.exists():
        measured, in_window = Counter(), Counter()
        for r in records(run_dir):
            phase = r["_run"].split("-")[0]
            if not r.get("warmup"):  # the windows' requests: measured and load-only (warm-up precedes them)
                in_window[(phase, r["instance"])] += 1
            if not r.get("warmup") and not r.get("load_only"):
                measured[(phase, r["instance"])] += 1
        s = json.load(open(summ))
        for point in s.get("points", []):
            for phase, insts in (point.get("phases") or {}).items():
                for inst, m in (insts or {}).items():
                    sm = m.get("server_metrics")
                    if not isinstance(sm, dict):
                        print(f"  summary {phase}/{inst}: no server_metrics")
                        continue
                    tot = defaultdict(float)
                    for k, v in sm.items():
                        if isinstance(v, (int, float)):
                            tot[k.split("{")[0]] += v
                    c = {k: tot.get(v, 0.0) for k, v in COUNTERS.items()}
                    hr = 100 * c["prefix_hits"] / c["prefix_queries"] if c["prefix_queries"] else float("nan")
                    key = ("solo" if phase == "solo" else "colocated", inst)
                    n, sent = measured[key], in_window[key]
                    ok = abs(c["requests"] - sent) <= 1  # per phase: the server counted what this phase sent
                    rc |= 0 if ok else 1
                    print(f"  summary {phase}/{inst}: server_metrics requests {c['requests']:.0f} (client in the "
                          f"windows {sent}: {n} measured + {sent - n} load-only): {'PASS' if ok else 'FAIL'}; "
                          f"prefix-cache hits {hr:.2f}%, TTFT sum/count "
                          f"{1e3 * c['ttft_sum'] / c['ttft_count'] if c['ttft_count'] else float('nan'):.2f} ms")
    return rc


def cmd_contention(a) -> int:
    run_dir = Path(a.run_dir)
    own: dict[int, str] = {}
    for rows in load_watch(a.watch).values():
        for row in rows:
            for p in row.get("tree", []):
                own[p["pid"]] = p["name"]
    man = json.load(open(run_dir / "manifest.json"))
    for s in man.get("servers") or []:
        own.setdefault(s.get("pid"), s.get("name"))
    s = json.load(open(run_dir / "summary.json"))
    named = []
    for f in s.get("findings", []):
        if f.get("kind") != "cpu_contention":
            continue
        print(f"  finding: {f.get('title')}")
        for p in (f.get("evidence") or {}).get("outside_processes") or []:
            if p.get("pid") in own or "VLLM" in str(p.get("name", "")):
                named.append(p)
    print(f"  server process trees seen: {len(own)} pids ({', '.join(sorted(set(map(str, own.values()))))})")
    print(f"cpu_contention naming a server's own process: {'FAIL ' + json.dumps(named) if named else 'PASS (none)'}")
    return 1 if named else 0


def cmd_capacity(a) -> int:
    caps = []
    met_failed_total = 0
    for d in a.dirs:
        try:
            c = json.load(open(Path(d) / "capacity.json"))
        except (OSError, ValueError) as e:
            print(f"  {d}: no capacity.json ({e})")
            continue
        c = c.get("capacity", c)
        target = c.get("target", 0.99)
        for inst, v in (c.get("solo") or {}).items():
            probes = v.get("probes") or []
            met_failed = [p for p in probes if not p.get("passed")
                          and min((p.get("attainment") or {0: 0}).values()) >= target]
            # a queue that grows without bound fails a probe that met the SLO so far (a longer probe
            # would miss it): legitimate; any other failure while meeting the SLO is not
            other = [p for p in met_failed if not p.get("over_saturated")]
            met_failed_total += len(other)
            caps.append(v.get("max_rate"))
            rates = ", ".join(f"{p['scale']:.1f}{'' if p.get('passed') else 'x'}" for p in probes)
            print(f"  {Path(d).name}: {inst} capacity {v.get('max_rate') or 0:.2f} req/s (first failing "
                  f"{v.get('first_failing_rate') or 0:.2f}, knee {v.get('knee_rate') or 0:.2f}); probes {rates} "
                  f"(x: failed); failed while meeting the SLO: {len(met_failed) - len(other)} over-saturated "
                  f"(the queue grew), {len(other)} otherwise"
                  + "".join(f"\n      {p['scale']:.1f} req/s, SLO met {100 * min(p['attainment'].values()):.1f}%: "
                            f"{p.get('reason')}" for p in met_failed))
    caps = [x for x in caps if isinstance(x, (int, float))]
    if len(caps) < 2:
        print("capacity: fewer than two searches finished")
        return 1
    med = statistics.median(caps)
    spread = (max(caps) - min(caps)) / med if med else float("inf")
    ok = spread <= 0.15 and met_failed_total == 0
    print(f"capacities {', '.join(f'{x:.2f}' for x in caps)} req/s: spread (max-min)/median {100 * spread:.1f}% "
          f"(want within 15%), {met_failed_total} probes failed while meeting the SLO other than by a growing queue "
          f"(want 0): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("watch")
    w.add_argument("ports", type=int, nargs="+")
    w.add_argument("--out", required=True)
    w.add_argument("--interval", type=float, default=1.0)
    w.add_argument("--max-s", type=float, default=3600)
    x = sub.add_parser("api")
    x.add_argument("port", type=int)
    x.add_argument("model")
    p = sub.add_parser("prompts")
    p.add_argument("run_dir")
    p.add_argument("p", type=int)
    m = sub.add_parser("metrics")
    m.add_argument("watch")
    m.add_argument("run_dir")
    m.add_argument("--expect-share", type=float)
    c = sub.add_parser("contention")
    c.add_argument("run_dir")
    c.add_argument("watch")
    k = sub.add_parser("capacity")
    k.add_argument("dirs", nargs="+")
    a = ap.parse_args()
    return {"watch": cmd_watch, "api": cmd_api, "prompts": cmd_prompts, "metrics": cmd_metrics,
            "contention": cmd_contention, "capacity": cmd_capacity}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
