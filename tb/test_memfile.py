# amaranth: UnusedElaboratable=no
"""Bench of `tb.memfile`, the benches' bulk memory transfers through files.

A small top with a memory of wide words (a write port the bench drives, and
a read port) checks on both simulators that a load puts its words where its
segments say and no others, is complete when `tb.memfile.load` returns (the
per-word VPI reads see it; two loads in a row both land), that a dump sees
what the design wrote on the last clock edge and equals the per-word reads,
and that the checks raise: a word that does not fit, a range past the
memory, and (Icarus, which has four-state memories) a word with X or Z bits.
"""

import json
from pathlib import Path

import cocotb
from cocotb.triggers import FallingEdge
from cocotb.types import LogicArray

import pytest

from amaranth.hdl import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from tb import drive, memfile, runner
from tb.harness import read_words


WIDTH, DEPTH = 75, 48


class MemTop(wiring.Component):
    memfiles = ("mem",)

    def __init__(self):
        super().__init__({"we": In(1), "waddr": In(range(DEPTH)), "wdata": In(WIDTH),
                          "raddr": In(range(DEPTH)), "rdata": Out(WIDTH),
                          **memfile.members()})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=WIDTH, depth=DEPTH, init=[])
        write, read = mem.write_port(), mem.read_port(domain="comb")
        m.d.comb += [write.en.eq(self.we), write.addr.eq(self.waddr), write.data.eq(self.wdata),
                     read.addr.eq(self.raddr), self.rdata.eq(read.data)]
        return m


def _words(seed, count):
    import numpy as np
    rng = np.random.default_rng(seed)
    return [int.from_bytes(rng.bytes(10), "little") % (1 << WIDTH) for _ in range(count)]


@cocotb.test()
async def memfile_round_trip(dut):
    await drive.reset(dut, ("we", "waddr", "wdata", "raddr"))
    checks = 0
    a, b = _words(1, 5), _words(2, 9)
    await memfile.load(dut, "mem", [(2, a), (DEPTH - 9, b)])
    # Complete on return: the per-word reads see it.
    want = [0] * DEPTH
    want[2:7], want[DEPTH - 9:] = a, b
    assert read_words(dut.mem, DEPTH) == want
    assert await memfile.dump(dut, "mem", DEPTH) == want
    assert await memfile.dump(dut, "mem", 3, address=4) == want[4:7]
    assert await memfile.dump(dut, "mem", 0, address=DEPTH) == []
    checks += 4
    # Two loads in a row, one overwriting part of the other; a negative word
    # in two's complement, as a handle takes it.
    c, d = _words(3, 20), _words(4, 3) + [-1]
    await memfile.load(dut, "mem", [(10, c)])
    await memfile.load(dut, "mem", [(12, d)])
    want[10:30] = c
    want[12:16] = d[:3] + [(1 << WIDTH) - 1]
    assert read_words(dut.mem, DEPTH) == want
    assert await memfile.dump(dut, "mem", DEPTH) == want
    checks += 2
    # The design's own write on a clock edge, then a dump at once.
    dut.we.value, dut.waddr.value, dut.wdata.value = 1, 40, 0x123456789
    await FallingEdge(dut.clk)
    dut.we.value = 0
    want[40] = 0x123456789
    assert await memfile.dump(dut, "mem", DEPTH) == want
    dut.raddr.value = 12
    await FallingEdge(dut.clk)
    assert dut.rdata.value.to_unsigned() == want[12]
    checks += 2
    # What does not fit raises, and nothing is written.
    for segments in ([(DEPTH - 2, [1, 2, 3])], [(0, [1 << WIDTH])], [(0, [-(1 << WIDTH)])],
                     [(-1, [1])]):
        with pytest.raises(ValueError):
            await memfile.load(dut, "mem", segments)
        checks += 1
    for count, address in ((DEPTH + 1, 0), (2, DEPTH - 1), (-1, 0)):
        with pytest.raises(ValueError):
            await memfile.dump(dut, "mem", count, address)
        checks += 1
    with pytest.raises(ValueError, match="no memory file"):
        await memfile.dump(dut, "other", 1)
    assert await memfile.dump(dut, "mem", DEPTH) == want
    checks += 2
    if cocotb.SIM_NAME.lower().startswith("icarus"):
        # X and Z bits raise, as .value.to_unsigned() does; the words beside
        # them still read.
        dut.mem[20].value = LogicArray("1" * (WIDTH - 4) + "x010")
        dut.mem[21].value = LogicArray("z" + "0" * (WIDTH - 1))
        await FallingEdge(dut.clk)
        for address in (20, 21):
            with pytest.raises(ValueError, match="X or Z"):
                await memfile.dump(dut, "mem", 1, address)
            with pytest.raises(ValueError):
                dut.mem[address].value.to_unsigned()
        with pytest.raises(ValueError, match="word 20 has X or Z"):
            await memfile.dump(dut, "mem", DEPTH)
        assert await memfile.dump(dut, "mem", 20) == want[:20]
        assert await memfile.dump(dut, "mem", DEPTH - 22, 22) == want[22:]
        checks += 7
    Path("summary.json").write_text(json.dumps({"checks": checks}))


@pytest.mark.parametrize("sim", runner.SIMULATORS)
def test_memfile(sim):
    build_dir = runner.BUILD_ROOT / "memfile" / sim
    (build_dir / "summary.json").unlink(missing_ok=True)
    runner.run(MemTop(), bench="memfile", toplevel="memtop", test_module="tb.test_memfile",
               sim=sim)
    summary = json.loads((build_dir / "summary.json").read_text())
    assert summary["checks"] == (24 if sim == "icarus" else 17), summary
