"""Pass costs of the accelerator against the roofline, and the draft/baseline ratio c.

For N, K in {256, 1024, 4096} it prints the cycles of a draft pass, a
baseline pass and verify passes over T = 1 .. tmax tokens, as the cycle model
(`golden.perf`) predicts them for the configuration, next to the roofline
``max(weight bits / B, MACs / MACs per cycle)``; then ``c`` (draft pass
cycles / baseline pass cycles), which speculative decoding uses; then the
draft pass and ``c`` of the same array with each draft lane count ``L`` (1,
2, 4); then a sweep of the memory width B for the same array, to size one: a
verify pass over Tmax tokens stays about as cheap as a single-token pass
while ``B <= 16 x R x C / Tmax``, and a draft pass keeps up with the port
while ``L >= B / (4 x R x C)`` (``docs/array.md``).

The model is the one ``tb/test_accel.py`` checks cycle for cycle against the
RTL; with ``--rtl`` (the default in ``make bench``) this bench also runs the
N = K = 256 passes of the configuration through Verilator and stops if the
RTL's cycle count differs from the model's.

    python bench/roofline.py [--rtl] [--write-docs [PATH]] [--mem-latency L]
        [config options such as --rows 4 --cols 4 --mem-bits 32 --tmax 8]
"""

import argparse
from dataclasses import fields, replace
import json
from pathlib import Path
import sys
import time

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from golden import perf                         # noqa: E402
from golden.arith import DRAFT_LANES            # noqa: E402
from hw.config import PARAM_RANGES, SpeqConfig  # noqa: E402
from rtl_gen import cli                          # noqa: E402
from rtl_gen.docs import bench_command, replace_section  # noqa: E402


SECTION = "## Pass costs and the roofline"
SIZES = (256, 1024, 4096)
SWEEP_BITS = (16, 32, 64, 128, 256)


def _cost(mode, n, k, t, config, mem_latency, machine):
    return perf.pass_cost(mode, n, k, t, mem_latency=mem_latency, **machine).cycles


def pass_table(config, mem_latency):
    """Rows of the pass table: (N=K, pass, cycles, roofline, efficiency)."""
    machine = perf.machine(config)
    rows = []
    for size in SIZES:
        passes = [("draft", 1), ("baseline", 1)] + [("verify", t) for t in range(1, config.tmax + 1)]
        for mode, t in passes:
            cycles = _cost(mode, size, size, t, config, mem_latency, machine)
            bound = perf.roofline(mode, size, size, t, pes=machine["pes"], lanes=machine["lanes"],
                                  mem_bits=config.mem_bits)
            name = mode if mode != "verify" else f"verify T={t}"
            rows.append((size, name, cycles, bound, bound / cycles))
    return rows


def c_ratios(config, mem_latency):
    machine = perf.machine(config)
    return {size: _cost("draft", size, size, 1, config, mem_latency, machine) /
            _cost("baseline", size, size, 1, config, mem_latency, machine) for size in SIZES}


def lanes_table(config, mem_latency):
    """Rows of the lanes table: (L, N=K, draft cycles, roofline, efficiency, c)."""
    rows = []
    for lanes in DRAFT_LANES:
        c = replace(config, draft_lanes=lanes)
        machine = perf.machine(c)
        for size in SIZES:
            draft = _cost("draft", size, size, 1, c, mem_latency, machine)
            base = _cost("baseline", size, size, 1, c, mem_latency, machine)
            bound = perf.roofline("draft", size, size, 1, pes=machine["pes"], lanes=lanes,
                                  mem_bits=c.mem_bits)
            rows.append((lanes, size, draft, bound, bound / draft, draft / base))
    return rows


def sweep(config, mem_latency, size=4096):
    """Rows of the B sweep at N = K = size: (B, draft, baseline, verify Tmax, c,
    verify Tmax / baseline, fewest L that keeps a draft pass memory-bound)."""
    pes = config.rows * config.cols
    rows = []
    for bits in SWEEP_BITS:
        if (16 * pes) % bits:
            continue
        c = replace(config, mem_bits=bits)
        machine = perf.machine(c)
        draft = _cost("draft", size, size, 1, c, mem_latency, machine)
        base = _cost("baseline", size, size, 1, c, mem_latency, machine)
        verify = _cost("verify", size, size, config.tmax, c, mem_latency, machine)
        rows.append((bits, draft, base, verify, draft / base, verify / base, c.min_draft_lanes))
    return rows


def format_report(config, mem_latency, rtl_note):
    pes = config.rows * config.cols
    out = [f"Configuration: {config.rows}x{config.cols} PEs, B = {config.mem_bits} bits per "
           f"cycle, Tmax = {config.tmax}, L = {config.draft_lanes} draft lanes, pe_stages = "
           f"{config.pe_stages}, memory latency "
           f"{mem_latency} cycles. Cycles from `golden.perf` (the cycle model the RTL "
           f"bench checks exactly); roofline = max(weight bits / B, MACs / MACs per cycle). "
           + rtl_note, ""]
    out += ["| N = K | pass | cycles | roofline | roofline / cycles |",
            "|---:|---|---:|---:|---:|"]
    for size, name, cycles, bound, eff in pass_table(config, mem_latency):
        out.append(f"| {size} | {name} | {cycles:,} | {bound:,.0f} | {eff:.3f} |")
    out += ["", "Draft / baseline pass cost, `c` (what speculative decoding pays per "
            "draft token, in baseline passes):", "",
            "| N = K | c |", "|---:|---:|"]
    for size, c in c_ratios(config, mem_latency).items():
        out.append(f"| {size} | {c:.4f} |")
    out += ["", f"Draft lanes: the same array with L = {', '.join(map(str, DRAFT_LANES))} draft "
            f"weights per PE and draft step. A draft pass reads B / 4 = {config.mem_bits // 4} "
            f"draft weights per cycle and the array takes {pes} L; it keeps up with the "
            f"memory from L = {config.min_draft_lanes} on:", "",
            "| L | N = K | draft cycles | roofline | roofline / cycles | c |",
            "|---:|---:|---:|---:|---:|---:|"]
    for lanes, size, draft, bound, eff, c in lanes_table(config, mem_latency):
        out.append(f"| {lanes} | {size} | {draft:,} | {bound:,.0f} | {eff:.3f} | {c:.4f} |")
    out += ["", f"Sizing: the same {config.rows}x{config.cols} array with other memory "
            f"widths B (N = K = 4096). A verify pass over Tmax = {config.tmax} tokens costs "
            f"about one baseline pass while B <= 16 x R x C / Tmax = {16 * pes // config.tmax}; "
            f"the draft pass (L = {config.draft_lanes}) keeps up while L >= B / (4 x R x C):",
            "", "| B | draft | baseline | verify T=Tmax | c | verify(Tmax) / baseline | "
            "fewest L that keeps up |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for bits, draft, base, verify, c, ratio, least in sweep(config, mem_latency):
        out.append(f"| {bits} | {draft:,} | {base:,} | {verify:,} | {c:.4f} | {ratio:.3f} | "
                   f"{least} |")
    return "\n".join(out) + "\n"


def _overrides(config):
    return {f.name: getattr(config, f.name) for f in fields(SpeqConfig)
            if getattr(config, f.name) != getattr(SpeqConfig(), f.name)}


def rtl_top(config, mem_latency):
    """The accelerator bench's top (`tb.test_accel`) for ``config``."""
    from tb import test_accel
    return test_accel.harness(test_accel.accel_of(_overrides(config)), mem_latency)


def check_rtl(config, mem_latency):
    """Run the N = K = 256 passes (draft, verify over Tmax, baseline) on Verilator
    through the accelerator bench, which asserts the model's cycle counts."""
    from tb import runner
    overrides = _overrides(config)
    print("[roofline] RTL check: N = K = 256 passes on Verilator (C++ build first, "
          "a few minutes) ...", file=sys.stderr, flush=True)
    start = time.monotonic()
    runner.run(rtl_top(config, mem_latency), bench="roofline_rtl", toplevel="accel",
               test_module="tb.test_accel", sim="verilator", testcase="accel_passes",
               extra_env={"ACCEL_CONFIG": json.dumps(overrides), "MEM_LATENCY": str(mem_latency),
                          "SHAPES": json.dumps([[256, 256, config.tmax]]),
                          "BASELINE_TOKENS": "1"})
    summary = json.loads((runner.BUILD_ROOT / "roofline_rtl" / "verilator" / "summary.json").read_text())
    if summary["passes"] < 3:
        raise SystemExit(f"RTL check ran {summary['passes']} passes, not 3")
    print(f"[roofline] RTL check: done in {time.monotonic() - start:.0f} s: {summary['passes']} "
          f"passes cycle-exact", file=sys.stderr)
    return summary


def parser():
    p = argparse.ArgumentParser(
        prog="python bench/roofline.py",
        description="Print pass cycles (cycle model) against the roofline for N = K in "
                    "256, 1024, 4096, the draft/baseline cost ratio c, and a sweep of the "
                    "memory width B.")
    p.add_argument("--mem-latency", type=int, default=8, metavar="L",
                   help="memory latency in cycles, request to data (default: 8)")
    p.add_argument("--rtl", action="store_true",
                   help="also run the N = K = 256 passes on Verilator and check that the RTL "
                        "takes exactly the model's cycles")
    p.add_argument("--write-docs", nargs="?", const=str(REPO / "docs" / "results.md"),
                   metavar="PATH", help=f"write the tables into the '{SECTION}' section of "
                                        f"PATH (default: docs/results.md)")
    for f in fields(SpeqConfig):
        lo, hi = PARAM_RANGES[f.name]
        p.add_argument("--" + f.name.replace("_", "-"), type=cli.integer(lo, hi),
                       default=f.default,
                       help=f"SpeqConfig.{f.name}, {lo}..{hi} (default: {f.default})")
    return p


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    if args.mem_latency < 1:
        p.error(f"--mem-latency must be at least 1, not {args.mem_latency}")
    try:
        config = SpeqConfig(**{f.name: getattr(args, f.name) for f in fields(SpeqConfig)})
        if (16 * config.rows * config.cols) % config.mem_bits:
            raise ValueError(f"mem_bits must divide 16 x rows x cols = "
                             f"{16 * config.rows * config.cols}, not {config.mem_bits}")
    except (TypeError, ValueError) as error:
        p.error(str(error))
    if args.write_docs:
        # Before the RTL check, which takes minutes.
        cli.check_path(p, "--write-docs", cli.output_file, args.write_docs)
    note = "RTL not run (use --rtl)."
    if args.rtl:
        summary = check_rtl(config, args.mem_latency)
        note = (f"Checked on the RTL (Verilator, `--rtl`): the N = K = 256 draft, verify "
                f"T = {config.tmax} and baseline passes took exactly the model's cycles "
                f"({summary['passes']} passes, bit-exact).")
    report = format_report(config, args.mem_latency, note)
    print(report)
    if args.write_docs:
        path = Path(args.write_docs)
        command = bench_command("bench/roofline.py", argv)
        text = path.read_text() if path.exists() else "# Results\n"
        path.write_text(replace_section(text, SECTION, f"Command: `{command}`\n\n" + report))
        print(f"wrote the '{SECTION}' section of {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
