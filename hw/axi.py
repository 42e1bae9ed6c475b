"""The SPEQ accelerator behind standard interfaces: AXI4, AXI4-Lite, AXI4-Stream.

`SpeqAxi` wraps `hw.accel.SpeqAccel` for an SoC (``docs/axi.md``):

- ``s_axil_*``, an AXI4-Lite slave: the register map of ``hw/speq_axi.rdl``
  (`hw.regmap`): the command, the remap tables (readable), status and
  counters;
- ``m_axi_*``, an AXI4 master: the weight planes, read with INCR bursts,
  several in flight, into one FIFO per plane; it asks for a burst only when
  its FIFO has room for all of it, so it takes every R beat at once
  (``rready`` is always high) and the slave's pace is the only stall it sees.
  Its write channels carry KV_WRITE's writes into the KV cache's planes
  (where the accelerator has the write path, ``mem_bits`` a multiple of 32):
  a single-beat burst per write of the accelerator's write port, with its
  byte strobes, several in flight; the command ends when every write has
  its response;
- ``s_axis_*``, AXI4-Stream in: the activations of a pass;
- ``m_axis_*``, AXI4-Stream out: one beat of ``P`` results per step, its row
  and token in ``tuser``, ``tlast`` on the pass' last beat;
- ``irq``: high while STATUS.DONE and IRQ_ENABLE.DONE.

The accelerator's memory port wants its data a fixed number of cycles after
a request and freezes as a whole on ``stall``. Here the port is served from
the plane FIFOs with a latency of one cycle, and stalls only in the cycle
after it asked for a word that has not arrived yet; a full result FIFO
(``out_depth - 1`` beats) freezes it as a blocked output does. Every
output of the AXI side is a register (or a constant): none depends on an
input of the same cycle.

The clock is ``aclk`` and the reset ``aresetn``, active low and synchronous,
as AXI has them.
"""

from dataclasses import asdict, dataclass

import numpy as np

from amaranth.hdl import (Cat, ClockDomain, ClockSignal, Const, Module, Mux, ResetInserter,
                          ResetSignal, Signal, Value)
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2, exact_log2

from .accel import SpeqAccel
from .array import NO_RW_CHECK
from .config import SpeqConfig, check_integer_fields
from .controller import (CHECK_CYCLES, COUNTER_BITS, N_BITS, Error, Op, check_delayed,
                         result_layout)
from .decoder import NUM_CODES
from .fp import floor_div_const
from .regmap import register_map
from golden.schedule import PLANE_WORDS


__all__ = ["AxiConfig", "SpeqAxi", "burst_cap", "burst_step", "ID", "VERSION", "AXI_ADDR_BITS",
           "AXIL_DATA_BITS", "STREAM_ACT_BITS", "ID_BITS", "EPOCH_BITS"]


#: Words of the small FIFO at the front of each weight plane's FIFO (`SpeqAxi`):
#: 3, the least at which `amaranth.lib.fifo.SyncFIFOBuffered` takes a word every
#: cycle.
FRONT_DEPTH = 3


class _FIFO(fifo.SyncFIFOBuffered):
    """`amaranth.lib.fifo.SyncFIFOBuffered` with its storage marked
    `hw.array.NO_RW_CHECK`: it reads an entry only while the FIFO holds
    one (level not 0) and writes one only while it is not full, so a read
    never meets a write to its address, and Yosys need not build a
    read-during-write bypass beside the block RAM (137 flip-flops for 64 bits
    by 128, on the path from a plane FIFO into the weight buffer)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.submodules.storage.attrs.update(NO_RW_CHECK)
        return m


#: The ID register: ASCII "SPEQ".
ID = 0x53504551
#: The register map's version (major, minor). 2.0: IRQ_ENABLE a register of
#: its own (CONTROL is write-only), CONTROL.ABORT, error 7 ABORTED. 2.1: op 6
#: KV_WRITE and its register KV. 2.2: multi-head passes (OP.MULTIHEAD, KV.HEAD,
#: CONFIG2.HEAD_GROUPS). 2.3: STATUS.RW_CLASH.
VERSION = (2, 3)
#: Width of the read master's byte addresses.
AXI_ADDR_BITS = 32
#: Width of the AXI4-Lite data bus.
AXIL_DATA_BITS = 32
#: Width of the activation stream: four FP16 values a beat.
STREAM_ACT_BITS = 64
#: Bits of the epoch in a burst's ID (above the plane bit): R beats and B
#: responses of bursts from the last 2**EPOCH_BITS - 1 resets before are
#: told apart.
EPOCH_BITS = 3
#: Width of ARID, RID, AWID and BID: the plane, then the epoch.
ID_BITS = 1 + EPOCH_BITS
#: INCR bursts do not cross 4 KB (AXI4).
_BOUNDARY = 4096


#: Allowed range (inclusive) of every `AxiConfig` parameter.
AXI_PARAM_RANGES = {
    "burst_beats": (1, 256),
    "max_outstanding": (1, 64),
    "fifo_depth": (4, 4096),
    # amaranth.lib.fifo.SyncFIFOBuffered of depth 2 takes a beat every other
    # cycle only; an activation FIFO that slow would make the pass late.
    "act_depth": (4, 4096),
    "out_depth": (4, 4096),
}


@dataclass(frozen=True)
class AxiConfig:
    """Parameters of the AXI top (beside the accelerator's `SpeqConfig`).

    Parameters
    ----------
    burst_beats : int
        Most beats of one read burst (``arlen + 1``), a power of two up to
        256; a burst is also cut where a plane ends and at 4 KB boundaries.
    max_outstanding : int
        Most read bursts in flight (issued and not yet ended by ``rlast``).
    fifo_depth : int
        Words of each weight plane's FIFO, at least ``burst_beats``: the data
        the master may have asked for and not yet handed to the accelerator.
        A pass keeps the memory busy when it covers the read latency
        (``docs/axi.md``).
    act_depth, out_depth : int
        Beats of the activation and result FIFOs (at least 4, so that they
        take a beat every cycle). The result FIFO takes a beat only while it
        held at most ``out_depth - 2`` in the cycle before (its ready is a
        register), so ``out_depth - 1`` of them are in use.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of its range, ``burst_beats`` is not a power of
        two or exceeds ``fifo_depth``.
    """

    burst_beats: int = 16
    max_outstanding: int = 8
    fifo_depth: int = 128
    act_depth: int = 8
    out_depth: int = 8

    def __post_init__(self):
        check_integer_fields(self, AXI_PARAM_RANGES)
        if self.burst_beats & (self.burst_beats - 1):
            raise ValueError(f"burst_beats must be a power of two, not {self.burst_beats}")
        if self.burst_beats > self.fifo_depth:
            raise ValueError(f"burst_beats ({self.burst_beats}) must not exceed fifo_depth "
                             f"({self.fifo_depth}): a burst is asked for only when its "
                             f"FIFO has room for all of it")

    def to_dict(self):
        return asdict(self)


def result_stream_bits(config):
    """``(tdata, tuser)`` widths of the result stream: ``P`` FP32 results then
    ``P`` FP16 ones; the row of PE 0 then the token."""
    pes = config.rows * config.cols
    return 48 * pes, N_BITS + data.Layout.cast(result_layout(config))["token"].width


def burst_cap(to, burst_beats, page):
    """Most beats of a burst ``to`` beats (1 to ``page``) before a 4 KB
    boundary: ``min(burst_beats, page, to)``, with ``burst_beats`` and
    ``page`` (the beats of 4 KB) powers of two."""
    beats = min(burst_beats, page)
    shift = exact_log2(beats)
    return Mux(to[shift:] != 0, beats, to[:shift])


def burst_step(to, burst_beats, page):
    """``(cap, to)`` of the burst after one of ``burst_cap(to, ...)`` beats
    that was ``to`` beats before a 4 KB boundary (a boundary reached starts a
    page of ``page`` beats).

    Bit tests and a decrement, no comparison, so that the read master can
    work a burst two ahead out in the cycle a burst goes out: with ``to =
    hi x beats + lo``, more than one burst is left before the boundary when
    ``hi`` is 2 or more, or 1 and ``lo`` is not 0."""
    beats = min(burst_beats, page)
    shift = exact_log2(beats)
    hi, lo = to[shift:], to[:shift]
    partial = (hi == 1) & (lo != 0)
    more = (hi[1:] != 0) | partial
    return (Mux(partial, lo, beats),
            Mux(more, Cat(lo, (hi - 1)[:len(hi)]), page))


class SpeqAxi(wiring.Component):
    """`SpeqAccel` behind AXI4 (weights), AXI4-Lite (registers) and
    AXI4-Stream (activations, results); module docstring and ``docs/axi.md``.

    Parameters
    ----------
    config : SpeqConfig
        The accelerator; its ``mem_bits`` is the master's data width (a
        power of two from 16 to 1024, as AXI has them). With ``mem_bits`` a
        multiple of 32 the accelerator has the KV write path
        (`hw.kv_writer`) and the master its write channels.
    axi : AxiConfig

    Members
    -------
    aclk, aresetn : In(1)
        Clock, and reset (active low, synchronous).
    s_axil_* : AXI4-Lite slave (address ``ceil(log2(register map size))``
        bits, data 32 bits).
    m_axi_ar*, m_axi_r* : AXI4 read master (address 32 bits, data
        ``mem_bits``, ID `ID_BITS`: the plane, then the reset epoch).
    m_axi_aw*, m_axi_w*, m_axi_b* : its write channels (KV_WRITE; only with
        the KV write path), IDs as the reads'.
    s_axis_tdata, s_axis_tvalid, s_axis_tready
        Activations: ``T x K/4`` beats of four FP16 values after a pass'
        START, ``X[t, 4g .. 4g+3]`` for ``t`` then ``g`` ascending.
    m_axis_tdata, m_axis_tuser, m_axis_tlast, m_axis_tvalid, m_axis_tready
        Results: ``tdata`` holds ``Y[token, row + p]`` as FP32 at bit
        ``32 p`` and, with OP.FP16, as FP16 at bit ``32 P + 16 p`` (else 0);
        ``tuser`` the row of PE 0, then the token; ``tlast`` marks the
        pass' last beat.
    irq : Out(1)

    Raises
    ------
    TypeError
        If ``config`` is not a `SpeqConfig` or ``axi`` not an `AxiConfig`.
    ValueError
        If ``mem_bits`` is not a power of two (AXI data widths are), or as
        `SpeqAccel`.
    """

    def __init__(self, config=SpeqConfig(), axi=AxiConfig()):
        if not isinstance(config, SpeqConfig):
            raise TypeError(f"config must be a SpeqConfig, not {config!r}")
        if not isinstance(axi, AxiConfig):
            raise TypeError(f"axi must be an AxiConfig, not {axi!r}")
        if config.mem_bits & (config.mem_bits - 1) or config.mem_bits > 1024:
            raise ValueError(f"mem_bits must be a power of two from 16 to 1024 (an AXI data "
                             f"width), not {config.mem_bits}")
        self._config, self._axi = config, axi
        # The KV write path where the memory word holds whole PE fields;
        # elsewhere KV_WRITE is refused (BAD_OP) at the registers.
        self._accel = SpeqAccel(config)
        self._regmap = register_map()
        axil_addr = ceil_log2(self._regmap.size)
        out_data, out_user = result_stream_bits(config)
        write_channels = {
            "m_axi_awid": Out(ID_BITS), "m_axi_awaddr": Out(AXI_ADDR_BITS),
            "m_axi_awlen": Out(8), "m_axi_awsize": Out(3), "m_axi_awburst": Out(2),
            "m_axi_awlock": Out(1), "m_axi_awcache": Out(4), "m_axi_awprot": Out(3),
            "m_axi_awvalid": Out(1), "m_axi_awready": In(1),
            "m_axi_wdata": Out(config.mem_bits), "m_axi_wstrb": Out(config.mem_bits // 8),
            "m_axi_wlast": Out(1), "m_axi_wvalid": Out(1), "m_axi_wready": In(1),
            "m_axi_bid": In(ID_BITS), "m_axi_bresp": In(2), "m_axi_bvalid": In(1),
            "m_axi_bready": Out(1),
        } if self.kv_write else {}
        super().__init__({
            "aclk": In(1), "aresetn": In(1),
            # AXI4-Lite slave.
            "s_axil_awaddr": In(axil_addr), "s_axil_awprot": In(3),
            "s_axil_awvalid": In(1), "s_axil_awready": Out(1),
            "s_axil_wdata": In(AXIL_DATA_BITS), "s_axil_wstrb": In(AXIL_DATA_BITS // 8),
            "s_axil_wvalid": In(1), "s_axil_wready": Out(1),
            "s_axil_bresp": Out(2), "s_axil_bvalid": Out(1), "s_axil_bready": In(1),
            "s_axil_araddr": In(axil_addr), "s_axil_arprot": In(3),
            "s_axil_arvalid": In(1), "s_axil_arready": Out(1),
            "s_axil_rdata": Out(AXIL_DATA_BITS), "s_axil_rresp": Out(2),
            "s_axil_rvalid": Out(1), "s_axil_rready": In(1),
            # AXI4 read master.
            "m_axi_arid": Out(ID_BITS), "m_axi_araddr": Out(AXI_ADDR_BITS), "m_axi_arlen": Out(8),
            "m_axi_arsize": Out(3), "m_axi_arburst": Out(2), "m_axi_arlock": Out(1),
            "m_axi_arcache": Out(4), "m_axi_arprot": Out(3),
            "m_axi_arvalid": Out(1), "m_axi_arready": In(1),
            "m_axi_rid": In(ID_BITS), "m_axi_rdata": In(config.mem_bits), "m_axi_rresp": In(2),
            "m_axi_rlast": In(1), "m_axi_rvalid": In(1), "m_axi_rready": Out(1),
            **write_channels,
            # AXI4-Stream: activations in, results out.
            "s_axis_tdata": In(STREAM_ACT_BITS), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "m_axis_tdata": Out(out_data), "m_axis_tuser": Out(out_user),
            "m_axis_tlast": Out(1), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "irq": Out(1),
        })

    @property
    def config(self):
        return self._config

    @property
    def axi(self):
        return self._axi

    @property
    def accel(self):
        return self._accel

    @property
    def regmap(self):
        return self._regmap

    @property
    def kv_write(self):
        """The AXI top takes KV_WRITE (the accelerator's write path and the
        master's write channels are built)."""
        return self._accel.controller.kv_write

    @property
    def mem_latency(self):
        """The latency the accelerator's memory port sees (advancing cycles
        from a request to its word): the cycle model's ``mem_latency``."""
        return 1

    def interfaces(self):
        """The bus interfaces (port prefix, protocol, role) for the manifest."""
        return [
            {"prefix": "s_axil_", "protocol": "AXI4-Lite", "role": "slave",
             "data_bits": AXIL_DATA_BITS, "addr_bits": len(self.s_axil_awaddr),
             "what": "registers (hw/speq_axi.rdl)"},
            {"prefix": "m_axi_", "protocol": "AXI4", "role": "master",
             "read_only": not self.kv_write,
             "data_bits": self._config.mem_bits, "addr_bits": AXI_ADDR_BITS, "id_bits": ID_BITS,
             "burst": "INCR", "max_burst_beats": self._axi.burst_beats,
             "max_outstanding": self._axi.max_outstanding,
             "what": "weight planes (ID[0] = plane: 0 draft, FP16 or KV high, 1 residual or "
                     "KV low; ID[3:1] = reset epoch)" +
                     ("; KV_WRITE's writes, single-beat with byte strobes, at most "
                      "max_outstanding in flight" if self.kv_write else "")},
            {"prefix": "s_axis_", "protocol": "AXI4-Stream", "role": "slave",
             "data_bits": STREAM_ACT_BITS, "what": "activations"},
            {"prefix": "m_axis_", "protocol": "AXI4-Stream", "role": "master",
             "data_bits": len(self.m_axis_tdata), "user_bits": len(self.m_axis_tuser),
             "what": "results"},
            {"prefix": "", "clock": "aclk", "reset": "aresetn", "reset_active": "low",
             "interrupt": "irq"},
        ]

    def elaborate(self, platform):
        m = Module()
        config, axi, regmap = self._config, self._axi, self._regmap
        pes = config.rows * config.cols
        bus_bytes = config.mem_bits // 8
        draft_words = 16 * pes // config.mem_bits      # words of the draft part of an entry

        m.domains.sync = ClockDomain("sync")
        m.d.comb += [ClockSignal("sync").eq(self.aclk), ResetSignal("sync").eq(~self.aresetn)]

        accel = self._accel
        # CONTROL.ABORT holds the accelerator in reset while the bursts in
        # flight drain (its remap table memories keep their contents).
        aborting = Signal()
        m.submodules.accel = ResetInserter(aborting)(accel)
        cmd, status, mem = accel.cmd, accel.status, accel.mem
        # One cycle at the end of an abort: the FIFOs and the read master
        # start afresh.
        clear = Signal()

        # Every burst carries the epoch in its ARID beside the plane. The
        # epoch survives aresetn and steps on every reset, so that the R
        # beats of bursts asked for before a reset (the slave and the
        # interconnect need not be reset with this block) are dropped and do
        # not end a burst of this epoch.
        epoch = Signal(EPOCH_BITS, reset_less=True)
        in_reset = Signal(reset_less=True)
        rst = ResetSignal("sync")
        m.d.sync += in_reset.eq(rst)
        with m.If(rst & ~in_reset):
            m.d.sync += epoch.eq(epoch + 1)

        # -- registers the CPU writes ----------------------------------------------------
        reg_op = Signal(3)
        reg_fp16 = Signal()
        reg_n, reg_k, reg_t = Signal(N_BITS, name="reg_n"), Signal(16, name="reg_k"), \
            Signal(5, name="reg_t")
        reg_base = [Signal(AXI_ADDR_BITS, name=f"reg_wbase{p}") for p in range(2)]
        irq_en = Signal()
        reg_pos, reg_vt = Signal(16, name="reg_pos"), Signal(name="reg_vt")
        reg_multihead, reg_head = Signal(name="reg_multihead"), Signal(8, name="reg_head")
        table = [Signal(data.StructLayout({"base": 7, "exp": 6, "half": 1, "zero": 1}),
                        name=f"reg_table{code}") for code in range(NUM_CODES)]
        table_loaded = Signal(NUM_CODES)     # written since reset
        table_dirty = Signal(NUM_CODES)      # written since the accelerator last took it

        # -- registers the hardware writes ---------------------------------------------------
        busy, done = Signal(name="busy"), Signal(name="done")
        st_error, st_op = Signal(3, name="st_error"), Signal(3, name="st_op")
        st_cycles = Signal(32)
        st_bits, st_macs = Signal(COUNTER_BITS, name="st_bits"), Signal(COUNTER_BITS, name="st_macs")
        wait_mem, wait_out = Signal(32, name="wait_mem"), Signal(32, name="wait_out")
        m.d.comb += self.irq.eq(done & irq_en)

        # -- AXI4-Lite slave: registered handshakes, one access at a time --------------------
        write_hold = Signal()                # writes wait (while the tables are copied)
        aw_take = Signal()
        m.d.sync += [self.s_axil_awready.eq(0), self.s_axil_wready.eq(0),
                     self.s_axil_arready.eq(0)]
        with m.If(self.s_axil_awvalid & self.s_axil_wvalid & ~self.s_axil_awready &
                  ~self.s_axil_bvalid & ~write_hold):
            m.d.sync += [self.s_axil_awready.eq(1), self.s_axil_wready.eq(1)]
        m.d.comb += aw_take.eq(self.s_axil_awready & self.s_axil_awvalid & self.s_axil_wvalid)
        with m.If(self.s_axil_bvalid & self.s_axil_bready):
            m.d.sync += self.s_axil_bvalid.eq(0)
        with m.If(self.s_axil_arvalid & ~self.s_axil_arready & ~self.s_axil_rvalid):
            m.d.sync += self.s_axil_arready.eq(1)
        ar_take = self.s_axil_arready & self.s_axil_arvalid
        with m.If(self.s_axil_rvalid & self.s_axil_rready):
            m.d.sync += self.s_axil_rvalid.eq(0)

        # What each register reads as (fields at their bits), from the map.
        hw_values = {
            ("ID", "ID"): Const(ID, 32),
            ("VERSION", "MAJOR"): Const(VERSION[0], 16), ("VERSION", "MINOR"): Const(VERSION[1], 16),
            ("CONFIG0", "ROWS"): Const(config.rows, 8), ("CONFIG0", "COLS"): Const(config.cols, 8),
            ("CONFIG0", "TMAX"): Const(config.tmax, 8),
            ("CONFIG0", "DRAFT_LANES"): Const(config.draft_lanes, 8),
            ("CONFIG1", "KMAX"): Const(config.kmax, 16),
            ("CONFIG1", "MEM_BITS"): Const(config.mem_bits, 16),
            ("CONFIG2", "HEAD_GROUPS"): Const(config.head_groups, 9),
            ("CONTROL", "START"): Const(0, 1), ("CONTROL", "FLUSH"): Const(0, 1),
            ("CONTROL", "ABORT"): Const(0, 1), ("IRQ_ENABLE", "DONE"): irq_en,
            ("STATUS", "BUSY"): busy, ("STATUS", "DONE"): done,
            ("STATUS", "ERROR"): st_error, ("STATUS", "OP"): st_op,
            ("STATUS", "RW_CLASH"): accel.controller.rw_clash,
            ("OP", "OP"): reg_op, ("OP", "FP16"): reg_fp16, ("OP", "MULTIHEAD"): reg_multihead,
            ("N", "N"): reg_n, ("K", "K"): reg_k, ("T", "T"): reg_t,
            ("WBASE0", "ADDR"): reg_base[0], ("WBASE1", "ADDR"): reg_base[1],
            ("CYCLES", "COUNT"): st_cycles,
            ("BITS_LO", "COUNT"): st_bits[:32], ("BITS_HI", "COUNT"): st_bits[32:],
            ("MACS_LO", "COUNT"): st_macs[:32], ("MACS_HI", "COUNT"): st_macs[32:],
            ("WAIT_MEM", "COUNT"): wait_mem, ("WAIT_OUT", "COUNT"): wait_out,
            ("TABLE_LOADED", "MASK"): table_loaded,
            ("KV", "POS"): reg_pos, ("KV", "VT"): reg_vt, ("KV", "HEAD"): reg_head,
        }
        for code in range(NUM_CODES):
            for name in ("base", "exp", "half", "zero"):
                hw_values[(f"TABLE{code}", name.upper())] = Value.cast(table[code][name])
        values = {}
        for register in regmap:
            word = Signal(32, name=f"rd_{register.name.lower()}")
            for field in register.fields:
                value = hw_values[(register.name, field.name)]
                assert len(value) == field.width, (register.name, field.name, len(value))
                if "r" in field.sw:
                    m.d.comb += word[field.lsb:field.lsb + field.width].eq(value)
            values[register.name] = word
        assert set(hw_values) == {(r.name, f.name) for r in regmap for f in r.fields}

        def decode(kind, addr, allowed):
            """``(hit, {name: selected})`` of the registers ``allowed`` at ``addr``."""
            hits = {r.name: addr[2:] == r.offset >> 2 for r in regmap if allowed(r)}
            hit = Signal(name=f"{kind}_hit")
            m.d.comb += hit.eq(Cat(*hits.values()).any() if hits else 0)
            return hit, hits

        # Reads: the register's value, or SLVERR and 0 off the map.
        r_hit, r_sel = decode("read", self.s_axil_araddr,
                              lambda r: any("r" in f.sw for f in r.fields))
        with m.If(ar_take):
            m.d.sync += [
                self.s_axil_rvalid.eq(1),
                self.s_axil_rresp.eq(Mux(r_hit, 0b00, 0b10)),
                self.s_axil_rdata.eq(0),
            ]
            for name, sel in r_sel.items():
                with m.If(sel):
                    m.d.sync += self.s_axil_rdata.eq(values[name])

        # Writes: byte strobes; SLVERR off the map and on read-only registers.
        w_hit, w_sel = decode("write", self.s_axil_awaddr, lambda r: r.writable)
        with m.If(aw_take):
            m.d.sync += [self.s_axil_bvalid.eq(1),
                         self.s_axil_bresp.eq(Mux(w_hit, 0b00, 0b10))]

        def written(name):
            """The register's value after the write (under the strobes)."""
            old = values[name]
            return Cat(*(Mux(self.s_axil_wstrb[i], self.s_axil_wdata.word_select(i, 8),
                             old.word_select(i, 8)) for i in range(4)))

        def field_of(name, field, word):
            f = regmap[name].field(field)
            return word[f.lsb:f.lsb + f.width]

        start_write = Signal()
        flush_write = Signal()
        abort_write = Signal()
        done_clear = Signal()
        with m.If(aw_take):
            for name, sel in w_sel.items():
                new = written(name)
                with m.If(sel):
                    if name == "CONTROL":
                        m.d.comb += [start_write.eq(field_of(name, "START", new)),
                                     flush_write.eq(field_of(name, "FLUSH", new)),
                                     abort_write.eq(field_of(name, "ABORT", new))]
                    elif name == "IRQ_ENABLE":
                        m.d.sync += irq_en.eq(field_of(name, "DONE", new))
                    elif name == "STATUS":
                        m.d.comb += done_clear.eq(
                            field_of(name, "DONE", self.s_axil_wdata) & self.s_axil_wstrb[0])
                    elif name == "OP":
                        m.d.sync += [reg_op.eq(field_of(name, "OP", new)),
                                     reg_fp16.eq(field_of(name, "FP16", new)),
                                     reg_multihead.eq(field_of(name, "MULTIHEAD", new))]
                    elif name in ("N", "K", "T"):
                        reg = {"N": reg_n, "K": reg_k, "T": reg_t}[name]
                        m.d.sync += reg.eq(field_of(name, name, new))
                    elif name.startswith("WBASE"):
                        m.d.sync += reg_base[int(name[5:])].eq(field_of(name, "ADDR", new))
                    elif name == "KV":
                        m.d.sync += [reg_pos.eq(field_of(name, "POS", new)),
                                     reg_vt.eq(field_of(name, "VT", new)),
                                     reg_head.eq(field_of(name, "HEAD", new))]
                    elif name.startswith("TABLE"):
                        code = int(name[5:])
                        for f in ("base", "exp", "half", "zero"):
                            m.d.sync += table[code][f].eq(field_of(name, f.upper(), new))
                        m.d.sync += [table_loaded[code].eq(1), table_dirty[code].eq(1)]
                    else:  # pragma: no cover - a writable register the hardware lacks
                        raise AssertionError(f"no hardware for writable register {name}")

        # -- the command sequencer -----------------------------------------------------------
        # START latches the command; the table entries written since the last
        # START go to the accelerator first (TABLE commands, whose statuses
        # are dropped); then the pass; its status ends it. A KV_WRITE's
        # status waits until every write has its response.
        c = Signal(cmd.payload.shape())     # the pass' command
        # Writes taken from the accelerator's write port whose B response
        # has not come (the write master, below).
        writes = Signal(range(axi.max_outstanding + 1), name="wr_outstanding")
        m.d.comb += status.ready.eq(writes == 0)
        ended = Signal()                    # the pass' status is taken in this cycle
        # One-hot states (none: idle): copying tables, offering the pass, running.
        state_sync, state_issue, state_run = (Signal(name=f"state_{name}")
                                              for name in ("sync", "issue", "run"))
        # The read master's word counts are three registers away from the
        # command (below): the pass is offered two cycles after START at
        # the earliest and starts CHECK_CYCLES after that. STATUS.CYCLES
        # counts from the pass' start (the accelerator's, CHECK_CYCLES after
        # it takes the pass) and sees neither.
        settled = Signal()
        flushing = Signal()                 # dropping the waiting activation beats
        m.d.comb += [busy.eq(state_sync | state_issue | state_run | flushing | aborting),
                     write_hold.eq(state_sync)]
        with m.If(done_clear):
            m.d.sync += done.eq(0)

        # The lowest dirty entry, for the next TABLE command.
        code = Signal(range(NUM_CODES))
        for index in reversed(range(NUM_CODES)):
            with m.If(table_dirty[index]):
                m.d.comb += code.eq(index)
        entry = Signal.like(table[0], name="sync_entry")
        with m.Switch(code):
            for index in range(NUM_CODES):
                with m.Case(index):
                    m.d.comb += entry.eq(table[index])

        ops = [Op.DRAFT, Op.VERIFY, Op.BASELINE, Op.KV, Op.KV_DRAFT] + \
            ([Op.KV_WRITE] if self.kv_write else [])
        with m.If(start_write & ~busy):
            m.d.sync += [done.eq(0), st_op.eq(reg_op)]
            with m.If(reg_op.matches(*ops)):
                m.d.sync += [
                    state_sync.eq(1), settled.eq(0),
                    c.op.eq(reg_op), c.n.eq(reg_n), c.k.eq(reg_k), c.t.eq(reg_t),
                    c.fp16.eq(reg_fp16), c.pos.eq(reg_pos), c.vt.eq(reg_vt),
                    c.multihead.eq(reg_multihead), c.head.eq(reg_head),
                    c.addr0.eq(reg_base[0] >> exact_log2(bus_bytes)),
                    c.addr1.eq(reg_base[1] >> exact_log2(bus_bytes)),
                ]
            with m.Else():
                # TABLE (3) comes through the table registers; 7 is no op, nor
                # 6 (KV_WRITE) without the write path.
                m.d.sync += [done.eq(1), st_error.eq(Error.BAD_OP), st_cycles.eq(0),
                             st_bits.eq(0), st_macs.eq(0), wait_mem.eq(0), wait_out.eq(0)]

        # The pass' fields reach the command port whatever the state (a
        # TABLE command ignores them): the accelerator's checks, which it
        # registers, then start from registers, not from the state.
        m.d.comb += cmd.payload.eq(c)
        with m.If(state_sync):
            m.d.comb += [
                cmd.valid.eq(table_dirty.any()),
                cmd.payload.op.eq(Op.TABLE),
                cmd.payload.code.eq(code),
                cmd.payload.base.eq(entry.base), cmd.payload.exp.eq(entry.exp),
                cmd.payload.half.eq(entry.half), cmd.payload.zero.eq(entry.zero),
            ]
            with m.If(cmd.valid & cmd.ready):
                m.d.sync += table_dirty.bit_select(code, 1).eq(0)
            m.d.sync += settled.eq(1)
            with m.If(~table_dirty.any() & settled):
                m.d.sync += [state_sync.eq(0), state_issue.eq(1)]
        issued = Signal()
        with m.If(state_issue):
            m.d.comb += cmd.valid.eq(1)
            m.d.comb += issued.eq(cmd.ready)
            with m.If(cmd.ready):
                m.d.sync += [state_issue.eq(0), state_run.eq(1),
                             wait_mem.eq(0), wait_out.eq(0)]
        # The accelerator checks the command for CHECK_CYCLES cycles after
        # taking it; its pass (and its requests) start then, or its status
        # comes, for a command it refuses. The read master starts with the
        # pass (`started`), as it did when a pass started on its command's
        # cycle: its reads keep their timing against the pass'.
        started = check_delayed(m, issued, "rd_started")
        # A weight read or a KV write answered SLVERR or DECERR.
        bus_error = Signal()
        # A KV_WRITE waits for the write master: a write the master does not
        # take yet, or, after its last write, the last responses (its status
        # is held meanwhile: `drain` counts those cycles).
        write_wait = Signal()
        drain = Signal(32)
        m.d.comb += [
            ended.eq(state_run & status.valid & status.ready),
            write_wait.eq((accel.wmem.valid & ~accel.wmem.ready) |
                          (status.valid & ~status.ready)),
        ]
        with m.If(issued):
            m.d.sync += drain.eq(0)
        with m.If(state_run & ~ended):
            with m.If(mem.stall | write_wait):
                m.d.sync += wait_mem.eq(wait_mem + 1)
            with m.Elif(~mem.en):
                m.d.sync += wait_out.eq(wait_out + 1)
            with m.If(status.valid):
                m.d.sync += drain.eq(drain + 1)
        with m.If(ended):
            m.d.sync += [
                state_run.eq(0), done.eq(1),
                st_error.eq(Mux((status.payload.error == Error.OK) & bus_error,
                                Error.READ_ERROR, status.payload.error)),
                st_cycles.eq(status.payload.cycles + drain),
                st_bits.eq(status.payload.bits), st_macs.eq(status.payload.macs),
            ]

        # -- CONTROL.ABORT -------------------------------------------------------------------
        # The command stops where it is: no more bursts are asked for, the
        # accelerator is held in reset, and the beats of the bursts in flight
        # are dropped as they come. When the last one is in, the FIFOs and
        # the read master are cleared, and DONE reports ABORTED. The table
        # entries the accelerator had are sent again at the next START (its
        # record of them was reset with it; the memories were not).
        # Read bursts in flight: ``outstanding`` counts them a cycle late
        # (``burst_issued``: a burst went out last cycle), so that the count's
        # adder starts from flip-flops; counted in the cycle of the issue, it
        # was the 2x2 AXI top's path at bbf753d, seed 1 (m_axi_arvalid ->
        # the choice of a burst -> the adder -> outstanding).
        outstanding = Signal(range(axi.max_outstanding + 1))
        burst_issued = Signal()
        with m.If(abort_write & (state_sync | state_issue | state_run)):
            m.d.sync += [aborting.eq(1), state_sync.eq(0), state_issue.eq(0),
                         state_run.eq(0)]
        m.d.comb += clear.eq(aborting & (outstanding == 0) & ~burst_issued & (writes == 0))
        with m.If(clear):
            m.d.sync += [
                aborting.eq(0), done.eq(1), st_error.eq(Error.ABORTED), st_cycles.eq(0),
                st_bits.eq(0), st_macs.eq(0), wait_mem.eq(0), wait_out.eq(0),
                table_dirty.eq(table_dirty | table_loaded), flushing.eq(0),
            ]

        # -- weight read master ------------------------------------------------------------
        # Words of each plane in a pass: ceil(N / P) entries per group of K,
        # each of PLANE_WORDS[mode] x draft_words words from the two planes.
        two_planes = c.op.as_value().matches(Op.VERIFY, Op.KV)
        # Registered three times from the command (latched at START): the
        # slots, their product with the groups of K, then the plane words,
        # so that the pass' start only copies them. The pass is offered two
        # cycles after START at the earliest and starts CHECK_CYCLES (1)
        # later, in the cycle the third register is ready.
        # (A multi-head pass: ceil(N / (P / G)) entries, a head's rows per PE group.)
        def slots_for(per):
            return floor_div_const((c.n + (per - 1))[:N_BITS + 1], per)
        slots_used = slots_for(pes) if config.head_groups == 1 else \
            Mux(c.multihead, slots_for(config.head_pes), slots_for(pes))
        assert CHECK_CYCLES >= 1, "the word counts need the cycle of the command check"
        slots_reg = Signal(N_BITS + 1)
        entries = Signal(N_BITS + 14)
        m.d.sync += [slots_reg.eq(slots_used), entries.eq(slots_reg * c.k[2:])]
        unit = entries * draft_words         # words of 16 bits per PE, per entry
        words_bits = len(entries) + bits_for(4 * draft_words)
        words0, words1 = Signal(words_bits), Signal(words_bits)
        plane0_entry = Signal(range(4 * draft_words + 1))   # plane-0 words of an entry

        def times(count):
            """``unit x count`` (0 to 4) by shifts and an add, not a multiplier."""
            return {0: 0, 1: unit, 2: unit << 1, 3: (unit << 1) + unit, 4: unit << 2}[count]

        with m.Switch(c.op):
            for op in (Op.DRAFT, Op.VERIFY, Op.BASELINE, Op.KV, Op.KV_DRAFT):
                first, second = PLANE_WORDS[op.name.lower()]
                with m.Case(op):
                    m.d.sync += [words0.eq(times(first)), words1.eq(times(second))]
                    m.d.comb += plane0_entry.eq(first * draft_words)
            with m.Default():                   # refused before a pass starts
                m.d.sync += [words0.eq(0), words1.eq(0)]
                m.d.comb += plane0_entry.eq(0)

        planes = [_FIFO(width=config.mem_bits, depth=axi.fifo_depth)
                  for _ in range(2)]
        m.submodules.plane0_fifo, m.submodules.plane1_fifo = (ResetInserter(clear)(plane)
                                                              for plane in planes)
        # Each plane's FIFO drains into a small one (`FRONT_DEPTH` words, no
        # block RAM), which answers the accelerator: the block RAM's slow
        # clock-to-out ends in a register instead of running on into the
        # weight buffer's write data (the AXI top's critical path, seeds 2
        # and 3). A word written into an empty plane is at the head 4 cycles
        # later (2 without the front: `golden.axi_perf.HEAD_CYCLES`). The
        # master's room count is unchanged: the fronts only add room.
        fronts = [_FIFO(width=config.mem_bits, depth=FRONT_DEPTH) for _ in range(2)]
        m.submodules.plane0_front, m.submodules.plane1_front = (ResetInserter(clear)(front)
                                                                for front in fronts)
        for plane, front in zip(planes, fronts):
            m.d.comb += [front.w_data.eq(plane.r_data), front.w_en.eq(plane.r_rdy),
                         plane.r_en.eq(front.w_rdy)]
        fill_bits = bits_for(axi.fifo_depth)
        bases = [reg_base[p] & ~(bus_bytes - 1) for p in range(2)]
        addr = [Signal(AXI_ADDR_BITS, name=f"rd_addr{p}") for p in range(2)]
        left = [Signal(words_bits, name=f"rd_left{p}") for p in range(2)]
        # The length of each plane's next burst, kept in a register so that
        # the choice of a burst does not wait for the address arithmetic.
        # Working the next length out in the cycle a burst goes out (the new
        # address, its distance to 4 KB, the words left, then the smaller
        # of them) was the AXI top's critical path: it is kept one step
        # ahead instead. `rest` is the words left after the next burst if
        # the plane goes on past it; `cap_next` and `to_next` are the cap
        # (`burst_beats` and the 4 KB boundary) and the beats to the 4 KB
        # boundary of the burst after the next one. A burst's issue then
        # only compares and subtracts registers; `length` and `rest` are
        # meaningless once a plane has no words left.
        length = [Signal(range(axi.burst_beats + 1), name=f"rd_len{p}") for p in range(2)]
        rest = [Signal(words_bits, name=f"rd_rest{p}") for p in range(2)]
        page = _BOUNDARY // bus_bytes       # beats of 4 KB
        beats = min(axi.burst_beats, page)  # the longest burst
        cap_next = [Signal(range(beats + 1), name=f"rd_cap_next{p}") for p in range(2)]
        to_next = [Signal(range(page + 1), name=f"rd_to_next{p}") for p in range(2)]
        # The plane has words left (``left != 0``), kept in a register: the
        # comparison on the burst choice's path was the critical path at seed 3.
        any_left = [Signal(name=f"rd_any_left{p}") for p in range(2)]
        # Words of each plane's FIFO neither filled nor asked for.
        free = [Signal(fill_bits, init=axi.fifo_depth, name=f"rd_free{p}") for p in range(2)]
        armed = Signal()                    # the pass' reads may go out
        prefer1 = Signal()                  # round robin between the planes

        # The first bursts' caps, registered from the base addresses.
        first_cap = [Signal(range(beats + 1), name=f"rd_first_cap{p}") for p in range(2)]
        first_cap_next = [Signal.like(cap_next[p], name=f"rd_first_cap_next{p}")
                          for p in range(2)]
        first_to_next = [Signal.like(to_next[p], name=f"rd_first_to_next{p}") for p in range(2)]
        for p in range(2):
            # Beats from the base to the next 4 KB boundary (1 to page).
            to_first = Signal(range(page + 1), name=f"rd_to_first{p}")
            m.d.comb += to_first.eq(
                page - (bases[p] >> exact_log2(bus_bytes))[:exact_log2(page)])
            after = burst_step(to_first, axi.burst_beats, page)
            m.d.sync += [first_cap[p].eq(burst_cap(to_first, axi.burst_beats, page)),
                         first_cap_next[p].eq(after[0]), first_to_next[p].eq(after[1])]

        def shorter(words, cap):
            return Mux(words < cap, words, cap)

        # Each pass starts its round robin at plane 0 (the one its first
        # request reads), so that its timing does not depend on the last pass.
        with m.If(started):
            m.d.sync += [armed.eq(1), bus_error.eq(0), prefer1.eq(0)]
            for p, words in enumerate((words0, words1)):
                m.d.sync += [addr[p].eq(bases[p]), left[p].eq(words),
                             any_left[p].eq(words != 0),
                             length[p].eq(shorter(words, first_cap[p])),
                             rest[p].eq(words - first_cap[p]),
                             cap_next[p].eq(first_cap_next[p]),
                             to_next[p].eq(first_to_next[p])]
        with m.If(ended | aborting):
            m.d.sync += armed.eq(0)

        # A refused pass answers the cycle after it would have started: no
        # read goes out while its status is there.
        # (In flight: outstanding + burst_issued, at most max_outstanding.)
        at_max = (outstanding == axi.max_outstanding) | \
            (burst_issued & (outstanding == axi.max_outstanding - 1))
        go = armed & ~status.valid & ~at_max
        can = [any_left[p] & (free[p] >= length[p]) for p in range(2)]
        slot_free = ~self.m_axi_arvalid | self.m_axi_arready
        pick1 = can[1] & (prefer1 | ~can[0])
        issue = [Signal(name=f"rd_issue{p}") for p in range(2)]
        m.d.comb += [
            issue[1].eq(go & slot_free & pick1),
            issue[0].eq(go & slot_free & ~pick1 & can[0]),
        ]
        m.d.comb += [
            self.m_axi_arsize.eq(exact_log2(bus_bytes)),
            self.m_axi_arburst.eq(0b01),         # INCR
            self.m_axi_arlock.eq(0),
            self.m_axi_arcache.eq(0b0011),       # normal, non-cacheable, bufferable
            self.m_axi_arprot.eq(0b000),         # unprivileged, secure, data
            self.m_axi_rready.eq(1),             # room was reserved for every beat
        ]
        with m.If(self.m_axi_arready):
            m.d.sync += self.m_axi_arvalid.eq(0)
        for p in range(2):
            with m.If(issue[p]):
                after = burst_step(to_next[p], axi.burst_beats, page)
                m.d.sync += [
                    self.m_axi_arvalid.eq(1), self.m_axi_arid.eq(Cat(Const(p, 1), epoch)),
                    self.m_axi_araddr.eq(addr[p]), self.m_axi_arlen.eq(length[p] - 1),
                    addr[p].eq(addr[p] + length[p] * bus_bytes),
                    left[p].eq(left[p] - length[p]),
                    any_left[p].eq(left[p] != length[p]),
                    # A plane that goes on past this burst took all its cap:
                    # its words left are `rest`.
                    length[p].eq(shorter(rest[p], cap_next[p])),
                    rest[p].eq(rest[p] - cap_next[p]),
                    cap_next[p].eq(after[0]), to_next[p].eq(after[1]),
                    prefer1.eq(p == 0),
                ]
        # Beats of an earlier epoch (bursts asked for before a reset) are
        # taken and dropped; while aborting, this epoch's are dropped too.
        current = self.m_axi_rvalid & (self.m_axi_rid[1:] == epoch)
        burst_end = current & self.m_axi_rlast
        m.d.sync += [burst_issued.eq(issue[0] | issue[1]),
                     outstanding.eq(outstanding + burst_issued - burst_end)]
        with m.If(current & (self.m_axi_rresp != 0)):
            m.d.sync += bus_error.eq(1)
        for p in range(2):
            m.d.comb += [
                planes[p].w_data.eq(self.m_axi_rdata),
                planes[p].w_en.eq(current & (self.m_axi_rid[0] == p) & ~aborting),
            ]

        # -- KV write master ---------------------------------------------------------------
        # Each write of the accelerator's write port (KV_WRITE) is a burst of
        # one beat: its AW and W go out together from registers the cycle
        # after the port gave it, the port taking the next one as they are
        # handshaken. Writes in flight (taken, their B response not yet in)
        # are at most max_outstanding; AWID carries the plane and the epoch
        # as ARID does, and B responses of an earlier epoch are dropped.
        # While aborting, no write is taken (the accelerator is being reset).
        if self.kv_write:
            wmem = accel.wmem
            aw_free = ~self.m_axi_awvalid | self.m_axi_awready
            w_free = ~self.m_axi_wvalid | self.m_axi_wready
            m.d.comb += wmem.ready.eq(aw_free & w_free & (writes != axi.max_outstanding) &
                                      ~aborting)
            write_taken = wmem.valid & wmem.ready
            m.d.comb += [
                self.m_axi_awlen.eq(0),
                self.m_axi_awsize.eq(exact_log2(bus_bytes)),
                self.m_axi_awburst.eq(0b01),     # INCR
                self.m_axi_awlock.eq(0),
                self.m_axi_awcache.eq(0b0011),   # normal, non-cacheable, bufferable
                self.m_axi_awprot.eq(0b000),
                self.m_axi_wlast.eq(1),
                self.m_axi_bready.eq(1),         # a response is only counted
            ]
            with m.If(self.m_axi_awready):
                m.d.sync += self.m_axi_awvalid.eq(0)
            with m.If(self.m_axi_wready):
                m.d.sync += self.m_axi_wvalid.eq(0)
            with m.If(write_taken):
                write = wmem.payload
                m.d.sync += [
                    self.m_axi_awvalid.eq(1), self.m_axi_awid.eq(Cat(write.plane, epoch)),
                    # The port's word address, as a byte address.
                    self.m_axi_awaddr.eq(write.addr << exact_log2(bus_bytes)),
                    self.m_axi_wvalid.eq(1), self.m_axi_wdata.eq(write.data),
                    self.m_axi_wstrb.eq(write.strb),
                ]
            response = self.m_axi_bvalid & (self.m_axi_bid[1:] == epoch)
            m.d.sync += writes.eq(writes + write_taken - response)
            with m.If(response & (self.m_axi_bresp != 0)):
                m.d.sync += bus_error.eq(1)

        # -- the accelerator's memory port, served from the planes ------------------------------
        # An entry of a two-plane pass is words of plane 0 then of plane 1:
        # verify 1 then 3 x draft_words, kv 2 then 2 x draft_words; the beat
        # counter follows the accelerator's requests.
        beat = Signal(range(4 * draft_words))
        plane0_end = Signal(range(4 * draft_words + 1))
        with m.If(started):
            m.d.sync += plane0_end.eq(plane0_entry)
        plane1 = two_planes & (beat >= plane0_end)
        counted = mem.req & mem.en
        with m.If(started):
            m.d.sync += beat.eq(0)
        with m.Elif(counted & two_planes):
            m.d.sync += beat.eq(Mux(beat == 4 * draft_words - 1, 0, beat + 1))
        # A request taken in cycle c is answered in cycle c + 1 from the head
        # of its plane's front; the accelerator stalls in that answer cycle
        # while the word is not there yet: ``pending & ~have``. The stall is
        # a flip-flop, loaded with that value a cycle ahead, from the values
        # the pending request and the fronts' ``r_rdy`` take
        # (`amaranth.lib.fifo.SyncFIFOBuffered`: ``r_rdy`` is next high if an
        # entry is behind the head, ``level > r_rdy``, or the head stays,
        # ``r_rdy & ~r_en``). So the controller's enable is a LUT of three
        # flip-flops (the stall, the output's valid and ready) as behind the
        # accelerator's own pin harness; formed from the fronts it ran on
        # into the activation FIFO (the AXI top's critical path at seed 1:
        # pending_plane1 -> r_rdy multiplexer -> stall -> enable -> the
        # activation FIFO's ready -> its level, 94.54 MHz).
        pending, pending_plane1 = Signal(), Signal()
        with m.If(mem.en):
            m.d.sync += [pending.eq(mem.req), pending_plane1.eq(plane1)]
        answered = pending & mem.en
        stall = Signal()
        pending_next = Mux(mem.en, mem.req, pending)
        plane1_next = Mux(mem.en, plane1, pending_plane1)
        have_next = [(front.r_level > front.r_rdy) | (front.r_rdy & ~front.r_en)
                     for front in fronts]
        m.d.sync += stall.eq(~clear & pending_next & ~Mux(plane1_next, have_next[1],
                                                            have_next[0]))
        m.d.comb += [
            mem.stall.eq(stall),
            mem.valid.eq(pending),
            mem.data.eq(Mux(pending_plane1, fronts[1].r_data, fronts[0].r_data)),
            fronts[0].r_en.eq(answered & ~pending_plane1),
            fronts[1].r_en.eq(answered & pending_plane1),
        ]
        for p in range(2):
            popped = answered & (pending_plane1 if p else ~pending_plane1)
            m.d.sync += free[p].eq(free[p] - Mux(issue[p], length[p], 0) + popped)
        with m.If(clear):
            m.d.sync += [pending.eq(0), beat.eq(0), *(free[p].eq(axi.fifo_depth)
                                                      for p in range(2))]

        # -- activations in -------------------------------------------------------------------
        act_fifo = _FIFO(width=STREAM_ACT_BITS, depth=axi.act_depth)
        m.submodules.act_fifo = ResetInserter(clear)(act_fifo)
        m.d.comb += [
            act_fifo.w_data.eq(self.s_axis_tdata),
            act_fifo.w_en.eq(self.s_axis_tvalid & self.s_axis_tready),
            self.s_axis_tready.eq(act_fifo.w_rdy & ~flushing),
            accel.act.valid.eq(act_fifo.r_rdy & ~flushing),
            accel.act.payload.eq(act_fifo.r_data),
            act_fifo.r_en.eq(accel.act.ready | flushing),
        ]
        # CONTROL.FLUSH (while idle): the FIFO takes no beat and drops one a
        # cycle until it is empty.
        with m.If(flush_write & ~start_write & ~busy):
            m.d.sync += flushing.eq(1)
        with m.Elif(act_fifo.level == 0):
            m.d.sync += flushing.eq(0)

        # -- results out ----------------------------------------------------------------------
        out_data, out_user = len(self.m_axis_tdata), len(self.m_axis_tuser)
        out_fifo = _FIFO(width=out_data + out_user + 1, depth=axi.out_depth)
        m.submodules.out_fifo = ResetInserter(clear)(out_fifo)
        beat_out = accel.out.payload
        # The result port's ready, from a register: room for a beat now
        # because at most depth - 2 were held a cycle ago (one beat of the
        # FIFO unused). From the FIFO's level it ran through the
        # accelerator's enable into the engines (the AXI top's critical
        # path at seed 2).
        out_room = Signal()
        m.d.sync += out_room.eq(out_fifo.level <= axi.out_depth - 2)
        # A multi-head pass' beat holds a head's P / G rows of every head.
        beat_rows = Mux(c.multihead, config.head_pes, pes) if config.head_groups > 1 else pes
        last = (beat_out.row + beat_rows >= c.n) & (beat_out.token == c.t - 1)
        m.d.comb += [
            out_fifo.w_data.eq(Cat(beat_out.acc, beat_out.half, beat_out.row, beat_out.token,
                                   last)),
            out_fifo.w_en.eq(accel.out.valid & accel.out.ready),
            accel.out.ready.eq(out_room),
            self.m_axis_tdata.eq(out_fifo.r_data[:out_data]),
            self.m_axis_tuser.eq(out_fifo.r_data[out_data:out_data + out_user]),
            self.m_axis_tlast.eq(out_fifo.r_data[-1]),
            self.m_axis_tvalid.eq(out_fifo.r_rdy),
            out_fifo.r_en.eq(self.m_axis_tready),
        ]
        return m
