"""Registered fan-out: copies of a register, each driving a share of its loads.

A register read by every PE of a large array (the weight buffer's read
address, the lane and mode that choose each PE's weight word) is one net
with thousands of loads across the device, mostly routing. Copies of it,
each loaded like the original and each read by a group of PEs, make that
many short nets instead, at the same latency.

Synthesis merges registers that are loaded with the same value (Yosys'
``opt_merge``), and a ``keep`` attribute on their wires does not stop it;
``keep`` on the flip-flop cells does. Amaranth puts a signal's attributes on
its wire only, so a copy carries the attribute `REPLICA` and every Yosys flow
of this project runs `YOSYS_KEEP_REPLICAS` right after reading the design
(`rtl_gen.flows.yosys_script`, `rtl_gen.bitstream`). Another synthesis flow
needs the same rule, or it gets one register again (correct, only slower).
"""

from amaranth.hdl import Signal


__all__ = ["REPLICA", "YOSYS_KEEP_REPLICAS", "replicas"]


#: The attribute that marks a copy's wire.
REPLICA = {"speq_replica": 1}

#: Puts ``keep`` on the flip-flops that drive a wire marked `REPLICA`.
YOSYS_KEEP_REPLICAS = "setattr -set keep 1 a:speq_replica %ci1:+[Q] t:$*dff* %i"


def replicas(shape, count, name):
    """``count`` registers of ``shape`` marked `REPLICA`, named ``name0`` ...;
    no reset (the caller loads them as it loads the original)."""
    return [Signal(shape, name=f"{name}{i}", reset_less=True, attrs=REPLICA)
            for i in range(count)]
