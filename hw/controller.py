"""The pass controller: one command in, one pass of steps to the array, one status out.

A pass computes ``Y[T x N] = X[T x K] . W[N x K]^T`` in one of three modes
(``docs/array.md`` has the dataflow and timing diagrams):

- draft: ``T = 1``, reads the draft plane only (4 bits per weight), ``L``
  weights per PE and step (``L`` = `SpeqConfig.draft_lanes`);
- verify: ``T = 1 .. tmax``, reads the draft and residual planes (16 bits per
  weight) and restores the exact FP16 weights through the remap tables;
- baseline: ``T = 1 .. tmax``, reads plain FP16 weights (the FP16 decode
  step's linear layers with T = 1);
- kv: ``T = 1 .. tmax``, attention over a cached K or V^T held in the KV
  cache's two byte planes (SPEC section 2a): reads the high and the low plane
  and joins them into the exact FP16 values;
- kv_draft: the same over the high plane alone (8 bits per value), each
  value read as the draft's value of it (`golden.speq16.kv_draft`: the low
  byte at its midpoint ``0x80``, or ``0x00`` under exponent field 31).

Four engines run side by side during a pass, all frozen together by the
controller's enable ``en`` (low while the memory stalls, and on the cycle
after one on which the output was blocked: the output's ready reaches it
through a flip-flop); the array is not: it has no enable
(`hw.array.SpeqArray`):

1. the *activation loader* takes the ``T x K/4`` activation words of the pass
   into the activation buffer;
2. the *fetcher* requests the weight beats of one *group* (4 columns of K for
   every row slot of a tile) after another, as long as one of the two halves
   of the weight buffer is free;
3. the *lander* writes the returning beats into that half, in request order;
4. the *issuer* walks a landed group's steps (``docs/array.md``), reads the
   weights and activations of each, decodes them and hands the step to the
   array; when a group's last step has left, its buffer half is free again.

Results are rounded to FP16 in a stage of their own as they leave the
array, pass through a result buffer and leave through an output register; a status with the pass'
counters follows the last one.

The array runs on while the engines are frozen: a frozen cycle sends it a
bubble, and the results of steps already inside it come out on time, into
a *result buffer* of ``result_latency + 1`` entries. The controller takes
each result on the advancing cycle on which it would have arrived from an
array frozen with the engines (a shift register of the ``last`` steps,
advanced with ``en``, says when), so a pass takes the cycles of the cycle
model whatever the stalls, and ``en`` reaches no register of the array.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, exact_log2

from .array import NO_RW_CHECK, ValidSignature, block_ram_attrs
from .fanout import REPLICA, replicas
from .decoder import DRAFT_EXP_BITS, GROUP, Mode, NUM_CODES, TableWriteSignature
from .fp import FP16, FP32, fp32_to_fp16
from golden.schedule import PLANE_WORDS


__all__ = ["Op", "Error", "Command", "Status", "MemPortSignature", "result_layout",
           "PassController", "N_BITS", "ADDR_BITS", "COUNTER_BITS", "CHECK_CYCLES",
           "check_delayed", "CHUNK_BITS"]


#: Width of ``N`` and of the output row index: N up to 65,535.
N_BITS = 16
#: Width of a weight memory address (in units of ``mem_bits``-wide words).
ADDR_BITS = 32
#: Width of the bit and MAC counters (the cycle counter has 32 bits).
COUNTER_BITS = 48


class Op(enum.Enum, shape=3):
    """What a command asks for. Code 7 is refused with `Error.BAD_OP`, and
    KV_WRITE where the accelerator has no write path (`hw.kv_writer.supports`)."""

    DRAFT = 0
    VERIFY = 1
    BASELINE = 2
    TABLE = 3
    KV = 4          # attention over the KV cache's two byte planes (exact)
    KV_DRAFT = 5    # attention over its high plane, as the draft reads it
    KV_WRITE = 6    # new keys or values into the KV cache's byte planes (hw.kv_writer)


class Error(enum.Enum, shape=3):
    """Why a command was refused (``OK`` when it was carried out)."""

    OK = 0
    BAD_OP = 1
    BAD_N = 2      # N = 0; a KV_WRITE's positions or rows past its image, or its head past the groups
    BAD_K = 3      # K = 0, not a multiple of 4, or above kmax
    BAD_T = 4      # T = 0, above tmax, or not 1 in a draft pass
    NO_TABLE = 5   # a draft or verify pass before every remap table entry was written
    READ_ERROR = 6  # reported by the AXI top (hw/axi.py) only: a weight read answered an error
    ABORTED = 7     # reported by the AXI top only: CONTROL.ABORT stopped the command


class Command(data.Struct):
    """One command.

    Passes use ``n``, ``k``, ``t``, the word addresses ``addr0`` (draft
    plane, the plain FP16 weights of a baseline pass, or the KV cache's high
    byte plane) and ``addr1`` (residual plane of a verify pass, low byte
    plane of a kv pass), and ``fp16``: also send every result
    rounded to FP16 (``fl16``, for the next layer). ``TABLE`` writes entry ``code`` of the
    remap tables: ``base``, and the draft value ``exp``/``half``/``zero``.
    ``KV_WRITE`` writes positions ``pos .. pos + t - 1`` of a keys image
    (``vt`` = 0: ``n`` rows = the capacity, ``k`` = the head dimension) or
    a values image (``vt`` = 1: ``n`` rows of one tile, ``k`` = the
    capacity) whose planes are at ``addr0`` and ``addr1`` (`hw.kv_writer`).
    ``multihead`` makes a pass a multi-head pass (`golden.perf`): ``n``,
    ``k`` and ``t`` are per head, its images hold the ``head_groups`` heads'
    rows, each on its group of PEs, and each head's activations follow the
    previous head's; a KV_WRITE with ``multihead`` writes head ``head``'s
    positions into multi-head images (`hw.kv_writer`).
    """

    op: Op
    n: N_BITS
    k: 16
    t: 5
    addr0: ADDR_BITS
    addr1: ADDR_BITS
    fp16: 1
    code: range(NUM_CODES)
    base: 7
    exp: signed(DRAFT_EXP_BITS)
    half: 1
    zero: 1
    pos: 16
    vt: 1
    multihead: 1
    head: 8


#: Cycles from the cycle a command is taken to the cycle its pass starts (or,
#: for a refused command or a table write, to the cycle before its status is
#: valid): the cycle the controller checks it in, from a register.
CHECK_CYCLES = 1


def check_delayed(m, value, name, clear=None):
    """``value`` (a 1-bit signal) delayed by `CHECK_CYCLES` cycles, in
    registers named ``name<i>``, all cleared when ``clear``: the cycle a
    pass starts, for its command's take (the AXI top's read master, the
    accelerator bench's busy count)."""
    stages = [value] + [Signal(name=f"{name}{i}") for i in range(CHECK_CYCLES)]
    m.d.sync += [later.eq(now) for now, later in zip(stages, stages[1:])]
    if clear is not None:
        with m.If(clear):
            m.d.sync += [later.eq(0) for later in stages[1:]]
    return stages[-1]


class Status(data.Struct):
    """The answer to one command: its op, error, and the pass' counters.

    ``cycles`` counts from the cycle after the pass started (two cycles
    after its command was taken: the command is checked in between) to the
    cycle the status became valid, frozen cycles included; ``bits`` is the weight
    bits read; ``macs`` the MACs the PEs did (``L`` per draft step and PE, one
    per verify or baseline step and PE; padding rows of a tile included).
    """

    op: Op
    error: Error
    cycles: 32
    bits: COUNTER_BITS
    macs: COUNTER_BITS


#: Widest memory of the weight buffer, in bits: a wider buffer is built of
#: several, each with its own copy of the addresses (`hw.fanout`).
CHUNK_BITS = 256


class MemPortSignature(wiring.Signature):
    """Read port of the weight memory, seen from the controller.

    Members
    -------
    req : Out(1)
        Read the ``mem_bits`` word at ``addr`` (only counted while ``en``).
        It depends on no input of the port (not on ``en`` or ``stall``),
        so a memory may raise ``stall`` because of it.
    addr : Out(ADDR_BITS)
    en : Out(1)
        The accelerator advances this cycle. The memory is a pipeline that
        advances with it: a request's data comes back (``valid``) a fixed
        number of advancing cycles later, in request order.
    valid : In(1)
    data : In(mem_bits)
    stall : In(1)
        The memory cannot serve this cycle: the whole accelerator waits.
    """

    def __init__(self, mem_bits):
        super().__init__({
            "req": Out(1), "addr": Out(ADDR_BITS), "en": Out(1),
            "valid": In(1), "data": In(mem_bits), "stall": In(1),
        })


def result_layout(config):
    """One output beat: the results of one step for all PEs.

    ``acc[p]`` is ``Y[token, row + p]`` (rows at or past ``N`` are padding);
    in a multi-head pass head ``q``'s ``Y_q[token, row + p - q P / G]`` for
    PE ``p`` of group ``q`` (``head_groups`` G, ``P`` PEs);
    ``half[p]`` is ``fl16(acc[p])`` when the command asked for ``fp16``, else 0
    (always 0 from a controller built with ``round_results=False``).
    """
    pes = config.rows * config.cols
    return data.StructLayout({
        "row": N_BITS,
        "token": range(config.tmax),
        "acc": data.ArrayLayout(FP32, pes),
        "half": data.ArrayLayout(FP16, pes),
    })


def result_groups(config):
    """The PEs of each group of the result buffer and the output register
    (`PassController`): a row of the array each, as `range` objects."""
    return [range(r * config.cols, (r + 1) * config.cols) for r in range(config.rows)]


class PassController(wiring.Component):
    """Sequences passes on a `hw.array.SpeqArray`.

    Parameters
    ----------
    config : SpeqConfig
    array : SpeqArray
        The array it drives (built with ``tag_bits=`` `PassController.tag_bits`).
    kv_write : bool, optional
        Build the KV write path (default: where ``mem_bits`` allows it).
    round_results : bool, optional
        Round every PE's result to FP16 for ``out.payload.half`` (default).
        False leaves ``half`` zero for a system that rounds the results it
        takes one at a time (the board: `hw.board.SpeqBoard`), sparing a
        rounder per PE and the FP16 half of the result buffer.
    registered_tests : bool, optional
        The issuer's and weight walkers' tests of their counters (last
        beat, slot, group, tile, token) in flip-flops loaded beside the
        counters (default): the enables then meet a LUT or two of
        flip-flops. False works them out from the counters: the same
        cycles, fewer logic cells (about 200 on the iCEBreaker's board),
        longer paths.

    Members
    -------
    cmd : In(stream.Signature(Command))
        Taken only when no status is waiting and no command is checked or
        running; a command is taken into a register and checked there, and
        its pass starts (or its status, for a refused command or a table
        write, becomes valid) in the cycle after.
    act : In(stream.Signature(ArrayLayout(FP16, 4)))
        The activations of a pass, ``X[t, 4g .. 4g+3]`` for ``t`` then ``g``
        ascending, sent after its command (none for a refused command); in a
        multi-head pass head 0's, then head 1's, and so on.
    mem : Out(MemPortSignature(mem_bits))
    table : Out(TableWriteSignature())
        To the array's remap tables (``TABLE`` commands).
    step : Out(array step stream)
        To the array's input (always taken: the array has no enable; a
        frozen cycle sends no step).
    result : In(array result stream)
        The array's results, each ``array.latency`` cycles after its step
        (always taken).
    out : Out(stream.Signature(result_layout(config)))
    status : Out(stream.Signature(Status))

    Raises
    ------
    ValueError
        If ``mem_bits`` does not divide ``16 x rows x cols``, ``kv_write``
        is asked for where the memory port does not allow it, or an option
        is not True or False (``kv_write`` may also be None).
    """

    def __init__(self, config, array, *, kv_write=None, round_results=True,
                 registered_tests=True):
        from .kv_writer import supports, write_layout
        self.check(config, kv_write=kv_write, round_results=round_results,
                   registered_tests=registered_tests)
        self._config = config
        self._array = array
        self._kv_write = supports(config) if kv_write is None else kv_write
        self._round_results = round_results
        self._registered_tests = registered_tests
        # Not a port: a bench's witness of the block RAMs' read-during-write
        # rule (`elaborate`); synthesis drops it where nothing reads it.
        self.rw_clash = Signal()
        super().__init__({
            "cmd": In(stream.Signature(Command)),
            "act": In(stream.Signature(data.ArrayLayout(FP16, GROUP))),
            "mem": Out(MemPortSignature(config.mem_bits)),
            "table": Out(TableWriteSignature()),
            "step": Out(ValidSignature(array.i.payload.shape())),
            "result": In(ValidSignature(array.o.payload.shape())),
            "out": Out(stream.Signature(result_layout(config))),
            "status": Out(stream.Signature(Status)),
            "wmem": Out(stream.Signature(write_layout(config.mem_bits))),
        })

    @staticmethod
    def check(config, *, kv_write=None, round_results=True, registered_tests=True):
        """Raise what `PassController` would raise for ``config`` and its
        options, without building anything."""
        from .kv_writer import supports
        options = {"round_results": round_results, "registered_tests": registered_tests}
        if kv_write is not None:
            options["kv_write"] = kv_write
        for name, value in options.items():
            # Not bool(value): a string such as "False" would be true.
            if type(value) is not bool:
                raise ValueError(f"{name} must be True or False, not {value!r}")
        pes = config.rows * config.cols
        if (16 * pes) % config.mem_bits:
            raise ValueError(
                f"mem_bits must divide 16 x rows x cols = {16 * pes} (one draft word "
                f"per PE), not {config.mem_bits}")
        if kv_write and not supports(config):
            raise ValueError(f"the KV write path needs mem_bits a multiple of 32, not "
                             f"{config.mem_bits}")

    @property
    def config(self):
        return self._config

    @property
    def kv_write(self):
        """The accelerator takes KV_WRITE commands (a KV write path is built)."""
        return self._kv_write

    @staticmethod
    def tag_bits(config):
        """Width of the array's tag: the row of PE 0 and the token."""
        return N_BITS + data.Layout.cast(result_layout(config))["token"].width

    def elaborate(self, platform):
        m = Module()
        config, array = self._config, self._array
        pes = config.rows * config.cols
        lanes = config.draft_lanes
        slots = array.interleave                     # row slots per PE and tile
        # Beats of an entry (4 columns of K for every PE) in each mode, and of
        # its part from the first plane (golden.schedule.PLANE_WORDS).
        plane0_beats, beats = {}, {}
        for op in (Op.DRAFT, Op.VERIFY, Op.BASELINE, Op.KV, Op.KV_DRAFT):
            words = PLANE_WORDS[op.name.lower()]
            plane0_beats[op] = 16 * words[0] * pes // config.mem_bits
            beats[op] = 16 * sum(words) * pes // config.mem_bits
        entry_beats = beats[Op.VERIFY]               # the largest: the buffer's entry
        group_bits = bits_for(config.kmax // 4 - 1)

        cmd, act, mem = self.cmd, self.act, self.mem

        # -- the engines' enable, output and status registers (never frozen) ---
        # A cycle is frozen while the memory stalls, and the cycle after one
        # on which the output register held a result that was not taken
        # (``blocked``): ``unblocked`` is a flip-flop, so the output's ready
        # reaches the engines' clock enables through no logic (combinational,
        # out.ready -> en -> the issuer's enables was the 6x6 ULX3S board's
        # critical path with round_stages 3, 55.15 MHz, 16.19 ns of routing).
        # Frozen a cycle late, the engines may make one result due while the
        # output is blocked: it waits at the head of the result buffer
        # (``late``, below) until the output takes it, in the cycle the
        # output would have taken it had the engines frozen at once. So a
        # blocked output freezes exactly as many cycles as before, a cycle
        # later, and a pass takes the cycles of the cycle model plus its
        # frozen cycles, as before.
        en, unblocked = Signal(), Signal(init=1)
        out_free = ~self.out.valid | self.out.ready     # the output takes a result
        m.d.sync += unblocked.eq(out_free)
        m.d.comb += en.eq(~mem.stall & unblocked)
        with m.If(self.out.ready):
            m.d.sync += self.out.valid.eq(0)
        with m.If(self.status.ready):
            m.d.sync += self.status.valid.eq(0)

        # -- command ------------------------------------------------------------
        running = Signal()
        p = Signal(Command)                  # the running pass' command
        # The pass' mode, decoded into flip-flops loaded with ``p`` (below):
        # the modes choose every PE's weight word (576 multiplexers of the
        # 6x6 board), and decoded from ``p`` by a LUT they were two wide
        # nets in a row, the 6x6 ULX3S board's critical path at c557cc9
        # (p -> decoding -> the operand words, 49.56 MHz).
        modes = {op: Signal(name=f"mode_{op.name.lower()}")
                 for op in (Op.DRAFT, Op.VERIFY, Op.BASELINE, Op.KV, Op.KV_DRAFT)}
        draft, verify, baseline = modes[Op.DRAFT], modes[Op.VERIFY], modes[Op.BASELINE]
        kv, kv_draft = modes[Op.KV], modes[Op.KV_DRAFT]
        start = Signal()                     # a pass is taken this cycle
        cycles = Signal(32)
        # The counters are as wide as the largest pass needs (N = 2**16 - 1
        # rows padded to whole slots, K = kmax, T = tmax; per head in a
        # multi-head pass): the status carries them zero-extended to
        # COUNTER_BITS.
        rows_max = config.head_groups * (-(-(2 ** N_BITS - 1) // config.head_pes) *
                                         config.head_pes)
        bits = Signal(bits_for(rows_max * config.kmax * 16))
        macs = Signal(bits_for(rows_max * config.kmax * config.tmax))

        # The command is taken into a register (`c`) and checked on its way
        # in; the pass starts in the cycle after, from registers alone. So
        # the checks (comparisons of n, k, t against the limits) end in the
        # error register, and what starts a pass (a handful of flip-flops:
        # ``running``, the KV writer's state, the status) sees only `c` and
        # the error: no path from the command's source through the checks
        # into the engines.
        c_in = cmd.payload
        c = Signal(Command)                  # the command taken, in the cycle after
        c_valid = Signal()
        check = Signal(Error)                # the checks of ``c_in``
        error = Signal(Error)                # those of ``c``
        # Entries of the remap tables written since reset (the table memories
        # are not cleared by reset): a draft or verify pass needs all of them.
        tables_loaded = Signal(NUM_CODES)
        ops = [Op.DRAFT, Op.VERIFY, Op.BASELINE, Op.TABLE, Op.KV, Op.KV_DRAFT] + \
            ([Op.KV_WRITE] if self._kv_write else [])
        # A KV write: the positions within the image (the keys image's rows,
        # the values image's columns); a values image is one tile of rows, a
        # multiple of 4 (its rows come 4 to an activation beat).
        in_kv_write = c_in.op == Op.KV_WRITE
        end = c_in.pos + c_in.t
        heads = config.head_groups
        multihead = c_in.multihead if heads > 1 else 0
        write_bad_n = in_kv_write & Mux(c_in.vt, (c_in.n[:2] != 0) | (c_in.n > Mux(
            multihead, config.head_pes * array.interleave, pes * array.interleave)),
            end > c_in.n)
        if heads > 1:
            write_bad_n |= in_kv_write & c_in.multihead & (c_in.head >= heads)
        write_bad_k = in_kv_write & c_in.vt & (end > c_in.k)
        with m.If(~c_in.op.as_value().matches(*ops)):
            m.d.comb += check.eq(Error.BAD_OP)
        with m.Elif(c_in.op == Op.TABLE):
            m.d.comb += check.eq(Error.OK)
        with m.Elif((c_in.n == 0) | write_bad_n):
            m.d.comb += check.eq(Error.BAD_N)
        with m.Elif((c_in.k == 0) | (c_in.k[:2] != 0) | (c_in.k > config.kmax) | write_bad_k):
            m.d.comb += check.eq(Error.BAD_K)
        with m.Elif((c_in.t == 0) | (c_in.t > config.tmax) | ((c_in.op == Op.DRAFT) & (c_in.t != 1))):
            m.d.comb += check.eq(Error.BAD_T)
        with m.Elif(c_in.op.as_value().matches(Op.DRAFT, Op.VERIFY) & ~tables_loaded.all()):
            m.d.comb += check.eq(Error.NO_TABLE)

        table = self.table
        writing = Signal()                   # a KV write runs (the pass engines idle)
        kv_act_ready = Signal()              # the KV writer takes an activation beat
        m.d.comb += cmd.ready.eq(~c_valid & ~running & ~writing & ~self.status.valid & en)
        taken = cmd.valid & cmd.ready
        # Loaded in every cycle the register is free (only ``c_valid`` sees
        # ``taken``); it holds a taken command for one cycle.
        with m.If(~c_valid):
            m.d.sync += [c.eq(c_in), error.eq(check)]
        m.d.sync += c_valid.eq(taken)
        kv_write = c.op == Op.KV_WRITE
        start_write = Signal()
        # A table write is registered (the tables are in every PE: no net from
        # ``en`` reaches them); it lands long before the next pass' first step.
        table_write = c_valid & (c.op == Op.TABLE)
        m.d.sync += [
            table.en.eq(table_write),
            table.code.eq(c.code), table.base.eq(c.base), table.exp.eq(c.exp),
            table.half.eq(c.half), table.zero.eq(c.zero),
        ]
        m.d.comb += [
            start.eq(c_valid & ~c.op.as_value().matches(Op.TABLE, Op.KV_WRITE) &
                     (error == Error.OK)),
            start_write.eq(c_valid & kv_write & (error == Error.OK)),
        ]
        # The status reads the counters themselves: they stand still from the
        # end of a pass until the next command, which the status must precede.
        m.d.comb += [
            self.status.payload.cycles.eq(cycles),
            self.status.payload.bits.eq(bits),
            self.status.payload.macs.eq(macs),
        ]
        # Registers that a command sets are loaded in every idle cycle instead
        # of on `start` (the cycle after a pass' command is taken): ``start`` then
        # reaches a few flip-flops (``running``, the status), not every counter
        # of the engines, and no net from the command stream's valid, the
        # memory's stall or the output's ready resets them. The counters are
        # zero while idle once the status is taken.
        idle = ~running & ~writing
        with m.If(idle & ~self.status.valid):
            m.d.sync += [cycles.eq(0), bits.eq(0), macs.eq(0)]
        with m.If(table_write):
            m.d.sync += tables_loaded.bit_select(c.code, 1).eq(1)
        with m.If(c_valid & ~start & ~start_write):
            m.d.sync += [
                self.status.valid.eq(1),
                self.status.payload.op.eq(c.op),
                self.status.payload.error.eq(error),
            ]
        # Each PE's copy of the modes that choose its weight word (below).
        word_modes = replicas(data.StructLayout({"draft": 1, "baseline": 1, "cached": 1, "kv": 1}),
                              pes, "word_modes_pe")
        with m.If(idle):
            m.d.sync += [p.eq(c), *(flag.eq(c.op == op) for op, flag in modes.items())]
            for copy in word_modes:
                m.d.sync += [copy.draft.eq(c.op == Op.DRAFT), copy.baseline.eq(c.op == Op.BASELINE),
                             copy.cached.eq(c.op.as_value().matches(Op.KV, Op.KV_DRAFT)),
                             copy.kv.eq(c.op == Op.KV)]
        with m.If(start):
            m.d.sync += running.eq(1)
        with m.If(running | writing):
            m.d.sync += cycles.eq(cycles + 1)

        # -- KV write path (hw.kv_writer) -----------------------------------------
        if self._kv_write:
            from .kv_writer import KvWriter
            m.submodules.kv_writer = writer = KvWriter(config, array.interleave)
            m.d.comb += [
                writer.start.eq(start_write), writer.vt.eq(c.vt), writer.n.eq(c.n),
                writer.k.eq(c.k), writer.t.eq(c.t), writer.pos.eq(c.pos),
                writer.addr0.eq(c.addr0), writer.addr1.eq(c.addr1),
                writer.multihead.eq(c.multihead), writer.head.eq(c.head),
                writer.act.valid.eq(act.valid & writing),
                writer.act.payload.eq(act.payload),
                kv_act_ready.eq(writer.act.ready),
            ]
            wiring.connect(m, writer.wmem, wiring.flipped(self.wmem))
            with m.If(start_write):
                m.d.sync += writing.eq(1)
            with m.If(writer.act.valid & writer.act.ready):
                m.d.sync += bits.eq(bits + 4 * 16)     # four values, two planes
            with m.If(writer.done):
                m.d.sync += [writing.eq(0), self.status.valid.eq(1),
                             self.status.payload.op.eq(Op.KV_WRITE),
                             self.status.payload.error.eq(Error.OK)]

        # The pass' last group of 4 columns of K (K <= kmax was checked).
        last_group = Signal(group_bits)
        with m.If(~running):
            m.d.sync += last_group.eq((c.k >> 2) - 1)
        # Rows a slot holds: the PEs of a head in a multi-head pass.
        head_pes = config.head_pes

        def slot_rows_of(command, count=1):
            """Rows of ``count`` slots in ``command``'s pass (constants)."""
            return Mux(command.multihead, head_pes * count, pes * count) if heads > 1 \
                else pes * count
        slot_rows, tile_rows = slot_rows_of(p), slot_rows_of(p, slots)
        one_slot = Const(slots == 1)

        def beat_end_of(is_draft, is_kv_draft):
            """The last beat of an entry in a draft, kv_draft or other pass."""
            return Mux(is_draft, beats[Op.DRAFT] - 1,
                       Mux(is_kv_draft, beats[Op.KV_DRAFT] - 1, entry_beats - 1))
        beat_end = beat_end_of(draft, kv_draft)      # the running pass'

        # -- activation loader ----------------------------------------------------
        # A bank per head group: a pass' activations go into every bank (all
        # groups take the same), a multi-head pass' head q's into bank q.
        act_mem = memory.Memory(shape=data.ArrayLayout(data.ArrayLayout(FP16, GROUP), heads),
                                depth=config.tmax << group_bits, init=[], attrs=NO_RW_CHECK)
        m.submodules.act_mem = act_mem
        act_write = act_mem.write_port(granularity=1)          # a bank
        act_read = act_mem.read_port(domain="sync")
        act_t, act_g = Signal(range(config.tmax)), Signal(group_bits)
        act_q = Signal(range(heads)) if heads > 1 else Const(0)   # the head loading
        acts_loaded = Signal()
        m.d.comb += [
            act.ready.eq(Mux(writing, kv_act_ready, running & ~acts_loaded & en)),
            act_write.addr.eq(Cat(act_g, act_t)),
            act_write.data.eq(act.payload.as_value().replicate(heads)),
            act_write.en.eq(Mux(act.valid & act.ready & ~writing,
                                Mux(p.multihead, Const(1, heads) << act_q,
                                    Const(2 ** heads - 1, heads)) if heads > 1 else 1, 0)),
        ]
        last_head = (act_q == heads - 1) | ~p.multihead if heads > 1 else 1
        with m.If(~running):
            m.d.sync += [act_t.eq(0), act_g.eq(0), acts_loaded.eq(0)]
            if heads > 1:
                m.d.sync += act_q.eq(0)
        with m.Elif(act.valid & act.ready & ~writing):
            with m.If(act_g == last_group):
                m.d.sync += act_g.eq(0)
                with m.If(act_t == p.t - 1):
                    m.d.sync += act_t.eq(0)
                    with m.If(last_head):
                        m.d.sync += acts_loaded.eq(1)
                    if heads > 1:
                        with m.Else():
                            m.d.sync += act_q.eq(act_q + 1)
                with m.Else():
                    m.d.sync += act_t.eq(act_t + 1)
            with m.Else():
                m.d.sync += act_g.eq(act_g + 1)

        # -- weight buffer: two halves of `slots` entries of 64 bits per PE -------
        # Built as `chunks` memories side by side, each at most
        # CHUNK_BITS wide (whole memory words), each with its own copy of
        # the read and write addresses (hw.fanout): as one memory its
        # addresses were nets of 1,153 loads each on the 6x6 ULX3S board.
        chunk_words = max(1, CHUNK_BITS // config.mem_bits)
        chunks = -(-entry_beats // chunk_words)
        buf_writes, buf_reads = [], []
        for i in range(chunks):
            words = min(chunk_words, entry_beats - i * chunk_words)
            chunk = memory.Memory(shape=words * config.mem_bits, depth=2 * slots, init=[],
                                  attrs=NO_RW_CHECK)
            m.submodules[f"buffer{i}" if chunks > 1 else "buffer"] = chunk
            buf_writes.append(chunk.write_port(granularity=config.mem_bits))
            buf_reads.append(chunk.read_port(domain="sync"))
        buf_we = Signal(entry_beats)             # the write enables, a memory word each
        for i, write in enumerate(buf_writes):
            m.d.comb += write.en.eq(buf_we[i * chunk_words:][:len(write.en)])

        def copies(shape, name):
            """A register per chunk (one plain register for one chunk)."""
            return replicas(shape, chunks, name) if chunks > 1 else [Signal(shape, name=name)]

        # The walkers' and the issuer's tests of their counters. Registered
        # (``registered_tests``), a test is a flip-flop that the statements
        # below load beside its counters with the value it takes; otherwise
        # it is worked out from the counters (``now``) and `sync` drops
        # those statements.
        worked_out = []                # the tests that are not registers

        def test(name, now):
            flag = Signal(name=name)
            if not self._registered_tests:
                m.d.comb += flag.eq(now)
                worked_out.append(flag)
            return flag

        def sync(*statements):
            m.d.sync += [s for s in statements
                         if not any(s.lhs is flag for flag in worked_out)]

        credit = Signal(range(3))      # free halves the fetcher may start on
        full = Signal(range(3))        # landed halves the issuer has not finished
        landed = Signal()              # pulse: a group landed
        can_issue = Signal()           # the issuer issues on an advancing cycle
        back_adv = Signal()            # a group consumed, if the cycle advances
        with m.If(~running):
            m.d.sync += full.eq(0)
        with m.Elif(en):
            m.d.sync += full.eq(full + landed - back_adv)

        def beats_walker(name, advance, j_copies=1):
            """Counters over a pass' weight beats: (tile, group, slot, beat).

            Returns ``(slots, beat, group_end, pass_end)``: ``j_copies``
            registers of the slot (`copies`, for the buffer's chunks). A slot
            is the last of its tile when it is slot ``slots - 1`` or its rows
            reach ``N``.
            """
            g = Signal(group_bits, name=f"{name}_g")
            j = Signal(range(slots), name=f"{name}_j")
            j_more = copies(range(slots), f"{name}_j_chunk")[1:] if j_copies > 1 else []
            b = Signal(range(entry_beats), name=f"{name}_b")
            # Rows from the slot's (the tile's) first row to N: the last-slot
            # and last-tile tests are then comparisons with constants.
            rows_left = Signal(N_BITS + 1, name=f"{name}_rows_left")
            tile_left = Signal(N_BITS + 1, name=f"{name}_tile_left")
            # The tests, registered beside their counters from the values the
            # counters take (as in the issuer; `test`): ``advance`` (from ``en``)
            # then meets a LUT or two of flip-flops on its way to the clock
            # enables (the 2x2 accelerator's critical path at seeds 2 and 3
            # was out.valid -> en -> the fetcher's tests -> tile_left).
            b_last = test(f"{name}_b_last", b == beat_end)
            j_last = test(f"{name}_j_last", j == slots - 1)
            rows_le = test(f"{name}_rows_le", rows_left <= slot_rows)
            g_last = test(f"{name}_g_last", g == last_group)
            tile_last = test(f"{name}_tile_last", tile_left <= tile_rows)
            slot_last = j_last | rows_le
            group_end = b_last & slot_last
            pass_end = group_end & g_last & tile_last
            with m.If(~running):
                sync(*(copy.eq(0) for copy in j_more))
                sync(g.eq(0), j.eq(0), b.eq(0), rows_left.eq(c.n), tile_left.eq(c.n),
                     b_last.eq(beat_end_of(c.op == Op.DRAFT, c.op == Op.KV_DRAFT) == 0),
                     j_last.eq(one_slot), rows_le.eq(c.n <= slot_rows_of(c)),
                     g_last.eq(c.k[2:] == 1), tile_last.eq(c.n <= slot_rows_of(c, slots)))
            with m.Elif(advance):
                sync(b.eq(b + 1), b_last.eq(b + 1 == beat_end))
                with m.If(b_last):
                    sync(*(copy.eq(copy + 1) for copy in j_more))
                    sync(b.eq(0), b_last.eq(beat_end == 0),
                         j.eq(j + 1), j_last.eq(j == slots - 2),
                         rows_left.eq(rows_left - slot_rows),
                         rows_le.eq(rows_left <= 2 * slot_rows))
                    with m.If(slot_last):
                        sync(*(copy.eq(0) for copy in j_more))
                        sync(j.eq(0), j_last.eq(one_slot), rows_left.eq(tile_left),
                             rows_le.eq(tile_left <= slot_rows),
                             g.eq(g + 1), g_last.eq(g + 1 == last_group))
                        with m.If(g_last):
                            sync(g.eq(0), g_last.eq(last_group == 0),
                                 tile_left.eq(tile_left - tile_rows),
                                 tile_last.eq(tile_left <= 2 * tile_rows),
                                 rows_left.eq(tile_left - tile_rows),
                                 rows_le.eq(tile_left <= tile_rows + slot_rows))
            return [j, *j_more], b, group_end, pass_end

        # -- fetcher --------------------------------------------------------------
        # ``want`` = running & ~req_done & (in_group | credit != 0), held in a
        # flip-flop loaded with the values those registers take (as the
        # issuer's and walkers' tests are): combinational, it was the 2x2
        # accelerator's critical path at 81d215a, seed 2 (running -> want ->
        # req -> the fetcher's tests -> req_done, five LUTs). When the pass
        # ends, req_done is already set (the issuer finishes after the last
        # group landed), so ``want`` is low with ``running``.
        req_done, in_group = Signal(), Signal()
        want = Signal()                      # a request, counted on an advancing cycle
        req = Signal()
        m.d.comb += req.eq(want & en)
        _, f_beat, f_group_end, f_pass_end = beats_walker("fetch", req)
        addr0, addr1 = Signal(ADDR_BITS), Signal(ADDR_BITS)
        # The second plane: the residuals of a verify pass, the low bytes of a kv pass.
        from_residual = (verify & (f_beat >= plane0_beats[Op.VERIFY])) | \
            (kv & (f_beat >= plane0_beats[Op.KV]))
        m.d.comb += [
            mem.req.eq(want),
            mem.addr.eq(Mux(from_residual, addr1, addr0)),
        ]
        # The fetcher's registers change on advancing cycles only, so they
        # take ``en`` as their clock enable, loaded with the values they take
        # when the cycle advances (``req`` is then ``want``, and a group the
        # issuer finishes gives back a credit: ``back_adv``). Chosen with
        # ``en`` inside (``req``, the issuer's ``issuing``), ``en`` ran
        # through the choice of the credit into the test of ``want``: the
        # 2x2 AXI top's path at bbf753d, seed 2 (out.valid -> en -> ... ->
        # want).
        credit_adv = Signal.like(credit)
        m.d.comb += credit_adv.eq(Mux(want, credit - ~in_group + back_adv, credit + back_adv))
        in_group_adv = Mux(want, ~f_group_end, in_group)
        done_adv = req_done | (want & f_pass_end)
        with m.If(~running):
            m.d.sync += [credit.eq(2), in_group.eq(0), req_done.eq(0),
                         addr0.eq(c.addr0), addr1.eq(c.addr1), want.eq(start)]
        with m.Elif(en):
            m.d.sync += [credit.eq(credit_adv), in_group.eq(in_group_adv),
                         req_done.eq(done_adv),
                         want.eq(~done_adv & (in_group_adv | (credit_adv != 0)))]
        # The bits read are counted a cycle after their request, from a
        # flip-flop (as the MACs are): with ``req`` as the clock enable of
        # the status counter, the fetcher's tests ran through the LUTs of
        # ``req`` placed toward the status' readers (the ULX3S board's
        # critical path at 8ae9d2a, fetch_rows_le -> req -> fetch_g_last,
        # 15.29 ns of its 16.76 ns routing). The last request comes long
        # before the status, which waits for its word to land.
        requested = Signal()
        m.d.sync += requested.eq(req)
        with m.If(requested):
            m.d.sync += bits.eq(bits + config.mem_bits)
        with m.If(req):
            with m.If(from_residual):
                m.d.sync += addr1.eq(addr1 + 1)
            with m.Else():
                m.d.sync += addr0.eq(addr0 + 1)

        # -- lander -----------------------------------------------------------------
        land = Signal()
        m.d.comb += land.eq(running & mem.valid & en)
        l_slots, l_beat, l_group_end, _ = beats_walker("land", land, chunks)
        l_halves = copies(1, "l_half")
        with m.If(~running):
            m.d.sync += [half.eq(0) for half in l_halves]
        with m.Elif(land & l_group_end):
            m.d.sync += [half.eq(~half) for half in l_halves]
        m.d.comb += [
            landed.eq(land & l_group_end),
            # Written whenever a word is there, frozen cycle or not (no net
            # from ``en``, the output's ready or the memory's stall, reaches
            # the buffer's write enables): a frozen cycle writes the landing
            # slot, which no step reads yet, and the advancing cycle writes
            # it again with the word the lander counts.
            buf_we.eq(Mux(running & mem.valid, Const(1, entry_beats) << l_beat, 0)),
        ]
        for write, l_half, l_slot in zip(buf_writes, l_halves, l_slots):
            m.d.comb += [write.addr.eq(Mux(l_half, slots + l_slot, l_slot)),
                         write.data.eq(mem.data.replicate(len(write.en)))]

        # -- issuer -----------------------------------------------------------------
        # Within a group: rounds (4 in verify and baseline, one column each;
        # 4 / L in draft, L columns each), each of max(slots used x T, slots)
        # cycles: the steps (j, t) and then bubbles, so that an accumulator is
        # used again no sooner than `slots` cycles later (array.interleave).
        g = Signal(group_bits)
        k4 = Signal(2)
        j = Signal(range(slots))
        t = Signal(range(config.tmax))
        pad = Signal(range(slots))       # cycles of the round so far, saturating
        stepping = Signal()              # the round's steps are not all issued yet
        # N - (the slot's first row), N - (the tile's first row), as in
        # beats_walker; the row itself is N - rows_left.
        rows_left = Signal(N_BITS + 1)
        tile_left = Signal(N_BITS + 1)
        half = Signal()
        issue_done = Signal()
        issuing = Signal()
        m.d.comb += [can_issue.eq(running & ~issue_done & acts_loaded & (full != 0)),
                     issuing.eq(can_issue & en)]
        # Registered beside the counters they compare, from the values the
        # counters take (comparisons of registers with constants; `test`):
        # the issuer's clock enables were the 2x2 accelerator's critical
        # path, en -> issuing -> (rows_left <= slot_rows, t == p.t - 1) -> j.
        rows_le = test("rows_le", rows_left <= slot_rows)
        t_end = Signal.like(t)               # p.t - 1

        # So are the issuer's other comparisons, each beside its counter from
        # the value the counter takes: the clock enables behind ``issuing``
        # are then a LUT or two of flip-flops (the 2x2 accelerator's critical
        # path was out.valid -> en -> issuing -> four LUTs -> j, 93.62 MHz).
        # The weight buffer's read address, half x slots + j, is a register
        # too: it reaches every LUT RAM of the buffer (576 on the 6x6 ULX3S
        # board, whose critical path ran j -> the adder -> that net -> the
        # buffer's read register: 51.55 MHz).
        buf_addrs = copies(range(2 * slots), "buf_addr")

        def buf_addr_to(value):
            """Load every copy of the read address with ``value(copy)``."""
            return [addr.eq(value(addr)) for addr in buf_addrs]
        half_base = Mux(half, slots, 0)      # the half's first entry
        t_last = test("t_last", t == t_end)
        j_last = test("j_last", j == slots - 1)
        pad_last = test("pad_last", pad == slots - 1)

        tile_last = tile_left <= tile_rows
        slot_last = j_last | rows_le
        step_last_in_round = slot_last & t_last
        round_end = pad_last & (~stepping | step_last_in_round)
        k4_last = k4 == Mux(draft, GROUP // lanes - 1, GROUP - 1)
        group_end = round_end & k4_last
        first = (g == 0) & (k4 == 0)
        last = (g == last_group) & k4_last
        step_valid = issuing & stepping

        with m.If(~running):
            sync(g.eq(0), k4.eq(0), j.eq(0), t.eq(0), pad.eq(0), stepping.eq(1),
                 rows_left.eq(c.n), tile_left.eq(c.n), half.eq(0), issue_done.eq(0),
                 rows_le.eq(c.n <= slot_rows_of(c)), t_end.eq(c.t - 1),
                 t_last.eq(c.t == 1), j_last.eq(one_slot), pad_last.eq(one_slot),
                 *buf_addr_to(lambda addr: 0))
        with m.Elif(issuing):
            with m.If(~pad_last):
                sync(pad.eq(pad + 1), pad_last.eq(pad == slots - 2))
            with m.If(stepping):
                sync(t.eq(t + 1), t_last.eq(t + 1 == t_end))
                with m.If(t_last):
                    # Not the slot's last: rows_left > slot_rows, no wrap.
                    sync(t.eq(0), t_last.eq(t_end == 0),
                         j.eq(j + 1), j_last.eq(j == slots - 2),
                         *buf_addr_to(lambda addr: addr + 1),
                         rows_left.eq(rows_left - slot_rows),
                         rows_le.eq(rows_left <= 2 * slot_rows))
                    with m.If(slot_last):
                        sync(j.eq(0), j_last.eq(one_slot), rows_left.eq(tile_left),
                             stepping.eq(0), rows_le.eq(tile_left <= slot_rows),
                             *buf_addr_to(lambda addr: half_base))
            with m.If(round_end):
                sync(pad.eq(0), pad_last.eq(one_slot), stepping.eq(1),
                     j.eq(0), j_last.eq(one_slot), t.eq(0), t_last.eq(t_end == 0),
                     rows_left.eq(tile_left), k4.eq(k4 + 1),
                     rows_le.eq(tile_left <= slot_rows),
                     *buf_addr_to(lambda addr: half_base))
                with m.If(k4_last):
                    sync(k4.eq(0), g.eq(g + 1), half.eq(~half),
                         *buf_addr_to(lambda addr: Mux(half, 0, slots)))
                    with m.If(g == last_group):
                        # (After the last tile, tile_last, the values wrap
                        # and are not used: the issue is done.)
                        sync(g.eq(0), tile_left.eq(tile_left - tile_rows),
                             rows_left.eq(tile_left - tile_rows),
                             rows_le.eq(tile_left <= tile_rows + slot_rows))
                        with m.If(tile_last):
                            m.d.sync += issue_done.eq(1)
        m.d.comb += back_adv.eq(can_issue & group_end)

        # Reads of the step, for the next cycle. From here on the step moves
        # every cycle, without ``en``: a frozen cycle issues no step, so ``s``
        # then holds a bubble, and the reads (every cycle, at the addresses
        # of the step being issued) need no enable either. (Held while
        # frozen, the buffer's read register, 2,304 flip-flops on the 6x6
        # ULX3S board, and ``s`` took ``en`` as their clock enable: a net of
        # 2,551 loads.)
        m.d.comb += [read.addr.eq(addr) for read, addr in zip(buf_reads, buf_addrs)]
        m.d.comb += act_read.addr.eq(Cat(g[:group_bits], Mux(draft, 0, t)))
        s = Signal(data.StructLayout({
            "valid": 1, "first": 1, "last": 1, "slot": range(array.depth),
            "lane": 2, "column0": 2, "row": N_BITS, "token": range(config.tmax)}))
        # A draft round takes L columns: lane j of round r is column L r + j.
        # Lane 0's column, chosen here: the activation read (a block RAM's
        # slow clock-to-out) then meets one multiplexer with a registered select.
        lane_bits = exact_log2(lanes)
        rounds_bits = exact_log2(GROUP // lanes)     # bits of a draft round's number
        # Each PE's copy of ``s.lane`` (`hw.fanout`): the lane chooses every
        # PE's weight word from the buffer entry, and as one register it was
        # a net of 3,562 loads on the 6x6 ULX3S board (with the modes, the
        # next widest after the clock).
        word_lanes = replicas(2, pes, "word_lane_pe")
        m.d.sync += [copy.eq(k4) for copy in word_lanes]
        m.d.sync += [
            s.valid.eq(step_valid), s.first.eq(first), s.last.eq(last),
            s.slot.eq(j * config.tmax + t), s.lane.eq(k4), s.row.eq(p.n - rows_left),
            s.token.eq(t),
            s.column0.eq(Mux(draft, Cat(Const(0, lane_bits), k4[:rounds_bits]), k4)),
        ]
        # The step as an array frozen with the engines would have it: issued
        # and not yet taken by an advancing cycle. The results are due by it
        # (below), as the cycle model counts them.
        held_valid, held_last = Signal(), Signal()
        with m.If(en):
            m.d.sync += [held_valid.eq(step_valid), held_last.eq(last)]

        # -- the step as the array takes it (the array decodes the words) ------------
        # Two stages: ``s`` (the reads' cycle) chooses the step's weight words
        # from the buffer entry (a LUT RAM's registered read); ``o`` (the
        # operands) holds those words, the activation words as the block RAM
        # read them and a copy of ``s``, and chooses the activations. So the
        # block RAM's slow clock-to-out ends in a register (the accelerator's
        # critical path was activation read -> lane multiplexer -> the array's
        # input register), at one cycle of latency (`config.result_latency`).
        entry = Cat(*(read.data for read in buf_reads))

        # The step's reads never meet a write to their address: a pass'
        # activations are all written before its first step, and the lander
        # writes only the buffer's half the issuer has given back. So the
        # memories carry NO_RW_CHECK (Yosys builds no read-during-write bypass,
        # which was on the activation read's critical path), and a clash that
        # reached a step would set ``rw_clash``, which the benches check.
        # The witness takes two cycles, so it stays off the engines' paths:
        # copies of the addresses first, their comparison a cycle later, set
        # against ``s.valid`` delayed as long. (Compared at once, the lander's
        # ``land_j`` -> the comparison -> ``read_clashed`` was the 2x2 AXI
        # top's critical path at seed 2: 2.36 ns of logic, 7.90 of routing.)
        def clash(write, read, both):
            addrs = [Signal.like(write.addr), Signal.like(read.addr)]
            enabled = Signal()
            m.d.sync += [addrs[0].eq(write.addr), addrs[1].eq(read.addr), enabled.eq(both)]
            return enabled & (addrs[0] == addrs[1])
        read_clashed, clash_valid = Signal(), Signal()
        m.d.sync += [
            read_clashed.eq(clash(act_write, act_read, act_read.en & act_write.en.any())
                            | clash(buf_writes[0], buf_reads[0], buf_we.any())),
            clash_valid.eq(s.valid),
        ]
        with m.If(clash_valid & read_clashed):
            m.d.sync += self.rw_clash.eq(1)

        words = Signal(data.ArrayLayout(16, pes))
        residuals = entry[16 * pes:]
        for pe in range(pes):
            lane, mode = word_lanes[pe], word_modes[pe]
            draft_word = entry[16 * pe:16 * pe + 16]
            speq_word = Cat(residuals[48 * pe:48 * pe + 48].word_select(lane, 12),
                            draft_word.word_select(lane, 4))
            plain = entry[64 * pe:64 * pe + 64].word_select(lane, 16)
            # The KV cache's planes: PE pe's 4 high bytes, then (kv) its low ones.
            high = entry[32 * pe:32 * pe + 32].word_select(lane, 8)
            low = entry[32 * (pes + pe):32 * (pes + pe) + 32].word_select(lane, 8)
            # The draft's value: the low byte at its midpoint, or 0 under
            # exponent field 31 (SPEC section 2a).
            midpoint = Mux(high[2:7] == 0b11111, 0x00, 0x80)
            cached = Cat(Mux(mode.kv, low, midpoint), high)
            # The round's L nibbles go to the top of the word (the array's
            # lane j reads nibble 4 - L + j).
            nibbles = draft_word.word_select(lane[:rounds_bits], 4 * lanes) if rounds_bits \
                else draft_word
            draft_step = Cat(Const(0, 16 - 4 * lanes), nibbles)
            m.d.comb += words[pe].eq(Mux(mode.draft, draft_step, Mux(
                mode.baseline, plain, Mux(mode.cached, cached, speq_word))))

        # ``o`` takes every cycle too: each step reaches the array two cycles
        # after it was issued, frozen cycles or not.
        # Only its valid bit has a reset: with one, the words' constant bits
        # (a draft step's high zeros) made the reset and the mode one LUT in
        # front of the flip-flops' reset pins, and the board's reset -> that
        # LUT -> the operand words was the 6x6 ULX3S board's path at e9dc575
        # (12.17 ns on the reset's net, 66.35 MHz).
        o = Signal.like(s, name="operands", reset_less=True)
        o_valid = Signal(name="operands_valid")
        o_words = Signal.like(words, name="operand_words", reset_less=True)
        o_banks = Signal.like(act_read.data, name="operand_acts", reset_less=True)
        m.d.sync += [o.eq(s), o_valid.eq(s.valid), o_words.eq(words),
                     o_banks.eq(act_read.data)]
        # The MACs are counted as the steps reach the array, from a flip-flop
        # (counted as they were issued, ``issuing`` was the clock enable:
        # the 2x2 accelerator's path at seed 3, out.valid -> en -> issuing ->
        # macs). The last step is counted before the status is loaded: that
        # waits for its results.
        with m.If(o_valid):
            m.d.sync += macs.eq(macs + Mux(draft, lanes * pes, pes))

        step = self.step.payload
        m.d.comb += [
            # A frozen cycle is a bubble for the array, which runs on.
            self.step.valid.eq(o_valid),
            step.mode.eq(Mux(draft, Mode.DRAFT, Mode.VERIFY)),
            step.plain.eq(baseline | kv | kv_draft),
            step.first.eq(o.first),
            step.last.eq(o.last),
            step.slot.eq(o.slot),
            step.tag.eq(Cat(o.row, o.token)),
        ]
        for q in range(heads):
            acts = o_banks[q].as_value()
            step_act = step.act if q == 0 else step.head_act[q - 1]
            m.d.comb += step_act[0].eq(acts.word_select(o.column0, 16))
            for j in range(1, lanes):           # draft only
                column = Cat(Const(j, lane_bits), o.lane[:rounds_bits])
                m.d.comb += step_act[j].eq(acts.word_select(column, 16))
        for pe in range(pes):
            m.d.comb += step.word[pe].eq(o_words[pe])

        # -- results and the end of the pass ---------------------------------------
        # A result leaves the array `array.latency` cycles after its step
        # entered it (a cycle after it was in ``s``) and is rounded to FP16 in one more stage (`fp32_to_fp16`
        # with its register in the middle; the accumulators and the tag wait
        # beside it), then written into the result buffer, from which it is
        # read a cycle later at the earliest: `config.result_latency` cycles
        # from ``s``.
        assert config.result_latency == 1 + array.latency + 2
        arrived_valid = Signal()
        arrived = Signal(data.StructLayout({
            "acc": data.ArrayLayout(FP32, pes), "half": data.ArrayLayout(FP16, pes),
            "tag": len(self.result.payload.tag)}))
        acc_r = Signal.like(self.result.payload.acc, name="arrived_acc", reset_less=True)
        tag_r = Signal.like(self.result.payload.tag, name="arrived_tag", reset_less=True)
        m.d.sync += [arrived_valid.eq(self.result.valid), acc_r.eq(self.result.payload.acc),
                     tag_r.eq(self.result.payload.tag)]
        m.d.comb += [arrived.acc.eq(acc_r), arrived.tag.eq(tag_r)]
        for pe in range(pes):
            m.d.comb += arrived.half[pe].eq(fp32_to_fp16(
                m, self.result.payload.acc[pe], f"pe{pe}_fl16", registered=True)
                if self._round_results else 0)
        # The result buffer: every result waits there at least a cycle (the
        # output register takes it from the buffer only: no multiplexer as
        # wide as a result), and longer when frozen cycles came between its
        # step and now. It is due `latency` = result_latency advancing cycles
        # after its `last` step was in ``s`` (a cycle after it arrived,
        # with no frozen cycle between: when it would have come from an
        # array frozen with the engines). At most `latency` results are issued
        # and not yet taken (one step per advancing cycle), plus the one
        # taken this cycle.
        latency = config.result_latency
        due = Signal(latency)
        with m.If(en):
            m.d.sync += due.eq(Cat(held_valid & held_last, due[:-1]))
        got = en & due[-1]
        # A result due while the output is blocked (at most one: the
        # engines are frozen from the next cycle on until the output takes
        # its result) waits at the head of the buffer until it is free.
        late = Signal()
        load = (got | late) & out_free
        with m.If(got & ~out_free):
            m.d.sync += late.eq(1)
        with m.If(late & out_free):
            m.d.sync += late.eq(0)
        # The result buffer and the output register's payload are split in
        # groups of a row of PEs, and the tag (`result_groups`). Each group's
        # buffer has its own pointers and its own load enable, from its own
        # copies (`hw.fanout`) of the flip-flops ``load`` is made of; the
        # copies are loaded as the originals, so every group loads in the
        # cycles ``load`` is high. (One ``load`` to every flip-flop of the
        # payload, 1,728 on the 6x6 ULX3S board, was its critical path at
        # df2db6f: out.valid -> the board's handshake -> ``late`` -> the
        # payload's clock enables, 10.87 ns on the last net, 56.62 MHz.)
        def bump(ptr):
            return Mux(ptr == latency, 0, ptr + 1)

        def result_buffer(name, shape, data_in, load_now):
            """A result buffer of ``shape`` written with ``data_in``, whose
            read port's data is the head, moved on by ``load_now``."""
            buffer = memory.Memory(shape=shape, depth=latency + 1, init=[],
                                   attrs=block_ram_attrs(platform))
            m.submodules[name] = buffer
            write = buffer.write_port()
            read = buffer.read_port(domain="sync", transparent_for=(write,))
            # Marked as copies: the groups' pointers are loaded alike.
            wptr = Signal(range(latency + 1), name=f"{name}_wptr", attrs=REPLICA)
            rptr = Signal(range(latency + 1), name=f"{name}_rptr", attrs=REPLICA)
            # Read one cycle ahead: the head is the read port's register.
            rptr_next = Mux(load_now, bump(rptr), rptr)
            m.d.comb += [write.addr.eq(wptr), write.data.eq(data_in),
                         write.en.eq(arrived_valid), read.addr.eq(rptr_next)]
            m.d.sync += rptr.eq(rptr_next)
            with m.If(arrived_valid):
                m.d.sync += wptr.eq(bump(wptr))
            return read.data

        outstanding = Signal(8)        # `last` steps issued whose results are still due
        with m.If(en):                 # the enable as the clock enable, not in the sum
            m.d.sync += outstanding.eq(outstanding + (held_valid & held_last) - due[-1])
        # The tag's buffer moves on with ``load`` itself.
        tag = result_buffer("results_tag", arrived.tag.shape(), arrived.tag, load)
        # The output register's payload has no reset (only its valid bit):
        # on the 6x6 ULX3S board the reset reached 2,923 flip-flops, 1,171 of
        # them this payload's.
        out_payload = Signal.like(self.out.payload, reset_less=True, name="out_payload")
        m.d.comb += self.out.payload.eq(out_payload)
        with m.If(load):
            m.d.sync += [
                self.out.valid.eq(1),
                out_payload.row.eq(tag[:N_BITS]),
                out_payload.token.eq(tag[N_BITS:]),
            ]
        due_next = Cat(held_valid & held_last, due[:-1])[-1]
        for g, group in enumerate(result_groups(config)):
            # Copies of out.valid, late, due[-1] and unblocked, reset alike.
            valid_g, late_g, due_g, unblocked_g = (
                Signal(name=f"results{g}_{what}", init=what == "unblocked", attrs=REPLICA)
                for what in ("valid", "late", "due", "unblocked"))
            free_g = ~valid_g | self.out.ready
            got_g = ~mem.stall & unblocked_g & due_g
            load_g = (got_g | late_g) & free_g
            m.d.sync += unblocked_g.eq(free_g)
            with m.If(~mem.stall & unblocked_g):
                m.d.sync += due_g.eq(due_next)
            with m.If(got_g & ~free_g):
                m.d.sync += late_g.eq(1)
            with m.If(late_g & free_g):
                m.d.sync += late_g.eq(0)
            with m.If(self.out.ready):
                m.d.sync += valid_g.eq(0)
            with m.If(load_g):
                m.d.sync += valid_g.eq(1)
            layout = data.StructLayout({"acc": data.ArrayLayout(FP32, len(group)),
                                        "half": data.ArrayLayout(FP16, len(group))})
            head = result_buffer(f"results{g}", layout,
                                 Cat(Cat(arrived.acc[pe] for pe in group),
                                     Cat(arrived.half[pe] for pe in group)), load_g)
            with m.If(load_g):
                for i, pe in enumerate(group):
                    m.d.sync += [out_payload.acc[pe].eq(head.acc[i]),
                                 out_payload.half[pe].eq(Mux(p.fp16, head.half[i], 0))]

        # The status follows the last result out of the output register.
        finishing = Signal()
        with m.If(~running):
            m.d.sync += finishing.eq(0)
        with m.If(running & issue_done & ~held_valid & (outstanding == got) & en):
            m.d.sync += finishing.eq(1)
        # Once the engines are finishing, only the status is left: it is
        # loaded on the first cycle with no stall, no late result and a free
        # output, the cycle on which engines frozen at once for a blocked
        # output would have advanced; so until then the frozen cycles
        # (``mem.en`` low) are counted by that rule too. Every cycle before
        # then is frozen or advancing by ``en``, and the pass takes the
        # cycles of the cycle model plus its frozen cycles. (The output's
        # ready reaches only the few flip-flops loaded here.)
        # (`cycles` counts this last cycle too, as `running` is still high.)
        status_now = ~mem.stall & out_free & ~late
        m.d.comb += mem.en.eq(Mux(finishing, status_now, en))
        with m.If(finishing & status_now):
            m.d.sync += [
                running.eq(0),
                finishing.eq(0),
                self.status.valid.eq(1),
                self.status.payload.op.eq(p.op),
                self.status.payload.error.eq(Error.OK),
            ]
        return m
