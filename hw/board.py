"""The board top: the accelerator, on-chip memories and a UART command interface.

`SpeqBoard` is what goes on an FPGA (``rtl_gen.bitstream``) and what the
UART bench (``tb/test_board.py``) drives through the host library
(``host/``). ``docs/board.md`` describes the protocol; in short, the host
sends one frame at a time and waits for its answer:

=========  ==================================  ====================================
request    then                                answer
=========  ==================================  ====================================
``I``      --                                  ``i`` + `Info`
``W``      `Span`, ``count`` weight words      ``w`` + `Ack`
``A``      `Span`, ``count`` activation words  ``a`` + `Ack`
``C``      `hw.controller.Command`             ``o`` + result beat, per result;
                                               then ``s`` + `Report`
=========  ==================================  ====================================

Every field is little-endian and every structure is sent in whole bytes,
least significant byte first, zero-padded at the top. A pass (``C``) reads
its activations from activation word 0 on and its weights from the weight
memory, like the memory port of `hw.accel.SpeqAccel` with a latency of
2 or 3 cycles (`SpeqBoard.mem_latency`, sent in `Info`); the pass runs at full speed except while a result waits for the
UART, and those frozen cycles are reported so that the host can compare
``status.cycles - frozen`` with the cycle model exactly.
"""

import enum

from amaranth.hdl import Array, Cat, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.utils import ceil_log2
from amaranth.lib.wiring import In, Out

from .accel import SpeqAccel
from .array import NO_RW_CHECK
from .config import SpeqConfig
from .controller import Command, Status
from .decoder import GROUP
from .fanout import replicas
from .fp import FP16, fp32_to_fp16
from .uart import UartRx, UartTx, _check_divisor


__all__ = ["Request", "Answer", "Flag", "Span", "Ack", "Info", "Report", "MAGIC",
           "MEM_STAGES", "PROTOCOL_VERSION", "ROUND_STAGES", "WEIGHT_WORDS_MAX", "SpeqBoard",
           "nbytes", "act_words"]


class Request(enum.IntEnum):
    """First byte of a frame from the host."""

    INFO = ord("I")
    WEIGHTS = ord("W")
    ACTS = ord("A")
    RUN = ord("C")


class Answer(enum.IntEnum):
    """First byte of every frame the board sends."""

    INFO = ord("i")
    WEIGHTS = ord("w")
    ACTS = ord("a")
    OUT = ord("o")
    REPORT = ord("s")


class Flag(enum.IntFlag):
    """Sticky error bits of `Info` and `Report`; an ``I`` request clears them."""

    RX_OVERRUN = 1       # a byte arrived while the board was answering or running
    RX_FRAMING = 2       # a byte's stop bit was low (the byte was dropped)
    BAD_REQUEST = 4      # a frame started with an unknown byte (it was ignored)
    MEM_RANGE = 8        # a pass read a weight word past the weight memory


#: Sent in `Info`: "SPEQ" as a little-endian 32-bit word.
MAGIC = int.from_bytes(b"SPEQ", "little")
#: 2: `Info` ends with ``draft_lanes``. 3: then ``head_groups``; a command
#: carries ``multihead`` and ``head`` (multi-head passes). 4: the weight
#: memory answers 2 cycles after a request (was 1), which the
#: cycle model of a pass needs. 5: `Info` ends with ``mem_latency`` (2 or 3:
#: `SpeqBoard`'s ``mem_stages``).
PROTOCOL_VERSION = 5
#: Registers the board may put after its weight memory's read (`SpeqBoard`'s
#: ``mem_stages``): a weight request's word then comes ``2 + mem_stages``
#: advancing cycles later (`SpeqBoard.mem_latency`, `golden.perf`'s
#: ``mem_latency`` for a pass on the board): the request's register, the
#: memory's read, the data's register.
MEM_STAGES = (0, 1)
#: Registers the board's FP16 rounder (state ROUND) may have: none; the
#: middle one of `hw.fp.fp32_to_fp16`; or that and one in front of it, after
#: the choice of the PE's value (`SpeqBoard`'s ``round_stages``).
ROUND_STAGES = (0, 1, 2, 3)
#: With ``round_stages`` 3 the PE's value is chosen in two registered steps:
#: one of each group of `ROUND_WAYS` PEs, then one of the groups.
ROUND_WAYS = 8
#: Frames of more bits than this (a result beat of a large array) are sent
#: through registered multiplexers of `TX_WAYS` ways, smaller ones chosen
#: byte by byte from the payload in one.
TX_MUX_BITS = 256
#: Ways of each registered multiplexer of a wide frame's bytes.
TX_WAYS = 16
#: Largest weight memory, in words (the `Span` counts are 32 bits).
WEIGHT_WORDS_MAX = 1 << 24


#: Where a ``W`` or ``A`` frame writes: ``count`` words from word ``addr``.
Span = data.StructLayout({"addr": 32, "count": 32})

#: The answer to ``W`` and ``A``: 0, or 1 when the span does not fit the
#: memory (all its words were read; those past the memory's end dropped).
Ack = data.StructLayout({"code": 8})

#: The board's configuration.
Info = data.StructLayout({
    "magic": 32, "version": 8,
    "rows": 8, "cols": 8, "tmax": 8, "pe_stages": 8, "draft_frac_bits": 8,
    "kmax": 16, "mem_bits": 16, "weight_words": 32, "act_words": 32,
    "divisor": 16, "flags": 8, "draft_lanes": 8, "head_groups": 16, "mem_latency": 8,
})

#: The end of a pass: the accelerator's status, the cycles the pass was
#: frozen while a result waited for the UART, and the sticky flags.
Report = data.StructLayout({"status": Status, "frozen": 32, "flags": 8})


def nbytes(layout):
    """Bytes a structure takes on the wire."""
    return (data.Layout.cast(layout).size + 7) // 8


def act_words(config):
    """Activation words (four FP16 values each) the board holds: ``tmax x kmax / 4``."""
    return config.tmax * config.kmax // GROUP


class SpeqBoard(wiring.Component):
    """`hw.accel.SpeqAccel` with weight and activation memories behind a UART.

    Parameters
    ----------
    config : SpeqConfig
    weight_words : int
        Depth of the weight memory, in ``mem_bits`` words (1 to 2**24).
    divisor : int
        Clock cycles per UART bit (`hw.uart.divisor_for`).
    round_stages : int, optional
        Registers of the FP16 rounder, 0, 1 (default) or 2: each takes
        every result a cycle more to round (a frozen cycle, which the board
        counts). 1 is the rounder's middle register: the ECP5 boards need it
        for 75 MHz (the rounder was the 2x2 ULX3S board's critical path at
        67.34 MHz); the iCEBreaker's 12 MHz does not, and saves its logic
        cells. 2 adds one after the choice of the PE's value among the
        result's P (a multiplexer of P x 32 bits, then the rounder's first
        half was the 6x6 ULX3S board's path with 8 PE stages, 54.51 MHz);
        3 makes that choice in two registered steps, one of each group of
        `ROUND_WAYS` PEs, then one of the groups.
    mem_stages : int, optional
        Registers after the weight memory's read, 0 or 1 (default): with 1,
        a weight word comes 3 advancing cycles after its request instead of 2
        (`mem_latency`, which `Info` sends). On the 6x6 ULX3S board the path
        from the block RAMs to the weight buffer (each memory bit goes to 36
        LUT RAMs) was the critical one without it (54.81 MHz at 81d215a);
        the iCEBreaker's 12 MHz does not need it.
    registered_tests : bool, optional
        The pass controller's counter tests in flip-flops (default), or
        worked out from the counters: the same cycles, about 200 logic cells
        fewer on the iCEBreaker, whose 12 MHz does not need the registers
        (`hw.controller.PassController`).

    Members
    -------
    rx : In(1, init=1)
        UART from the host.
    tx : Out(1, init=1)
        UART to the host.
    busy : Out(1)
        High while a frame is being received or answered (an LED), from a
        cycle after the frame machine leaves its idle state to a cycle after
        it comes back.

    Raises
    ------
    TypeError
        If ``config`` is not a `SpeqConfig`.
    ValueError
        If ``weight_words``, ``divisor``, ``round_stages`` or ``mem_stages`` is
        out of range, ``registered_tests`` is not a bool,
        or the accelerator refuses ``config``.
    """

    def __init__(self, config=SpeqConfig(), *, weight_words=4096, divisor=4, round_stages=1,
                 mem_stages=1, registered_tests=True):
        self.check(config, weight_words, divisor, round_stages, mem_stages, registered_tests)
        self._mem_stages = mem_stages
        self._registered_tests = registered_tests
        self._config = config
        self._weight_words = weight_words
        self._divisor = divisor
        self._round_stages = round_stages
        # The board has no write path to its weight memory: KV_WRITE answers BAD_OP.
        # It rounds the results to FP16 itself, one PE's a cycle, before it
        # sends them (one rounder instead of one per PE; state ROUND).
        self._accel = SpeqAccel(config, kv_write=False, round_results=False,
                                registered_tests=registered_tests)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1)})

    @staticmethod
    def check(config, weight_words, divisor, round_stages=1, mem_stages=1, registered_tests=True):
        """Raise what `SpeqBoard` would raise for these parameters, without
        building anything."""
        if type(round_stages) is not int or round_stages not in ROUND_STAGES:
            raise ValueError(f"round_stages must be one of {ROUND_STAGES}, not {round_stages!r}")
        if type(mem_stages) is not int or mem_stages not in MEM_STAGES:
            raise ValueError(f"mem_stages must be one of {MEM_STAGES}, not {mem_stages!r}")
        # The accelerator's own checks: the configuration, its memory port
        # and registered_tests (True or False).
        SpeqAccel.check(config, kv_write=False, round_results=False,
                        registered_tests=registered_tests)
        if not isinstance(weight_words, int) or not 1 <= weight_words <= WEIGHT_WORDS_MAX:
            raise ValueError(f"weight_words must be an integer from 1 to {WEIGHT_WORDS_MAX}, "
                             f"not {weight_words!r}")
        _check_divisor(divisor)

    @property
    def config(self):
        return self._config

    @property
    def accel(self):
        return self._accel

    @property
    def weight_words(self):
        return self._weight_words

    @property
    def divisor(self):
        return self._divisor

    @property
    def round_stages(self):
        return self._round_stages

    @property
    def mem_stages(self):
        return self._mem_stages

    @property
    def registered_tests(self):
        return self._registered_tests

    @property
    def mem_latency(self):
        """Advancing cycles from a weight request to its word: 2 + ``mem_stages``."""
        return 2 + self._mem_stages

    def info(self):
        """The `Info` this board sends, as a dict."""
        c = self._config
        return {
            "magic": MAGIC, "version": PROTOCOL_VERSION,
            "rows": c.rows, "cols": c.cols, "tmax": c.tmax, "pe_stages": c.pe_stages,
            "draft_frac_bits": c.draft_frac_bits, "kmax": c.kmax, "mem_bits": c.mem_bits,
            "weight_words": self._weight_words, "act_words": act_words(c),
            "divisor": self._divisor, "flags": 0, "draft_lanes": c.draft_lanes,
            "head_groups": c.head_groups, "mem_latency": self.mem_latency,
        }

    def elaborate(self, platform):
        m = Module()
        config = self._config
        accel = m.submodules.accel = self._accel
        rx = m.submodules.uart_rx = UartRx(self._divisor)
        tx = m.submodules.uart_tx = UartTx(self._divisor)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx)]

        word_bytes = config.mem_bits // 8
        act_bytes = 16 * GROUP // 8

        # -- memories ---------------------------------------------------------
        w_ports, w_single = _weight_ports(m, platform, config.mem_bits, self._weight_words)
        # Written by A frames only, read by a pass only (the frame machine is
        # in one state at a time): no read it uses meets a write (NO_RW_CHECK).
        acts = m.submodules.acts = memory.Memory(
            shape=data.ArrayLayout(FP16, GROUP), depth=act_words(config), init=[],
            attrs=NO_RW_CHECK)
        a_write = acts.write_port()
        a_read = acts.read_port(domain="sync")

        # -- sticky flags -------------------------------------------------------
        # One signal per flag: Icarus never runs an ``always @*`` block that
        # only assigns constants, which a partly driven vector would get.
        rx_overrun, bad_request, mem_range = Signal(), Signal(), Signal()
        set_flags = Cat(rx_overrun, rx.framing_error, bad_request, mem_range)
        flags = Signal(len(set_flags))
        clear_flags = Signal()
        m.d.sync += flags.eq(Mux(clear_flags, 0, flags) | set_flags)

        # -- frames in: a shift register that bytes enter at the top -----------
        # Also as long as a weight or activation word: a W or A frame's words
        # are received into it and written from it.
        header_bytes = max(nbytes(Span), nbytes(Command), config.mem_bits // 8, 16 * GROUP // 8)
        header = Signal(8 * header_bytes)
        span = data.View(Span, header[-8 * nbytes(Span):][:data.Layout.cast(Span).size])
        command = data.View(Command, header[-8 * nbytes(Command):][:data.Layout.cast(Command).size])
        count = Signal(range(header_bytes + 1))
        addr = Signal(range(max(self._weight_words, act_words(config)) + 1))
        left = Signal(32)
        # ``left == 0``, registered beside ``left``: a 32-bit comparison in
        # front of the answer's register was the ULX3S board's critical path.
        none_left = Signal()
        # The registered writes of a W or A frame (below).
        w_wr, a_wr = Signal(), Signal()
        wr_addr = Signal.like(addr)
        bad_span = Signal()
        code = Signal(8)
        byte = rx.data.payload
        got = rx.data.valid

        # -- frames out: tag and payload, a byte at a time ---------------------
        index = Signal(range(max(nbytes(accel.out.payload.shape()), nbytes(Report),
                                 nbytes(Info), header_bytes) + 2))
        index_next = Signal.like(index)        # the value index takes
        m.d.comb += index_next.eq(index)
        m.d.sync += index.eq(index_next)

        # A frame wider than TX_MUX_BITS (a result beat of a large array) is
        # chosen byte by byte through registered multiplexers of TX_WAYS
        # ways each (`wide_byte`): ``index`` then meets one such multiplexer
        # on its way to a register. Chosen by ``index`` in one multiplexer,
        # the 6x6 board's 1,7xx-bit result beat was its critical path at
        # c38a47c (55.65 MHz). Smaller frames are chosen in one multiplexer,
        # with no register (cheaper: the iCEBreaker's cells).
        #
        # The registers need no valid bit: ``index`` moves only when the
        # UART takes a byte, and the UART takes the next one 10 bit times
        # (10 x divisor >= 40 cycles) later at the earliest, by when every
        # stage holds the new index's byte; at the frame's start ``index``
        # has been 0 (the tag) at least as long. The payload must hold until
        # its last byte is taken, which the result does (it is taken after).
        def frame_of(tag, payload):
            """The bytes sent for ``tag`` and ``payload``: the tag, then the
            payload, zero-padded to whole bytes."""
            bits = Cat(payload)
            return Cat(Const(tag, 8), bits, Const(0, -len(bits) % 8))

        def wide_byte(tag, payload):
            """The byte ``index`` of the frame of ``tag`` and ``payload``,
            `stages` + 1 cycles after ``index`` (the selects' registers,
            then one per stage)."""
            frame = frame_of(tag, payload)
            items = [frame[8 * i:8 * i + 8] for i in range(len(frame) // 8)]
            digit, stages = 0, 0
            while len(items) > 1:
                ways = min(TX_WAYS, len(items))
                bits = ceil_log2(ways)
                groups = -(-len(items) // ways)
                # A copy of the select's bits per multiplexer (hw.fanout):
                # index's low bits would reach every byte. All stages take
                # the same index, which holds until its byte is taken.
                selects = replicas(bits, groups, f"tx_select{stages}_")
                m.d.sync += [select.eq(index_next[digit:digit + bits]) for select in selects]
                picked = []
                for g, select in enumerate(selects):
                    group = items[ways * g:ways * (g + 1)]
                    byte = Signal(8, name=f"tx_byte{stages}_{g}", reset_less=True)
                    m.d.sync += byte.eq(Array(group)[select] if len(group) > 1 else group[0])
                    picked.append(byte)
                items, digit, stages = picked, digit + bits, stages + 1
            assert stages + 1 < 10 * self._divisor, "a byte time covers the stages"
            return items[0]

        def send(tag, payload, then, *, done=(), done_sync=(), wide=None):
            """Send ``tag`` and ``payload``; with the last byte, go to ``then``
            and add the combinational statements ``done`` and the synchronous
            statements ``done_sync``. ``wide``: `wide_byte` of this frame."""
            frame = frame_of(tag, payload)
            size = len(frame) // 8
            m.d.comb += [tx.data.valid.eq(1), tx.data.payload.eq(
                frame.word_select(index, 8) if wide is None else wide)]
            with m.If(tx.data.ready):
                m.d.comb += index_next.eq(index + 1)
                with m.If(index == size - 1):
                    m.d.comb += index_next.eq(0)
                    m.d.comb += list(done)
                    m.d.sync += list(done_sync)
                    m.next = then

        # -- a pass: command, activations from word 0, results and report ------
        # The readies of the output and the status: high for the one cycle
        # in OUT_TAKEN or REPORT_TAKEN.
        take_out, take_status = Signal(), Signal()
        m.d.sync += [take_out.eq(0), take_status.eq(0)]
        m.d.comb += [accel.out.ready.eq(take_out), accel.status.ready.eq(take_status)]
        # The result as sent: the accelerator's, with the board's FP16 values.
        pes = config.rows * config.cols
        halves = Signal(data.ArrayLayout(FP16, pes), reset_less=True)   # read when sent only
        # The rounder may have a register in the middle (combinational it was
        # the 2x2 ULX3S board's critical path, 67.34 MHz at 75 MHz).
        stages = self._round_stages
        rounding = Signal(range(pes + stages))   # the PE whose value is taken
        rounding_next = Signal.like(rounding)    # (set in state ROUND)
        m.d.comb += rounding_next.eq(rounding)
        m.d.sync += rounding.eq(rounding_next)
        accs = accel.out.payload.acc
        if stages < 3:
            chosen = accs.as_value().word_select(rounding, 32)
        else:
            # One of each group of ROUND_WAYS PEs, registered, with a copy of
            # the select per group (hw.fanout) loaded with the value
            # ``rounding`` takes; then one of the groups, chosen by
            # ``rounding``'s high bits a cycle later. (One multiplexer of P x
            # 32 bits, then the rounder's first half, was the 6x6 ULX3S
            # board's critical path at b9d9d27, 56.05 MHz; with one register
            # after it, stages 2, the board's synthesis took 3,154 LUT4 more.)
            low = ceil_log2(ROUND_WAYS)
            groups = -(-pes // ROUND_WAYS)
            selects = replicas(low, groups, "board_round_select")
            picked = []
            for g, select in enumerate(selects):
                m.d.sync += select.eq(rounding_next[:low])
                group = [accs[p] for p in range(ROUND_WAYS * g, min(pes, ROUND_WAYS * (g + 1)))]
                pick = Signal(32, name=f"board_round_pick{g}", reset_less=True)
                m.d.sync += pick.eq(Array(group)[select] if len(group) > 1 else group[0])
                picked.append(pick)
            high = Signal(range(groups), name="board_round_group")
            m.d.sync += high.eq(rounding[low:])
            chosen = Array(picked)[high] if groups > 1 else picked[0]
        if stages >= 2:
            chosen_r = Signal(32, name="board_fl16_chosen", reset_less=True)
            m.d.sync += chosen_r.eq(chosen)
            chosen = chosen_r
        rounded = fp32_to_fp16(m, chosen, "board_fl16", registered=bool(stages))
        result = Signal.like(accel.out.payload)
        m.d.comb += [result.eq(accel.out.payload), result.half.eq(halves)]
        out_wide = wide_byte(Answer.OUT, result) if len(result.as_value()) > TX_MUX_BITS \
            else None
        sent = Signal()            # the command was taken
        acts_on = Signal()
        act_addr = Signal.like(a_read.addr)
        frozen = Signal(32)
        m.d.comb += [
            accel.cmd.payload.eq(command),
            accel.act.valid.eq(acts_on),
            accel.act.payload.eq(a_read.data),
            a_read.addr.eq(act_addr + (accel.act.valid & accel.act.ready)),
        ]
        with m.If(accel.act.valid & accel.act.ready):
            m.d.sync += act_addr.eq(act_addr + 1)
        with m.If(accel.cmd.valid & accel.cmd.ready):
            m.d.sync += [sent.eq(1), acts_on.eq(1), frozen.eq(0)]
        # The accelerator's frozen cycles (its memory never stalls: the
        # cycles after one on which a result waited for the UART).
        with m.If(sent & ~accel.status.valid & ~accel.mem.en):
            m.d.sync += frozen.eq(frozen + 1)

        # The weight memory answers a request `mem_latency` advancing cycles
        # later: the request is registered, then read, then (mem_stages = 1)
        # the word is registered. (Read straight from the controller's
        # address, the address multiplexers and the routing to the memory's
        # block RAMs were the 2x2 board's critical path at 75 MHz, 69.41 MHz;
        # the block RAMs' outputs straight to the weight buffer's 36 beats,
        # the 6x6 board's at 54.81 MHz.) Every stage advances with ``en``:
        # the block RAM holds its word while ``en`` is low, and so must the
        # register after it.
        mem = accel.mem
        req_r, read_valid = Signal(), Signal()
        addr_r = Signal(range(self._weight_words))
        with m.If(mem.en):
            m.d.sync += [req_r.eq(mem.req), addr_r.eq(mem.addr), read_valid.eq(req_r)]
        w_data = Cat(read.data for _, read, _ in w_ports)
        for write, read, bits in w_ports:
            m.d.comb += [write.en.eq(w_wr), write.data.eq(header[-config.mem_bits:][bits])]
        if w_single:
            # One address for both ports (writes come only between passes):
            # an iCE40 SPRAM has a single port, which cannot read while it
            # writes.
            (write, read, _), = w_ports
            w_addr = Signal(range(self._weight_words))
            m.d.comb += [
                w_addr.eq(Mux(write.en, wr_addr, addr_r)),
                read.addr.eq(w_addr),
                write.addr.eq(w_addr),
                read.en.eq((1 if self._mem_stages else mem.en) & ~write.en),
            ]
        else:
            # Separate ports: each memory reads at its own copy of the
            # request's address. (A read that meets a write is never used:
            # writes come only between passes.) With a register after the
            # memory it reads at every cycle (``held`` below); without, it
            # advances with ``en``.
            copies = (replicas(len(addr_r), len(w_ports), "board_weight_addr")
                      if len(w_ports) > 1 else [addr_r])
            for copy, (write, read, _) in zip(copies, w_ports):
                with m.If(mem.en):
                    m.d.sync += copy.eq(mem.addr)
                m.d.comb += [read.addr.eq(copy), write.addr.eq(wr_addr),
                             read.en.eq(1 if self._mem_stages else mem.en)]
        if self._mem_stages:
            # The block RAMs read at every cycle, and their word is held
            # here instead: ``word`` is the block RAM's output on the cycle
            # after an advancing one and, after a frozen one, the word it
            # showed then (``held``), which is what a block RAM enabled by
            # ``en`` would show. So ``mem.en`` reaches these registers and
            # not the clock enables of the weight memory's block RAMs (56 on
            # the ULX3S), which were the board's path from a fresh clone of
            # 40d9b2e: out.ready -> finishing -> mem.en -> block RAMs, 11.06
            # ns on the last net, 55.79 MHz; 73.25 MHz on the 4x4 board.
            advanced, held = Signal(), Signal(config.mem_bits)
            word = Signal(config.mem_bits)
            m.d.comb += word.eq(Mux(advanced, w_data, held))
            m.d.sync += [advanced.eq(mem.en), held.eq(word)]
            mem_valid, mem_data = Signal(), Signal(config.mem_bits)
            with m.If(mem.en):
                m.d.sync += [mem_valid.eq(read_valid), mem_data.eq(word)]
        else:
            mem_valid, mem_data = read_valid, w_data
        m.d.comb += [
            mem.data.eq(mem_data),
            mem.valid.eq(mem_valid),
            mem.stall.eq(0),
            mem_range.eq(mem.req & mem.en & (mem.addr >= self._weight_words)),
        ]

        # -- the frame machine --------------------------------------------------
        # The words of a W or A frame enter the header register too, once
        # its span has been read, and are written from its top bytes (the
        # next byte comes 10 bit times later at the earliest).
        incoming = Cat(header[8:], byte)    # the register with this cycle's byte
        # A received word is written a cycle later, from registers: the
        # write enable of a memory of many block RAMs (64 on the ULX3S) no
        # longer comes through the span check's logic (the 2x2 board's
        # critical path at 75 MHz: addr -> bad_span -> WEA, 9 ns of routing).
        m.d.sync += [w_wr.eq(0), a_wr.eq(0)]
        m.d.comb += [
            a_write.en.eq(a_wr),
            a_write.addr.eq(wr_addr),
            a_write.data.eq(header[-16 * GROUP:]),
        ]
        listening = Signal()        # the state takes a received byte
        m.d.comb += rx_overrun.eq(got & ~listening)

        def receive_words(size, write_en, depth, tag):
            """``left`` words of ``size`` bytes; those past ``depth`` are dropped."""
            m.d.comb += listening.eq(1)
            with m.If(none_left):
                m.d.sync += code.eq(bad_span)
                m.next = f"ACK_{tag}"
            with m.Elif(got):
                m.d.sync += [header.eq(incoming), count.eq(count + 1)]
                with m.If(count == size - 1):
                    m.d.sync += [count.eq(0), left.eq(left - 1), none_left.eq(left == 1)]
                    with m.If(bad_span | (addr == depth)):
                        m.d.sync += bad_span.eq(1)
                    with m.Else():
                        m.d.sync += [addr.eq(addr + 1), write_en.eq(1), wr_addr.eq(addr)]

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += listening.eq(1)
                m.d.sync += count.eq(0)
                m.d.comb += index_next.eq(0)
                with m.If(got):
                    with m.Switch(byte):
                        with m.Case(Request.INFO):
                            m.next = "INFO"
                        with m.Case(Request.WEIGHTS):
                            m.next = "SPAN_W"
                        with m.Case(Request.ACTS):
                            m.next = "SPAN_A"
                        with m.Case(Request.RUN):
                            m.next = "COMMAND"
                        with m.Default():
                            m.d.comb += bad_request.eq(1)

            for state, size, nxt in (("SPAN_W", nbytes(Span), "WEIGHTS"),
                                     ("SPAN_A", nbytes(Span), "ACTS"),
                                     ("COMMAND", nbytes(Command), "RUN")):
                with m.State(state):
                    m.d.comb += listening.eq(1)
                    with m.If(got):
                        m.d.sync += [header.eq(incoming), count.eq(count + 1)]
                        with m.If(count == size - 1):
                            m.d.sync += count.eq(0)
                            m.next = nxt

            # Every word of the span is read; those past the memory's end are
            # dropped and make the answer 1.
            with m.State("WEIGHTS"):
                m.d.sync += [addr.eq(span.addr), left.eq(span.count), count.eq(0),
                             none_left.eq(span.count == 0),
                             bad_span.eq(span.addr >= self._weight_words)]
                m.next = "WEIGHTS_DATA"
            with m.State("WEIGHTS_DATA"):
                receive_words(word_bytes, w_wr, self._weight_words, "W")
            with m.State("ACTS"):
                m.d.sync += [addr.eq(span.addr), left.eq(span.count), count.eq(0),
                             none_left.eq(span.count == 0),
                             bad_span.eq(span.addr >= act_words(config))]
                m.next = "ACTS_DATA"
            with m.State("ACTS_DATA"):
                receive_words(act_bytes, a_wr, act_words(config), "A")
            with m.State("ACK_W"):
                send(Answer.WEIGHTS, code, "IDLE")
            with m.State("ACK_A"):
                send(Answer.ACTS, code, "IDLE")

            with m.State("INFO"):
                info = Signal(Info)
                for name, value in self.info().items():
                    if name != "flags":
                        m.d.comb += getattr(info, name).eq(value)
                m.d.comb += info.flags.eq(flags)
                send(Answer.INFO, info, "IDLE", done=[clear_flags.eq(1)])

            with m.State("RUN"):
                m.d.comb += accel.cmd.valid.eq(~sent)
                with m.If(accel.out.valid):
                    m.next = "ROUND"
                with m.Elif(accel.status.valid):
                    m.next = "REPORT"
            # The result's FP16 values (`hw.fp.fp32_to_fp16`, or 0 where the
            # command did not ask for them), one PE's a cycle into a shift
            # register of P values: P + round_stages cycles (frozen ones,
            # which the board counts; the first round_stages values shifted
            # in are shifted out again) where a rounder per PE in the
            # accelerator took about 177 TRELLIS_COMB per PE on the 6x6
            # ULX3S board.
            with m.State("ROUND"):
                m.d.sync += halves.eq(Cat(halves.as_value()[16:], Mux(command.fp16, rounded, 0)))
                m.d.comb += rounding_next.eq(rounding + 1)
                with m.If(rounding == pes + stages - 1):
                    m.d.comb += rounding_next.eq(0)
                    m.next = "OUT"
            # A result or the status is taken one cycle after its last byte,
            # in a state of its own, by a ready that is a flip-flop: the
            # output register's load enable (as wide as a result) then comes
            # from a register, not from the state decoder (the 6x6 ULX3S
            # board's critical path: fsm_state -> out.ready -> the enable ->
            # the output register's clock enables, 47.27 MHz).
            with m.State("OUT"):
                send(Answer.OUT, result, "OUT_TAKEN", done_sync=[take_out.eq(1)], wide=out_wide)
            with m.State("OUT_TAKEN"):
                m.next = "RUN"
            with m.State("REPORT"):
                report = Signal(Report)
                m.d.comb += [report.status.eq(accel.status.payload), report.frozen.eq(frozen),
                             report.flags.eq(flags)]
                send(Answer.REPORT, report, "REPORT_TAKEN", done_sync=[take_status.eq(1)])
            with m.State("REPORT_TAKEN"):
                m.d.sync += [sent.eq(0), acts_on.eq(0), act_addr.eq(0)]
                m.next = "IDLE"

        # Registered: the LED pin's path starts at a flip-flop.
        m.d.sync += self.busy.eq(~fsm.ongoing("IDLE"))
        return m



#: An iCE40 UP SPRAM block: 16,384 words of 16 bits.
SPRAM_WORDS, SPRAM_BITS, SPRAM_BLOCKS = 16384, 16, 4

#: Bits of the weight word per inferred memory, each with its own copy of
#: the read address: 8 block RAMs of 16,384 x 1 on the ULX3S.
WEIGHT_GROUP_BITS = 8


class _Port:
    """The signals of a memory port (``addr``, ``data``, ``en``)."""

    def __init__(self, addr_bits, data_bits, name):
        self.addr = Signal(addr_bits, name=f"{name}_addr")
        self.data = Signal(data_bits, name=f"{name}_data")
        self.en = Signal(name=f"{name}_en")


def _spram_fits(width, depth):
    banks = -(-depth // SPRAM_WORDS)
    return width % SPRAM_BITS == 0 and (width // SPRAM_BITS) * banks <= SPRAM_BLOCKS


def _weight_ports(m, platform, width, depth):
    """The weight memory's write and read ports: a list of ``(write, read,
    bits)``, one per memory, each holding the ``bits`` (a slice of the
    word) of every word; and whether the ports share their address.

    On an iCE40 UP device the memory is built from SB_SPRAM256KA blocks
    (``width / 16`` side by side, up to 4 in all), one memory with one
    address for both ports (single-port blocks; the board writes only
    between passes): Yosys does not infer them from a memory with separate
    ports, and the device's 30 block RAMs would not hold it. The read data
    is held while the read port is not enabled, as SPRAM holds it.

    Elsewhere (simulation, ECP5) it is inferred, as memories of
    `WEIGHT_GROUP_BITS` bits side by side, each with its own read address
    (`hw.fanout`): one address register to every block RAM of the ULX3S
    board was the 4x4 board's critical path at df2db6f (addr_r -> the
    address multiplexer -> the block RAMs, 10.73 ns on the last net).
    """
    device = getattr(platform, "device", "") or ""
    if not (device.startswith("iCE40UP") and _spram_fits(width, depth)):
        # Written only between passes, so no read a pass uses meets a
        # write: no read-during-write bypass for Yosys to build (NO_RW_CHECK).
        ports = []
        for g, low in enumerate(range(0, width, WEIGHT_GROUP_BITS)):
            bits = slice(low, min(width, low + WEIGHT_GROUP_BITS))
            weights = m.submodules[f"weights{g}"] = memory.Memory(
                shape=bits.stop - bits.start, depth=depth, init=[], attrs=NO_RW_CHECK)
            ports.append((weights.write_port(), weights.read_port(domain="sync"), bits))
        return ports, False
    addr_bits = max(ceil_log2(depth), 1)
    write, read = _Port(addr_bits, width, "spram_w"), _Port(addr_bits, width, "spram_r")
    banks = -(-depth // SPRAM_WORDS)
    bank = write.addr[14:] if banks > 1 else Const(0)
    read_bank = Signal(range(banks))
    with m.If(read.en):
        m.d.sync += read_bank.eq(bank)
    outputs = []
    for b in range(banks):
        select = bank == b
        out = Signal(width, name=f"spram_out{b}")
        outputs.append(out)
        for lane in range(width // SPRAM_BITS):
            bits = slice(SPRAM_BITS * lane, SPRAM_BITS * (lane + 1))
            m.submodules[f"spram{b}_{lane}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=write.addr[:14], i_DATAIN=write.data[bits],
                i_MASKWREN=0b1111, i_WREN=write.en & select,
                i_CHIPSELECT=(write.en | read.en) & select,
                i_CLOCK=ClockSignal(), i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                o_DATAOUT=out[bits])
    m.d.comb += read.data.eq(Array(outputs)[read_bank])
    return [(write, read, slice(0, width))], True

