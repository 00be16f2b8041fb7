"""Prompts, lengths, arrival schedules, scenarios and capacity: statistics on many seeded draws,
never timing."""

import math

import numpy as np
import pytest

from colobench.loadgen.memory_fit import max_parallel_requests
from colobench.specs import LengthDist, experiment_from_dict
from colobench.workload.arrivals import arrival_offsets_s, count_for_duration, interarrival_gaps_s
from colobench.workload.synthetic import build_requests, static_batches, token_id_range


def test_fixed_lengths_are_exact_and_ids_in_range():
    reqs = build_requests(50, 128, 64, vocab_size=128256, seed=3)
    low, high = token_id_range(128256)
    assert (low, high) == (10, 128256 - 512)
    assert all(len(r.prompt) == 128 and r.output_tokens == 64 for r in reqs)
    assert all(low <= t < high for r in reqs for t in r.prompt)
    assert [r.request_id for r in reqs] == list(range(50))


def test_same_seed_same_requests_other_seed_differs():
    a = build_requests(10, 32, 8, 32000, seed=1)
    assert a == build_requests(10, 32, 8, 32000, seed=1)
    assert a != build_requests(10, 32, 8, 32000, seed=2)


def test_length_distributions():
    normal = build_requests(4000, LengthDist(mean=200, std=40), LengthDist(min=10, max=20), 32000, seed=0)
    lengths = np.array([len(r.prompt) for r in normal])
    assert abs(lengths.mean() - 200) < 3 and abs(lengths.std() - 40) < 3
    assert lengths.min() >= 1 and lengths.max() <= LengthDist(mean=200, std=40).upper_bound()
    outputs = np.array([r.output_tokens for r in normal])
    assert outputs.min() == 10 and outputs.max() == 20  # both ends reached in 4000 draws
    assert abs(outputs.mean() - 15) < 0.3


def test_prompt_pool_is_used_in_seeded_order_and_cycles():
    pool = [[11, 12], [13, 14, 15], [16]]
    reqs = build_requests(7, 999, 4, 32000, seed=5, prompt_pool=pool)
    assert {r.prompt for r in reqs} == {tuple(p) for p in pool}
    assert [r.prompt for r in reqs[:3]] == [r.prompt for r in reqs[3:6]]
    assert reqs == build_requests(7, 999, 4, 32000, seed=5, prompt_pool=pool)


def test_static_batches_group_in_order():
    batches = static_batches(build_requests(10, 8, 3, 32000, 0), 4)
    assert [len(b.requests) for b in batches] == [4, 4, 2]
    assert [r.request_id for b in batches for r in b.requests] == list(range(10))
    assert batches[2].batch_id == 2


@pytest.mark.parametrize("arrival, burstiness, cv", [("poisson", 1.0, 1.0), ("gamma", 4.0, 2.0), ("gamma", 0.25, 0.5),
                                                     ("constant", 1.0, 0.0)])
def test_arrival_gaps_have_the_right_shape(arrival, burstiness, cv):
    gaps = interarrival_gaps_s(20001, rate=50.0, arrival=arrival, burstiness=burstiness, seed=7)
    assert len(gaps) == 20000
    assert math.isclose(gaps.mean(), 1 / 50.0, rel_tol=1e-9)  # normalised: exactly the requested rate
    assert abs(gaps.std() / gaps.mean() - cv) < 0.05
    if arrival == "poisson":
        # memoryless: P(gap > mean) = 1/e for an exponential
        assert abs((gaps > gaps.mean()).mean() - math.exp(-1)) < 0.01


def test_arrival_offsets():
    offsets = arrival_offsets_s(1001, rate=100.0, seed=1)
    assert offsets[0] == 0 and np.all(np.diff(offsets) >= 0)
    assert math.isclose(1000 / offsets[-1], 100.0, rel_tol=1e-9)
    assert np.array_equal(offsets, arrival_offsets_s(1001, rate=100.0, seed=1))
    assert count_for_duration(150.0, 2.0) == 300
    with pytest.raises(ValueError, match="rate must be > 0"):
        interarrival_gaps_s(10, 0.0)
    with pytest.raises(ValueError, match="arrival must be"):
        interarrival_gaps_s(10, 1.0, arrival="weibull")


def test_scenarios():
    two = [{"model": "tiny"}, {"model": "tiny"}]
    mixed = experiment_from_dict({"instances": two, "scenario": "mixed"}, "t")
    assert (mixed.workload_for(0).prompt_tokens, mixed.workload_for(1).prompt_tokens) == (128, 4096)
    assert experiment_from_dict({"instances": two, "scenario": "long"}, "t").workload_for(1).prompt_tokens == 4096
    peak_static = experiment_from_dict({"instances": two, "scenario": "peak"}, "t").workload_for(0)
    assert peak_static.batch_size == "max" and peak_static.load_model == "static"
    peak_closed = experiment_from_dict({"instances": two, "scenario": "peak", "workload": {"concurrency": 4}}, "t")
    assert peak_closed.workload_for(0).concurrency == "max"
    own = experiment_from_dict({"instances": two, "scenario": "chatty",
                                "scenarios": {"chatty": {"workload": {"output_tokens": 512},
                                                         "instances": [{"prompt_tokens": 16}]}}}, "t")
    assert own.workload_for(1).output_tokens == 512 and own.workload_for(1).prompt_tokens == 16


def test_load_model_inference():
    def wl(**fields):
        return experiment_from_dict({"instances": [{"model": "tiny"}], "workload": fields}, "t").workload_for(0)

    assert wl().load_model == "static"
    assert wl(concurrency=8).load_model == "closed"
    assert wl(rate=5.0).load_model == "open"
    assert wl(rate=5.0, concurrency=4).load_model == "open"  # the concurrency caps the open loop


def test_capacity_from_memory():
    # 10 GiB device, half each, 1 GiB weights, 1 KiB per token, 1000 tokens per request
    n = max_parallel_requests(10 * 2**30, 0.5, 2**30, 1024, 1000, cap=10_000)
    assert n == int((10 * 2**30 * 0.9 * 0.5 - 2**30) // (1024 * 1000 * 1.25))
    assert max_parallel_requests(10 * 2**30, 0.5, 2**30, 1024, 1000, cap=64) == 64
    assert max_parallel_requests(2**20, 1.0, 2**30, 1024, 1000, cap=64) == 1
    assert max_parallel_requests(None, 1.0, 0, None, 1000, cap=32) == 32


def test_co_located_open_loop_instances_do_not_share_arrival_times():
    """Two instances at one rate used to get one schedule ([0.0, 122.0, 304.9, ...] ms for both):
    their bursts lined up. Each now has its own, kept from run to run."""
    from colobench.backends.fake import FakeBackend
    from colobench.loadgen.driver import LoadDriver
    from colobench.specs.models import WorkloadSpec

    wl = WorkloadSpec(load="open", rate=8.0, requests=40, prompt_tokens=8, output_tokens=2)
    a, b, again = (LoadDriver(FakeBackend(), wl, 4, None, name=n).offsets for n in ("a", "b", "a"))
    assert len(a) == len(b) == 40 and a != b and a == again
    # none shared (the first is 0 and the last (count - 1) / rate in both: the gaps' mean is exact)
    assert len(set(round(x, 9) for x in a[1:-1]) & set(round(x, 9) for x in b[1:-1])) == 0
    assert abs(a[-1] / 39 - 1 / 8) < 0.02 and abs(b[-1] / 39 - 1 / 8) < 0.02  # each still at the asked rate


def test_peak_honours_requests_in_whole_batches():
    """`peak` ran one static batch per repetition whatever -r said (a spread of +- 0.00), and
    -r 600 at a batch of 256 gave 256 + 256 + 88. Now: -r rounded up to whole batches, two at least."""
    from colobench.backends.fake import FakeBackend
    from colobench.loadgen.driver import LoadDriver
    from colobench.specs.models import WorkloadSpec

    def driver(requests: int, parallel: int, **fields):
        wl = WorkloadSpec(requests=requests, prompt_tokens=8, output_tokens=2, **fields)
        return LoadDriver(FakeBackend(), wl, parallel, None, name="a")

    big = driver(600, 256, batch_size="max")
    assert big.count == 768 and big.raised_to == 768 and [len(b.requests) for b in big.batches] == [256, 256, 256]
    small = driver(10, 256, batch_size="max")
    assert small.count == 512 and [len(b.requests) for b in small.batches] == [256, 256]
    exact = driver(24, 8, batch_size="max")
    assert exact.count == 24 and exact.raised_to is None and [len(b.requests) for b in exact.batches] == [8, 8, 8]
    closed = driver(5, 4, load="closed", concurrency="max")
    assert closed.count == 8 and closed.raised_to == 8  # rounds of full concurrency
    plain = driver(10, 4, batch_size=4)
    assert plain.count == 10 and plain.raised_to is None  # a fixed batch keeps -r as given
