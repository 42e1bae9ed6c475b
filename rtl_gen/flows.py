"""The synthesis flows of a block: word level, generic gates, an FPGA's
synthesis, and place and route in the pin harness.

Each flow writes its Yosys script, log and outputs into a directory of its
own and returns what it measured; `rtl_gen.synth` puts them in the area
report's table and `rtl_gen.explore` runs them for the points of a sweep.
"""

import json
import os
from pathlib import Path
import re

from amaranth.back import rtlil

from hw.fanout import YOSYS_KEEP_REPLICAS

from .devices import SEED, PinHarness
from .netlists import memory_bits, multipliers, parse_nextpnr, parse_stat
from .tools import ToolError, progress


__all__ = ["yosys_script", "word_level", "word_level_run", "generic_synth", "fpga_synth",
           "place_and_route"]


def yosys_script(path, il, top, commands):
    """Write a Yosys script at ``path`` that reads ``il``, keeps the
    registered fan-out's copies apart (`hw.fanout`) and runs ``commands``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Relative: the WebAssembly tools may not see every absolute path.
    il = os.path.relpath(il, path.parent)
    path.write_text("\n".join([f"read_rtlil {il}", YOSYS_KEEP_REPLICAS, *commands]) + "\n")
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
    return word_level_run(il, name, d, yosys, step or f"{name}: word-level synthesis")[0]


def word_level_run(il, name, d, yosys, step):
    """Word-level synthesis of RTLIL file ``il`` (module ``name``) in ``d``:
    ``(multipliers, memory bits)``."""
    script = yosys_script(d / "synth.ys", il, name, [
        f"synth -flatten -top {name} -run begin:fine",
        "write_json -noscopeinfo word_level.json",
    ])
    progress(f"{step} (synth -run begin:fine) ...")
    seconds = yosys.run(["-s", script.name], d / "yosys.log", step)
    netlist = json.loads((d / "word_level.json").read_text())
    found = multipliers(netlist)
    progress(f"{step}: done in {seconds:.0f} s, {len(found)} multiplier(s)")
    return found, memory_bits(netlist)


def generic_synth(il, top, d, yosys, step):
    """Generic-gate synthesis of RTLIL file ``il`` (module ``top``) in ``d``:
    `parse_stat` of ``stat -json -tech cmos``."""
    script = yosys_script(d / "synth.ys", il, top, [
        # `synth -flatten` without `memory_map`: memories stay $mem_v2 cells
        # (their bits are a row of the word level) instead of flip-flops and
        # read multiplexers that would swamp the logic and take ABC hours.
        f"synth -flatten -top {top} -run begin:fine",
        "opt -fast -full", "opt -full", "techmap", "opt -fast", "abc", "opt -fast",
        "abc -g AND,NAND,OR,NOR,XOR,XNOR,MUX",
        # tee: ABC's console output may cut the log, the file stays whole.
        "tee -q -o stat.json stat -json -tech cmos",
    ])
    progress(f"{step} (synth -flatten, abc -g) ...")
    seconds = yosys.run(["-s", script.name], d / "yosys.log", step)
    stat = parse_stat((d / "stat.json").read_text())
    progress(f"{step}: done in {seconds:.0f} s, {stat['cells']} cells")
    return stat


def fpga_synth(il, top, d, yosys, device, step):
    """``device``'s synthesis of RTLIL file ``il`` (module ``top``) in ``d``:
    `parse_stat` of its netlist."""
    command = device.synth.format(top=top)
    script = yosys_script(d / "synth.ys", il, top, [command, "tee -q -o stat.json stat -json"])
    progress(f"{step} ({command}) ...")
    seconds = yosys.run(["-s", script.name], d / "yosys.log", step)
    progress(f"{step}: done in {seconds:.0f} s")
    return parse_stat((d / "stat.json").read_text())


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
    script = yosys_script(d / "synth.ys", d / "top.il", "top", [
        device.synth.format(top="top"), "write_json top.json"])
    progress(f"{step}: synthesis in the pin harness ...")
    yosys.run(["-s", script.name], d / "yosys.log", step)
    args = [*device.args, "--json", "top.json", f"--{device.constraints}", constraints.name,
            "--freq", str(device.freq), "--seed", str(seed), "--timing-allow-fail"]
    progress(f"{step}: nextpnr {' '.join(device.args)} --freq {device.freq} --seed {seed} ...")
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
