"""Floating-point field layouts shared by the SPEQ blocks.

The layouts are `amaranth.lib.data.Struct` types with their fields listed LSB
first, so a `View` of a 16-bit signal reads like the IEEE definition.
"""

from amaranth.lib import data


__all__ = ["FP16", "FP32", "FP16_QNAN", "FP16_Q_MAX", "SPEQ16Word", "DraftNibble"]


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
