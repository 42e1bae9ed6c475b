"""Floating-point field layouts shared by the SPEQ blocks.

The layouts are `amaranth.lib.data.Struct` types with their fields listed LSB
first, so a `View` of a 16-bit signal reads like the IEEE definition.
"""

from amaranth.lib import data
from amaranth.utils import ceil_log2, exact_log2
import numpy as np


__all__ = ["FP16", "FP32", "FP16_QNAN", "FP16_Q_MAX", "SPEQ16Word", "DraftNibble", "fp32_to_fp16",
           "floor_div_const"]


class FP16(data.Struct):
    """IEEE 754 binary16: 1 sign bit, 5 exponent bits (bias 15), 10 fraction bits."""

    frac: 10
    exp: 5
    sign: 1


class FP32(data.Struct):
    """IEEE 754 binary32: 1 sign bit, 8 exponent bits (bias 127), 23 fraction bits."""

    frac: 23
    exp: 8
    sign: 1


#: The canonical quiet NaN of binary16 (positive, top fraction bit set).
FP16_QNAN = 0x7E00


class SPEQ16Word(data.Struct):
    """One SPEQ-16 weight word (SPEC section 2).

    The magnitude class of the weight is ``q = base[code] + delta``; ``low``
    holds the 8 low fraction bits unchanged, so the full word decodes to the
    exact FP16 bits.
    """

    low: 8
    delta: 4
    code: 3
    sign: 1


class DraftNibble(data.Struct):
    """The draft weight: the top 4 bits of a SPEQ-16 word, ``{sign, code}``."""

    code: 3
    sign: 1


#: Largest magnitude class ``q = (e << 2) | m[9:8]`` of a finite FP16 value
#: (123): the all-ones exponent field belongs to inf and NaN.
FP16_Q_MAX = (((1 << data.Layout.cast(FP16)["exp"].width) - 2) << 2) | 3


def fp32_to_fp16(m, value, name="fl16", *, registered=False):
    """``fl16(value)``: an FP32 value rounded to FP16, to nearest even (NumPy's
    ``astype(float16)``), as logic added to module ``m``: combinational, or
    with ``registered`` a register in the middle (the shift and its sticky
    bit before it; the rounding add after it), so that the result comes a
    cycle after ``value`` (the registers have no enable and no reset).

    Normal and subnormal results come out of one formula: the significand
    with its hidden bit is shifted right to the FP16 grid of the value's
    binade (13 bits for a normal result, 13 + ``extra`` for a subnormal one,
    ``extra`` at most 13: past that nothing is left) and added to the
    exponent field ``max(e - 113, 0) << 10``, so a carry out of the
    significand, from rounding or from the hidden bit itself, steps the
    exponent, up to infinity. The fixed 12 of the shift are wiring; only the
    12 bits above them are shifted (by ``extra``, one of 12 amounts chosen
    by the exponent; past them nothing is left). NaN gives the
    quiet NaN ``0x7E00`` with the input's sign.

    Returns the 16-bit result signal.
    """
    from amaranth.hdl import Cat, Mux, Signal

    f = FP32(value)
    sig = Signal(24, name=f"{name}_sig")
    half = Signal(12, name=f"{name}_half")              # sig >> (12 + extra)
    sticky = Signal(name=f"{name}_sticky")
    out = Signal(16, name=name)
    exp = f.exp.as_unsigned()
    high = sig[12:]
    # ``extra`` = 113 - e for a subnormal result (e <= 113), 0 for a normal
    # one, as one select per amount decoded from the exponent: the shift is
    # an AND-OR of the selects with ``high``, and the sticky bit one of them
    # with ``high``'s low bits, without a subtracter and a shifter in series
    # in front of the register (the 2x2 accelerator's path at e9dc575, seed
    # 1: the PE's result -> the rounder's sticky register, 107.10 MHz). From
    # 12 on nothing is left, not even the guard bit: the result is a zero
    # whatever the sticky bit, so no amount is selected then.
    by = [Signal(name=f"{name}_by{k}") for k in range(12)]
    m.d.comb += [by[0].eq(exp >= 113)]
    m.d.comb += [by[k].eq(exp == 113 - k) for k in range(1, 12)]
    m.d.comb += [
        sig.eq(Mux(exp == 0, f.frac, f.frac | (1 << 23))),
        half.eq(Cat(Cat(by[k] & high[i + k] for k in range(12 - i)).any() for i in range(12))),
        # Bits below the guard: the low 12, and the low ``extra`` of ``high``.
        sticky.eq((sig[:12] != 0) | Cat(by[k] & (high[:k] != 0) for k in range(1, 12)).any()),
    ]
    # What the rounding needs: the shifted bits, the sticky bit, the exponent
    # field, the special cases and the sign.
    cut = {
        "half": half, "sticky": sticky,
        "field": Mux(exp <= 113, 0, (exp - 113) << 10)[:16],
        "nan_inf": exp == 255, "frac_zero": f.frac == 0, "huge": exp >= 143,
        "sign": f.sign,
    }
    staged = {}
    for key, v in cut.items():
        staged[key] = Signal(len(v), name=f"{name}_{key}_r" if registered else
                             f"{name}_{key}_c", reset_less=True)
        (m.d.sync if registered else m.d.comb).__iadd__(staged[key].eq(v))
    kept = staged["half"][1:]
    guard = staged["half"][0]
    magnitude = Signal(16, name=f"{name}_magnitude")
    m.d.comb += magnitude.eq(staged["field"] + kept + (guard & (staged["sticky"] | kept[0])))
    sign = staged["sign"]
    with m.If(staged["nan_inf"]):
        m.d.comb += out.eq(Mux(staged["frac_zero"], 0x7C00, FP16_QNAN) | (sign << 15))
    with m.Elif(staged["huge"]):                  # 2**16 and above: past the largest FP16
        m.d.comb += out.eq(0x7C00 | (sign << 15))
    with m.Else():
        m.d.comb += out.eq(magnitude | (sign << 15))
    return out


def floor_div_const(value, divisor):
    """``value // divisor`` for a constant ``divisor``: a shift, or a multiply
    by the rounded-up reciprocal, checked here on every value of ``value``'s
    width (at most 20 bits)."""
    width = len(value)
    if divisor & (divisor - 1) == 0:
        return value >> exact_log2(divisor)
    assert width <= 20, width
    shift = width + ceil_log2(divisor)
    factor = -(-(1 << shift) // divisor)
    v = np.arange(1 << width, dtype=np.int64)
    assert ((v * factor) >> shift == v // divisor).all(), (width, divisor)
    return (value * factor) >> shift
