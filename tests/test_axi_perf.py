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
    # waited for (decided in cycle 1, AR in 2, beat in 3, at the FIFO's head
    # in 5; asked for in 1 and answered in 2, so 3 cycles frozen). In verify the round robin gives the draft plane
    # every other R cycle for as long as its FIFO has room, while the pass
    # takes three residual words per draft word: the residual words wait,
    # at most one cycle per draft word.
    axi = AxiConfig(burst_beats=16, max_outstanding=64, fifo_depth=4096)
    cost = _cost(mode, n, k, t, "default", 1, axi)
    base = perf.pass_cost(mode, n, k, t, mem_latency=1, **MACHINES["default"])
    if mode == "verify":
        assert 3 < cost.wait_mem <= 3 + cost.bits // 32 // 4
        assert cost.wait_mem >= _cost(mode, n, k, t, "default", 1).wait_mem
    else:
        assert cost.wait_mem == 3
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
