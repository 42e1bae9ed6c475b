# amaranth: UnusedElaboratable=no
"""The benches' Verilog conversion (`tb.runner.to_verilog`)."""

from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from tb import runner


class _Memories(wiring.Component):
    """Two memories, one all zero and one not, behind a read port each."""

    addr: In(6)
    zero: Out(37)
    data: Out(37)

    def elaborate(self, platform):
        m = Module()
        m.submodules.z = z = memory.Memory(shape=37, depth=48, init=[])
        m.submodules.d = d = memory.Memory(shape=37, depth=48, init=[3, 0, 1 << 36, 5])
        for mem, out in ((z, self.zero), (d, self.data)):
            port = mem.read_port()
            m.d.comb += [port.addr.eq(self.addr), out.eq(port.data)]
        return m


def test_fast_zero_init_writes_the_same_verilog():
    slow = runner._compact_zero_init(verilog.convert(_Memories(), name="top", emit_src=False))
    fast = runner.to_verilog(_Memories(), "top")
    assert fast == slow
    # The zero memory became a loop; the other keeps its words.
    assert "zero_init_" in fast and "37'h1000000000" in fast
    # The patch is undone afterwards.
    from amaranth.back import rtlil
    assert rtlil.ModuleEmitter.emit_memory.__module__ == "amaranth.back.rtlil"
