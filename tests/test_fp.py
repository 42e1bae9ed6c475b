"""`hw.fp.fp32_to_fp16` against NumPy's ``astype(float16)``, on Amaranth's simulator."""

import numpy as np
import pytest

from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from hw.fp import fp32_to_fp16


def _directed():
    """Every FP16 rounding boundary class: zeros, FP32 subnormals, the FP16
    subnormal range and its edges, ties, the overflow edge, inf and NaN."""
    values = [0.0, -0.0, 1e-45, -1e-45, 2.0 ** -126, 2.0 ** -25, 2.0 ** -25 * 1.0000001,
              2.0 ** -24, 2.0 ** -24 * 1.5, 2.0 ** -24 * 2.5, 2.0 ** -14, 2.0 ** -14 * (1 - 2 ** -11),
              6.1e-5, 1.0, 1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11, 1.0 + 2 ** -11 + 2 ** -20,
              65504.0, 65519.99, 65520.0, 65536.0, 1e30, np.inf, -np.inf, np.nan, -np.nan, -3.25]
    bits = [np.float32(v).view(np.uint32) for v in values]
    # Ties and near-ties at every exponent of the FP16 range, both signs.
    for e in range(100, 146):
        for frac in (0x1000, 0x3000, 0x1001, 0x0FFF, 0x7FFFFF, 0x2000, 0x7FF000):
            bits += [(e << 23) | frac, (1 << 31) | (e << 23) | frac]
    return np.array(bits, dtype=np.uint32)


@pytest.mark.parametrize("registered", [False, True], ids=["comb", "registered"])
def test_fp32_to_fp16_matches_numpy(registered):
    rng = np.random.default_rng(0)
    inputs = np.concatenate([
        _directed(),
        rng.integers(0, 1 << 32, 3000, dtype=np.uint64).astype(np.uint32),
        # 64 random fractions at every exponent from below the FP16 subnormals
        # to past the largest FP16, both signs.
        (rng.integers(0, 2, (52, 64)) << 31 | np.arange(95, 147)[:, None] << 23
         | rng.integers(0, 1 << 23, (52, 64))).astype(np.uint32).ravel(),
        # Values in and around the FP16 range, where the rounding matters.
        (rng.standard_normal(3000) * np.exp2(rng.integers(-30, 20, 3000))).astype(np.float32).view(np.uint32),
    ])
    with np.errstate(over="ignore"):
        want = inputs.view(np.float32).astype(np.float16).view(np.uint16)

    m = Module()
    value = Signal(32)
    result = fp32_to_fp16(m, value, registered=registered)
    got = []

    async def bench(ctx):
        for bits in inputs:
            ctx.set(value, int(bits))
            if registered:               # the result a cycle later
                await ctx.tick()
            got.append(ctx.get(result))

    sim = Simulator(m)
    if registered:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    got = np.array(got, dtype=np.uint16)
    nan = np.isnan(want.view(np.float16))
    assert (np.isnan(got.view(np.float16)) == nan).all()
    bad = np.flatnonzero(~nan & (got != want))
    assert not bad.size, (f"{bad.size} of {len(inputs)} differ; first: {inputs[bad[0]]:#010x} -> "
                          f"{got[bad[0]]:#06x}, want {want[bad[0]]:#06x}")
