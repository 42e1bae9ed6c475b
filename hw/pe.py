"""The reconfigurable processing element and its FP16-only baseline.

One PE computes one accumulator step per cycle, fully pipelined:

- verify (and the FP16 baseline): ``acc' = fl32(acc + a * w)``, IEEE binary32
  with round-to-nearest-even, from FP16 ``a`` and ``w``;
- draft with ``L`` lanes (`SpeqConfig.draft_lanes`): ``L = 1`` is the verify
  step with the draft value ``dw`` in the weight's place; ``L = 2`` or ``4``
  is ``acc' = fl32(acc + t0 + ... + t_{L-1})`` with ``t_j = a_j * dw_j``, the
  fused aligned sum of SPEC section 3 with ``F`` fraction bits.

With one lane the draft mode is a multiplexer in front of the multiplier's
weight operand and nothing else: the rest of the PE is the FP16 baseline's.

Both modes run through one datapath, in seven steps:

1. *unpack* -- FP16 operands are split and normalised (subnormals get a
   leading one and a smaller exponent); the significand multiplier forms the
   exact product ``a * w`` (verify) and the draft terms are one or two copies
   of the activation's significand (``2m`` or ``2m + m``: ``1.5 * 2**x``);
2. *exponent* -- the binade of every operand and their maximum ``E``;
3. *align* -- every operand becomes an integer in units of ``2**(E - G - 1)``
   by a right shift. Draft mode floors it to ``F`` fraction bits below ``E``
   (the contract); verify mode keeps ``G >= 25`` fraction bits and *jams* the
   bits shifted out into the lowest bit (a sticky bit), which makes the one
   rounding below exact IEEE addition;
4. *sum* -- one signed adder for the (up to five) aligned operands;
5. *lzc* -- magnitude and leading-zero count of the sum;
6. *normalise* -- left shift, clamped at the smallest normal exponent so that
   subnormal results come out right;
7. *round* -- round to nearest even, pack, and the IEEE special cases.

With ``L >= 2`` lanes, slot 0 of the aligner sees the product in verify mode
and draft term 0 in draft mode, and slots 1 to ``L - 1`` hold the other terms.
The multiplier, the accumulator's aligner, the adder, the normaliser and the
rounder serve both modes; the fused draft mode adds ``L - 1`` narrow term
aligners and the exponent maximum over ``L + 1`` operands. `Fp16PE` is the
same generator without the draft mode.
"""

from amaranth.hdl import Cat, Const, EnableInserter, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, exact_log2

from .config import SpeqConfig
from .decoder import DraftOperand, Mode
from .fp import FP16, FP32


__all__ = ["SpeqPE", "Fp16PE", "pe_input_layout", "PEOut", "STEPS",
           "VERIFY_GUARD_BITS", "FP32_QNAN", "unpacked16_layout", "unpack16"]


#: Fraction bits below the largest operand's binade that make the jammed
#: verify sum round exactly: rounding boundaries of the binary32 result lie on
#: multiples of 2**(E - 25), so the sticky interval never straddles one.
VERIFY_GUARD_BITS = 25
#: Canonical quiet NaN of binary32, the PE's only NaN output.
FP32_QNAN = 0x7FC00000
#: The datapath's steps, in order; a pipeline register may follow each one.
STEPS = ("unpack", "multiply", "exponent", "shift", "align", "sum", "negate", "lzc",
         "normalise", "round")
# Which boundaries get a register first as the depth grows (the output
# register, after "round", is always there): the shifters and the wide adder
# are the long paths. The fourth splits sum + negate from lzc + normalise +
# round, the longest stretch of three registers (iCE40: 104 ns of 12 MHz's
# 83, docs/board.md). The eighth ends the unpacking: with seven, the
# operands' unpacking -> the multiplier is the longest stretch (ECP5, PE
# alone: 81.44 MHz at 7 stages; at 8, 80.42 with lzc 8th, 87.58 with unpack
# 8th, where the exponent -> shift -> align stretch is next).
_REGISTER_ORDER = ("round", "align", "multiply", "negate", "normalise", "sum", "exponent",
                   "unpack", "lzc", "shift")
# The first operand slot that only the draft mode uses (after the
# accumulator and the shared slot 0).
_DRAFT_ONLY_SLOT = 2
# Signed binade exponents (-150 .. 300 with headroom for the arithmetic).
_EXP = signed(11)


def unpacked16_layout(tz=False):
    """An FP16 value split and normalised (`unpack16`).

    Members
    -------
    sign : 1
    sig : 11
        The significand with its leading one at bit 10 (subnormals shifted
        up to it); 0 for a zero.
    exp : signed(6)
        The binade of bit 10: -24 .. 15 (-25 for a zero).
    zero, inf, nan : 1
        The value's class.
    tz : range(12)
        With ``tz``: the trailing zeros of ``sig`` (any value for a zero).
    """
    fields = {"sign": 1, "sig": 11, "exp": signed(6), "zero": 1, "inf": 1, "nan": 1}
    if tz:
        fields["tz"] = range(12)
    return data.StructLayout(fields)


def unpack16(m, bits, layout, name):
    """``bits`` (FP16) unpacked into a new signal of ``layout`` (one of
    `unpacked16_layout`), by combinational logic added to ``m``."""
    f = FP16(bits)
    subnormal = f.exp == 0
    lz = Signal(range(11), name=f"{name}_lz")
    m.d.comb += lz.eq(leading_zeros(m, f.frac, f"{name}_lz"))
    out = Signal(layout, name=name)
    m.d.comb += [
        out.sign.eq(f.sign),
        out.sig.eq(Mux(subnormal, Cat(Const(0, 1), f.frac << lz), Cat(f.frac, Const(1, 1)))),
        out.exp.eq(Mux(subnormal, -15 - lz, f.exp - 15)),
        out.zero.eq(subnormal & (f.frac == 0)),
        out.inf.eq((f.exp == 31) & (f.frac == 0)),
        out.nan.eq((f.exp == 31) & (f.frac != 0)),
    ]
    if "tz" in layout.members:
        # Beside the leading zeros rather than after the shift: a normal
        # significand {1, frac} has the trailing zeros of frac (10 for 0), a
        # subnormal one (frac << lz) << 1 those of frac, plus lz + 1.
        frac_tz = Signal(range(11), name=f"{name}_frac_tz")
        m.d.comb += [
            frac_tz.eq(trailing_zeros(m, f.frac, f"{name}_frac_tz")),
            out.tz.eq(frac_tz + Mux(subnormal, lz + 1, 0)),
        ]
    return out


def pe_input_layout(draft=True, lanes=1, act=FP16):
    """Input payload of a PE: one accumulator step.

    Parameters
    ----------
    draft : bool
        The SpeqPE's layout (``False``: the Fp16PE's).
    lanes : int
        ``L``, the draft lanes (ignored without ``draft``).
    act : layout
        An activation's: FP16, or (a PE built with ``unpacked_act``) its
        `unpacked16_layout`.

    Members
    -------
    mode : Mode
        VERIFY or DRAFT (the FP16 baseline PE has no mode).
    acc : FP32
        The accumulator to add to.
    act : array of ``act``
        ``L`` activations (one in the Fp16PE); verify uses ``act[0]``, draft
        all ``L``.
    weight : FP16
        The verify weight.
    draft : array of DraftOperand
        The ``L`` draft weights (from the exponent-remap tables).
    """
    lanes = lanes if draft else 1
    fields = {"acc": FP32, "act": data.ArrayLayout(act, lanes), "weight": FP16}
    if draft:
        fields["mode"] = Mode
        fields["draft"] = data.ArrayLayout(DraftOperand, lanes)
    return data.StructLayout(fields)


class PEOut(data.Struct):
    """Output payload of a PE: the new accumulator."""

    acc: FP32


def leading_zeros(m, value, name="lz"):
    """Leading zeros of ``value`` (its width if zero), as a balanced tree.

    The value is padded at its bottom to a power of two with a one and
    zeros (a padded value of zero then counts its own width), so both
    halves of every node have one width and a node's count is its halves'
    chosen count with one bit above: multiplexers, no adder. The count's top
    bit is then ready first and its bottom bit last (`shift_left_msb_first`
    takes them in that order).

    Every node's count and all-zero flag is a signal of its own: each is read
    twice by its parent, and an expression read twice is emitted twice, so
    without them the tree's Verilog grows with the square of its width.
    """
    width = len(value)
    size = 1 << (width - 1).bit_length()
    pad = size - width
    value_sig = Signal(size, name=f"{name}_in")
    m.d.comb += value_sig.eq(Cat(Const(1 << (pad - 1), pad), value) if pad else value)

    def tree(v, path):
        """``(count, zero)``: the count holds unless the node is all zero."""
        if len(v) == 1:
            return None, ~v[0]               # a count of no bits
        half = len(v) // 2
        hi_count, hi_zero = tree(v[half:], path + "h")
        lo_count, lo_zero = tree(v[:half], path + "l")
        count = Signal(exact_log2(len(v)), name=f"{name}_{path}count")
        zero = Signal(name=f"{name}_{path}zero")
        low = Mux(hi_zero, lo_count, hi_count) if hi_count is not None else Cat()
        m.d.comb += [
            count.eq(Cat(low, hi_zero)),
            zero.eq(hi_zero & lo_zero),
        ]
        return count, zero
    count, zero = tree(value_sig, "")
    result = Signal(range(width + 1), name=f"{name}_count")
    if count is None:                        # one bit
        m.d.comb += result.eq(zero)
    else:
        m.d.comb += result.eq(count if pad else Mux(zero, width, count))
    return result


def shift_left_msb_first(m, value, amount, name):
    """``value << amount`` in ``len(value)`` bits, by one stage per bit of
    ``amount`` from its top bit down: the bits of a `leading_zeros` count
    arrive in that order."""
    for b in reversed(range(len(amount))):
        staged = Signal(len(value), name=f"{name}_{b}")
        m.d.comb += staged.eq(Mux(amount[b], value << (1 << b), value))
        value = staged
    return value


def trailing_zeros(m, value, name="tz"):
    """Trailing zeros of ``value`` (its width if zero), as a balanced tree."""
    return leading_zeros(m, Cat(*reversed(list(value))), name)


def _align_by_multiply(m, q, sig, shift, name):
    """``q = (sig << (len(q) - len(sig))) >> shift`` (arithmetic) for a
    signed ``sig`` and ``0 <= shift <= len(q) - 1``, with a multiplier for
    the fine part of the shift: ``q = floor(sig * 2**(u - d))`` with ``u =
    len(q) - 1 - shift`` and ``d = len(sig) - 1``; ``sig`` times the one-hot
    ``2**(u % 16)`` (a 16-bit operand: one DSP block) is exact, and the
    coarse part ``16 * (u // 16) - d`` is a fixed shift per case.
    """
    top = len(q) - 1
    d = len(sig) - 1
    u = Signal(range(top + 1), name=f"{name}_u")
    onehot = Signal(16, name=f"{name}_onehot")
    product = Signal(signed(len(sig) + 16), name=f"{name}_product")
    m.d.comb += [
        u.eq(top - shift),
        onehot.eq(Const(1, 16) << u[:4]),
        product.eq(sig * onehot),
    ]
    with m.Switch(u >> 4):
        for coarse in range(top // 16 + 1):
            up = 16 * coarse - d
            with m.Case(coarse):
                m.d.comb += q.eq(product.shift_left(up) if up >= 0 else product.shift_right(-up))


class _Pipeline:
    """Places a register after the steps named in ``registered``."""

    def __init__(self, m, registered):
        self._m = m
        self._registered = registered

    def after(self, step, **values):
        out = {}
        for name, value in values.items():
            # Only the valid bit is reset: a payload without one is never used,
            # and a reset net to every data register would cost routing.
            reset_less = name != "valid"
            sig = Signal.like(value, name=f"{step}_{name}", reset_less=reset_less) \
                if isinstance(value, Signal) \
                else Signal(value.shape(), name=f"{step}_{name}", reset_less=reset_less)
            domain = self._m.d.sync if step in self._registered else self._m.d.comb
            domain += sig.eq(value)
            out[name] = sig
        return _Bundle(out)


class _Bundle:
    def __init__(self, values):
        self.__dict__.update(values)


def _fp32_class(exp, frac):
    """``(subnormal or zero, zero, inf, nan)`` of a binary32 value's fields."""
    sub = exp == 0
    return sub, sub & (frac == 0), (exp == 255) & (frac == 0), (exp == 255) & (frac != 0)


class _Operand:
    """An addend of the aligned sum: sign, significand field and exponent.

    ``sig``'s top bit (bit ``len(sig) - 1``) has the value ``2**top``;
    ``binade`` is the exact ``floor(log2|x|)`` (or a value >= it for a
    subnormal accumulator, see `SpeqPE`). ``zero``, ``inf`` and ``nan``
    classify it.

    ``tz``, where given, is the trailing zeros of ``sig`` when ``sig`` is
    not zero (any value when it is), worked out a step earlier.
    """

    def __init__(self, sign, sig, top, binade, zero, inf, nan, tz=None):
        self.sign, self.sig, self.top, self.binade = sign, sig, top, binade
        self.zero, self.inf, self.nan, self.tz = zero, inf, nan, tz

    def as_signals(self, m, name):
        """The same operand with every field driven into a signal of its own
        (a field expression read several times would be emitted each time)."""
        fields = {}
        for field in ("sign", "sig", "top", "binade", "zero", "inf", "nan", "tz"):
            value = getattr(self, field)
            if value is None:
                continue
            sig = Signal(value.shape(), name=f"{name}_{field}")
            m.d.comb += sig.eq(value)
            fields[field] = sig
        return _Operand(**fields)


class SpeqPE(wiring.Component):
    """Reconfigurable PE: one FP16 MAC (verify) or ``L`` draft MACs per cycle.

    Parameters
    ----------
    config : SpeqConfig
        Uses ``draft_lanes`` (``L``), ``draft_frac_bits`` (``F``, 23..48 in
        hardware: the accumulator may then always be taken at its field's
        exponent, see ``docs/pe.md``; unused when ``L = 1``), ``pe_stages``
        and ``dsp_align``.
    draft : bool
        Build the draft mode (``False`` gives the FP16-only baseline).
    late_acc : bool
        Take ``i.payload.acc`` `acc_latency` cycles after the rest of its
        step (`hw.array.SpeqArray` does: its accumulators then come back a
        cycle sooner). Without it the accumulator enters with its step.
    unpacked_act : bool
        Take the activations unpacked (`act_layout`, made by `unpack16`)
        instead of as FP16: `hw.array.SpeqArray` unpacks each activation
        once for all the PEs that read it.

    Members
    -------
    i : In(stream.Signature(pe_input_layout(draft, L, act_layout)))
        One step per cycle; the mode may change on any cycle.
    o : Out(stream.Signature(PEOut))
        The step's result, `latency` cycles later. ``o.ready`` low stalls the
        whole pipeline (``i.ready`` follows it), so a result is never lost.

    Raises
    ------
    TypeError, ValueError
        If ``config`` is not a `SpeqConfig`, or ``draft``, ``late_acc`` or
        ``unpacked_act`` not a bool.
    """

    def __init__(self, config=SpeqConfig(), *, draft=True, late_acc=False, unpacked_act=False):
        if not isinstance(config, SpeqConfig):
            raise TypeError(f"config must be a SpeqConfig, not {config!r}")
        if not isinstance(draft, bool):
            raise TypeError(f"draft must be a bool, not {draft!r}")
        if not isinstance(late_acc, bool):
            raise TypeError(f"late_acc must be a bool, not {late_acc!r}")
        if not isinstance(unpacked_act, bool):
            raise TypeError(f"unpacked_act must be a bool, not {unpacked_act!r}")
        self._late_acc = late_acc
        self._unpacked_act = unpacked_act
        self._lanes = config.draft_lanes if draft else 1
        self._config = config
        self._draft = draft
        # The fused draft sum (L >= 2); with one lane the draft step is a
        # verify step.
        self._fused = draft and self._lanes > 1
        self._F = config.draft_frac_bits
        # Only the fused draft sum needs the draft's F; IEEE steps need 25.
        self._G = max(self._F, VERIFY_GUARD_BITS) if self._fused else VERIFY_GUARD_BITS
        self._registered = frozenset(_REGISTER_ORDER[:config.pe_stages])
        # Registers after steps 2 and 3 (see the trailing zeros in step 2).
        self._early = {"multiply", "exponent"} <= self._registered
        # The shift amounts E + 1 - top worked out in step 3, beside E, where
        # a register follows step 3 but not step 4 (`_shift_amount`).
        self._shift_beside_e = "exponent" in self._registered and \
            "shift" not in self._registered
        super().__init__({
            "i": In(stream.Signature(pe_input_layout(draft, self._lanes, self.act_layout))),
            "o": Out(stream.Signature(PEOut)),
        })

    @property
    def config(self):
        return self._config

    @property
    def has_draft(self):
        return self._draft

    @property
    def lanes(self):
        """``L``: draft MACs per draft step (1 in the Fp16PE)."""
        return self._lanes

    @property
    def latency(self):
        """Cycles from an input step to its result on ``o``."""
        return len(self._registered)

    @property
    def acc_latency(self):
        """Cycles from a step entering to its accumulator being taken from
        ``i.payload.acc`` (cycles the pipeline advances, with ``o.ready``
        high): 0, or with ``late_acc`` 1 where a register follows step 1.
        Step 1 (unpack) does nothing with the accumulator, so with
        ``late_acc`` it enters in step 2. `SpeqConfig.acc_latency` is its
        formula."""
        return int(self._late_acc and "unpack" in self._registered)

    @property
    def act_layout(self):
        """An activation's layout on ``i``: FP16, or with ``unpacked_act``
        `unpacked16_layout`, with the trailing zeros where step 2 uses them
        (registers after steps 2 and 3)."""
        return unpacked16_layout(tz=self._early) if self._unpacked_act else FP16

    @property
    def registered_steps(self):
        """The steps (of `STEPS`) followed by a pipeline register."""
        return tuple(step for step in STEPS if step in self._registered)

    # -- step 1 ------------------------------------------------------------

    @staticmethod
    def _unpack16(m, bits, name):
        """Split an FP16 value; normalise subnormals. Returns a bundle."""
        return SpeqPE._bundle16(m, unpack16(m, bits, unpacked16_layout(), name), name)

    @staticmethod
    def _bundle16(m, unpacked, name):
        """The fields of a value of `unpacked16_layout` as a bundle, the
        exponent sign-extended to the datapath's width."""
        exp = Signal(_EXP, name=f"{name}_exp")
        m.d.comb += exp.eq(unpacked.exp)
        fields = {field: getattr(unpacked, field)
                  for field in unpacked.shape().members if field != "exp"}
        return _Bundle(dict(fields, exp=exp))

    @staticmethod
    def _draft_in_place(weight, operand, draft_mode):
        """One lane: the unpacked weight, or in draft mode the draft value
        ``operand`` unpacked the same way (a significand of ``1.0`` or
        ``1.5`` at bit 10, ``2**x`` its binade; never inf or NaN). A zero
        draft value is ``+0`` whatever the nibble's sign (`golden.speq16`):
        it decides the sign of ``(-0) + a * 0``."""
        sig = Mux(operand.zero, 0, Cat(Const(0, 9), operand.half, Const(1, 1)))
        return _Bundle(dict(
            sign=Mux(draft_mode, operand.sign & ~operand.zero, weight.sign),
            sig=Mux(draft_mode, sig, weight.sig),
            exp=Mux(draft_mode, operand.exp, weight.exp),
            zero=Mux(draft_mode, operand.zero, weight.zero),
            inf=weight.inf & ~draft_mode,
            nan=weight.nan & ~draft_mode))

    # -- step 3 ------------------------------------------------------------

    @staticmethod
    def _shift_amount(m, n, pre, operands, winners, all_zero):
        """Operand ``n``'s shift E + ``pre``, worked out beside E: the sum
        with each operand's binade, in parallel with the comparisons that
        find E, and the winner's taken (-126 + ``pre`` if all are zero).

        After a register following step 3, E + ``pre`` was an adder in
        front of the shifters: the 4x4 ULX3S board's critical path ran from
        that register (``exponent_e``) through it, the saturation and the
        shifter to the register after step 5 (66.09 MHz at 957f5eb). It
        costs an adder per operand pair instead of one per operand.
        """
        amount = Signal(_EXP, name=f"op{n}_shift_e")
        value = Mux(all_zero, Const(-126, _EXP) + pre, 0)
        for i, (win, op) in enumerate(zip(winners, operands)):
            candidate = Signal(_EXP, name=f"op{n}_shift_if{i}")
            m.d.comb += candidate.eq(op.binade + pre)
            value = value | Mux(win, candidate, 0)
        m.d.comb += amount.eq(value)
        return amount

    def elaborate(self, platform):
        m = Module()
        pipe = _Pipeline(m, self._registered)
        G, F = self._G, self._F
        lanes, fused = self._lanes, self._fused
        p = self.i.payload
        draft_mode = (p.mode == Mode.DRAFT) if self._draft else Const(0, 1)

        # -- 1. unpack --------------------------------------------------------
        acc = FP32(p.acc)
        # The activations come unpacked (``unpacked_act``) or as FP16.
        inputs = [p.act[j] for j in range(lanes)] + [p.weight]
        # With one lane the draft mode ends here, in the weight operand's
        # multiplexer: from there on the PE is the Fp16PE (mode 0).
        v = dict(valid=self.i.valid, draft_mode=draft_mode if fused else Const(0, 1))
        if not self.acc_latency:
            v.update(acc_sign=acc.sign, acc_exp=acc.exp, acc_frac=acc.frac)
        for j, bits in enumerate(inputs):
            if self._unpacked_act and j < lanes:
                unpacked = self._bundle16(m, bits, f"in{j}")
            else:
                unpacked = self._unpack16(m, bits, f"in{j}")
            if self._draft and not fused and j == lanes:
                unpacked = self._draft_in_place(unpacked, p.draft[0], draft_mode)
            for name, value in unpacked.__dict__.items():
                v[f"in{j}_{name}"] = value
        if fused:
            for j in range(lanes):
                for name in ("exp", "half", "zero", "sign"):
                    v[f"d{j}_{name}"] = getattr(p.draft[j], name)
        s0 = pipe.after("unpack", **v)
        # The accumulator's fields in step 2: registered with the step, or
        # (late_acc) taken now, a cycle after the rest of it.
        acc_sign, acc_exp, acc_frac = ((acc.sign, acc.exp, acc.frac) if self.acc_latency
                                       else (s0.acc_sign, s0.acc_exp, s0.acc_frac))

        # -- 2. multiply ------------------------------------------------------
        def unpacked(j):
            return _Bundle({name: getattr(s0, f"in{j}_{name}")
                            for name in ("sign", "sig", "exp", "zero", "inf", "nan")})
        acts = [unpacked(j) for j in range(lanes)]
        w = unpacked(lanes)
        # The one significand multiplier: 11 x 11 bits, exact.
        product = Signal(22)
        m.d.comb += product.eq(acts[0].sig * w.sig)
        # With registers after this step and after step 3, the accumulator's
        # class and the trailing zeros of the accumulator and of the product
        # (for the sticky bits of step 5) are worked out here, beside the
        # multiplier, rather than in step 3: the trailing zeros of the
        # accumulator in step 3 were the 2x2 AXI top's critical path (op0_tz,
        # 99-104 MHz). A product of non-zero integers has the trailing zeros
        # of its factors added. Where steps 2 and 3 share a stage (pe_stages
        # < 7) that gains nothing and costs logic cells (106 on the
        # iCEBreaker's board), so they stay in step 3.
        early = self._early
        # An accumulator taken late (acc_latency 1) comes straight from the
        # array's accumulator memory, whose read register Yosys puts on the
        # address side of a LUT RAM: its class and trailing zeros here were
        # the 2x2 accelerator's path (acc -> multiply_acc_tz, 80.48-81.67
        # MHz at e3e7e53). They are then worked out in step 3, from the
        # register after this step.
        early_acc = early and not self.acc_latency
        u = dict(
            valid=s0.valid, draft_mode=s0.draft_mode,
            acc_sign=acc_sign, acc_exp=acc_exp, acc_frac=acc_frac,
            p_sign=acts[0].sign ^ w.sign, p_sig=product, p_exp=acts[0].exp + w.exp,
            p_zero=acts[0].zero | w.zero, p_inf=acts[0].inf | w.inf,
            p_nan=acts[0].nan | w.nan | (acts[0].inf & w.zero) | (acts[0].zero & w.inf),
        )
        if early:
            act_tz = Signal(range(12), name="act0_tz")
            m.d.comb += act_tz.eq(s0.in0_tz if self._unpacked_act
                                  else trailing_zeros(m, acts[0].sig, "act0_tz"))
            weight_tz = Signal(range(12), name="weight_tz")
            m.d.comb += weight_tz.eq(trailing_zeros(m, w.sig, "weight_tz"))
            u.update(p_tz=act_tz + weight_tz)
        if early_acc:
            acc_sub, acc_zero, acc_inf, acc_nan = _fp32_class(acc_exp, acc_frac)
            u.update(
                acc_sub=acc_sub, acc_zero=acc_zero, acc_inf=acc_inf, acc_nan=acc_nan,
                acc_tz=trailing_zeros(m, Cat(acc_frac, ~acc_sub), "acc_tz"))
        if fused:
            for j in range(lanes):
                d = _Bundle({name: getattr(s0, f"d{j}_{name}") for name in ("exp", "half", "zero", "sign")})
                a = acts[j]
                # 2m or 3m: the draft value 2**x or 1.5 * 2**x, one row or two.
                # A zero draft value makes a zero significand: the aligner
                # then needs no separate zero case.
                u[f"t{j}_sig"] = Mux(d.zero, 0, Cat(Const(0, 1), a.sig) + Mux(d.half, a.sig, 0))
                if j == 0 and early:
                    # 2m has the trailing zeros of m and one more, 3m those of m.
                    u["t0_tz"] = act_tz + ~d.half
                u[f"t{j}_sign"] = a.sign ^ d.sign
                u[f"t{j}_exp"] = a.exp + d.exp          # binade of term bit 11
                u[f"t{j}_zero"] = a.zero | d.zero
                u[f"t{j}_inf"] = a.inf & ~d.zero
                u[f"t{j}_nan"] = a.nan | (a.inf & d.zero)
        s1 = pipe.after("multiply", **u)

        # -- 3. exponent ------------------------------------------------------
        if early_acc:
            acc_sub, acc_zero, acc_inf, acc_nan = s1.acc_sub, s1.acc_zero, s1.acc_inf, s1.acc_nan
            acc_tz = s1.acc_tz
        else:
            acc_sub, acc_zero, acc_inf, acc_nan = _fp32_class(s1.acc_exp, s1.acc_frac)
            acc_tz = None                    # counted in step 3 (below)
        p_tz = s1.p_tz if early else None
        operands = [_Operand(
            sign=s1.acc_sign, sig=Cat(s1.acc_frac, ~acc_sub),
            # Field top at the smallest normal exponent for a subnormal: the
            # bits then sit at their true weights, and F >= 23 makes the
            # draft floor exact for them (docs/pe.md).
            top=Mux(acc_sub, -126, s1.acc_exp - 127),
            binade=Mux(acc_sub, -126, s1.acc_exp - 127),
            zero=acc_zero, inf=acc_inf, nan=acc_nan, tz=acc_tz)]
        verify_slot = _Operand(
            sign=s1.p_sign, sig=s1.p_sig, top=s1.p_exp + 1,
            binade=s1.p_exp + s1.p_sig[21], zero=s1.p_zero, inf=s1.p_inf, nan=s1.p_nan,
            tz=p_tz)
        if fused:
            terms = [_Operand(
                sign=getattr(s1, f"t{j}_sign"), sig=getattr(s1, f"t{j}_sig"),
                top=getattr(s1, f"t{j}_exp") + 1,
                binade=getattr(s1, f"t{j}_exp") + getattr(s1, f"t{j}_sig")[12],
                zero=getattr(s1, f"t{j}_zero"), inf=getattr(s1, f"t{j}_inf"),
                nan=getattr(s1, f"t{j}_nan")) for j in range(lanes)]
            dm = s1.draft_mode
            # Slot 0 is shared: the product in verify mode, term 0 in draft mode.
            slot0 = _Operand(
                sign=Mux(dm, terms[0].sign, verify_slot.sign),
                sig=Mux(dm, terms[0].sig.shift_left(9), verify_slot.sig),
                top=Mux(dm, terms[0].top, verify_slot.top),
                binade=Mux(dm, terms[0].binade, verify_slot.binade),
                zero=Mux(dm, terms[0].zero, verify_slot.zero),
                inf=Mux(dm, terms[0].inf, verify_slot.inf),
                nan=Mux(dm, terms[0].nan, verify_slot.nan),
                tz=Mux(dm, s1.t0_tz + 9, verify_slot.tz) if early else None)
            # Slots 1 to L - 1 exist in draft mode only.
            for t in terms[1:]:
                t.sig = Mux(dm, t.sig, 0)
                t.sign = t.sign & dm
                t.zero = t.zero | ~dm
                t.inf = t.inf & dm
                t.nan = t.nan & dm
            operands += [slot0] + terms[1:]
        else:
            operands.append(verify_slot)
        operands = [op.as_signals(m, f"operand{n}") for n, op in enumerate(operands)]

        # Trailing zeros an operand does not bring are counted in step 4 where
        # a register follows it (only then is step 4 a stage of its own).
        tz_in_step4 = {n for n, op in enumerate(operands[:_DRAFT_ONLY_SLOT])
                       if op.tz is None and "shift" in self._registered}
        # E: the largest binade of the non-zero operands (-126 if none). All
        # pairs are compared at once and the winner selected, instead of a
        # chain of compare-and-select: this step sits on the critical path.
        e = Signal(_EXP)
        winners = []
        for i, op in enumerate(operands):
            beats = ~op.zero
            for j, other in enumerate(operands):
                if j != i:
                    wins = op.binade >= other.binade if i < j else op.binade > other.binade
                    beats = beats & (other.zero | wins)
            winners.append(beats)
        selected = Const(0, _EXP)
        for win, op in zip(winners, operands):
            selected = selected | Mux(win, op.binade, 0)
        all_zero = Const(1, 1)
        for op in operands:
            all_zero = all_zero & op.zero
        m.d.comb += e.eq(Mux(all_zero, -126, selected))

        # The aligned integer q has G fraction bits below E; a field whose top
        # bit is worth 2**top goes right by E + 1 - top from q's top bit G + 1
        # (>= 0: top <= binade + 1 <= E + 1). Past G + 2 nothing is left.
        # 1 - top (+ G - F in draft mode) does not wait for E.
        # Slots 2 and up (draft terms 1-3) are only used by the draft floor:
        # they go signed into an arithmetic shift, which floors by itself.
        x = dict(valid=s1.valid, draft_mode=s1.draft_mode, e=e)
        for n, op in enumerate(operands):
            pre = 1 - op.top + Mux(s1.draft_mode, G - F, 0)
            if self._shift_beside_e:
                x[f"op{n}_shift_e"] = self._shift_amount(m, n, pre, operands, winners,
                                                         all_zero)
            else:
                x[f"op{n}_pre"] = pre
            x[f"op{n}_sign"] = op.sign
            if n >= _DRAFT_ONLY_SLOT:
                x[f"op{n}_sig"] = Mux(op.sign, -op.sig, op.sig)
            else:
                # Trailing zeros of the placed field, for the sticky bit: ready
                # long before the shift amount is. Those not counted a step
                # earlier are counted here, or with a register after step 4
                # in step 4 beside its adder (``tz_in_step4``): in this step they
                # were the 2x2 AXI top's path at 10 stages with the late
                # accumulator (op0_tz_in -> exponent_op0_tz, 97.17 MHz).
                x[f"op{n}_sig"] = op.sig
                if n not in tz_in_step4:
                    tz = trailing_zeros(m, op.sig, f"op{n}_tz") if op.tz is None else op.tz
                    x[f"op{n}_tz"] = tz + (G + 2 - len(op.sig))
            x[f"op{n}_inf"] = op.inf
            x[f"op{n}_nan"] = op.nan
        x["both_zero_neg"] = operands[0].zero & operands[1].zero & \
            operands[0].sign & operands[1].sign
        s2e = pipe.after("exponent", **x)

        # -- 4. shift ---------------------------------------------------------
        y = {name: value for name, value in s2e.__dict__.items()
             if not name.endswith(("_pre", "_shift_e"))}
        for n in range(len(operands)):
            if n in tz_in_step4:
                sig = getattr(s2e, f"op{n}_sig")
                y[f"op{n}_tz"] = trailing_zeros(m, sig, f"op{n}_tz") + (G + 2 - len(sig))
            shift = Signal(_EXP, name=f"shift{n}")
            m.d.comb += shift.eq(getattr(s2e, f"op{n}_shift_e") if self._shift_beside_e
                                 else s2e.e + getattr(s2e, f"op{n}_pre"))
            if n < _DRAFT_ONLY_SLOT:
                # The shift's low bits, and whether any bit above them is set
                # (it is >= 0): a shift past them leaves nothing of the
                # field, so no saturating comparison stands before the
                # shifter (it was on the PE's path at 8 stages).
                low_bits = bits_for(G + 2)
                low = Signal(low_bits, name=f"shift{n}_low")
                far = Signal(name=f"shift{n}_far")
                m.d.comb += [low.eq(shift[:low_bits]), far.eq(shift[low_bits:].any())]
                y[f"op{n}_shift"], y[f"op{n}_far"] = low, far
            else:
                limited = Signal(range(G + 3), name=f"shift{n}_limited")
                m.d.comb += limited.eq(Mux(shift > G + 2, G + 2, shift))
                y[f"op{n}_shift"] = limited
        s2 = pipe.after("shift", **y)

        # -- 5. align ---------------------------------------------------------
        # The accumulator and slot 0 leave as X or as ~X = -X - 1: the +1s of
        # the negative ones are summed once, in step 6, instead of one adder
        # per operand. Verify: X = {q, sticky} (G fraction bits and the jammed
        # sticky bit). Draft: q already holds F fraction bits (the shift went
        # G - F further) and X = q << c; floor() of a negative operand is
        # -(q + sticky) << c = (~q << c) + (!sticky << c), so the low c bits
        # are not inverted. The draft-only slots are already signed: an
        # arithmetic shift gives floor() directly, X = (±field >> shift) << c.
        width = G + 6            # signed: five addends below 2**(G + 2) each
        c = G - F + 1 if fused else 1
        a = dict(valid=s2.valid, draft_mode=s2.draft_mode, e=s2.e,
                 both_zero_neg=s2.both_zero_neg)
        verify_carry, draft_carry = [], []
        for n in range(len(operands)):
            sig = getattr(s2, f"op{n}_sig")
            shift = getattr(s2, f"op{n}_shift")
            sign = getattr(s2, f"op{n}_sign")
            a[f"op{n}_inf"] = getattr(s2, f"op{n}_inf")
            a[f"op{n}_nan"] = getattr(s2, f"op{n}_nan")
            a[f"op{n}_sign"] = sign
            if n >= _DRAFT_ONLY_SLOT:
                q = Signal(signed(G + 3), name=f"q{n}")
                if self._config.dsp_align:
                    _align_by_multiply(m, q, sig, shift, f"align{n}")
                else:
                    placed = Signal(signed(G + 3), name=f"placed{n}")
                    m.d.comb += [placed.eq(sig.shift_left(G + 3 - len(sig))),
                                 q.eq(placed >> shift)]
                value = Signal(signed(width), name=f"value{n}")
                m.d.comb += value.eq(q.shift_left(c))
                a[f"v{n}"] = value
                continue
            placed = Signal(G + 2, name=f"placed{n}")
            m.d.comb += placed.eq(sig.shift_left(G + 2 - len(sig)))
            q = Signal(G + 2, name=f"q{n}")
            sticky = Signal(name=f"sticky{n}")
            far = getattr(s2, f"op{n}_far")
            m.d.comb += [
                q.eq(Mux(far, 0, placed >> shift)),
                # A shifted-out bit exists when the shift passes the lowest
                # one (at most G + 1 of a non-zero field: a far shift does).
                sticky.eq((sig != 0) & (far | (shift > getattr(s2, f"op{n}_tz")))),
            ]
            x = Signal(G + 2 + c, name=f"x{n}")
            invert_low = Signal(name=f"invert_low{n}")
            if fused:
                m.d.comb += [
                    x.eq(Mux(s2.draft_mode, Cat(Const(0, c), q), Cat(sticky, q))),
                    invert_low.eq(sign & ~s2.draft_mode),
                ]
                draft_carry.append(sign & ~sticky)
            else:
                m.d.comb += [x.eq(Cat(sticky, q)), invert_low.eq(sign)]
            verify_carry.append(sign)
            value = Signal(signed(width), name=f"value{n}")
            m.d.comb += value.eq(Cat(x, Const(0, width - len(x))) ^
                                 Cat(invert_low.replicate(c), sign.replicate(width - c)))
            a[f"v{n}"] = value
        carry = sum(verify_carry)
        if fused:
            carry = Mux(s2.draft_mode, sum(draft_carry) << c, carry)
        a["carry"] = carry
        s3 = pipe.after("align", **a)

        # -- 6. sum -----------------------------------------------------------
        total = Signal(signed(width))
        # A balanced tree of adders: a chain of them (Python's sum()) would
        # put one carry chain after another on this step's path.
        addends = [getattr(s3, f"v{n}") for n in range(len(operands))] + [s3.carry]
        while len(addends) > 1:
            addends = [addends[i] + addends[i + 1] if i + 1 < len(addends) else addends[i]
                       for i in range(0, len(addends), 2)]
        m.d.comb += total.eq(addends[0])
        nan = Const(0, 1)
        pos_inf = Const(0, 1)
        neg_inf = Const(0, 1)
        for n in range(len(operands)):
            inf = getattr(s3, f"op{n}_inf")
            sign = getattr(s3, f"op{n}_sign")
            nan = nan | getattr(s3, f"op{n}_nan")
            pos_inf = pos_inf | (inf & ~sign)
            neg_inf = neg_inf | (inf & sign)
        # The normalising shift's clamp (step 8) as a stop bit, decoded from
        # the exponent beside this step's adders (below, at step 7).
        # limit = E + 129 (step 7): clamped below the window's width, i.e.
        # E < width - 130; the shift needs the limit's low bits only.
        low = bits_for(width - 2)
        limit_low = Signal(low)
        m.d.comb += limit_low.eq(s3.e[:low] + 129 % 2 ** low)
        stop = Signal(width - 1)
        m.d.comb += stop.eq(Mux(s3.e < width - 130,
                                Const(1 << (width - 2), width - 1) >> limit_low, 0))
        s4 = pipe.after(
            "sum", valid=s3.valid, e=s3.e, total=total, stop=stop,
            nan=nan | (pos_inf & neg_inf), inf=pos_inf | neg_inf, inf_sign=neg_inf,
            zero_sign=s3.both_zero_neg & ~s3.draft_mode)

        # -- 7. negate ---------------------------------------------------------
        neg = s4.total[-1]
        mag = Signal(width - 1)
        m.d.comb += mag.eq(Mux(neg, -s4.total, s4.total))
        # Window bit p is worth 2**(E - G - 1 + p); the top bit (G + 4) is
        # worth 2**(E + 3). The normalising shift stops where the top is
        # worth 2**-126, after limit = E + 129 places. Only a limit below the
        # window's width can stop it: a flag and the limit's low bits are
        # all the count's clamp needs.
        #
        # The clamp is a *stop bit* (decoded in the sum step): a one at bit
        # top - limit of the count's input, which makes the count
        # min(leading zeros, limit) with no comparison after the count.
        s44 = pipe.after(
            "negate", valid=s4.valid, mag=mag, stop=s4.stop, sign=neg, e=s4.e,
            nan=s4.nan, inf=s4.inf, inf_sign=s4.inf_sign, zero_sign=s4.zero_sign)

        # -- 8. leading zeros -------------------------------------------------
        # With the stop bit: min(leading zeros of mag, limit) when the shift
        # is clamped, the leading zeros of mag when it is not.
        k = Signal(range(width))
        m.d.comb += k.eq(leading_zeros(m, s44.mag | s44.stop, "sum_lz"))
        s45 = pipe.after(
            "lzc", valid=s44.valid, mag=s44.mag, k=k, zero=s44.mag == 0, sign=s44.sign,
            e=s44.e, nan=s44.nan, inf=s44.inf, inf_sign=s44.inf_sign,
            zero_sign=s44.zero_sign)

        # -- 9. normalise -----------------------------------------------------
        # The shift takes the count's bits as the tree makes them, top bit
        # first: with ``mag << k`` (and a count whose uneven halves added
        # widths), lzc -> normalise was the PE's path at 8 stages (91.46 MHz
        # alone; 98.63 with these).
        norm = Signal(width - 1)
        m.d.comb += norm.eq(shift_left_msb_first(m, s45.mag, s45.k, "normalise"))
        # The result's binade is e + 130 - k. Where the count and the shift
        # share a stage (no register after step 8), the count -> that
        # subtraction was the stage's longest path (the 6x6 ULX3S board's
        # at 798ebf6: negate_mag -> the count -> normalise_exp's carry
        # chain, 67.08 MHz; the PE alone at 8 stages, lzc_mag ->
        # normalise_exp, 102.97 MHz): the stage then keeps k and e + 130
        # (from registers), and step 10 subtracts, beside its increment.
        late_exp = "lzc" not in self._registered
        exps = (dict(e130=s45.e + 130, k=s45.k) if late_exp
                else dict(exp=s45.e + 130 - s45.k))
        s5 = pipe.after(
            "normalise", valid=s45.valid, norm=norm, zero=s45.zero, sign=s45.sign,
            **exps, nan=s45.nan, inf=s45.inf, inf_sign=s45.inf_sign, zero_sign=s45.zero_sign)

        # -- 10. round ---------------------------------------------------------
        top = width - 2
        field = s5.norm[top - 23:top + 1]
        guard = s5.norm[top - 24]
        rest = s5.norm[:top - 24] != 0
        up = guard & (rest | field[0])
        # The increment's carry chain starts from the register: ``field + 1``
        # is formed beside the rounding decision, which then only selects;
        # only the fraction takes the chain's sum. Whether the rounding
        # carries out of the significand, or gives it its leading one, comes
        # from the field's bits (are the 23 below the top all ones?), beside
        # the chain: with the chain's carry out, the carry -> the overflow
        # test -> the special cases was the 2x2 accelerator's path at
        # f32b258, seed 3 (normalise_norm -> the chain -> five LUTs -> the
        # output register, 98.75 MHz).
        incremented = Signal(23)
        m.d.comb += incremented.eq(field[:23] + 1)
        low_ones = field[:23].all()
        carry = up & field[23] & low_ones          # field + 1 = 2**24
        leading = field[23] | (up & low_ones)      # bit 23 of the rounded field, no carry
        # After a carry the fraction is 0, as is the increment's.
        sig = Mux(up, incremented, field[:23])
        # The exponent is exp + 1 after a carry out of the significand, exp
        # with the leading one, 0 (subnormal) without. Both candidates and
        # their overflow tests are formed beside the carry, which then only
        # selects.
        exp_up, huge, huge_up = Signal(_EXP), Signal(), Signal()
        if late_exp:
            exp = Signal((s5.e130 - s5.k).shape(), name="round_exp")
            m.d.comb += exp.eq(s5.e130 - s5.k)
        else:
            exp = s5.exp
        m.d.comb += [exp_up.eq(exp + 1), huge.eq(exp >= 255), huge_up.eq(exp >= 254)]
        biased = Mux(carry, exp_up[:8], Mux(leading, exp[:8], 0))
        overflow = Mux(carry, huge_up, leading & huge)
        result = Signal(FP32)
        with m.If(s5.nan):
            m.d.comb += result.as_value().eq(FP32_QNAN)
        with m.Elif(s5.inf | overflow):
            m.d.comb += [result.sign.eq(Mux(s5.inf, s5.inf_sign, s5.sign)),
                         result.exp.eq(255), result.frac.eq(0)]
        with m.Elif(s5.zero):
            m.d.comb += result.sign.eq(s5.zero_sign)
        with m.Else():
            m.d.comb += [result.sign.eq(s5.sign), result.exp.eq(biased),
                         result.frac.eq(sig)]
        s6 = pipe.after("round", valid=s5.valid, result=result)
        m.d.comb += [self.o.valid.eq(s6.valid), self.o.payload.acc.eq(s6.result)]
        # One stall for the whole pipeline: a payload holds while the consumer
        # is not ready, as lib.stream requires.
        m.d.comb += self.i.ready.eq(self.o.ready)
        outer = Module()
        outer.submodules.datapath = EnableInserter(self.o.ready)(m)
        return outer


class Fp16PE(SpeqPE):
    """The FP16-only baseline PE: `SpeqPE` built without the draft mode.

    Same parameters and members as `SpeqPE` (``draft`` fixed to ``False``):
    ``i.payload`` has no ``mode`` and no ``draft`` field, and one activation.
    """

    def __init__(self, config=SpeqConfig()):
        super().__init__(config, draft=False)
