"""The AXI top's cycle model (`golden.axi_perf`): relations that must hold.

Its exact cycle counts are checked against the RTL by ``tb/test_axi.py``
(``axi_exact``) and ``bench/axi_latency.py``; here what follows from its
definition.
"""

import pytest

from golden import axi_perf, perf
from hw.axi import AxiConfig
from hw.config import SpeqConfig


MACHINES = {
    "1x2": perf.machine(SpeqConfig(rows=1, cols=2, tmax=4, pe_stages=1, kmax=64, mem_bits=32,
                                   draft_lanes=1)),
    "default": perf.machine(SpeqConfig()),
}
SHAPES = [("draft", 9, 64, 1), ("verify", 9, 64, 4), ("baseline", 7, 40, 3),
          ("verify", 40, 128, 8)]


def _cost(mode, n, k, t, machine, latency, axi=AxiConfig(), **kwargs):
    return axi_perf.axi_pass_cost(mode, n, k, t, read_latency=latency,
                                  burst_beats=axi.burst_beats,
                                  max_outstanding=axi.max_outstanding,
                                  fifo_depth=axi.fifo_depth, **MACHINES[machine], **kwargs)


@pytest.mark.parametrize("mode,n,k,t", SHAPES)
@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_bits_macs_steps_are_pass_costs(mode, n, k, t, machine):
    base = perf.pass_cost(mode, n, k, t, mem_latency=1, **MACHINES[machine])
    for latency in (1, 17):
        cost = _cost(mode, n, k, t, machine, latency)
        assert (cost.bits, cost.macs, cost.steps) == (base.bits, base.macs, base.steps)
        assert cost.cycles == base.cycles + cost.wait_mem


@pytest.mark.parametrize("mode,n,k,t", SHAPES)
def test_latency_one_with_deep_fifos_waits_for_the_first_word_only(mode, n, k, t):
    # With room for the whole pass, the master never waits for the
    # accelerator: in draft and baseline only the first word's trip is
    # waited for (decided in cycle 1, AR in 2, beat in 3, at the plane's head
    # HEAD_CYCLES later, in 7; asked for in 1 and answered in 2, so 5 cycles
    # frozen). In verify the round robin gives the draft plane
    # every other R cycle for as long as its FIFO has room, while the pass
    # takes three residual words per draft word: the residual words wait,
    # at most one cycle per draft word.
    axi = AxiConfig(burst_beats=16, max_outstanding=64, fifo_depth=4096)
    cost = _cost(mode, n, k, t, "default", 1, axi)
    base = perf.pass_cost(mode, n, k, t, mem_latency=1, **MACHINES["default"])
    first = 5           # the first word at the head in 7, its answer due in 2
    if mode == "verify":
        assert first < cost.wait_mem <= first + cost.bits // 32 // 4
        assert cost.wait_mem >= _cost(mode, n, k, t, "default", 1).wait_mem
    else:
        assert cost.wait_mem == first
    assert cost.cycles - base.cycles == cost.wait_mem


@pytest.mark.parametrize("mode,n,k,t", SHAPES)
@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_cycles_grow_with_latency(mode, n, k, t, machine):
    axi = AxiConfig(burst_beats=4, max_outstanding=3, fifo_depth=8) if machine == "1x2" \
        else AxiConfig()
    cycles = [_cost(mode, n, k, t, machine, latency, axi).cycles
              for latency in (1, 2, 3, 5, 8, 13, 32, 100, 300)]
    assert cycles == sorted(cycles)
    # Each extra cycle of latency costs at least one cycle (the first word).
    assert all(b > a for a, b in zip(cycles, cycles[1:]))


def test_long_latency_runs_at_the_bandwidth_of_the_words_in_flight():
    # Far beyond what the FIFOs cover, a baseline pass is paced by
    # min(2 fifo_depth, max_outstanding x burst_beats) words per round trip;
    # one plane here: min(fifo_depth, ...) = 128 words per latency + 2 + 16.
    axi = AxiConfig()
    n = k = 256
    latency = 1000
    cost = _cost("baseline", n, k, 1, "default", latency, axi)
    words = cost.bits // 32
    trip = latency + 2 + axi.burst_beats
    assert cost.cycles == pytest.approx(words / 128 * trip, rel=0.03)


def test_bursts_are_cut_at_4_kb_and_plane_ends():
    assert axi_perf.bursts(4096 - 8, 40, mem_bits=32, burst_beats=16) == [
        (0, 2), (2, 16), (18, 16), (34, 6)]
    assert axi_perf.bursts(3, 5, mem_bits=32, burst_beats=16) == [(0, 5)]   # low bits ignored
    base = _cost("draft", 9, 64, 1, "default", 8)
    cut = _cost("draft", 9, 64, 1, "default", 8, wbase0=4096 - 4)
    assert cut.bursts == base.bursts + 1


def test_read_latency_must_be_positive():
    with pytest.raises(ValueError, match="read_latency must be at least 1, not 0"):
        _cost("draft", 4, 4, 1, "default", 0)


# --- KV_WRITE (axi_kv_write_cost) -------------------------------------------------------

KV_SHAPES = [(0, 64, 1), (0, 128, 3), (1, 4, 4), (1, 64, 2)]


@pytest.mark.parametrize("vt,d,t", KV_SHAPES)
def test_kv_write_with_room_in_flight_waits_for_the_last_response_only(vt, d, t):
    # Enough writes in flight to cover the round trip: the writer's own
    # cycles, then the last response (latency + 1 cycles).
    for latency in (1, 5):
        cost = axi_perf.axi_kv_write_cost(vt, d, t, write_latency=latency, max_outstanding=64)
        assert cost.wait_mem == latency + 1
        assert cost.cycles == perf.kv_write_cycles(vt, d, t) + latency + 1
        assert cost.writes == t * d // 4 * (8 if vt else 2) and cost.bits == 16 * t * d
        assert cost.most_in_flight <= latency + 2


@pytest.mark.parametrize("vt,d,t", KV_SHAPES)
@pytest.mark.parametrize("outstanding", [1, 3, 8])
def test_kv_write_cycles_grow_with_latency_and_never_exceed_the_writes_in_flight(
        vt, d, t, outstanding):
    costs = [axi_perf.axi_kv_write_cost(vt, d, t, write_latency=latency,
                                        max_outstanding=outstanding)
             for latency in (1, 2, 3, 8, 32, 100)]
    assert all(b.cycles > a.cycles for a, b in zip(costs, costs[1:]))
    assert all(cost.most_in_flight <= outstanding for cost in costs)
    assert all(cost.cycles - cost.wait_mem == perf.kv_write_cycles(vt, d, t) for cost in costs)


def test_kv_write_at_long_latency_writes_max_outstanding_a_round_trip():
    # One write in flight: a write per round trip (taken, AW and W a cycle
    # later, the response `latency` after, counted the cycle after that).
    latency, writes = 50, 2 * 32 // 4
    cost = axi_perf.axi_kv_write_cost(0, 32, 1, write_latency=latency, max_outstanding=1)
    assert cost.cycles == perf.KV_WRITE_SETUP + 2 + (writes - 1) * (latency + 2) + latency + 1
    cost8 = axi_perf.axi_kv_write_cost(1, 64, 4, write_latency=1000, max_outstanding=8)
    assert cost8.cycles == pytest.approx(cost8.writes / 8 * 1002, rel=0.01)


def test_kv_write_latency_must_be_positive():
    with pytest.raises(ValueError, match="write_latency must be at least 1, not 0"):
        axi_perf.axi_kv_write_cost(0, 4, 1, write_latency=0, max_outstanding=3)
