"""The fake shared device (colobench.serve.shared_device): the pure model on a virtual clock (TTFT,
TPOT, sharing, prefill stalls, FIFO, conservation, the capacity formula and its knee), the fake
server in shared-device mode in-process, and once through the CLI in its own process. Only the
virtual clock's times are asserted; real time never is."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import urllib.request

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from colobench.serve.fake_openai import FakeOpenAIServer, FakeServerSettings
from colobench.serve.shared_device import SharedDevice, shared_device_capacity

from conftest import free_port


def run_to_idle(device: SharedDevice, limit_s: float = 3600.0) -> list:
    events = []
    while not device.idle:
        step_s = device.next_event_s()
        assert step_s is not None and device.now_s + step_s < limit_s
        events += device.advance(step_s)
    return events


def gaps_s(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


# -- the model, on a virtual clock ---------------------------------------------------------------


@pytest.mark.parametrize("itl_s, tpot_s", [(0.005, 0.005), (0.0005, 0.001), (0.0, 0.001)])
def test_one_request_alone_ttft_is_prefill_and_tpot_is_the_slower_of_cap_and_budget(itl_s, tpot_s):
    device = SharedDevice(decode_tok_s=1000, prefill_tok_s=2000, itl_s=itl_s, keep_token_times=True)
    device.advance(1.0)  # an idle device keeps nothing in reserve
    r = device.add_request("a", prompt_tokens=300, output_tokens=20)
    run_to_idle(device)
    assert r.first_token_s - r.arrived_s == pytest.approx(300 / 2000)
    assert all(g == pytest.approx(tpot_s) for g in gaps_s(r.token_times_s))
    assert r.emitted == 20 and r.finished_s == pytest.approx(r.first_token_s + 19 * tpot_s)


def test_two_decoders_share_the_budget_and_the_survivor_speeds_up():
    device = SharedDevice(decode_tok_s=100, prefill_tok_s=1e6, itl_s=0.001, keep_token_times=True)
    short = device.add_request("a", prompt_tokens=0, output_tokens=11)
    long = device.add_request("b", prompt_tokens=0, output_tokens=31)
    run_to_idle(device)
    assert short.first_token_s == long.first_token_s == 0.0
    assert all(g == pytest.approx(0.02) for g in gaps_s(short.token_times_s))  # 100 / 2 tokens/s each
    assert all(g == pytest.approx(0.02) for g in gaps_s(long.token_times_s[:11]))
    assert all(g == pytest.approx(0.01) for g in gaps_s(long.token_times_s[11:]))  # alone: all of N
    assert long.finished_s == pytest.approx(10 * 0.02 + 20 * 0.01)


def test_the_per_stream_cap_is_not_exceeded_and_not_redistributed():
    device = SharedDevice(decode_tok_s=1000, prefill_tok_s=1e6, itl_s=0.01, keep_token_times=True)
    a, b = device.add_request("a", 0, 6), device.add_request("b", 0, 6)
    device.advance(0.0)
    assert device.stream_tok_s() == pytest.approx(100)  # min(1 / 10 ms, 1000 / 2)
    run_to_idle(device)
    assert all(g == pytest.approx(0.01) for r in (a, b) for g in gaps_s(r.token_times_s))
    assert device.decoded_tokens == pytest.approx(10)


def test_a_prefill_arriving_mid_decode_pauses_decoding_for_its_prefill_time():
    device = SharedDevice(decode_tok_s=100, prefill_tok_s=1000, itl_s=0.0, keep_token_times=True)
    a = device.add_request("a", prompt_tokens=0, output_tokens=40)
    device.advance(0.105)  # tokens at 0, 0.01, ..., 0.10; the next is half made
    assert a.emitted == 11
    b = device.add_request("b", prompt_tokens=50, output_tokens=1)  # 50 / 1000 = 50 ms of prefill
    events = device.advance(0.05)
    assert [e.request for e in events] == [b] and events[0].time_s == pytest.approx(0.155)
    assert b.first_token_s - b.arrived_s == pytest.approx(0.05) and b.done
    assert a.emitted == 11  # decode stood still during the prefill
    run_to_idle(device)
    assert a.token_times_s[11] == pytest.approx(0.11 + 0.05)  # its half-made token kept its progress
    assert all(g == pytest.approx(0.01) for g in gaps_s(a.token_times_s[11:]))

    c = device.add_request("c", prompt_tokens=50, output_tokens=3)  # now onto an idle device
    d = device.add_request("d", prompt_tokens=0, output_tokens=3)  # queued behind c's prefill
    run_to_idle(device)
    assert c.first_token_s - c.arrived_s == pytest.approx(0.05) == d.first_token_s - d.arrived_s
    assert gaps_s(c.token_times_s) == pytest.approx([0.02, 0.02])  # two streams share N


def test_prefills_are_first_in_first_out_across_models():
    device = SharedDevice(decode_tok_s=1000, prefill_tok_s=1000, itl_s=0.001)
    a1 = device.add_request("a", prompt_tokens=100, output_tokens=1)
    b1 = device.add_request("b", prompt_tokens=100, output_tokens=1)
    device.advance(0.05)
    a2 = device.add_request("a", prompt_tokens=100, output_tokens=1)
    b2 = device.add_request("b", prompt_tokens=1, output_tokens=1)  # short, but it came last
    events = run_to_idle(device)
    assert [(e.request, e.index) for e in events] == [(a1, 0), (b1, 0), (a2, 0), (b2, 0)]
    assert [r.first_token_s for r in (a1, b1, a2, b2)] == pytest.approx([0.1, 0.2, 0.3, 0.301])
    assert device.prefill_busy_s == pytest.approx(0.301) and device.decode_busy_s == 0


def test_tokens_and_work_are_conserved_and_step_size_does_not_matter():
    rng = random.Random(7)
    arrivals = sorted((rng.uniform(0, 2), rng.choice("ab"), rng.randint(0, 400), rng.randint(1, 60))
                      for _ in range(60))

    def simulate(step_s: float | None) -> tuple[SharedDevice, list]:
        device = SharedDevice(decode_tok_s=800, prefill_tok_s=20000, itl_s=0.004, keep_token_times=True)
        requests = []
        for t, model, p, n in arrivals:
            while device.now_s < t:  # fixed real-time-like steps, or straight to the arrival
                device.advance(min(step_s or t, t - device.now_s))
            requests.append(device.add_request(model, p, n))
        run_to_idle(device)
        return device, requests

    device, requests = simulate(None)
    for r, (_, _, p, n) in zip(requests, arrivals):
        assert r.emitted == n and len(r.token_times_s) == n and r.done
        assert r.token_times_s == sorted(r.token_times_s)
    assert device.decoded_tokens == pytest.approx(sum(n - 1 for *_, n in arrivals))
    assert device.prefill_busy_s == pytest.approx(sum(p for _, _, p, _ in arrivals) / 20000)
    _, stepped = simulate(0.00137)  # an awkward step: events fall inside steps
    for a, b in zip(requests, stepped):
        assert b.token_times_s == pytest.approx(a.token_times_s, abs=1e-9)


def test_a_removed_request_stops_using_the_device():
    device = SharedDevice(decode_tok_s=100, prefill_tok_s=1e6, itl_s=0.0, keep_token_times=True)
    a, b = device.add_request("a", 0, 50), device.add_request("b", 0, 50)
    device.advance(0.1)
    device.remove(b)
    device.advance(0.1)
    assert a.emitted == 1 + 5 + 10 and b.emitted == 6 and not b.done
    assert device.add_request("c", 10, 0).done  # nothing to produce: finished at once


def test_shared_device_capacity_by_hand():
    # p/M + (n-1)/N = 200/10000 + 49/1000 = 0.069 s of device time per request
    assert shared_device_capacity(200, 50, 1000, 10000) == pytest.approx(1 / 0.069)
    assert shared_device_capacity(500, 1, 1000, 10000) == pytest.approx(20)  # prefill only
    assert shared_device_capacity(0, 101, 1000, 10000) == pytest.approx(10)  # decode only
    assert shared_device_capacity(0, 1, 1000, 10000) == float("inf")
    with pytest.raises(ValueError):
        shared_device_capacity(1, 1, 0, 10000)


SHAPES = {"a": (200, 50), "b": (50, 120)}  # (prompt tokens, output tokens)
N_TOK_S, M_TOK_S, ITL_S = 1000.0, 10000.0, 0.005


def constant_arrivals(rates: dict[str, float], duration_s: float = 20.0) -> tuple[list, int]:
    """Requests at a constant rate per model for `duration_s` on the virtual clock; the requests
    and how many were still on the device at the end."""
    device = SharedDevice(N_TOK_S, M_TOK_S, itl_s=ITL_S, keep_token_times=True)
    due = {m: 0.0 for m in rates}
    requests = []
    while True:
        model, t = min(due.items(), key=lambda kv: kv[1])
        if t >= duration_s:
            break
        device.advance(t - device.now_s)
        requests.append(device.add_request(model, *SHAPES[model]))
        due[model] = t + 1 / rates[model]
    device.advance(duration_s - device.now_s)
    return requests, len(device.decoding) + len(device.prefill_queue)


def mean_tpot_s(requests: list, from_s: float, to_s: float) -> float:
    """Mean time between decoded tokens emitted in [from_s, to_s)."""
    gaps = [b - a for r in requests for a, b in zip(r.token_times_s[1:], r.token_times_s[2:]) if from_s <= b < to_s]
    return sum(gaps) / len(gaps)


@pytest.mark.parametrize("models", [("a",), ("b",), ("a", "b")])
def test_the_knee_is_at_the_computed_capacity(models):
    caps = {m: shared_device_capacity(*SHAPES[m], N_TOK_S, M_TOK_S) for m in models}
    # equal shares of the capacity line: sum_i rate_i / cap_i = load
    below, below_left = constant_arrivals({m: 0.8 * caps[m] / len(models) for m in models})
    above, above_left = constant_arrivals({m: 1.2 * caps[m] / len(models) for m in models})

    early, late = mean_tpot_s(below, 2, 7), mean_tpot_s(below, 15, 20)
    assert late < 1.2 * early and late < 4 * ITL_S  # bounded, and not growing
    assert below_left < 10
    early, late = mean_tpot_s(above, 2, 7), mean_tpot_s(above, 15, 20)
    assert late > 2 * early and late > 4 * ITL_S  # growing without bound
    assert above_left > 50  # the decode backlog piles up


def test_the_joint_capacity_boundary_is_a_straight_line():
    cap_a = shared_device_capacity(*SHAPES["a"], N_TOK_S, M_TOK_S)
    cap_b = shared_device_capacity(*SHAPES["b"], N_TOK_S, M_TOK_S)
    # unequal mixes: 0.6 + 0.25 = 0.85 of the line is sustainable, 0.6 + 0.55 = 1.15 is not
    _, inside = constant_arrivals({"a": 0.6 * cap_a, "b": 0.25 * cap_b})
    _, outside = constant_arrivals({"a": 0.6 * cap_a, "b": 0.55 * cap_b})
    assert inside < 10 < 50 < outside


# -- the fake server in shared-device mode, in-process ---------------------------------------------


def test_fake_server_in_shared_mode_produces_every_token_in_process():
    config = FakeServerSettings(models=("a", "b"), decode_tok_s=20000, prefill_tok_s=1e6, itl_ms=0.1,
                              tokens_per_chunk=3, keepalive=True, stamp=True, trace=True)
    server = FakeOpenAIServer(config)

    async def scenario() -> None:
        async with TestClient(TestServer(server.app())) as client:
            async def stream(model: str, n: int, chat: bool) -> int:
                path = "/v1/chat/completions" if chat else "/v1/completions"
                body = {"model": model, "max_tokens": n, "stream": True,
                        **({"messages": [{"role": "user", "content": "hi"}]} if chat else {"prompt": "hi"})}
                text = ""
                async with client.post(path, json=body) as resp:
                    assert resp.status == 200
                    async for line in resp.content:
                        line = line.decode().strip()
                        if line.startswith("data: {"):
                            choice = json.loads(line[6:])["choices"][0]
                            text += (choice.get("delta") or {}).get("content") or choice.get("text") or ""
                return text.count("tok")

            counts = await asyncio.gather(stream("a", 10, True), stream("b", 7, False), stream("a", 1, False))
            assert counts == [10, 7, 1]
            async with client.post("/v1/completions", json={"model": "b", "prompt": "x y", "max_tokens": 5}) as r:
                assert (await r.json())["choices"][0]["text"].count("tok") == 5
            assert server.device is not None and server.device.device.idle

    asyncio.run(scenario())
    assert len(server.traces) == 3 and server.counters["tokens"] == 10 + 7 + 1 + 5


def test_a_cut_stream_leaves_the_shared_device():
    # one token per 100 ms: the cut comes when token 6 of 10 is made, 400 ms before the last is due
    server = FakeOpenAIServer(FakeServerSettings(models=("a",), decode_tok_s=1000, prefill_tok_s=1e6, itl_ms=100))
    assert server.device is not None
    released = []
    release = server.device.release
    server.device.release = lambda s: (released.append((s.request.emitted, s.request.output_tokens)), release(s))

    async def scenario() -> None:
        async with TestClient(TestServer(server.app())) as client:
            async with client.post("/v1/completions", headers={"x-colobench-fault": "cut"},
                                   json={"model": "a", "prompt": "x", "max_tokens": 10, "stream": True}) as r:
                with pytest.raises(aiohttp.ClientPayloadError):
                    await r.read()

    asyncio.run(scenario())
    (emitted, wanted), = released
    assert emitted < wanted and server.device.device.idle


# -- through the CLI, in its own process -------------------------------------------------------------


def test_fake_server_cli_needs_both_rates():
    proc = subprocess.run([sys.executable, "-m", "colobench", "fake-server", "--port", str(free_port()),
                           "--decode-tok-s", "100"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--prefill-tok-s" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_fake_server_cli_serves_two_models_on_one_shared_device(fake_server):
    base, _ = fake_server("--models", "a,b", "--decode-tok-s", "2000", "--prefill-tok-s", "50000", "--itl-ms", "1")
    with urllib.request.urlopen(f"{base}/models", timeout=30) as resp:
        served = {m["id"] for m in json.load(resp)["data"]}
    assert served == {"a", "b"}

    async def stream(session: aiohttp.ClientSession, model: str, n: int) -> tuple[str, int]:
        body = {"model": model, "prompt": "a prompt of several words", "max_tokens": n, "stream": True}
        tokens, answered_by = 0, None
        async with session.post(f"{base}/completions", json=body) as resp:
            assert resp.status == 200
            async for line in resp.content:
                line = line.decode().strip()
                if line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    answered_by = chunk["model"]
                    tokens += chunk["choices"][0]["text"].count("tok")
        return answered_by, tokens

    async def both() -> list[tuple[str, int]]:
        async with aiohttp.ClientSession() as session:
            return await asyncio.gather(stream(session, "a", 40), stream(session, "b", 25))

    assert asyncio.run(both()) == [("a", 40), ("b", 25)]
