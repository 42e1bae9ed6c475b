"""`hw.axi.burst_cap` and `hw.axi.burst_step`, the read master's burst
arithmetic, on Amaranth's simulator: every distance to a 4 KB boundary, for
every bus width and burst length the AXI top takes."""

import pytest

from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from golden.axi_perf import BOUNDARY
from hw.axi import burst_cap, burst_step


def _want(to, burst_beats, page):
    """``(cap, (next cap, next to))``, from the AXI4 rule: a burst is at most
    ``burst_beats`` long and does not cross 4 KB."""
    cap = min(burst_beats, to)
    after = to - cap or page
    return cap, (min(burst_beats, after), after)


@pytest.mark.parametrize("mem_bits", [16, 32, 64, 128, 256, 512, 1024])
def test_burst_cap_and_step_at_every_distance_to_4_kb(mem_bits):
    page = BOUNDARY // (mem_bits // 8)
    m = Module()
    to = Signal(range(page + 1))
    outputs = {}
    for burst_beats in (1 << e for e in range(9)):
        cap, cap_next, to_next = Signal(16), Signal(16), Signal(16)
        m.d.comb += [cap.eq(burst_cap(to, burst_beats, page)),
                     *(s.eq(v) for s, v in zip((cap_next, to_next),
                                               burst_step(to, burst_beats, page)))]
        outputs[burst_beats] = cap, cap_next, to_next
    bad = []

    async def bench(ctx):
        for value in range(1, page + 1):
            ctx.set(to, value)
            for burst_beats, signals in outputs.items():
                cap, cap_next, to_next = (ctx.get(s) for s in signals)
                if (cap, (cap_next, to_next)) != _want(value, burst_beats, page):
                    bad.append((burst_beats, value, cap, cap_next, to_next))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, bad[:10]
