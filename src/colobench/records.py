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
        self._file.write(orjson.dumps(row) + b"\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Objects of a JSONL file; a torn or malformed line (a worker killed mid-write) is skipped."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                yield obj


def read_records(path: Path) -> list[RequestRecord]:
    return [RequestRecord.from_dict(d) for d in read_jsonl(path)]


def instance_records(folder: Path, name: str) -> list[RequestRecord]:
    """Every record of one instance in a run's records folder: `name.jsonl`, or `name.<k>.jsonl`
    per client process when the load was spread over several."""
    if not folder.is_dir():
        return []
    files = [f for f in folder.glob(f"{name}*.jsonl")
             if f.stem == name or (f.stem.startswith(name + ".") and f.stem[len(name) + 1:].isdigit())]
    return [r for f in sorted(files) for r in read_records(f)]


def save_probe(path: Path, probe: dict[str, Any]) -> None:
    """A quality probe's raw outputs (greedy tokens, next-token log-probabilities, decoded texts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"texts": probe["texts"]} if "texts" in probe else {}
    np.savez_compressed(path, generated=probe["generated"], eval_logprobs=probe["eval_logprobs"].astype(np.float16),
                        **extra)


def load_probe(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
