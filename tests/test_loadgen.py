"""The load generators in-process against fake backends: what they send and record."""

import asyncio
from pathlib import Path

from colobench import aio
from colobench.backends.base import Completion
from colobench.clock import now_ns
from colobench.loadgen import streaming
from colobench.loadgen.recorder import Recorder
from colobench.loadgen.static import run_static
from colobench.records import RecordWriter, read_records
from colobench.workload.arrivals import arrival_offsets_s
from colobench.workload.synthetic import build_requests, static_batches


class CountingBackend:
    """Instant tokens; tracks how many requests are in flight at once."""

    def __init__(self, delay_s=0.002):
        self.in_flight = self.max_in_flight = self.sent = 0
        self.delay_s = delay_s

    async def request(self, request):
        self.in_flight += 1
        self.sent += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            steps = []
            for _ in range(request.output_tokens):
                await asyncio.sleep(self.delay_s)
                steps.append(now_ns())
            return Completion.of_steps(steps)
        finally:
            self.in_flight -= 1


def _recorder(tmp_path: Path) -> tuple[Recorder, Path]:
    path = tmp_path / "r.jsonl"
    return Recorder(RecordWriter(path), "a", "run", repetition=1), path


def test_closed_loop_keeps_concurrency(tmp_path: Path):
    backend = CountingBackend()
    recorder, path = _recorder(tmp_path)
    reqs = build_requests(20, 4, 3, 32000, 0)
    aio.run(streaming.closed_loop(backend, iter(reqs), 4, recorder))
    records = read_records(path)
    assert backend.sent == 20 and backend.max_in_flight == 4
    assert sorted(r.request_id for r in records) == list(range(20))
    assert all(r.ok and len(r.token_ns) == 3 and r.scheduled_ns is None for r in records)


def test_closed_loop_with_a_deadline_stops_sending(tmp_path: Path):
    backend = CountingBackend(delay_s=0.001)
    recorder, path = _recorder(tmp_path)
    import itertools

    reqs = itertools.cycle(build_requests(5, 4, 2, 32000, 0))
    deadline = now_ns() + 100_000_000
    aio.run(streaming.closed_loop(backend, reqs, 2, recorder, until=lambda: now_ns() >= deadline))
    assert 2 <= len(read_records(path)) == backend.sent


def test_open_loop_follows_the_schedule_and_cap(tmp_path: Path):
    backend = CountingBackend(delay_s=0.01)
    recorder, path = _recorder(tmp_path)
    reqs = build_requests(30, 4, 2, 32000, 0)
    offsets = arrival_offsets_s(30, rate=200.0, seed=1).tolist()
    start = aio.run(streaming.open_loop(backend, reqs, offsets, recorder, max_concurrency=3))
    records = sorted(read_records(path), key=lambda r: r.request_id)
    assert backend.max_in_flight <= 3 and len(records) == 30
    for r, off in zip(records, offsets):
        assert r.scheduled_ns == start + int(off * 1e9)  # due times are absolute deadlines
        assert r.submit_ns >= r.scheduled_ns  # never early


def test_failed_stream_is_recorded(tmp_path: Path):
    class Failing(CountingBackend):
        async def request(self, request):
            await asyncio.sleep(0)
            raise ConnectionError("stream cut")

    class Short(CountingBackend):  # an in-process engine that stopped early: exact counts are promised
        async def request(self, request):
            return Completion.of_steps([now_ns()])

    recorder, path = _recorder(tmp_path)
    aio.run(streaming.closed_loop(Failing(), iter(build_requests(3, 4, 5, 32000, 0)), 2, recorder))
    records = read_records(path)
    assert len(records) == 3 and not any(r.ok for r in records)
    assert {r.error for r in records} == {"ConnectionError: stream cut"}
    assert recorder.failed == 3
    aio.run(streaming.closed_loop(Short(), iter(build_requests(2, 4, 5, 32000, 0)), 2, recorder))
    assert {r.error for r in read_records(path)[3:]} == {"expected 5 tokens, got 1"}


def test_static_driver_gives_each_request_its_own_length(tmp_path: Path):
    class Steps:
        def generate(self, batch):
            steps = [now_ns() + k for k in range(batch.output_tokens)]
            return [Completion.of_steps(steps[:r.output_tokens]) for r in batch.requests]

    from colobench.specs import LengthDist

    recorder, path = _recorder(tmp_path)
    reqs = build_requests(6, 8, LengthDist(min=2, max=9), 32000, 4)
    run_static(Steps(), static_batches(reqs, 3), recorder)
    records = {r.request_id: r for r in read_records(path)}
    assert all(len(records[q.request_id].token_ns) == q.output_tokens for q in reqs)
    assert all(records[q.request_id].batch_size == 3 for q in reqs)
