# amaranth: UnusedElaboratable=no
"""The accelerator bench's host and memory, in hardware: one command per await.

`AccelHarness` wraps a `hw.accel.SpeqAccel` with what ``tb/test_accel.py``
used to play from Python cycle by cycle:

- a weight memory (``wmem``) behind the accelerator's memory port: a request
  taken on an advancing cycle (``mem.en``) returns its word ``mem_latency``
  advancing cycles later, in order; the address wraps at the memory's depth;
- random memory stalls (``mem.stall``) and a randomly blocked output
  (``out.ready`` low), with probabilities ``p_stall / 256`` and
  ``p_block / 256`` per cycle, from xorshift generators seeded at ``go``;
- the command: ``go`` loads ``cmd``; it is offered until taken, then the
  ``act_count`` words of the activation memory (``amem``) follow;
- the outputs: every result beat goes into ``omem`` in order, and the
  status ends the command (``done``), with the cycles the accelerator was
  busy (from `hw.controller.CHECK_CYCLES` cycles after the command was
  taken, when its pass starts, until its status) and of those the cycles it
  was frozen (``mem.en`` low);
- the write port (KV_WRITE): a write goes into ``wmem`` under its byte
  strobes; the port is not ready on a cycle with probability ``p_stall /
  256``, and the cycles a write waited are counted (``write_waits``).

The bench loads the memories and dumps ``omem`` (and ``wmem``) through files
(`tb.memfile`), so Python runs once per command, not once per cycle.
"""

from cocotb.triggers import FallingEdge, First, RisingEdge

from amaranth.hdl import Mux, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw.controller import Command, Status, check_delayed
from tb import drive, memfile
from tb.harness import xorshift


__all__ = ["AccelHarness", "run_command", "write_waits"]


class AccelHarness(wiring.Component):
    """``accel`` with its memory, host and output capture (module docstring).

    Parameters
    ----------
    accel : SpeqAccel
    mem_depth : int
        Words of the weight memory (a power of two: addresses wrap).
    mem_latency : int
        Advancing cycles from a request to its word (at least 1).
    act_depth, out_depth : int
        Activation words and result beats one command may have.

    Members
    -------
    go : In(1)
    cmd : In(Command)
    act_count : In
    p_stall, p_block : In(9)
    seed : In(32)
    done : Out(1)
        The last command's status is in (high before the first command).
    status : Out(Status)
    out_count : Out
        Result beats of the last command (at most ``out_depth`` are kept).
    busy, frozen, write_waits : Out(32)
    rw_clash : Out(1)
        A step used a block-RAM read that met a write to its address
        (`hw.controller.PassController.rw_clash`; sticky).
    """

    def __init__(self, accel, *, mem_depth, mem_latency, act_depth, out_depth):
        if mem_depth & (mem_depth - 1):
            raise ValueError(f"mem_depth must be a power of two, not {mem_depth}")
        if mem_latency < 1:
            raise ValueError(f"mem_latency must be at least 1, not {mem_latency}")
        self._accel = accel
        self._mem_depth, self._mem_latency = mem_depth, mem_latency
        self._act_depth, self._out_depth = act_depth, out_depth
        super().__init__({
            "go": In(1), "cmd": In(Command), "act_count": In(range(act_depth + 1)),
            "p_stall": In(9), "p_block": In(9), "seed": In(32),
            "done": Out(1), "status": Out(Status), "out_count": Out(range(out_depth + 1)),
            "busy": Out(32), "frozen": Out(32), "write_waits": Out(32),
            "rw_clash": Out(1), **memfile.members(),
        })

    #: The memories the bench loads and dumps through files (`tb.memfile`).
    memfiles = ("wmem", "amem", "omem")

    @property
    def accel(self):
        return self._accel

    @property
    def mem_depth(self):
        return self._mem_depth

    @property
    def mem_latency(self):
        return self._mem_latency

    @property
    def out_depth(self):
        return self._out_depth

    def elaborate(self, platform):
        m = Module()
        accel = self._accel
        m.submodules.accel = accel
        config = accel.config

        m.submodules.wmem = wmem = memory.Memory(
            shape=config.mem_bits, depth=self._mem_depth, init=[])
        m.submodules.amem = amem = memory.Memory(
            shape=len(accel.act.payload.as_value()), depth=self._act_depth, init=[])
        m.submodules.omem = omem = memory.Memory(
            shape=len(accel.out.payload.as_value()), depth=self._out_depth, init=[])

        m.d.comb += self.rw_clash.eq(accel.controller.rw_clash)
        running = Signal()
        sent = Signal()                       # the command was taken
        act_i = Signal(range(self._act_depth + 1))
        stall_draw = xorshift(m, "stall_rng", self.go, self.seed)[:8] < self.p_stall
        block_draw = xorshift(m, "block_rng", self.go, self.seed ^ 0x9E3779B9)[:8] < self.p_block
        m.d.comb += self.done.eq(~running & ~self.go)

        with m.If(self.go):
            m.d.sync += [running.eq(1), sent.eq(0), act_i.eq(0), self.out_count.eq(0),
                         self.busy.eq(0), self.frozen.eq(0), self.write_waits.eq(0)]

        # -- command and activations ------------------------------------------------
        cmd_reg = Signal(Command)
        with m.If(self.go):
            m.d.sync += cmd_reg.eq(self.cmd)
        act_read = amem.read_port(domain="comb")
        has_act = running & sent & (act_i < self.act_count)
        m.d.comb += [
            accel.cmd.valid.eq(running & ~sent),
            accel.cmd.payload.eq(cmd_reg),
            act_read.addr.eq(act_i),
            accel.act.valid.eq(has_act),
            accel.act.payload.eq(act_read.data),
        ]
        with m.If(accel.cmd.valid & accel.cmd.ready):
            m.d.sync += sent.eq(1)
        with m.If(accel.act.valid & accel.act.ready):
            m.d.sync += act_i.eq(act_i + 1)

        # -- weight memory: a pipeline of requests that advances with the accelerator --
        stall = running & stall_draw
        addr_bits = ceil_log2(self._mem_depth)
        valids = [Signal(name=f"pipe{n}_valid") for n in range(self._mem_latency)]
        addrs = [Signal(addr_bits, name=f"pipe{n}_addr") for n in range(self._mem_latency)]
        with m.If(accel.mem.en):
            m.d.sync += [valids[-1].eq(accel.mem.req), addrs[-1].eq(accel.mem.addr[:addr_bits])]
            for n in range(self._mem_latency - 1):
                m.d.sync += [valids[n].eq(valids[n + 1]), addrs[n].eq(addrs[n + 1])]
        word = wmem.read_port(domain="comb")
        m.d.comb += [
            word.addr.eq(addrs[0]),
            accel.mem.valid.eq(valids[0]),
            accel.mem.data.eq(Mux(valids[0], word.data, 0)),
            accel.mem.stall.eq(stall),
        ]

        # -- the write port: into the same memory, under byte strobes -------------------
        write = wmem.write_port(granularity=8)
        wmem_ready = ~(running & stall_draw)
        m.d.comb += [
            accel.wmem.ready.eq(wmem_ready),
            write.addr.eq(accel.wmem.payload.addr[:addr_bits]),
            write.data.eq(accel.wmem.payload.data),
            write.en.eq(Mux(accel.wmem.valid & wmem_ready, accel.wmem.payload.strb, 0)),
        ]
        with m.If(running & accel.wmem.valid & ~wmem_ready):
            m.d.sync += self.write_waits.eq(self.write_waits + 1)

        # -- results and status -------------------------------------------------------
        m.d.comb += [accel.out.ready.eq(~(running & block_draw)), accel.status.ready.eq(1)]
        out_write = omem.write_port()
        m.d.comb += [
            out_write.addr.eq(self.out_count),
            out_write.data.eq(accel.out.payload.as_value()),
            out_write.en.eq(running & accel.out.valid & accel.out.ready &
                            (self.out_count < self._out_depth)),
        ]
        with m.If(running & accel.out.valid & accel.out.ready):
            m.d.sync += self.out_count.eq(self.out_count + 1)
        # The accelerator checks a command for CHECK_CYCLES cycles after taking
        # it; its pass starts then, and the status' cycle count with it.
        checked = check_delayed(m, sent, "checked", clear=self.go)
        with m.If(running & sent & accel.status.valid):
            m.d.sync += [running.eq(0), self.status.eq(accel.status.payload)]
        with m.Elif(running & checked):
            m.d.sync += [self.busy.eq(self.busy + 1),
                         self.frozen.eq(self.frozen + ~accel.mem.en)]
        with m.If(running & ~sent & accel.status.valid):
            # A status before the command was taken: there is none to wait
            # for (the bench then sees busy 0 and a status of zeros).
            m.d.sync += running.eq(0)
        return m


async def run_command(dut, cmd, acts, *, p_stall, p_block, seed, timeout):
    """Run one command (an int payload) with its activation words (ints)
    through an `AccelHarness` bench top ``dut``; wait at most ``timeout``
    cycles. Returns ``(status int, result beat ints, frozen, busy)``."""
    await memfile.load(dut, "amem", [(0, acts)])
    await FallingEdge(dut.clk)
    dut.cmd.value = cmd
    dut.act_count.value = len(acts)
    dut.p_stall.value = min(256, round(256 * p_stall))
    dut.p_block.value = min(256, round(256 * p_block))
    dut.seed.value = seed & 0xFFFFFFFF
    dut.go.value = 1
    await FallingEdge(dut.clk)
    dut.go.value = 0
    if not dut.done.value:
        await First(RisingEdge(dut.done), drive.cycles(timeout))
    if not dut.done.value:
        raise AssertionError(f"the accelerator hangs: no status after {timeout} cycles "
                             f"({int(dut.busy.value)} busy, {int(dut.out_count.value)} "
                             f"result beats)")
    if dut.rw_clash.value:
        raise AssertionError("a step used a block-RAM read that met a write to its address "
                             "(the controller's NO_RW_CHECK memories would read undefined data)")
    count = int(dut.out_count.value)
    status = dut.status.value.to_unsigned()
    frozen, busy = int(dut.frozen.value), int(dut.busy.value)
    outs = await memfile.dump(dut, "omem", count)
    return status, outs, frozen, busy


def write_waits(dut):
    """Cycles the last command's writes waited for the write port."""
    return int(dut.write_waits.value)
