"""The PE array: ``R x C`` SpeqPEs in lockstep, each with its accumulators.

The array executes a stream of *steps*. In one step every PE ``p`` adds one
term (verify: ``a * w_p``) or one draft word (draft: four draft terms) to one
of its accumulators; the activations of a step are broadcast to all PEs, the
weights are one per PE. Which accumulator a step uses is its ``slot``; a step
marked ``first`` starts its slot from ``+0.0``, a step marked ``last`` sends
the finished accumulators (one per PE) to the output instead of storing them.

The PE is a stateless pipeline, so the accumulators live beside it, in a small
memory per PE that is read when a step enters and written when its result
leaves the PE, ``latency`` cycles later. A slot may therefore be used again
only `interleave` steps after its previous use: the schedule (see
``docs/array.md``) interleaves that many rows per PE.
"""

import operator

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import SpeqConfig
from .decoder import DRAFT_LANES, DraftOperand, Mode
from .fp import FP16, FP32
from .pe import SpeqPE


__all__ = ["SpeqArray"]


class SpeqArray(wiring.Component):
    """``rows x cols`` reconfigurable PEs with their accumulator memories.

    Parameters
    ----------
    config : SpeqConfig
        Uses ``rows``, ``cols``, ``tmax`` and the PE's parameters.
    tag_bits : int
        Width of a ``tag`` field that travels with each step to its result
        (the controller puts the row and token there); 0 for none.

    Members
    -------
    i : In(stream.Signature(step layout))
        Steps: ``mode``, ``first``, ``last``, ``slot``, ``act`` (4 FP16,
        broadcast; verify uses ``act[0]``), ``weight`` (one FP16 per PE,
        verify) and ``draft`` (four draft operands per PE, draft).
    o : Out(stream.Signature(result layout))
        For every ``last`` step, ``latency`` cycles later: ``acc`` (one FP32
        per PE), the step's ``slot`` and its ``tag``. A stalled output freezes
        the array.

    Raises
    ------
    TypeError
        If ``config`` is not a `SpeqConfig` or ``tag_bits`` not an integer.
    ValueError
        If ``tag_bits`` is negative.
    """

    def __init__(self, config=SpeqConfig(), *, tag_bits=0):
        if not isinstance(config, SpeqConfig):
            raise TypeError(f"config must be a SpeqConfig, not {config!r}")
        tag_bits = operator.index(tag_bits)
        if tag_bits < 0:
            raise ValueError(f"tag_bits must be at least 0, not {tag_bits}")
        self._config = config
        pes = config.rows * config.cols
        self._pes = [SpeqPE(config) for _ in range(pes)]
        self._pe_latency = self._pes[0].latency
        step = data.StructLayout({
            "mode": Mode,
            "first": 1,
            "last": 1,
            "slot": range(self.depth),
            "tag": tag_bits,
            "act": data.ArrayLayout(FP16, DRAFT_LANES),
            "weight": data.ArrayLayout(FP16, pes),
            "draft": data.ArrayLayout(data.ArrayLayout(DraftOperand, DRAFT_LANES), pes),
        })
        result = data.StructLayout({
            "acc": data.ArrayLayout(FP32, pes),
            "slot": range(self.depth),
            "tag": tag_bits,
        })
        super().__init__({
            "i": In(stream.Signature(step)),
            "o": Out(stream.Signature(result)),
        })

    @property
    def config(self):
        return self._config

    @property
    def pes(self):
        """Number of PEs, ``rows * cols``."""
        return self._config.rows * self._config.cols

    @property
    def latency(self):
        """Cycles from a step entering to its result leaving: the accumulator
        read, then the PE."""
        return 1 + self._pe_latency

    @property
    def interleave(self):
        """Fewest steps between two uses of one slot (the read must see the
        previous write, which lands `latency` cycles after its step entered)."""
        return self.latency

    @property
    def depth(self):
        """Accumulators per PE: `interleave` rows times ``tmax`` tokens."""
        return self.interleave * self._config.tmax

    def elaborate(self, platform):
        m = Module()

        # One enable for everything: the array only waits for its output.
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]

        # Stage A: the step waits one cycle for its accumulators.
        step = Signal.like(self.i.payload)
        valid = Signal()
        with m.If(en):
            m.d.sync += [step.eq(self.i.payload), valid.eq(self.i.valid)]

        # The step's slot, tag and last flag travel beside the PE pipeline.
        slot, tag, last = step.slot, step.tag, step.last
        for stage in range(self._pe_latency):
            next_slot = Signal.like(slot, name=f"slot_{stage}")
            next_tag = Signal.like(tag, name=f"tag_{stage}")
            next_last = Signal(name=f"last_{stage}")
            with m.If(en):
                m.d.sync += [next_slot.eq(slot), next_tag.eq(tag), next_last.eq(last)]
            slot, tag, last = next_slot, next_tag, next_last

        pe_valid = None
        for p, pe in enumerate(self._pes):
            m.submodules[f"pe{p}"] = pe
            acc = memory.Memory(shape=FP32, depth=self.depth, init=[])
            m.submodules[f"acc{p}"] = acc
            write = acc.write_port()
            read = acc.read_port(transparent_for=(write,))
            m.d.comb += [
                read.addr.eq(self.i.payload.slot),
                read.en.eq(en),
                pe.i.valid.eq(valid),
                pe.i.payload.mode.eq(step.mode),
                pe.i.payload.acc.eq(Mux(step.first, 0, read.data.as_value())),
                pe.i.payload.act.eq(step.act),
                pe.i.payload.weight.eq(step.weight[p]),
                pe.i.payload.draft.eq(step.draft[p]),
                pe.o.ready.eq(en),
                write.addr.eq(slot),
                write.data.eq(pe.o.payload.acc),
                write.en.eq(en & pe.o.valid & ~last),
                self.o.payload.acc[p].eq(pe.o.payload.acc),
            ]
            pe_valid = pe.o.valid
        m.d.comb += [
            self.o.valid.eq(pe_valid & last),
            self.o.payload.slot.eq(slot),
            self.o.payload.tag.eq(tag),
        ]
        return m
