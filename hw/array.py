"""The PE array: ``R x C`` SpeqPEs in lockstep, each with its accumulators.

The array executes a stream of *steps*. In one step every PE ``p`` adds one
term (verify: ``a * w_p``) or ``L`` draft terms (draft, ``L`` =
`SpeqConfig.draft_lanes`) to one of its accumulators; the activations of a
step are broadcast to all PEs (to each group of PEs its own with
`SpeqConfig.head_groups` > 1: multi-head passes), the weights are one per
PE. Which accumulator a step uses is its ``slot``; a step
marked ``first`` starts its slot from ``+0.0``, a step marked ``last`` sends
the finished accumulators (one per PE) to the output instead of storing them.

The PE is a stateless pipeline, so the accumulators live beside it, in a small
memory per PE that is read when the PE needs the accumulator (as the step
enters it, or with 8 or more PE stages a cycle later: the PE's first step
does nothing with it) and written when its result leaves the PE. A slot may
therefore be used again only `interleave` steps after its previous use: the
schedule (see ``docs/array.md``) interleaves that many rows per PE.

The remap tables live beside the PE too: a step carries each PE's weight
word undecoded, and ``L`` 8-entry table memories per PE (one per draft lane)
are read with the word as the step enters, like the accumulators, so that
the lookups cost no multiplexers and their read registers stand in for the
step register. A draft step's ``L`` nibbles are the top ``L`` nibbles of its
word (lane ``j`` in nibble ``4 - L + j``), so the last lane reads nibble 3,
which in a SPEQ-16 word is ``{sign, code}``: its table also holds the verify
bases.
"""

import operator

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .config import SpeqConfig
from .decoder import (DRAFT_EXP_BITS, GROUP, NUM_CODES, DraftNibble, DraftOperand, Mode,
                      TableEntry, TableWriteSignature, weight_from_base)
from .fp import FP16, FP32
from .fanout import REPLICA, replicas
from .pe import SpeqPE, unpack16


__all__ = ["SpeqArray", "ValidSignature", "block_ram_attrs", "NO_RW_CHECK"]


def block_ram_attrs(platform):
    """A small memory's attributes: block RAM on an iCE40, which has no LUT
    RAM (Yosys would build it of flip-flops and multiplexers); the tools'
    choice elsewhere."""
    device = getattr(platform, "device", "") or ""
    return {"ram_style": "block"} if device.startswith("iCE40") else None


#: A memory's attributes where no read that is used ever meets a write to
#: its address in the same cycle: Yosys then maps the read port as it is,
#: without the bypass that emulates a non-transparent read on the other port.
NO_RW_CHECK = {"no_rw_check": 1}


class ValidSignature(wiring.Signature):
    """A stream without ``ready``: ``payload`` is taken in the cycle ``valid``
    is high, always (the array's steps and results: it never waits)."""

    def __init__(self, shape):
        super().__init__({"valid": Out(1), "payload": Out(shape)})


# The draft part of a table entry: what the tables of all lanes but the last hold.
_DRAFT_VALUE = data.StructLayout({"exp": signed(DRAFT_EXP_BITS), "half": 1, "zero": 1})


class SpeqArray(wiring.Component):
    """``rows x cols`` reconfigurable PEs with their accumulator memories.

    Parameters
    ----------
    config : SpeqConfig
        Uses ``rows``, ``cols``, ``tmax``, ``draft_lanes`` and the PE's
        parameters.
    tag_bits : int
        Width of a ``tag`` field that travels with each step to its result
        (the controller puts the row and token there); 0 for none.

    Members
    -------
    table : In(TableWriteSignature())
        Writes an entry of the remap tables (of every PE); it holds for the
        steps that enter from the second cycle on (the write is registered
        once per row of PEs, `table_copy`, and written a cycle later). The
        tables are memories: they start as zeros and a reset leaves them as
        they are.
    i : In(ValidSignature(step layout))
        Steps, taken in the cycle they are valid (a cycle without one is a
        bubble): ``mode``, ``plain``, ``first``, ``last``, ``slot``, ``act``
        (``L`` FP16, broadcast; verify uses ``act[0]``), with ``head_groups``
        G > 1 ``head_act`` (``act`` of groups 1 .. G - 1: PE ``p`` takes
        group ``p // (P / G)``'s, group 0 ``act``) and ``word`` (16 bits
        per PE): ``L`` draft nibbles in its top ``4 L`` bits (draft; lane
        ``j`` in nibble ``4 - L + j``), the SPEQ-16 word (verify) or, with
        ``plain`` set, the FP16 weight itself (verify mode without the
        tables: the FP16 baseline).
    o : Out(ValidSignature(result layout))
        For every ``last`` step, exactly ``latency`` cycles later: ``acc``
        (one FP32 per PE), the step's ``slot`` and its ``tag``. The array has
        no enable and never waits: whoever issues steps must have room for
        their results (`hw.controller.PassController` keeps a result buffer
        as deep as the latency).

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
        self._tag_bits = tag_bits
        pes = config.rows * config.cols
        self._pes = [SpeqPE(config, late_acc=True, unpacked_act=True) for _ in range(pes)]
        self._pe_latency = self._pes[0].latency
        self._acc_latency = self._pes[0].acc_latency
        if (self.latency, self.interleave, self._acc_latency) != (
                config.array_latency, config.interleave, config.acc_latency):
            raise AssertionError(
                f"the array's latency, interleave and accumulator latency are {self.latency}, "
                f"{self.interleave} and {self._acc_latency} cycles, not SpeqConfig's "
                f"array_latency = {config.array_latency}, interleave = {config.interleave} "
                f"and acc_latency = {config.acc_latency}")
        # A step's tag is read back the cycle before its result leaves; the
        # next step of its slot must not write its own before (see below).
        if self.interleave + 1 < self.latency - 1:
            raise AssertionError(f"an interleave of {self.interleave} cycles would overwrite "
                                 f"a tag before its result leaves, {self.latency} cycles in")
        act = data.ArrayLayout(FP16, config.draft_lanes)
        step = data.StructLayout({
            "mode": Mode,
            "first": 1,
            "last": 1,
            "slot": range(self.depth),
            "tag": tag_bits,
            "plain": 1,
            "act": act,
            **({"head_act": data.ArrayLayout(act, config.head_groups - 1)}
               if config.head_groups > 1 else {}),
            "word": data.ArrayLayout(16, pes),
        })
        result = data.StructLayout({
            "acc": data.ArrayLayout(FP32, pes),
            "slot": range(self.depth),
            "tag": tag_bits,
        })
        super().__init__({
            "table": In(TableWriteSignature()),
            "i": In(ValidSignature(step)),
            "o": Out(ValidSignature(result)),
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
        """Cycles from a step entering to its result leaving: the table
        lookups and decoding, the accumulator read, then the PE."""
        return 2 + self._pe_latency

    @property
    def interleave(self):
        """Fewest steps between two uses of one slot: the accumulator read
        (addressed in stage D, one cycle after the step entered, or with the
        PE's ``acc_latency`` of 1 in stage A) must see the previous write,
        which lands `latency` cycles after its step entered."""
        return self.latency - 1 - self._acc_latency

    @property
    def depth(self):
        """Accumulators per PE: `interleave` rows times ``tmax`` tokens."""
        return self.interleave * self._config.tmax

    def act_group(self, p):
        """The copy of the step's activations that PE ``p`` takes, unpacked:
        ``(head group, row)``, a copy per row of ``cols`` PEs within each
        head group (`SpeqConfig.head_groups`)."""
        config = self._config
        return p // config.head_pes, p // config.cols

    def table_copy(self, p):
        """The registered copy of the table write that PE ``p``'s tables
        take: one per row of ``cols`` PEs."""
        return p // self._config.cols

    @property
    def act_groups(self):
        """Copies of the step's activations that stage D keeps and unpacks
        (`act_group`): one per row of PEs, and per head group in a row."""
        return len({self.act_group(p) for p in range(self.pes)})

    def elaborate(self, platform):
        m = Module()

        # No enable: every register advances every cycle. A cycle without a
        # step is a bubble (``valid`` low), and a result is never held back.

        # Stage D: the step waits one cycle for its table lookups, and its
        # words are decoded. Only valid bits are reset (a payload without one
        # is never used).
        dstep = Signal.like(self.i.payload, reset_less=True)
        dvalid = Signal()
        m.d.sync += [dstep.eq(self.i.payload), dvalid.eq(self.i.valid)]

        # Stage A: the decoded step waits one cycle for its accumulators. The
        # decoding has a register of its own, so the PE's first stage starts
        # from registered operands.
        # Only the fields stage A and the PE use move on: the words end in
        # stage D, the tag waits in its memory, the mode, first flag and
        # activations go to each PE's copies (below).
        step = Signal(data.StructLayout({"last": 1, "slot": range(self.depth)}),
                      reset_less=True)
        valid = Signal()
        m.d.sync += [step.last.eq(dstep.last), step.slot.eq(dstep.slot)]
        m.d.sync += valid.eq(dvalid)

        # The step's slot and last flag travel beside the PE pipeline.
        slots, last = [step.slot], step.last
        for stage in range(self._pe_latency):
            next_slot = Signal.like(step.slot, name=f"slot_{stage}", reset_less=True)
            next_last = Signal(name=f"last_{stage}", reset_less=True)
            m.d.sync += [next_slot.eq(slots[-1]), next_last.eq(last)]
            slots.append(next_slot)
            last = next_last
        slot = slots[-1]
        # Its tag waits in a memory indexed by slot instead: written in stage
        # D, read the cycle before its result leaves. The next step of the slot
        # reaches stage D `interleave` cycles later at the earliest: the cycle
        # the result leaves, or (``acc_latency`` 1) the cycle the tag is read,
        # whose read port is not transparent, so it still sees this step's tag.
        tag = Signal(self._tag_bits)
        if self._tag_bits:
            tags = m.submodules.tags = memory.Memory(shape=self._tag_bits, depth=self.depth,
                                                     init=[])
            tag_write, tag_read = tags.write_port(), tags.read_port()
            m.d.comb += [
                tag_write.addr.eq(dstep.slot),
                tag_write.data.eq(dstep.tag),
                tag_write.en.eq(dvalid),
                tag_read.addr.eq(slots[-2]),
                tag.eq(tag_read.data),
            ]

        # Each PE's copy of the step's mode, first flag and activations
        # (`hw.fanout`), loaded from stage D as ``step`` is: from one
        # register, the activations reached every PE's decoding and
        # multiplier across the die (with pe_stages 7 on the 6x6 ULX3S board:
        # step.act -> 10.7 ns of routing -> the PE's unpacking -> its
        # multiplier, 46.10 MHz), and ``first`` chose every PE's 32
        # accumulator bits.
        # The accumulators are read a cycle before the PE takes them: their
        # address is the slot of stage D, or of the PE stage before
        # ``acc_latency``; ``first`` (each PE's copy) is loaded alongside.
        acc_slot, acc_first = dstep.slot, dstep.first
        for stage in range(self._acc_latency):
            acc_slot = slots[stage]
            delayed = Signal(name=f"first_{stage}", reset_less=True)
            m.d.sync += delayed.eq(acc_first)
            acc_first = delayed
        # The activations are unpacked once per row of PEs (`act_groups`;
        # `hw.pe.unpack16`), each row from a copy of stage D's activations
        # of its head group (`hw.fanout`), and each PE takes a registered
        # copy of its row's unpacked form. Unpacked in each PE, from each
        # PE's copy, they cost 67 TRELLIS_COMB per PE of the 6x6 array
        # (docs/results.md); unpacked once for all, the unpacked form was
        # one net to every PE (with round_stages 2 the 6x6 ULX3S board's
        # critical path at b9d9d27: dstep -> its unpacking -> pe14's copy,
        # 1.94 ns of logic and 14.5 of routing, 59.07 MHz).
        pes = len(self._pes)
        lanes = self._config.draft_lanes
        act_layout = self._pes[0].act_layout
        fp16_layout = self.i.payload.act.shape()
        groups = {}
        for p in range(pes):
            key = self.act_group(p)
            if key not in groups:
                head, row = key
                fp16 = Signal(fp16_layout, name=f"act_h{head}_r{row}", reset_less=True,
                              attrs=REPLICA)
                m.d.sync += fp16.eq(self.i.payload.act if head == 0
                                    else self.i.payload.head_act[head - 1])
                group = Signal(data.ArrayLayout(act_layout, lanes),
                               name=f"act_unpacked_h{head}_r{row}")
                for j in range(lanes):
                    m.d.comb += group[j].eq(
                        unpack16(m, fp16[j], act_layout, f"act_h{head}_r{row}_{j}"))
                groups[key] = group
        modes = replicas(self.i.payload.mode.shape(), pes, "pe_mode")
        firsts = replicas(1, pes, "pe_first")
        acts = replicas(data.ArrayLayout(act_layout, lanes), pes, "pe_act")
        for p in range(pes):
            m.d.sync += [modes[p].eq(dstep.mode), firsts[p].eq(acc_first),
                         acts[p].eq(groups[self.act_group(p)])]

        # The table write, a register per row of PEs (`table_copy`): as one
        # net from the controller's register to the tables of every PE it
        # was the 6x6 ULX3S board's critical path with nextpnr's static
        # placer (17.23 ns of routing on ``table.zero``).
        write_layout = data.StructLayout({name: member.shape for name, member
                                          in self.table.signature.members.items()})
        table_rows = replicas(write_layout, self._config.rows, "table_row")
        for copy in table_rows:
            m.d.sync += [copy[name].eq(getattr(self.table, name))
                         for name in write_layout.members]

        pe_valid = None
        for p, pe in enumerate(self._pes):
            m.submodules[f"pe{p}"] = pe
            table = table_rows[self.table_copy(p)]
            draft_d, weight_d = self._decode(m, platform, p, dstep, table)
            draft = Signal.like(draft_d, name=f"pe{p}_draft_a", reset_less=True)
            weight = Signal.like(weight_d, name=f"pe{p}_weight_a", reset_less=True)
            m.d.sync += [draft.eq(draft_d), weight.eq(weight_d)]
            acc = memory.Memory(shape=FP32, depth=self.depth, init=[])
            m.submodules[f"acc{p}"] = acc
            write = acc.write_port()
            read = acc.read_port(transparent_for=(write,))
            m.d.comb += [
                read.addr.eq(acc_slot),
                pe.i.valid.eq(valid),
                pe.i.payload.mode.eq(modes[p]),
                pe.i.payload.acc.eq(Mux(firsts[p], 0, read.data.as_value())),
                pe.i.payload.act.eq(acts[p]),
                pe.i.payload.weight.eq(weight),
                pe.i.payload.draft.eq(draft),
                pe.o.ready.eq(1),
                write.addr.eq(slot),
                write.data.eq(pe.o.payload.acc),
                write.en.eq(pe.o.valid & ~last),
                self.o.payload.acc[p].eq(pe.o.payload.acc),
            ]
            pe_valid = pe.o.valid
        m.d.comb += [
            self.o.valid.eq(pe_valid & last),
            self.o.payload.slot.eq(slot),
            self.o.payload.tag.eq(tag),
        ]
        return m

    def _decode(self, m, platform, p, step, table):
        """PE ``p``'s table memories, read as a step enters; returns its draft
        operands and verify weight, decoded from the step in stage D
        (``step``), for the caller to register. ``table`` is the write of
        the tables, the row's copy.

        An iCE40 has no LUT RAM, and Yosys would build the tables out of
        flip-flops and multiplexers: they are made block RAMs there.
        """
        attrs = block_ram_attrs(platform)
        word_in, word = self.i.payload.word[p], step.word[p]
        lanes = self._config.draft_lanes
        draft = Signal(data.ArrayLayout(DraftOperand, lanes), name=f"pe{p}_draft")
        base = None
        for lane in range(lanes):
            # The last lane reads nibble 3, the SPEQ-16 word's {sign, code}:
            # its table also holds the bases of the verify decoding.
            shape = TableEntry if lane == lanes - 1 else _DRAFT_VALUE
            nibble = 4 * (GROUP - lanes + lane)
            mem = memory.Memory(shape=shape, depth=NUM_CODES, init=[], attrs=attrs)
            m.submodules[f"pe{p}_table{lane}"] = mem
            write, read = mem.write_port(), mem.read_port()
            m.d.comb += [
                write.en.eq(table.en),
                write.addr.eq(table.code),
                read.addr.eq(DraftNibble(word_in[nibble:nibble + 4]).code),
                draft[lane].sign.eq(DraftNibble(word[nibble:nibble + 4]).sign),
            ]
            for name, _ in data.Layout.cast(shape):
                m.d.comb += write.data[name].eq(getattr(table, name))
            for name, _ in data.Layout.cast(_DRAFT_VALUE):
                m.d.comb += draft[lane][name].eq(read.data[name])
            if shape is TableEntry:
                base = read.data.base
        decoded, _ = weight_from_base(m, base, word, f"pe{p}_verify")
        weight = Mux(step.plain, word, decoded)
        return draft, weight
