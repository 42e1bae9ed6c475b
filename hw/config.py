"""The one configuration object of a SPEQ build.

`SpeqConfig` drives elaboration, is written to ``manifest.json`` beside the
Verilog, and is what the golden model, the cycle model and the cocotb benches
read. Later blocks add their parameters here, never as copied constants.
"""

from dataclasses import dataclass, asdict, fields
import operator

from golden.arith import DRAFT_LANES


__all__ = ["SpeqConfig", "PARAM_RANGES", "PARAM_CHOICES", "check_integer_fields"]


def check_integer_fields(config, ranges, choices={}):
    """Check and normalise the integer fields of a frozen dataclass: each an
    integer (`operator.index`) within ``ranges[name]`` (inclusive) and, where
    ``choices`` names it, one of those.

    Raises
    ------
    TypeError
        If a field is not an integer.
    ValueError
        If a field is out of its range or not one of its choices.
    """
    for field in fields(config):
        value = getattr(config, field.name)
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"{field.name} must be an integer, not {value!r}") from None
        lo, hi = ranges[field.name]
        if not lo <= value <= hi:
            raise ValueError(f"{field.name} must be between {lo} and {hi}, not {value}")
        allowed = choices.get(field.name)
        if allowed is not None and value not in allowed:
            raise ValueError(f"{field.name} must be one of "
                             f"{', '.join(map(str, allowed))}, not {value}")
        object.__setattr__(config, field.name, value)


#: Allowed range (inclusive) of every integer parameter, used by the checks
#: below and by the ``--help`` text of ``python -m rtl_gen.build``.
PARAM_RANGES = {
    "draft_lanes": (min(DRAFT_LANES), max(DRAFT_LANES)),
    # The golden model takes 2..48; the PE needs F >= 23 so that a subnormal
    # accumulator is never truncated by the draft floor (docs/pe.md).
    "draft_frac_bits": (23, 48),
    "pe_stages": (1, 10),
    "rows": (1, 16),
    "cols": (1, 16),
    # The command's T field has 5 bits. More than 8 serves attention passes
    # over grouped-query heads: a KV head's query heads times a round's
    # tokens in one read of the cache (docs/projection.md).
    "tmax": (1, 31),
    "kmax": (4, 16384),
    "mem_bits": (16, 4096),
    "dsp_align": (0, 1),
    # Groups of PEs with activations of their own (multi-head passes); they
    # divide rows x cols.
    "head_groups": (1, 256),
}
#: Parameters that take only some values of their range.
PARAM_CHOICES = {
    # The steps of L terms tile the four weights of a draft-plane word.
    "draft_lanes": DRAFT_LANES,
}


@dataclass(frozen=True)
class SpeqConfig:
    """Parameters of one generated SPEQ configuration.

    Parameters
    ----------
    draft_lanes : int
        ``L`` of the draft arithmetic contract (SPEC section 3): draft MACs a
        PE does per cycle, 1, 2 or 4. With 1 the draft value takes the
        weight's place in the verify datapath (IEEE steps, no draft-only
        logic); with 2 or 4 a step is a fused aligned sum of L terms. The
        smallest L that keeps a draft pass memory-bound is ``L >= B / (4 P)``
        for ``P`` PEs and a ``B``-bit memory port (docs/array.md).
    draft_frac_bits : int
        ``F`` of the draft arithmetic contract (SPEC section 3): every operand
        of a fused draft step (L = 2 or 4) is aligned to ``F`` fraction bits
        below the largest operand's binade before the exact sum; unused by
        L = 1.
    pe_stages : int
        Pipeline registers in a PE (its latency): 1 is the output register
        alone; more split the datapath at the shifters and the adder.
    rows, cols : int
        Shape R x C of the PE array.
    tmax : int
        Most tokens a verify pass takes (each PE keeps accumulators for them).
    kmax : int
        Longest reduction (K) a pass takes, a multiple of 4: the activation
        buffer holds ``tmax x kmax`` FP16 values.
    mem_bits : int
        ``B``, bits the weight memory port delivers per cycle: a multiple of
        16; the accelerator also needs it to divide ``16 x rows x cols`` (one
        draft word per PE).
    dsp_align : int
        1: the PE aligns draft terms 1-3 with multipliers (the term times a
        power of two, a DSP block each) instead of LUT shifters, for FPGAs
        with few LUTs and idle DSP blocks such as the iCE40 UP5K; 0: shifters.
        The results are the same.
    head_groups : int
        ``G``, groups of PEs that take activations of their own (PEs ``q P /
        G .. (q + 1) P / G - 1`` are group ``q``): a *multi-head* pass (the
        command's ``multihead``) computes ``G`` products of one shape at
        once, head ``q`` on group ``q`` (`golden.perf`). A wide array's
        attention needs it: ``P V`` has as many rows as the head dimension,
        a fraction of a tile. 1: every PE takes the same activations. The
        activation buffer holds ``tmax x kmax`` values per group.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is outside its range (the message names both).
    """

    draft_lanes: int = 1
    draft_frac_bits: int = 30
    pe_stages: int = 10
    rows: int = 4
    cols: int = 4
    tmax: int = 8
    kmax: int = 1024
    mem_bits: int = 32
    dsp_align: int = 0
    head_groups: int = 1

    def __post_init__(self):
        check_integer_fields(self, PARAM_RANGES, PARAM_CHOICES)
        if (self.rows * self.cols) % self.head_groups:
            raise ValueError(f"head_groups must divide rows x cols = {self.rows * self.cols}, "
                             f"not {self.head_groups}")
        if self.kmax % 4:
            raise ValueError(f"kmax must be a multiple of 4, not {self.kmax}")
        if self.mem_bits % 16:
            raise ValueError(f"mem_bits must be a multiple of 16, not {self.mem_bits}")

    @property
    def head_pes(self):
        """PEs of one head group (`head_groups`)."""
        return self.rows * self.cols // self.head_groups

    @property
    def min_draft_lanes(self):
        """The smallest ``L`` that keeps a draft pass memory-bound, or ``None``
        if even ``L = 4`` does not.

        A draft pass reads ``B / 4`` draft weights per cycle (four bits each)
        and the ``P = rows x cols`` PEs take ``P x L`` of them: the pass keeps
        up with the memory when ``P x L >= B / 4`` (docs/array.md, sizing
        rule).
        """
        pes = self.rows * self.cols
        return next((lanes for lanes in DRAFT_LANES if 4 * pes * lanes >= self.mem_bits), None)

    @property
    def array_latency(self):
        """Cycles from a step entering the array (`hw.array.SpeqArray`) to its
        result leaving it: the table lookups and decoding, the accumulator
        read, then the PE's ``pe_stages`` pipeline registers. The array
        asserts it; the cycle model uses it."""
        return 2 + self.pe_stages

    @property
    def acc_latency(self):
        """Cycles from a step entering a PE of the array to the PE taking its
        accumulator: 1 from 8 ``pe_stages`` on, where a register follows the
        PE's first step (unpack), which does nothing with the accumulator
        (`hw.pe.SpeqPE.acc_latency` with ``late_acc``); 0 below. The array
        asserts it."""
        return int(self.pe_stages >= 8)

    @property
    def interleave(self):
        """Fewest steps between two uses of one accumulator slot of the array,
        so the row slots per PE of a tile: the accumulator is read
        ``1 + acc_latency`` cycles after its step enters and written
        ``array_latency`` cycles after it. The array asserts it; the cycle
        model uses it (``slots``)."""
        return self.array_latency - 1 - self.acc_latency

    @property
    def result_latency(self):
        """Cycles from a step's issue (its reads) to its result, rounded to
        FP16 as well, being ready for the controller's output register: one
        for the registered operands, the array's latency, then one for the
        rounding and one through the result buffer
        (`hw.controller.PassController`, which asserts it). The cycle model
        uses it."""
        return 1 + self.array_latency + 2

    def to_dict(self):
        """The parameters as a plain dict (the ``config`` of the manifest)."""
        return asdict(self)
