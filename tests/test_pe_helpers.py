"""The PE's counting and shifting helpers (hw.pe) against plain Python, in
Amaranth's simulator: exhaustively up to 9 bits, on edge and random values
above."""

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from hw.pe import leading_zeros, shift_left_msb_first, trailing_zeros


def _values(width, rng):
    if width <= 9:
        return range(2 ** width)
    edges = [0, 2 ** width - 1] + [1 << i for i in range(width)]
    return edges + [rng.getrandbits(width) >> rng.randrange(width) for _ in range(200)]


def _lz(v, width):
    return width - v.bit_length()


def _tz(v, width):
    return (v & -v).bit_length() - 1 if v else width


@pytest.mark.parametrize("width", [1, 2, 3, 5, 8, 9, 11, 16, 17, 24, 30, 31, 32, 33])
def test_counts_and_shift(width):
    rng = random.Random(width)
    m = Module()
    x = Signal(width)
    amount = Signal(range(width + 1))
    lz, tz = leading_zeros(m, x, "lz"), trailing_zeros(m, x, "tz")
    shifted = shift_left_msb_first(m, x, amount, "shl")
    checked = []

    async def bench(ctx):
        for v in _values(width, rng):
            ctx.set(x, v)
            assert (ctx.get(lz), ctx.get(tz)) == (_lz(v, width), _tz(v, width)), f"{v:#x}"
            by = rng.randrange(width + 1)
            ctx.set(amount, by)
            assert ctx.get(shifted) == (v << by) % 2 ** width, f"{v:#x} << {by}"
            checked.append(v)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) >= min(2 ** width, 200)
