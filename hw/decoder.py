"""The exponent-remap decoder: SPEQ-16 words to FP16 weights and draft operands.

A SPEQ-16 word (SPEC section 2) holds a weight's sign, its draft code ``D``, a
class offset ``δ`` and the 8 low fraction bits. The decoder turns it into:

- the exact FP16 weight (verify pass): ``q = base[D] + δ`` restores the
  exponent field and the top two fraction bits;
- four draft operands (draft pass), reading the same 16 bits as one draft-plane
  word that packs four nibbles ``{s, D}``; each nibble selects its code's draft
  value ``0``, ``2**x`` or ``1.5 * 2**x`` from the table.

Both functions are computed for every word; the ``mode`` field travels along so
that the consumer (the PE) knows which one to use. Keeping both in one block
means one table, one stream and one pipeline register serve both passes.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .fp import FP16, FP16_QNAN, FP16_Q_MAX, SPEQ16Word, DraftNibble


__all__ = [
    "Mode", "NUM_CODES", "GROUP", "DRAFT_EXP_BITS",
    "TableEntry", "TableWriteSignature", "DecoderIn", "DraftOperand", "DecoderOut",
    "RemapDecoder", "table_register", "decode_weight", "weight_from_base", "decode_draft",
]


#: Number of draft codes, one table entry each.
NUM_CODES = 1 << data.Layout.cast(SPEQ16Word)["code"].width
#: Weights per draft-plane word (16 bits hold four nibbles): K is walked in
#: groups of this many columns, and an activation word holds one group. (Not
#: the draft lanes ``L`` of a PE, which take 1, 2 or 4 of a group per step.)
GROUP = data.Layout.cast(SPEQ16Word).size // data.Layout.cast(DraftNibble).size
#: Width of the signed draft exponent ``x`` held in the table.
DRAFT_EXP_BITS = 6


class Mode(enum.Enum, shape=1):
    """Which pass a word belongs to."""

    VERIFY = 0
    DRAFT = 1


class TableEntry(data.Struct):
    """One code's row of the per-tensor tables.

    Members
    -------
    base : unsigned(7)
        First magnitude class of the code's range.
    exp : signed(6)
        ``x`` of the code's draft value.
    half : 1
        The draft value is ``1.5 * 2**x`` instead of ``2**x``.
    zero : 1
        The code drafts as zero.
    """

    base: 7
    exp: signed(DRAFT_EXP_BITS)
    half: 1
    zero: 1


class TableWriteSignature(wiring.Signature):
    """Write port of the decoder's tables (seen from the writer).

    Members
    -------
    en : Out(1)
        Write ``code``'s entry this cycle.
    code : Out(3)
        Which entry.
    base, exp, half, zero : Out
        The new entry, fields as in `TableEntry`.
    """

    def __init__(self):
        members = {"en": Out(1), "code": Out(range(NUM_CODES))}
        for name, field in data.Layout.cast(TableEntry):
            members[name] = Out(field.shape)
        super().__init__(members)


class DecoderIn(data.Struct):
    """Input payload: one SPEQ-16 word (verify) or one draft-plane word (draft)."""

    mode: Mode
    word: 16


class DraftOperand(data.Struct):
    """One draft weight as the PE consumes it: ``(-1)**sign * v``.

    ``v`` is ``0`` if ``zero``, else ``2**exp`` or, if ``half``,
    ``1.5 * 2**exp``: one shifted copy of the activation, or two.
    """

    exp: signed(DRAFT_EXP_BITS)
    half: 1
    zero: 1
    sign: 1


class DecoderOut(data.Struct):
    """Output payload: both decodings of the input word.

    ``weight`` is the verify decoding (the canonical quiet NaN when
    ``invalid``), ``draft`` the draft decoding of the same 16 bits.
    """

    mode: Mode
    weight: FP16
    invalid: 1
    draft: data.ArrayLayout(DraftOperand, GROUP)


def _word_signal(layout, name):
    return layout(Signal(data.Layout.cast(layout).size, name=name))


def table_register(m, port):
    """The 8 table entries, in flip-flops, written through ``port``.

    ``port`` is a `TableWriteSignature` interface (flipped: this side reads
    it); returns the entries as an ``ArrayLayout(TableEntry, 8)`` view. 8 x 15
    bits are small enough for flip-flops, and the five parallel reads of a
    decoder (one verify, four draft lanes) would need five memory read ports.
    """
    entries = Signal(data.ArrayLayout(TableEntry, NUM_CODES))
    new_entry = Signal(TableEntry)
    for name, _ in data.Layout.cast(TableEntry):
        m.d.comb += new_entry[name].eq(getattr(port, name))
    with m.If(port.en):
        m.d.sync += entries[port.code].eq(new_entry)
    return entries


def decode_weight(m, entries, word, name="verify"):
    """Verify decoding of a SPEQ-16 ``word`` under the table ``entries``.

    Returns ``(weight, invalid)``: the FP16 bits ``{s, q, m8}`` with ``q =
    base[D] + delta``, or the canonical quiet NaN with ``invalid`` set when
    ``q > 123`` (no finite class). Combinational.
    """
    word = SPEQ16Word(word)
    # One read into a whole entry: one 8:1 mux rather than one per field.
    entry = _word_signal(TableEntry, f"{name}_entry")
    m.d.comb += entry.eq(entries[word.code])
    return weight_from_base(m, entry.base, word, name)


def weight_from_base(m, base, word, name="verify"):
    """Verify decoding of a SPEQ-16 ``word`` whose code's ``base`` has been
    looked up already; returns ``(weight, invalid)`` as `decode_weight`."""
    word = SPEQ16Word(word)
    # 7-bit base + 4-bit delta keeps its carry (8 bits): a sum past 127
    # must read as out of range, not wrap into a small class.
    q = Signal(8, name=f"{name}_q")
    invalid = Signal(name=f"{name}_invalid")
    weight = Signal(16, name=f"{name}_weight")
    m.d.comb += [
        q.eq(base + word.delta),
        invalid.eq(q > FP16_Q_MAX),
        weight.eq(Mux(invalid, FP16_QNAN, Cat(word.low, q[:7], word.sign))),
    ]
    return weight, invalid


def decode_draft(m, entries, word, name="draft"):
    """Draft decoding of a draft-plane ``word`` (four nibbles ``{s, D}``).

    Returns the four `DraftOperand` values, lane ``j`` from bits
    ``4j + 3 .. 4j``. Combinational.
    """
    operands = []
    for lane in range(GROUP):
        nibble = DraftNibble(word[4 * lane:4 * lane + 4])
        entry = _word_signal(TableEntry, f"{name}_entry{lane}")
        operand = _word_signal(DraftOperand, f"{name}_operand{lane}")
        m.d.comb += [
            entry.eq(entries[nibble.code]),
            operand.exp.eq(entry.exp),
            operand.half.eq(entry.half),
            operand.zero.eq(entry.zero),
            operand.sign.eq(nibble.sign),
        ]
        operands.append(operand)
    return operands


class RemapDecoder(wiring.Component):
    """Exponent-remap decoder with run-time loaded per-tensor tables.

    Verify function, for word ``{s, D, δ, m8}``: ``q = base[D] + δ`` (8-bit sum,
    no wrap-around); if ``q > 123`` the word belongs to no finite class of the
    loaded table and decodes to ``0x7E00`` with ``invalid`` set, else to the
    FP16 bits ``{s, q, m8}``. Draft function: nibble ``j`` (bits ``4j+3..4j``)
    ``{s, D}`` gives ``draft[j] = (exp[D], half[D], zero[D], s)``.

    Parameters
    ----------
    registered_output : bool
        Register the output payload (latency 1, the default). Without the
        register the decoder is combinational (latency 0), for a consumer that
        folds it into its own first pipeline stage.

    Members
    -------
    table : In(TableWriteSignature())
        Table write port. A write takes effect for words that enter on the
        following cycles; entries reset to zero.
    i : In(stream.Signature(DecoderIn))
        Words to decode.
    o : Out(stream.Signature(DecoderOut))
        Decoded words, in order, ``latency`` cycles after they enter when
        not stalled.

    Raises
    ------
    TypeError
        If ``registered_output`` is not a bool.
    """

    def __init__(self, *, registered_output=True):
        if not isinstance(registered_output, bool):
            raise TypeError(
                f"registered_output must be a bool, not {registered_output!r}")
        self._registered_output = registered_output
        super().__init__({
            "table": In(TableWriteSignature()),
            "i": In(stream.Signature(DecoderIn)),
            "o": Out(stream.Signature(DecoderOut)),
        })

    @property
    def registered_output(self):
        """Whether the output payload is registered."""
        return self._registered_output

    @property
    def latency(self):
        """Cycles from a word's input transfer to its output being valid."""
        return int(self._registered_output)

    def elaborate(self, platform):
        m = Module()

        entries = table_register(m, self.table)

        # Per-word intermediates are views of plain signals: Amaranth gives
        # every field of a layout-typed signal its own named wire, and wires
        # that toggle with every word double Icarus' run time while showing
        # nothing that o.payload does not show a cycle later.
        decoded = _word_signal(DecoderOut, "decoded")
        weight, invalid = decode_weight(m, entries, self.i.payload.word)
        m.d.comb += [
            decoded.mode.eq(self.i.payload.mode),
            decoded.weight.eq(weight),
            decoded.invalid.eq(invalid),
        ]
        for lane, operand in enumerate(decode_draft(m, entries, self.i.payload.word)):
            m.d.comb += decoded.draft[lane].eq(operand)

        if self._registered_output:
            # lib.stream rules: accept whenever the output register is empty or
            # being emptied; hold the payload while the consumer stalls.
            m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
            with m.If(self.i.ready):
                m.d.sync += self.o.valid.eq(self.i.valid)
            # Load only on a transfer: idle cycles do not toggle 54 flip-flops.
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += self.o.payload.eq(decoded)
        else:
            m.d.comb += [
                self.o.valid.eq(self.i.valid),
                self.i.ready.eq(self.o.ready),
                self.o.payload.eq(decoded),
            ]

        return m
