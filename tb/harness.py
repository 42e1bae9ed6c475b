# amaranth: UnusedElaboratable=no
"""A thin harness that streams a batch through a block without Python per cycle.

Driving a stream from cocotb costs two awaits and a handful of handle
accesses per simulated cycle, which is most of a bench's run time. The
harness instead holds a batch of input payloads in a memory and collects the
outputs (and when each one moved) in memories of its own; Python writes the
batch, starts it, waits once for ``done`` and reads the results back, all
through direct memory accesses.

`StreamHarness` wraps a component with an ``i`` (input) and an ``o``
(output) `lib.stream` interface and re-exports its other ports, which the
bench drives as before (e.g. the remap-table write port). Inside it:

- ``i.valid`` follows the stream rules at random: once raised it holds, with
  its payload, until the transfer; a new payload is offered on a cycle with
  probability ``p_valid / 256``;
- ``o.ready`` is high on a cycle with probability ``p_ready / 256``;
- the random draws come from two xorshift generators seeded by ``seed``;
- a *violation* is counted when an output's valid drops, or its payload
  changes, while it waits for ``ready``.

Per input it records the cycle it was first offered and the cycle and
*enabled edge* (rising edges with ``o.ready`` high, which advance a block
with a global stall) it was taken on; per output its payload, the cycle it
first became visible and the enabled edge it was accepted on.
"""

import numpy as np

from cocotb.triggers import FallingEdge, First, RisingEdge

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from tb import drive, memfile


__all__ = ["StreamHarness", "run_batch", "start_batch", "finish_batch", "read_words", "xorshift",
           "TIME_BITS"]


#: Width of the cycle and edge counters the harness records.
TIME_BITS = 32
#: The input side's records and the output side's, in the order `run_batch` returns.
_IN_RECORDS = ("offer_cycle", "take_cycle", "take_edge")
_OUT_RECORDS = ("visible_cycle", "accept_edge")


def xorshift(m, name, load, seed):
    """A 32-bit xorshift generator stepping every cycle, set to ``seed`` when
    ``load``; returns its state."""
    state = Signal(32, name=name, init=1)
    x1 = state ^ (state << 13)[:32]
    x2 = x1 ^ (x1 >> 17)
    x3 = x2 ^ (x2 << 5)[:32]
    with m.If(load):
        # A zero state would stay zero.
        m.d.sync += state.eq(Mux(seed == 0, 1, seed))
    with m.Else():
        m.d.sync += state.eq(x3)
    return state


class StreamHarness(wiring.Component):
    """A batch streamer around ``dut`` (module docstring).

    Parameters
    ----------
    dut : wiring.Component
        Has ``i: In(stream.Signature(...))`` and ``o: Out(stream.Signature(...))``.
    depth : int
        Most inputs (and outputs) of one batch.

    Members
    -------
    go : In(1)
        Start a batch (one cycle): ``count_in`` inputs, until ``count_out``
        outputs have been accepted.
    count_in, count_out : In
    p_valid, p_ready : In(9)
        Probabilities, in 1/256, of offering an input and of accepting an
        output on a cycle (256: always).
    seed : In(32)
        Seeds the random draws at ``go``.
    done : Out(1)
        The batch's outputs are all in.
    violations : Out(16)
        Stream rule violations of the output seen in the batch.
    cycles : Out(TIME_BITS)
        Cycles since ``go``.
    The other members of ``dut``, unchanged.
    """

    def __init__(self, dut, *, depth):
        self._dut = dut
        self._depth = depth
        self._in_width = len(dut.i.payload.as_value())
        self._out_width = len(dut.o.payload.as_value())
        members = {
            "go": In(1), "count_in": In(range(depth + 1)), "count_out": In(range(depth + 1)),
            "p_valid": In(9), "p_ready": In(9), "seed": In(32),
            "done": Out(1), "violations": Out(16), "cycles": Out(TIME_BITS),
            **memfile.members(),
        }
        for name, member in dut.signature.members.items():
            if name not in ("i", "o"):
                members[name] = member
        super().__init__(members)

    #: The memories the bench loads and dumps through files (`tb.memfile`).
    memfiles = ("stim", "result") + _IN_RECORDS + _OUT_RECORDS

    @property
    def dut(self):
        return self._dut

    @property
    def depth(self):
        return self._depth

    def elaborate(self, platform):
        m = Module()
        dut, depth = self._dut, self._depth
        m.submodules.dut = dut
        for name in self.signature.members:
            if name in dut.signature.members:
                wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(dut, name))

        # The memories sit in the top module, where tb.memfile's block loads
        # and dumps them through files.
        m.submodules.stim = stim = memory.Memory(shape=self._in_width, depth=depth, init=[])
        m.submodules.result = result = memory.Memory(shape=self._out_width, depth=depth, init=[])
        records = {}
        for name in _IN_RECORDS + _OUT_RECORDS:
            m.submodules[name] = records[name] = memory.Memory(
                shape=TIME_BITS, depth=depth, init=[])

        running = Signal()
        cycle = Signal(TIME_BITS)
        edges = Signal(TIME_BITS)
        sent = Signal(range(depth + 1))
        received = Signal(range(depth + 1))
        valid_draw = xorshift(m, "valid_rng", self.go, self.seed)[:8] < self.p_valid
        ready_draw = xorshift(m, "ready_rng", self.go, self.seed ^ 0x9E3779B9)[:8] < self.p_ready

        m.d.comb += [self.cycles.eq(cycle), self.done.eq(~running & ~self.go)]
        with m.If(self.go):
            m.d.sync += [running.eq(1), cycle.eq(0), edges.eq(0), sent.eq(0), received.eq(0),
                         self.violations.eq(0)]
        with m.Elif(running):
            m.d.sync += cycle.eq(cycle + 1)
            with m.If(dut.o.ready):
                m.d.sync += edges.eq(edges + 1)
            with m.If(received == self.count_out):
                m.d.sync += running.eq(0)

        # -- input: offer at random, hold until taken ---------------------------------
        stim_read = stim.read_port(domain="comb")
        offering = Signal()
        taken = dut.i.valid & dut.i.ready
        m.d.comb += [
            stim_read.addr.eq(sent),
            dut.i.payload.eq(stim_read.data),
            dut.i.valid.eq(offering),
        ]
        with m.If(running & (offering | (sent < self.count_in))):
            # A new offer starts on a cycle without one (or after a transfer).
            with m.If(~offering | taken):
                m.d.sync += offering.eq((sent + taken < self.count_in) & valid_draw)
        with m.Else():
            m.d.sync += offering.eq(0)
        with m.If(taken):
            m.d.sync += sent.eq(sent + 1)

        def record(name, addr, value, en):
            port = records[name].write_port()
            m.d.comb += [port.addr.eq(addr), port.data.eq(value), port.en.eq(en)]

        offered_before = Signal()           # the current input was offered before
        with m.If(taken | ~running):
            m.d.sync += offered_before.eq(0)
        with m.Elif(offering):
            m.d.sync += offered_before.eq(1)
        record("offer_cycle", sent, cycle, running & offering & ~offered_before)
        record("take_cycle", sent, cycle, taken)
        record("take_edge", sent, edges, taken)

        # -- output: accept at random, check that a waiting output holds ----------------
        ready = Signal()
        m.d.comb += [ready.eq(running & ready_draw), dut.o.ready.eq(ready)]
        accepted = dut.o.valid & ready
        waiting = Signal()                  # an output was valid and not accepted last cycle
        waiting_payload = Signal(self._out_width)
        seen = Signal()                     # the current output has been visible before
        m.d.sync += [waiting.eq(running & dut.o.valid & ~ready),
                     waiting_payload.eq(dut.o.payload.as_value())]
        with m.If(running & waiting & (~dut.o.valid |
                                       (dut.o.payload.as_value() != waiting_payload))):
            m.d.sync += self.violations.eq(self.violations + 1)
        with m.If(accepted | ~running):
            m.d.sync += seen.eq(0)
        with m.Elif(dut.o.valid):
            m.d.sync += seen.eq(1)
        result_write = result.write_port()
        m.d.comb += [result_write.addr.eq(received), result_write.data.eq(dut.o.payload.as_value()),
                     result_write.en.eq(accepted)]
        record("visible_cycle", received, cycle, running & dut.o.valid & ~seen)
        record("accept_edge", received, edges, accepted)
        with m.If(accepted):
            m.d.sync += received.eq(received + 1)
        return m


def read_words(memory, count):
    """Words ``0 .. count - 1`` of memory handle ``memory`` as ints, one VPI
    access per word; a word with an X or Z bit raises ValueError, as
    ``.value.to_unsigned()`` does. The harnesses' own memories go through
    files instead (`tb.memfile.dump`); this is for a memory without one."""
    return [int(memory[j]._handle.get_signal_val_binstr(), 2) for j in range(count)]


async def run_batch(dut, payloads, count_out, *, p_valid, p_ready, seed, timeout=None,
                    records=_IN_RECORDS + _OUT_RECORDS):
    """Stream ``payloads`` (ints) through a `StreamHarness` bench top ``dut``.

    Loads the inputs into ``dut.stim``, starts the batch, waits for
    ``done`` (at most ``timeout`` cycles, default 100 per input plus 10,000)
    and dumps the outputs, with the time records named in ``records``
    (`tb.memfile`; a bench reads those it checks): `start_batch`, then
    `finish_batch`.

    Returns
    -------
    dict
        ``result`` (list of output payload ints), ``violations``, ``cycles``,
        and the time records of ``records`` as NumPy int64 arrays:
        ``offer_cycle``, ``take_cycle``, ``take_edge`` (per input),
        ``visible_cycle``, ``accept_edge`` (per output).
    """
    await start_batch(dut, payloads, count_out, p_valid=p_valid, p_ready=p_ready, seed=seed)
    return await finish_batch(dut, len(payloads), count_out, timeout=timeout, records=records)


async def start_batch(dut, payloads, count_out, *, p_valid, p_ready, seed):
    """The first half of `run_batch`: load the inputs, start the batch.
    Returns at the falling edge after the cycle of ``go`` (the harness's
    ``cycles`` is 0 then)."""
    await memfile.load(dut, "stim", [(0, payloads)])
    await FallingEdge(dut.clk)
    dut.count_in.value = len(payloads)
    dut.count_out.value = count_out
    dut.p_valid.value = min(256, max(0, round(256 * p_valid)))
    dut.p_ready.value = min(256, max(0, round(256 * p_ready)))
    dut.seed.value = seed & 0xFFFFFFFF
    dut.go.value = 1
    await FallingEdge(dut.clk)
    dut.go.value = 0


async def finish_batch(dut, count_in, count_out, *, timeout=None,
                       records=_IN_RECORDS + _OUT_RECORDS):
    """The second half of `run_batch`: wait for ``done``, dump the results."""
    unknown = set(records) - set(_IN_RECORDS + _OUT_RECORDS)
    if unknown:
        raise ValueError(f"no such records: {', '.join(sorted(unknown))}")
    limit = timeout if timeout is not None else 100 * count_in + 10_000
    done = RisingEdge(dut.done)
    if not dut.done.value:
        await First(done, drive.cycles(limit))
    if not dut.done.value:
        raise AssertionError(f"the batch did not finish in {limit} cycles: "
                             f"{int(dut.cycles.value)} cycles run")
    out = {"violations": int(dut.violations.value), "cycles": int(dut.cycles.value),
           "result": await memfile.dump(dut, "result", count_out)}
    for name in records:
        count = count_in if name in _IN_RECORDS else count_out
        out[name] = np.array(await memfile.dump(dut, name, count), np.int64)
    return out
