"""The fake shared device in virtual time (`serve.simulate`): the placement benchmark's truth. A
lone request's figures by hand, an SLO met or missed by every request, and an overloaded device
that stops early and counts the rest as misses."""

from __future__ import annotations

import pytest

from colobench.serve.simulate import SimDevice, SimService, simulate

DEVICE = SimDevice(decode_tok_s=1000.0, prefill_tok_s=10_000.0, itl_ms=5.0)


def test_light_traffic_has_the_hand_computed_figures():
    # 0.2 req/s of 1,000-token prompts: 0.1 s of prefill each, then 5 ms a token (the cap), rarely overlapping
    out = simulate(DEVICE, [SimService("a", 0.2, 1000, 11, {"ttft_ms": 101.0, "tpot_ms": 5.01})], duration_s=600,
                   warmup_s=10, seed=1)["a"]
    assert out.requests > 80
    assert min(out.ttft_ms) == pytest.approx(100.0)
    assert sorted(out.tpot_ms)[len(out.tpot_ms) // 2] == pytest.approx(5.0)
    assert 0.9 < out.slo_attainment <= 1.0  # a few arrive while another prefills


def test_an_impossible_slo_is_missed_by_every_request_and_no_slo_gives_none():
    out = simulate(DEVICE, [SimService("a", 1.0, 100, 8, {"ttft_ms": 5.0}), SimService("b", 1.0, 100, 8)],
                   duration_s=60, warmup_s=5)
    assert out["a"].slo_attainment == 0.0  # 100 tokens take 10 ms to prefill
    assert out["b"].slo_attainment is None and out["b"].requests > 20


def test_an_overloaded_device_stops_early_and_meets_nothing():
    # 50 req/s x 100 tokens = 5,000 tokens a second against a budget of 1,000
    out = simulate(DEVICE, [SimService("a", 50.0, 10, 100, {"tpot_ms": 100.0})], duration_s=60, warmup_s=1,
                   max_backlog=64)["a"]
    assert out.requests > 2000  # every arrival counted, most never admitted
    assert out.slo_attainment < 0.1


def test_bad_durations_are_refused():
    with pytest.raises(ValueError, match="duration_s must exceed warmup_s"):
        simulate(DEVICE, [], duration_s=5, warmup_s=5)
