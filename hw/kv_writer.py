"""The KV-cache write path: new keys and values into the cache's byte planes.

SPEC section 2a keeps one KV cache, each FP16 value ``u`` in two byte
planes (``u >> 8`` and ``u & 0xFF``), laid out as the weights of the
attention passes that read it (``docs/array.md``, `golden.perf.kv_images`):

- the keys of a KV head as a ``Q K^T`` image: rows = positions (``N`` = the
  cache's capacity), columns = the head dimension (``K``);
- its values as ``P V`` images: rows = the head dimension's rows of one tile
  (``N`` at most ``P x S``), columns = positions (``K`` = the capacity).

A ``KV_WRITE`` command writes ``T`` positions from ``pos`` on: ``T x D / 4``
activation beats of 4 FP16 values (``D`` = the columns of a keys image, the
rows of a values image), position by position. The writer splits every
value into its two bytes and writes each where the image holds it, through
a write port with byte strobes:

- keys (``vt`` = 0): the 4 values of a beat are 4 columns of one row, 4
  consecutive bytes of one entry: one write per plane;
- values (``vt`` = 1): the 4 values are one column of 4 rows, one byte in
  each of 4 PEs' fields: four writes per plane.

With ``multihead`` the images are multi-head images (`golden.perf`, a
configuration's ``head_groups`` G > 1: the images of G KV heads, each
head's rows on its group of ``P / G`` PEs) and the command writes head
``head``'s positions: rows are then laid out on ``P / G`` PEs, and head
``q``'s row in slot ``j`` is field ``j P + q P / G + i`` of the entry.

The images hold positions at fixed places whatever the cache's length (the
keys image is laid out for the capacity; a pass over fewer keys reads whole
tiles of it), so a position is written once and never moved.

Timing, with the write port always ready and a beat always there:
`SETUP_CYCLES` to set up each position (one multiply or division a cycle),
then per beat a cycle to take it and one per write (`KvWriter.cycles`). A write port that is not ready adds exactly its cycles.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .fp import FP16, floor_div_const


__all__ = ["KvWriter", "write_layout", "supports"]


ADDR_BITS = 32

#: Cycles of a position's set-up: where its entries are, one multiply or
#: division a cycle (`golden.perf.KV_WRITE_SETUP` counts the same).
SETUP_CYCLES = 6


def write_layout(mem_bits):
    """One write of the memory's write port: word ``addr``, its ``data``, a
    strobe per byte (``strb``), and the ``plane`` it writes (0 high, 1 low:
    a memory need not look at it; the AXI top puts it in AWID as ARID has
    the plane of a read)."""
    return data.StructLayout({"addr": ADDR_BITS, "data": mem_bits, "strb": mem_bits // 8,
                              "plane": 1})


def supports(config):
    """Whether a configuration has the write path: a memory word holds whole
    4-byte PE fields (``mem_bits`` a multiple of 32)."""
    return config.mem_bits % 32 == 0


class _State(enum.Enum, shape=2):
    IDLE = 0
    POSITION = 1
    TAKE = 2
    WRITE = 3


class KvWriter(wiring.Component):
    """The KV write path of a `hw.accel.SpeqAccel` (module docstring).

    Parameters
    ----------
    config : SpeqConfig
        ``mem_bits`` a multiple of 32 (`supports`).
    slots : int
        The array's interleave ``S`` (row slots per PE in a tile).

    Members
    -------
    start : In(1)
        Take the command fields below (one cycle, while ``busy`` is low:
        they are loaded in every idle cycle).
    vt, n, k, t, pos, addr0, addr1 : In
        The command: values image (1) or keys image (0), the image's rows and
        columns, the positions to write, the first one, the word addresses of
        the high and the low plane. Checked by the controller.
    multihead, head : In
        A multi-head image, and the head written (with ``head_groups`` > 1).
    act : In(stream.Signature(ArrayLayout(FP16, 4)))
    wmem : Out(stream.Signature(write_layout(mem_bits)))
    busy : Out(1)
    done : Out(1)
        A pulse: the last write was taken.
    """

    def __init__(self, config, slots):
        if not supports(config):
            raise ValueError(f"the KV write path needs mem_bits a multiple of 32, not "
                             f"{config.mem_bits}")
        self._config, self._slots = config, slots
        super().__init__({
            "start": In(1), "vt": In(1), "n": In(16), "k": In(16), "t": In(5),
            "pos": In(16), "addr0": In(ADDR_BITS), "addr1": In(ADDR_BITS),
            "multihead": In(1), "head": In(8),
            "act": In(stream.Signature(data.ArrayLayout(FP16, 4))),
            "wmem": Out(stream.Signature(write_layout(config.mem_bits))),
            "busy": Out(1), "done": Out(1),
        })

    @staticmethod
    def cycles(vt, d, t):
        """Cycles from ``start`` to ``done`` (inclusive of neither) with a
        ready write port and no wait for a beat: per position, the set-up
        (`SETUP_CYCLES`) and ``D / 4`` beats of 1 + 2 (keys) or 1 + 8
        (values) cycles."""
        writes = 8 if vt else 2
        return t * (SETUP_CYCLES + d // 4 * (1 + writes))

    def elaborate(self, platform):
        m = Module()
        config = self._config
        pes, slots = config.rows * config.cols, self._slots
        bits = config.mem_bits
        per_word = bits // 32                    # PE fields (4 bytes) in a memory word
        entry_words = 32 * pes // bits           # words of one plane's entry
        heads, head_pes = config.head_groups, config.head_pes

        state = Signal(_State)
        vt, n, k, t, pos = (Signal(len(s), name=f"c_{s.name.split('__')[-1]}")
                            for s in (self.vt, self.n, self.k, self.t, self.pos))
        base = [Signal(ADDR_BITS, name=f"c_addr{q}") for q in range(2)]
        position = Signal(16)                    # pos + positions done
        left = Signal(5)                         # positions still to write, this one included
        beat = Signal(14)                        # beat of the position
        last_beat = Signal(14)
        m.d.comb += self.busy.eq(state != _State.IDLE)
        # A multi-head image: its rows on a head's PEs, after the head's field.
        multihead = Signal()
        head_field = Signal(range(pes)) if heads > 1 else Const(0)
        if heads > 1:
            with m.If(state == _State.IDLE):
                m.d.sync += [multihead.eq(self.multihead),
                             head_field.eq(self.head[:bits_for(heads - 1)] * head_pes)]

        def by_rows(f):
            """``f(per)`` with ``per`` the PEs a slot's rows take: all of
            them, or a head's in a multi-head image."""
            return f(pes) if heads == 1 else Mux(multihead, f(head_pes), f(pes))

        tile_rows = by_rows(lambda per: per * slots)
        # The command's fields are loaded in every idle cycle (``start`` comes
        # only then): the command's checks, which make ``start``, reach the
        # state register alone.
        with m.If(state == _State.IDLE):
            m.d.sync += [vt.eq(self.vt), n.eq(self.n), k.eq(self.k), t.eq(self.t),
                         position.eq(self.pos), left.eq(self.t),
                         base[0].eq(self.addr0), base[1].eq(self.addr1),
                         last_beat.eq((Mux(self.vt, self.n, self.k) >> 2) - 1)]
        with m.If(self.start):
            m.d.sync += state.eq(_State.POSITION)

        groups = k >> 2                          # groups of 4 columns in a row of the image
        # -- per position (POSITION, SETUP_CYCLES cycles): where its entries are ----------
        # Keys: row = position; its tile, slot and PE; the entry of group g is
        # tile x S x groups + g x used + slot, `used` the tile's slots.
        # Values: column = position, in group position / 4 at byte position
        # % 4; rows 4b .. 4b+3 of the tile (a values image has one tile).
        # Each cycle of the set-up does one multiply or division and registers
        # it: no path through two of them (the write path's timing).
        setup = Signal(range(SETUP_CYCLES))
        tile = Signal(16)
        # Entries of a tile: S x groups, K <= kmax (the controller refuses a
        # larger K, BAD_K): as narrow as that, tile x stride is one DSP
        # multiply (32 bits took partial products and an adder chain, the
        # accelerator's critical path at one placement seed).
        stride = Signal(range(config.kmax // 4 * slots + 1))
        vt_used = Signal(range(slots + 1))       # slots of a values image's tile
        # The tile's first row: registered before the subtractions that use
        # it (tile -> its multiply, a DSP block -> the subtraction into
        # rows_in_tile was the 2x2 accelerator's path at several placement
        # seeds: 89.87 MHz at seed 2 of 94b265d).
        tile_start = Signal(16)
        inside = Signal(range(pes * slots))
        rows_in_tile = Signal(signed(18))
        tile_base = Signal(32)
        col_entry = Signal(32)
        slot = Signal(range(slots))
        tile_used = Signal(range(slots + 1))
        key_pe = Signal(range(pes))
        entry = Signal(32)                       # keys: the entry of the beat's group
        key_step = Signal(32)                    # keys: words from a group's entry to the next
        lane = Signal(2)
        key_addr = [Signal(ADDR_BITS, name=f"key_addr{q}") for q in range(2)]
        col_addr = [Signal(ADDR_BITS, name=f"col_addr{q}") for q in range(2)]
        key_offset = Signal(range(bits // 8))
        with m.If(state == _State.POSITION):
            m.d.sync += setup.eq(setup + 1)
            with m.If(setup == 0):
                m.d.sync += [
                    tile.eq(by_rows(lambda per: floor_div_const(position[:16], per * slots))),
                    stride.eq(groups * slots),
                    vt_used.eq(by_rows(lambda per: floor_div_const(
                        (n + per - 1)[:bits_for(per * slots + per)], per))),
                    lane.eq(position[:2]),
                ]
            with m.Elif(setup == 1):
                m.d.sync += [
                    tile_start.eq(by_rows(lambda per: tile * (per * slots))),
                    tile_base.eq(tile * stride),
                    col_entry.eq((position >> 2) * vt_used),
                ]
            with m.Elif(setup == 2):
                m.d.sync += [
                    inside.eq((position - tile_start)[:len(inside)]),
                    rows_in_tile.eq(n - tile_start),
                    *(col_addr[q].eq(base[q] + col_entry * entry_words) for q in range(2)),
                ]
            with m.Elif(setup == 3):
                m.d.sync += [
                    slot.eq(by_rows(lambda per: floor_div_const(inside, per))),
                    tile_used.eq(Mux(rows_in_tile >= tile_rows, slots, by_rows(
                        lambda per: floor_div_const(
                            (rows_in_tile + per - 1)[:bits_for(per * slots + per)], per)))),
                ]
            with m.Elif(setup == 4):
                m.d.sync += [
                    key_pe.eq((inside - by_rows(lambda per: slot * per) + head_field)
                              [:len(key_pe)]),
                    entry.eq(tile_base + slot),
                    key_step.eq(tile_used * entry_words),
                ]
            with m.Else():                       # the last: SETUP_CYCLES - 1
                word_pe = floor_div_const(key_pe, per_word)
                m.d.sync += [
                    *(key_addr[q].eq(base[q] + entry * entry_words + word_pe)
                      for q in range(2)),
                    key_offset.eq((key_pe - word_pe * per_word)[:len(key_offset)] << 2),
                    setup.eq(0), beat.eq(0), state.eq(_State.TAKE),
                ]

        # -- per beat (TAKE): the writes -------------------------------------------------
        count = Signal(range(9))                 # writes of the beat
        index = Signal(range(8))                 # the write of the beat going out (of `queue`)
        queue = Array(Signal(write_layout(bits), name=f"write{i}") for i in range(8))
        m.d.comb += self.act.ready.eq(state == _State.TAKE)
        values = self.act.payload

        def write(plane, addr, offset, chunk, width):
            """A write of ``chunk`` (``width`` bytes) at byte ``offset`` of word
            ``addr`` of ``plane``."""
            out = Signal(write_layout(bits))
            m.d.comb += [
                out.addr.eq(addr),
                out.data.eq(chunk << (offset << 3)),
                out.strb.eq(Const((1 << width) - 1, bits // 8) << offset),
                out.plane.eq(plane),
            ]
            return out

        with m.If(self.act.valid & self.act.ready):
            m.d.sync += [index.eq(0), state.eq(_State.WRITE)]
            with m.If(vt):
                m.d.sync += count.eq(8)
                # Row 4b + r of the tile: an entry's PE fields fill its words
                # (S rows of P fields), so the row is field `row` from the
                # column's first entry, in word row // per_word.
                for r in range(4):
                    row = Cat(Const(r, 2), beat)[:bits_for(pes * slots)]
                    if heads > 1:
                        # Head q's row in slot j, PE i of its group: field
                        # j x P + q x P / G + i.
                        j = floor_div_const(row, head_pes)
                        row = Mux(multihead,
                                  (j * pes + head_field + row - j * head_pes)[:len(row)], row)
                    word = floor_div_const(row, per_word)
                    offset = Cat(lane, (row - word * per_word)[:bits_for(per_word - 1)]) \
                        if per_word > 1 else lane
                    for plane in range(2):
                        chunk = values[r].as_value()[8:16] if plane == 0 else \
                            values[r].as_value()[:8]
                        m.d.sync += queue[4 * plane + r].eq(
                            write(plane, col_addr[plane] + word, offset, chunk, 1))
            with m.Else():
                m.d.sync += [count.eq(2), *(key_addr[q].eq(key_addr[q] + key_step)
                                            for q in range(2))]
                for plane in range(2):
                    chunk = Cat(*(values[r].as_value()[8:16] if plane == 0 else
                                  values[r].as_value()[:8] for r in range(4)))
                    m.d.sync += queue[plane].eq(write(plane, key_addr[plane], key_offset,
                                                      chunk, 4))

        # -- WRITE: one write a cycle while the port takes them -----------------------------
        m.d.comb += [self.wmem.valid.eq(state == _State.WRITE),
                     self.wmem.payload.eq(queue[index])]
        m.d.comb += self.done.eq(0)
        with m.If(self.wmem.valid & self.wmem.ready):
            m.d.sync += index.eq(index + 1)
            with m.If(index == count - 1):
                with m.If(beat != last_beat):
                    m.d.sync += [beat.eq(beat + 1), state.eq(_State.TAKE)]
                with m.Elif(left != 1):
                    m.d.sync += [left.eq(left - 1), position.eq(position + 1),
                                 state.eq(_State.POSITION)]
                with m.Else():
                    m.d.sync += state.eq(_State.IDLE)
                    m.d.comb += self.done.eq(1)
        return m
