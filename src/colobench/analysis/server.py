"""The server's own evidence per instance-phase, beside the client's: what vLLM or SGLang counted
in the very windows colobench measured.

The launcher scrapes each endpoint's `/metrics` just before every window's go and again once the
window is over (`launch.scrapes`). A counter's difference between the two is that window's share
(requests finished, prompt and generated tokens, preemptions, prefix-cache hits and queries); a
histogram's `_sum` and `_count` differences give the server's mean over the window (TTFT,
inter-token latency, per-request TPOT, end-to-end latency, queue time). A phase adds its windows
up over the repetitions, so the warm-up (before the first window) and the other phases' windows
(interleaved between them) are never counted.

The client's side is computed over the same requests the server saw: every request the instance
sent in those windows (the co-located filler and requests outside the overlap included, the
warm-up not), timed from when it was sent (not when it was due: the server cannot see a
schedule's lag):

- requests: completed by the client against finished by the server (its success counter); a
  request the client saw fail may have finished on the server (a malformed line), so the two
  agree when the server's count lies between the client's completed and completed + failed;
- TTFT = first token - submit, E2E = done - submit, means over requests: the client's include
  the HTTP round trip and the server's front end (tokenising, detokenising), a few milliseconds;
- ITL, per output token after the first: sum over requests of (last chunk - first chunk) / sum of
  the tokens those gaps brought (output tokens minus the first chunk's); vLLM's inter-token
  histogram observes each engine step of a request, SGLang's shares a gap among its tokens;
- TPOT, per request: mean of (done - first token) / (output tokens - 1), vLLM's
  `request_time_per_output_token_seconds`.

Gauges (KV-cache usage, waiting requests) are momentary: read at the boundaries they show an idle
server, so the largest value the telemetry sampler saw during the windows is used where it read
the server's `/metrics` (an endpoint without `server_pid`), else the largest at the boundaries
(said so in `kv_cache_usage_source`). The prefix-cache hit rate is hits / queries in tokens over
the windows (vLLM's `prefix_cache_hits`/`queries`, SGLang's cached / prompt tokens), else the
engine's own hit-rate gauge after each window (its window, not colobench's).

Run directories written before per-window scrapes kept one scrape before and one after the whole
group: their `server_metrics` (every counter's difference) is read as it was, and they have no
per-phase evidence (their counters mixed the phases).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from colobench.analysis import metrics as m
from colobench.analysis.model import ClientServer, ServerEvidence, ServerWindow
from colobench.records import RequestRecord
from colobench.rundir import MetricsScrape, RunFolder, read_scrapes
from colobench.telemetry.prometheus import (COUNTERS, GAUGES, HISTOGRAMS, PREFIX_PAIRS, engine_of, first_present,
                                            parse)

NS_TO_MS = 1e-6
S_TO_MS = 1e3


def _read(folder: RunFolder, scrape: MetricsScrape, model: str | None) -> dict[str, float]:
    """A scrape's series (raises ValueError for text that is not Prometheus, OSError when gone)."""
    path = folder.window_metrics(scrape.instance, scrape.repetition, scrape.when)
    return parse(path.read_text(encoding="utf-8", errors="replace"), model)


def _pairs(folder: RunFolder, name: str) -> dict[int, dict[str, MetricsScrape]]:
    """Repetition -> {before, after} scrapes of instance `name` (the last of each, if repeated)."""
    out: dict[int, dict[str, MetricsScrape]] = defaultdict(dict)
    for scrape in read_scrapes(folder.metrics_scrapes):
        if scrape.instance == name:
            out[scrape.repetition][scrape.when] = scrape
    return dict(out)


class _Window:
    """One window's server side: counter differences (series -> after - before) and the gauges
    read after it, or why there is none."""

    def __init__(self, repetition: int, before: dict[str, float] | None = None, after: dict[str, float] | None = None,
                 error: str | None = None):
        self.repetition, self.error, self.after = repetition, error, after or {}
        self.delta: dict[str, float] = {}
        if error is None and before is not None and after is not None:
            for series, value in after.items():
                diff = value - before.get(series, 0.0)  # a series that appeared during the window started at 0
                if diff < 0 and not _is_gauge(series):
                    self.error = f"r{repetition}: {series} went back from {before[series]:g} to {value:g} (the " \
                                 "server restarted during the window)"
                    return
                self.delta[series] = diff

    @property
    def ok(self) -> bool:
        return self.error is None


GAUGE_SERIES = {s for candidates in GAUGES.values() for s in candidates}


def _is_gauge(series: str) -> bool:
    return series in GAUGE_SERIES or not series.endswith(("_total", "_sum", "_count"))


def _windows(folder: RunFolder, name: str, model: str | None) -> list[_Window]:
    out = []
    for rep, pair in sorted(_pairs(folder, name).items()):
        before, after = pair.get("before"), pair.get("after")
        failed = [s for s in (before, after) if s is not None and s.error]
        if failed:
            out.append(_Window(rep, error="; ".join(f"r{rep} {s.when}: {s.error}" for s in failed)))
            continue
        if before is None or after is None:
            missing = "before" if before is None else "after"
            out.append(_Window(rep, error=f"r{rep}: no scrape {missing} the window (the run stopped)"))
            continue
        try:
            out.append(_Window(rep, _read(folder, before, model), _read(folder, after, model)))
        except (OSError, ValueError) as exc:
            out.append(_Window(rep, error=f"r{rep}: scrape unreadable ({str(exc).splitlines()[0] if str(exc) else exc})"))
    return out


def _sum(windows: list[_Window], series: str | None) -> float | None:
    if series is None:
        return None
    return sum(w.delta.get(series, 0.0) for w in windows)


def _hist_mean_ms(windows: list[_Window], base: str | None) -> float | None:
    """The mean of a histogram over the windows (its `_sum` over its `_count`), in ms."""
    if base is None:
        return None
    total, count = _sum(windows, base + "_sum"), _sum(windows, base + "_count")
    return total / count * S_TO_MS if count else None


def _choose(windows: list[_Window]) -> dict[str, str]:
    """Quantity -> the series it is read from: the first candidate any usable window holds."""
    held: dict[str, float] = {}
    for w in windows:
        held.update(w.after)
    chosen: dict[str, str] = {}
    for quantity, candidates in COUNTERS.items():
        if (series := first_present(held, candidates)) is not None:
            chosen[quantity] = series
    for quantity, candidates in HISTOGRAMS.items():
        if (series := first_present(held, candidates, "_sum")) is not None:
            chosen[quantity] = series
    for quantity, candidates in GAUGES.items():
        if (series := first_present(held, candidates)) is not None:
            chosen[quantity] = series
    for hits, queries, queries_suffice in PREFIX_PAIRS:
        if hits in held or (queries_suffice and queries in held):
            chosen["prefix_cache_hits"], chosen["prefix_cache_queries"] = hits, queries
            break
    return chosen


# ---- the client's side, over the same requests ---------------------------------------------------

def _sent_ms(r: RequestRecord, until_ns: int) -> float:
    return (until_ns - r.submit_ns) * NS_TO_MS


def _client(records: list[RequestRecord]) -> dict[str, Any]:
    """The client's figures over `records` (sent in the windows, warm-up excluded)."""
    ok = [r for r in records if r.ok and r.token_ns and r.done_ns is not None]
    failed = sum(1 + r.also_failed for r in records if not r.ok)
    span_ns = tokens = 0.0
    tpots = []
    for r in ok:
        chunks = len(r.token_ns)
        if chunks > 1 and r.output_tokens > 1:
            span_ns += r.token_ns[-1] - r.token_ns[0]
            tokens += r.output_tokens - r.output_tokens / chunks  # the first chunk's tokens came with TTFT
        if (tpot := m.tpot_ns(r)) is not None:
            tpots.append(tpot)
    return {
        "requests": len(ok), "failed": failed,
        "prompt_tokens": float(sum(r.prompt_tokens for r in ok)), "output_tokens": float(sum(r.output_tokens for r in ok)),
        "ttft_ms": sum(_sent_ms(r, r.token_ns[0]) for r in ok) / len(ok) if ok else None,
        "e2el_ms": sum(_sent_ms(r, r.done_ns) for r in ok) / len(ok) if ok else None,  # type: ignore[arg-type]
        "itl_ms": span_ns / tokens * NS_TO_MS if tokens else None,
        "tpot_ms": sum(tpots) / len(tpots) * NS_TO_MS if tpots else None,
    }


def _window_row(w: _Window, chosen: dict[str, str], client: dict[str, Any]) -> ServerWindow:
    requests = _sum([w], chosen.get("requests")) if w.ok else None
    hits, queries = (_sum([w], chosen.get("prefix_cache_hits")), _sum([w], chosen.get("prefix_cache_queries"))) \
        if w.ok else (None, None)
    preemptions = _sum([w], chosen.get("preemptions")) if w.ok else None
    return ServerWindow(repetition=w.repetition, requests=round(requests) if requests is not None else None,
                        client_requests=client["requests"], client_failed=client["failed"],
                        mean_ttft_ms=_hist_mean_ms([w], chosen.get("ttft")) if w.ok else None,
                        client_mean_ttft_ms=client["ttft_ms"],
                        prefix_cache_hit_pct=hits / queries * 100 if hits is not None and queries else None,
                        preemptions=round(preemptions) if preemptions is not None else None, error=w.error)


def _peak_gauge(samples: list[dict[str, Any]], name: str, spans: list[tuple[int, int]], key: str) -> float | None:
    """The largest value of a server gauge the telemetry sampler read inside the windows."""
    values = [s["metrics"][key] for s in samples if s.get("device") == f"server:{name}"
              and isinstance((s.get("metrics") or {}).get(key), (int, float))
              and any(a <= s["t_ns"] <= b for a, b in spans)]
    return max(values) if values else None


def server_evidence(folder: RunFolder, name: str, model: str | None, records: list[RequestRecord],
                    shared_with: list[str] | None = None, samples: list[dict[str, Any]] | None = None
                    ) -> ServerEvidence | None:
    """Instance `name`'s server counters over its windows in this run, beside the client's
    (`records`: all of the instance's records in the run); None when the run kept no per-window
    scrapes of it."""
    pairs = _pairs(folder, name)
    if not pairs:
        return None
    windows = _windows(folder, name, model)
    usable = [w for w in windows if w.ok]
    chosen = _choose(usable)
    by_rep: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in records:
        if not r.warmup:
            by_rep[r.repetition].append(r)
    rows = [_window_row(w, chosen, _client(by_rep.get(w.repetition, []))) for w in windows]
    client = _client([r for w in usable for r in by_rep.get(w.repetition, [])])
    url = next((s.url for pair in pairs.values() for s in pair.values()), None)
    fields: dict[str, Any] = {
        "engine": engine_of({s: 0.0 for w in usable for s in w.after}), "url": url, "windows": len(usable),
        "repetitions": rows, "shared_with": sorted(shared_with or []), "series": chosen,
        "problems": [w.error for w in windows if w.error], "client_failed": client["failed"]}
    if usable:
        requests = _sum(usable, chosen.get("requests"))
        fields.update(
            requests=ClientServer(client=client["requests"], server=requests),
            prompt_tokens=ClientServer(client=client["prompt_tokens"], server=_sum(usable, chosen.get("prompt_tokens"))),
            output_tokens=ClientServer(client=client["output_tokens"],
                                       server=_sum(usable, chosen.get("generation_tokens"))),
            **{f"{q}_ms": ClientServer(client=client[f"{q}_ms"], server=_hist_mean_ms(usable, chosen.get(q)))
               for q in ("ttft", "itl", "tpot", "e2el")},
            queue_ms=_hist_mean_ms(usable, chosen.get("queue")))
        if (pre := _sum(usable, chosen.get("preemptions"))) is not None:
            fields["preemptions"] = round(pre)
        if "device_prefill_s" in chosen or "device_decode_s" in chosen:
            fields.update(device_prefill_s=_sum(usable, chosen.get("device_prefill_s")),
                          device_decode_s=_sum(usable, chosen.get("device_decode_s")),
                          window_s=sum(pairs[w.repetition]["after"].t_ns - pairs[w.repetition]["before"].t_ns
                                       for w in usable) / 1e9)
        fields.update(_prefix(usable, chosen))
        fields.update(_gauges(usable, chosen, name, samples or [], by_rep))
    return ServerEvidence(**fields)


def _prefix(windows: list[_Window], chosen: dict[str, str]) -> dict[str, Any]:
    hits, queries = _sum(windows, chosen.get("prefix_cache_hits")), _sum(windows, chosen.get("prefix_cache_queries"))
    if hits is not None and queries:
        return {"prefix_cache_hits_tokens": hits, "prefix_cache_queries_tokens": queries,
                "prefix_cache_hit_pct": hits / queries * 100,
                "prefix_cache_source": f"{chosen['prefix_cache_hits']} / {chosen['prefix_cache_queries']}"}
    gauge = chosen.get("prefix_hit_rate")
    rates = [w.after[gauge] for w in windows if gauge in w.after] if gauge else []
    if rates:
        return {"prefix_cache_hit_pct": sum(rates) / len(rates) * 100,
                "prefix_cache_source": f"{gauge} after each window (the engine's own averaging window)"}
    return {}


def _gauges(windows: list[_Window], chosen: dict[str, str], name: str, samples: list[dict[str, Any]],
            by_rep: dict[int, list[RequestRecord]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    spans = [(min(r.submit_ns for r in rs), max(r.done_ns or r.submit_ns for r in rs))
             for w in windows if (rs := by_rep.get(w.repetition))]
    sampled = _peak_gauge(samples, name, spans, "kv_cache_usage_pct")
    series = chosen.get("kv_cache_usage")
    if sampled is not None:
        out["kv_cache_usage_pct"] = sampled
        out["kv_cache_usage_source"] = "the telemetry sampler's reads of /metrics during the windows (largest)"
    elif series is not None:
        out["kv_cache_usage_pct"] = max(w.after.get(series, 0.0) for w in windows) * 100
        out["kv_cache_usage_source"] = f"{series} at the window boundaries (largest; an idle server's)"
    waiting = _peak_gauge(samples, name, spans, "requests_waiting")
    if waiting is not None:
        out["requests_waiting_peak"] = waiting
    return out


# ---- every counter's difference (the summary's `server_metrics`) ------------------------------------

def _counter_values(text: str) -> dict[str, float]:
    """Every counter, and every histogram's or summary's `_count` and `_sum`, by sample name with
    its labels (`name{k="v"}`), as `server_metrics` has always keyed them."""
    out = {}
    for family in text_string_to_metric_families(text):
        if family.type not in ("counter", "histogram", "summary"):
            continue
        for sample in family.samples:
            if family.type != "counter" and not sample.name.endswith(("_count", "_sum")):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def server_metrics(folder: RunFolder, name: str) -> dict[str, float] | None:
    """Every counter's difference over the instance's windows in this run (the scrape after each
    window minus the one before, summed; windows with a failed scrape left out), or, for a run
    directory written before per-window scrapes, between its two scrapes around the whole group."""
    pairs = _pairs(folder, name)
    if not pairs:
        before, after = folder.metrics(name, "before"), folder.metrics(name, "after")
        if not (before.is_file() and after.is_file()):
            return None
        try:
            a, b = _counter_values(before.read_text()), _counter_values(after.read_text())
        except ValueError:
            return None
        return {k: b[k] - a.get(k, 0.0) for k in sorted(b)}
    total: dict[str, float] = {}
    for rep, pair in sorted(pairs.items()):
        if set(pair) != {"before", "after"} or any(s.error for s in pair.values()):
            continue
        try:
            a, b = (_counter_values(folder.window_metrics(name, rep, when).read_text()) for when in ("before", "after"))
        except (OSError, ValueError):
            continue
        for k, v in b.items():
            total[k] = total.get(k, 0.0) + v - a.get(k, 0.0)
    return dict(sorted(total.items())) if total else None
