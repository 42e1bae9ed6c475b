"""Shared pieces of the cocotb benches."""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge


__all__ = ["RESET_CYCLES", "reset"]


RESET_CYCLES = 4


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
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns", impl="gpi").start())
    for _ in range(RESET_CYCLES):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
