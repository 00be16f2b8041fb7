"""Production traces, replayed: each request sent at its time, with its lengths, sharing the
prompt blocks the trace says it shares.

Interference between co-located services depends on how their bursts line up, which synthetic
Poisson traffic of fixed lengths says little about. Two public formats are read:

- **Mooncake** (JSONL, as Mooncake's FAST'25 traces and AIPerf's `mooncake_trace` use it): one
  object per request with `timestamp` (ms from the trace's start), `input_length`,
  `output_length`, and `hash_ids`, the ids of the request's prompt blocks of `block_tokens`
  tokens (512 in Mooncake's traces): two requests whose `hash_ids` start alike share that prefix
  (a system prompt, an earlier turn), which is what a server's prefix cache hits. Optional:
  `session_id`. The lengths are required: the replay composes token-exact prompts of them.
- **Azure** (CSV, as the Azure LLM inference traces: `TIMESTAMP,ContextTokens,GeneratedTokens`):
  the timestamp a date-time (`2023-11-16 18:15:46.6805900`) or seconds; no block ids.
- **BurstGPT** (CSV, as its releases: `Timestamp,Model,Request tokens,Response tokens,Total
  tokens,Log Type`): seconds from the trace's start; rows with no response tokens (failed
  requests in the original service) are left out, and `Trace.skipped` says how many.

`read_trace` checks every row and names the file, line and field of the first bad one. Times are
made relative to the first request (`t_s` from 0, sorted); `speed` divides them (`--trace-speed
2` replays twice as fast). Each repetition replays the same rows with new prompt content (its
salt): blocks are shared within a replay, as the trace says, never across repetitions (a later
repetition would hit what an earlier one left in the cache).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np

from colobench.errors import os_reason
from colobench.workload.synthetic import derived_seed

FORMATS = ("auto", "mooncake", "azure", "burstgpt")
MOONCAKE_BLOCK_TOKENS = 512
MAX_TRACE_ROWS = 1_000_000


class TraceError(ValueError):
    """A trace that cannot be replayed: the message names the file, line and field."""


@dataclass(frozen=True)
class TraceRow:
    t_s: float  # seconds from the trace's first request
    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()
    session: str | None = None


@dataclass(frozen=True)
class Trace:
    path: str
    format: str
    rows: tuple[TraceRow, ...]
    skipped: int = 0  # rows left out (BurstGPT's failed requests)

    @property
    def span_s(self) -> float:
        return self.rows[-1].t_s - self.rows[0].t_s if self.rows else 0.0

    def window(self, start_s: float = 0.0, duration_s: float | None = None, limit: int | None = None) -> "Trace":
        """The rows from `start_s` (for `duration_s`), at most `limit`, their times from 0 again."""
        rows = [r for r in self.rows if r.t_s >= start_s and (duration_s is None or r.t_s < start_s + duration_s)]
        rows = rows[:limit] if limit is not None else rows
        t0 = rows[0].t_s if rows else 0.0
        return Trace(self.path, self.format, tuple(TraceRow(r.t_s - t0, r.input_tokens, r.output_tokens, r.hash_ids,
                                                            r.session) for r in rows), self.skipped)

    def offsets_s(self, speed: float = 1.0) -> list[float]:
        return [r.t_s / speed for r in self.rows]

    def units(self) -> list[list[int]]:
        """Row indices as the replay sends them: a row alone, or a session's rows together (in
        time order), ordered by their first row's time."""
        units: list[list[int]] = []
        where: dict[str, int] = {}
        for k, row in enumerate(self.rows):
            if row.session is None:
                units.append([k])
            elif row.session in where:
                units[where[row.session]].append(k)
            else:
                where[row.session] = len(units)
                units.append([k])
        return units

    def facts(self, speed: float = 1.0) -> dict[str, Any]:
        """What the summary keeps: which trace, how much of it, how fast."""
        shared = sum(1 for r in self.rows if r.hash_ids)
        return {"file": self.path, "format": self.format, "requests": len(self.rows), "span_s": self.span_s,
                "speed": speed, "replayed_span_s": self.span_s / speed,
                "mean_input_tokens": float(np.mean([r.input_tokens for r in self.rows])) if self.rows else None,
                "mean_output_tokens": float(np.mean([r.output_tokens for r in self.rows])) if self.rows else None,
                "with_blocks": shared, "skipped": self.skipped}


def _positive_int(value: Any, where: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or int(value) < 1:
        raise TraceError(f"{where}: {name} must be a whole number of tokens above 0, not {value!r}")
    return int(value)


def _mooncake(path: Path, lines: list[str]) -> list[TraceRow]:
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except ValueError:
            raise TraceError(f"{where}: not a JSON object ({line.strip()[:40]!r})") from None
        if not isinstance(item, dict):
            raise TraceError(f"{where}: not a JSON object")
        t = item.get("timestamp")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise TraceError(f"{where}: timestamp must be milliseconds from the trace's start (0 or more), not {t!r}")
        for key in ("input_length", "output_length"):
            if key not in item:
                raise TraceError(f"{where}: {key} is missing (a Mooncake trace line has timestamp, input_length, "
                                 "output_length and hash_ids)")
        hash_ids = item.get("hash_ids") or []
        if not isinstance(hash_ids, list) or not all(isinstance(h, int) and not isinstance(h, bool) for h in hash_ids):
            raise TraceError(f"{where}: hash_ids must be a list of block ids (integers)")
        session = item.get("session_id")
        rows.append(TraceRow(float(t) / 1000.0, _positive_int(item["input_length"], where, "input_length"),
                             _positive_int(item["output_length"], where, "output_length"), tuple(hash_ids),
                             None if session is None else str(session)))
    return rows


def _azure_time(value: str, where: str) -> float:
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    head, dot, frac = text.partition(".")
    try:  # .NET writes seven fractional digits; datetime reads six
        stamp = datetime.fromisoformat(head + (dot + frac[:6] if dot else ""))
    except ValueError:
        raise TraceError(f"{where}: TIMESTAMP {value!r} is neither a date-time nor seconds") from None
    return stamp.timestamp()


def _csv(path: Path, lines: list[str], trace: str, labels: tuple[str, ...]) -> tuple[csv.DictReader, dict[str, str]]:
    """A CSV trace's rows and its header's columns by lower-case name; a header without `labels` is
    one line naming what is missing."""
    reader = csv.DictReader(lines)
    names = {(n or "").strip().lower(): n for n in reader.fieldnames or []}
    missing = [label for label in labels if label.lower() not in names]
    if missing:
        raise TraceError(f"{path}:1: {trace} trace's header names {', '.join(labels[:-1])} and {labels[-1]} "
                         f"({', '.join(missing)} missing)")
    return reader, names


def _azure(path: Path, lines: list[str]) -> list[TraceRow]:
    reader, names = _csv(path, lines, "an Azure", ("TIMESTAMP", "ContextTokens", "GeneratedTokens"))
    rows = []
    for number, item in enumerate(reader, start=2):
        where = f"{path}:{number}"
        try:
            context, generated = (int(float(item[names[k]])) for k in ("contexttokens", "generatedtokens"))
        except (TypeError, ValueError):
            raise TraceError(f"{where}: ContextTokens and GeneratedTokens must be numbers") from None
        rows.append(TraceRow(_azure_time(item[names["timestamp"]] or "", where),
                             _positive_int(context, where, "ContextTokens"),
                             _positive_int(generated, where, "GeneratedTokens")))
    return rows


def _burstgpt(path: Path, lines: list[str]) -> tuple[list[TraceRow], int]:
    reader, names = _csv(path, lines, "a BurstGPT", ("Timestamp", "Request tokens", "Response tokens"))
    rows, skipped = [], 0
    for number, item in enumerate(reader, start=2):
        where = f"{path}:{number}"
        try:
            t = float(item[names["timestamp"]])
            request, response = (int(float(item[names[k]])) for k in ("request tokens", "response tokens"))
        except (TypeError, ValueError):
            raise TraceError(f"{where}: Timestamp, Request tokens and Response tokens must be numbers") from None
        if response < 1 or request < 1:  # a failed request of the original service: nothing to replay
            skipped += 1
            continue
        rows.append(TraceRow(t, request, response))
    return rows, skipped


def _kind(path: Path, lines: list[str]) -> str:
    """auto: a CSV whose header names `Request tokens` is BurstGPT's, another CSV Azure's, else JSONL."""
    if path.suffix.lower() != ".csv":
        return "mooncake"
    return "burstgpt" if lines and "request tokens" in lines[0].lower() else "azure"


def read_trace(path: str | Path, fmt: str = "auto") -> Trace:
    """The trace at `path`, its rows sorted by time from 0. `fmt` auto: a `.csv` is BurstGPT's
    (its header names `Request tokens`) or Azure's, anything else Mooncake JSONL."""
    path = Path(path)
    if fmt not in FORMATS:
        raise TraceError(f"trace format {fmt!r}: one of {', '.join(FORMATS)}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{path}: cannot read ({os_reason(exc)})") from None
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not a UTF-8 text file") from None
    lines = text.splitlines()
    kind = fmt if fmt != "auto" else _kind(path, lines)
    skipped = 0
    if kind == "burstgpt":
        rows, skipped = _burstgpt(path, lines)
    else:
        rows = _azure(path, lines) if kind == "azure" else _mooncake(path, lines)
    if not rows:
        raise TraceError(f"{path}: no requests in the trace")
    if len(rows) > MAX_TRACE_ROWS:
        raise TraceError(f"{path}: {len(rows):,} requests; at most {MAX_TRACE_ROWS:,} are replayed (cut the file)")
    rows.sort(key=lambda r: r.t_s)
    t0 = rows[0].t_s
    return Trace(str(path), kind, tuple(TraceRow(r.t_s - t0, r.input_tokens, r.output_tokens, r.hash_ids, r.session)
                                        for r in rows), skipped)


def block_prompts(rows: tuple[TraceRow, ...] | list[TraceRow], draw: Callable[[np.random.Generator, int], np.ndarray],
                  seed: int, salt: tuple[str, ...], block_tokens: int = MOONCAKE_BLOCK_TOKENS) -> list[tuple[int, ...]]:
    """Token-exact prompts of the rows' input lengths. A row's `hash_ids` are its leading blocks of
    `block_tokens` tokens: the same id gives the same tokens in every row of this replay (salted
    by `salt`: new content for each repetition), so shared blocks are shared prefixes; the rest
    of the prompt (past its blocks, or all of it without ids) is its own."""
    blocks: dict[int, list[int]] = {}

    def block(h: int) -> list[int]:
        if h not in blocks:
            blocks[h] = draw(np.random.default_rng(derived_seed(seed, "trace-block", *salt, str(h))),
                             block_tokens).tolist()
        return blocks[h]

    own = np.random.default_rng(derived_seed(seed, "trace-own", *salt))
    out = []
    for row in rows:
        ids: list[int] = []
        for h in row.hash_ids:
            if len(ids) >= row.input_tokens:
                break
            ids += block(h)
        ids = ids[:row.input_tokens]
        if len(ids) < row.input_tokens:
            ids += draw(own, row.input_tokens - len(ids)).tolist()
        out.append(tuple(ids))
    return out
