"""Raw facts measured at run time, appended to JSONL as they happen.

A `RequestRecord` holds integer nanoseconds from `colobench.clock` (one monotonic clock shared
by every process on the host): when the request was due (open loop), when it was submitted,
when each output token existed
on the host (after the device finished the step that made it), and when it completed. TTFT,
TPOT, ITL and latency are derived later by `colobench.analysis`, never stored, so a summary can
always be recomputed from the records alone.

Each record is written as one line and flushed, so a worker that dies leaves every completed
request on disk; a reader skips a torn last line instead of failing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

import orjson

from colobench.secrets import scrub


# A worker that finishes its co-located quota waits this long for its partners before it starts
# filler load (a filler batch would delay the next window); the analysis tolerates that much of a
# request outside the overlap. One constant for both sides.
FILLER_GRACE_NS = 5_000_000


@dataclass
class RequestRecord:
    instance: str
    run_id: str
    repetition: int  # 1-based measured window; 0 for warm-up
    request_id: int
    batch_id: int
    batch_size: int
    prompt_tokens: int
    output_tokens: int
    submit_ns: int  # when the request was handed to the backend
    scheduled_ns: int | None = None  # open loop: when it was due (latency counts from here)
    token_ns: list[int] = field(default_factory=list)  # one per output token (per content chunk for HTTP)
    done_ns: int | None = None
    warmup: bool = False
    load_only: bool = False  # co-located filler: the instance's load kept on while a partner finishes
    ok: bool = True
    error: str | None = None
    expected_output_tokens: int | None = None  # what was asked for, when it may differ (HTTP)
    token_count_source: str | None = None  # HTTP: usage (server), tokenizer, or chunks (a lower bound)
    expected_prompt_tokens: int | None = None  # HTTP: the prompt length asked for, when the server counted its own
    first_content_ns: int | None = None  # HTTP, reasoning models: the first answer (not reasoning) chunk
    reasoning_chunks: int = 0  # HTTP, reasoning models: chunks of reasoning before (or among) the answer
    also_failed: int = 0  # a failed record standing for this many more identical failures of a burst (not written)
    category: str | None = None  # the prompt's category, when the prompt set names one
    session: int | None = None  # multi-turn: the session of this turn
    turn: int | None = None  # multi-turn: 0 for a session's first request

    @property
    def first_token_ns(self) -> int | None:
        return self.token_ns[0] if self.token_ns else None

    def to_dict(self) -> dict[str, Any]:
        # not dataclasses.asdict: it deep-copies every timestamp, a fifth of the load generator's CPU
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RequestRecord":  # noqa: D102
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


_FIELDS = tuple(RequestRecord.__dataclass_fields__)


class RecordWriter:
    """Appends records (or any JSON rows) to a JSONL file, one flushed line each."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = open(path, "ab")

    def write(self, record: RequestRecord) -> None:
        self.write_row(record.to_dict())

    def write_row(self, row: dict[str, Any]) -> None:
        if row.get("error"):  # the only text a record holds, and it may quote a server's echo of a key
            row = {**row, "error": scrub(row["error"])}
        self._file.write(orjson.dumps(row) + b"\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_jsonl(path: Path, issues: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Objects of a JSONL file. A line that is not a JSON object is skipped; with `issues`, each
    one is described there with its file and line (a torn last line: a writer stopped mid-line)."""
    if not path.is_file():
        return
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    torn = bool(lines) and lines[-1].strip() != b""  # every complete line ends with a newline
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            yield obj
        elif issues is not None:
            if torn and number == len(lines):
                issues.append(f"{path}:{number}: torn last line skipped (its writer stopped mid-line)")
            else:
                issues.append(f"{path}:{number}: not a JSON object, skipped ({line[:40].decode('utf-8', 'replace')!r})")


def _valid(data: dict[str, Any]) -> bool:
    """The fields every analysis reads, with the right types (a hand-edited or foreign line is not)."""
    tokens = data.get("token_ns")
    return (isinstance(data.get("submit_ns"), int) and isinstance(data.get("repetition"), int)
            and isinstance(data.get("output_tokens"), int) and isinstance(tokens, list)
            and all(isinstance(t, int) for t in tokens[:3]) and isinstance(data.get("instance"), str))


def read_records(path: Path, issues: list[str] | None = None) -> list[RequestRecord]:
    """The records of one file; lines that are not records are skipped (and described in `issues`)."""
    out = []
    for number, data in enumerate(read_jsonl(path, issues), start=1):
        try:
            record = RequestRecord.from_dict(data) if _valid(data) else None
        except TypeError:
            record = None
        if record is not None:
            out.append(record)
        elif issues is not None:
            issues.append(f"{path}: object {number} is not a request record, skipped")
    return out


class CorruptFile(ValueError):
    """A run directory's JSON file that cannot be read: names the file and why."""


def load_json(path: Path) -> Any:
    """A run directory's JSON file (manifest.json, run.json), or `CorruptFile` naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFile(f"{path}: not valid JSON ({str(exc).splitlines()[0]})") from None


def save_probe(path: Path, probe: dict[str, Any]) -> None:
    """A quality probe's raw outputs (greedy tokens, next-token log-probabilities, decoded texts).

    Log-probabilities stay float32: near-uniform distributions (random-weight presets, about
    -10.4 nats over a 32k vocabulary) have float16 steps of 0.008, coarser than the difference
    between a bfloat16 and a float32 run, which made ties in top-1 and a KL of exactly 0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"texts": probe["texts"]} if "texts" in probe else {}
    np.savez_compressed(path, generated=probe["generated"], eval_logprobs=probe["eval_logprobs"].astype(np.float32),
                        **extra)


def load_probe(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
