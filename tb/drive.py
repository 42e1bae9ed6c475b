"""Shared pieces of the cocotb benches."""

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer


__all__ = ["RESET_CYCLES", "CLOCK_NS", "reset", "cycles", "table_entry", "load_table",
           "same_bits"]


def same_bits(got, want, what):
    """Assert that results ``got`` equal ``want`` bit for bit (any NaN
    matching a NaN), naming ``what``, how many differ and the first."""
    nan = np.isnan(want)
    bad = np.flatnonzero((np.isnan(got) != nan) |
                         (~nan & (got.view(f"u{got.itemsize}") != want.view(f"u{want.itemsize}"))))
    assert not bad.size, (f"{what}: {bad.size} of {want.size} results differ; first at "
                          f"{np.unravel_index(bad[0], want.shape)}: got {got.flat[bad[0]]!r} "
                          f"want {want.flat[bad[0]]!r}")


RESET_CYCLES = 4
#: The benches' clock period.
CLOCK_NS = 10


async def reset(dut, inputs):
    """Drive ``inputs`` (port names) to 0, start the clock, hold reset a few cycles.

    Every input is driven before the clock starts and reset is held for
    `RESET_CYCLES` cycles: Icarus evaluates some of Amaranth's ``always @*``
    blocks late at time 0. The clock is the simulator-side one: a Python clock
    coroutine costs more per cycle than a bench loop.
    """
    dut.rst.value = 1
    for name in inputs:
        getattr(dut, name).value = 0
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start())
    for _ in range(RESET_CYCLES):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


def cycles(count):
    """A trigger ``count`` clock cycles from now: one simulator timer, where
    `cocotb.triggers.ClockCycles` would run Python on every edge."""
    return Timer(count * CLOCK_NS, unit="ns")


def table_entry(dut, code, enc):
    """Drive the ``table__*`` write port with entry ``code`` of ``enc``'s
    remap tables (`golden.speq16.Encoded`), ``table__en`` high."""
    exp_mask = (1 << len(dut.table__exp)) - 1
    dut.table__en.value = 1
    dut.table__code.value = code
    dut.table__base.value = int(enc.base[code])
    dut.table__exp.value = int(enc.draft_exp[code]) & exp_mask
    dut.table__half.value = int(enc.draft_half[code])
    dut.table__zero.value = int(enc.draft_zero[code])


async def load_table(dut, enc):
    """Write every entry of ``enc``'s remap tables through the ``table__*``
    port, one per cycle after a falling edge; ``table__en`` low after."""
    for code in range(len(enc.base)):
        await FallingEdge(dut.clk)
        table_entry(dut, code, enc)
    await FallingEdge(dut.clk)
    dut.table__en.value = 0
