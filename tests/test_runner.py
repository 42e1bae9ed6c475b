# amaranth: UnusedElaboratable=no
"""The benches' Verilog conversion (`tb.runner.to_verilog`)."""

from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from tb import runner


class _Memories(wiring.Component):
    """Three memories, two all zero (one of 1-bit words) and one not, behind
    a read port each."""

    addr: In(6)
    zero: Out(37)
    bit: Out(1)
    data: Out(37)

    def elaborate(self, platform):
        m = Module()
        m.submodules.z = z = memory.Memory(shape=37, depth=48, init=[])
        m.submodules.b = b = memory.Memory(shape=1, depth=40, init=[])
        m.submodules.d = d = memory.Memory(shape=37, depth=48, init=[3, 0, 1 << 36, 5])
        for mem, out in ((z, self.zero), (b, self.bit), (d, self.data)):
            port = mem.read_port()
            m.d.comb += [port.addr.eq(self.addr), out.eq(port.data)]
        return m


def test_fast_zero_init_writes_the_same_verilog():
    slow, loops = runner._compact_zero_init(
        verilog.convert(_Memories(), name="top", emit_src=False))
    fast = runner.to_verilog(_Memories(), "top")
    assert fast == slow and loops == 2
    # The zero memories became loops over all their words; the other keeps
    # its words.
    assert "i < 48; i = i + 1) z[i] = 37'h0;" in fast and "i < 40; i = i + 1) b[i] = 1'h0;" in fast
    assert "37'h1000000000" in fast
    # The patch is undone afterwards.
    from amaranth.back import rtlil
    assert rtlil.ModuleEmitter.emit_memory.__module__ == "amaranth.back.rtlil"
