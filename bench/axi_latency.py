"""The AXI top's pass cycles against the read latency (`golden.axi_perf`).

For read latencies of 8, 32 and 100 cycles (a burst's first R beat that many
cycles after its AR handshake, then a beat a cycle; ARREADY always high, no
pauses anywhere) it runs a draft, a verify (T = 8) and a baseline pass of
N x K = 1024 x 1024 on the default configuration (`hw.axi.SpeqAxi`, 4x4
PEs, 32-bit port, `AxiConfig()`) on Verilator, and prints per pass the
cycle model's cycles, the RTL's (STATUS.CYCLES), WAIT_MEM, the roofline
(`golden.perf.roofline`) and roofline / cycles; it fails unless the model
and the RTL agree exactly. ``--no-rtl`` prints the model's table alone,
over more latencies.

    python bench/axi_latency.py [--no-rtl] [--latencies L ...] [--n N] [--k K]
                                [--write-docs [PATH]]
"""

import argparse
import json
from pathlib import Path
import sys
import time

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from golden import axi_perf, perf                   # noqa: E402
from hw.axi import AxiConfig                        # noqa: E402
from hw.config import SpeqConfig                    # noqa: E402
from rtl_gen import cli                             # noqa: E402
from rtl_gen.docs import bench_command, write_section  # noqa: E402


SECTION = "## The AXI top: pass cycles against read latency"
LATENCIES = (8, 32, 100)
#: ``--no-rtl``'s latencies.
MODEL_LATENCIES = (1, 8, 16, 32, 64, 100, 128, 160, 200, 256, 400)
#: Tokens of each pass.
TOKENS = {"draft": 1, "verify": 8, "baseline": 1}


def model(mode, n, k, t, latency, config, axi, machine, wbase=(0, 0)):
    return axi_perf.axi_pass_cost(mode, n, k, t, read_latency=latency, wbase0=wbase[0],
                                  wbase1=wbase[1], burst_beats=axi.burst_beats,
                                  max_outstanding=axi.max_outstanding,
                                  fifo_depth=axi.fifo_depth, **machine)


def run_rtl(runs):
    """The passes ``runs`` ([latency, mode, n, k, t]) on Verilator: rows of
    ``tb.test_axi.axi_latency``."""
    from tb import runner
    from tb.test_axi import TOPLEVEL, _top
    build_dir = runner.run(_top({}, {}), bench="axi_latency", toplevel=TOPLEVEL,
                           test_module="tb.test_axi", sim="verilator", testcase="axi_latency",
                           extra_env={"ACCEL_CONFIG": "{}", "AXI_CONFIG": "{}",
                                      "LATENCY_RUNS": json.dumps(runs)})
    return json.loads((build_dir / "summary_latency.json").read_text())


def table(rows, rtl):
    head = ("| read latency | pass | N x K x T | model cycles | RTL cycles | WAIT_MEM | roofline "
            "| roofline / cycles |\n|---:|---|---|---:|---:|---:|---:|---:|\n")
    if not rtl:
        head = head.replace(" RTL cycles |", "").replace("|---:|---:|---:|---:|\n",
                                                         "|---:|---:|---:|\n")
    lines = []
    for r in rows:
        cells = [f"{r['latency']}", r["mode"], f"{r['n']} x {r['k']} x {r['t']}",
                 f"{r['model']:,}"]
        if rtl:
            cells.append(f"{r['cycles']:,}")
        cells += [f"{r['wait_mem']:,}", f"{r['roofline']:,.0f}",
                  f"{r['roofline'] / r['model']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python bench/axi_latency.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--no-rtl", action="store_true",
                   help="the cycle model only (no Verilator run), over more latencies")
    p.add_argument("--latencies", type=int, nargs="+", metavar="L",
                   help=f"read latencies (default {' '.join(map(str, LATENCIES))}; with "
                        f"--no-rtl {' '.join(map(str, MODEL_LATENCIES))})")
    p.add_argument("--n", type=int, default=1024, help="rows N (default 1024)")
    p.add_argument("--k", type=int, default=1024, help="columns K (default 1024)")
    cli.docs_arguments(p, SECTION)
    args = p.parse_args(argv)
    cli.check_docs_arguments(p, args)
    if args.latencies and min(args.latencies) < 1:
        p.error("--latencies must be at least 1")
    latencies = args.latencies or (MODEL_LATENCIES if args.no_rtl else LATENCIES)
    config, axi = SpeqConfig(), AxiConfig()
    machine = perf.machine(config)
    runs = [[latency, mode, args.n, args.k, min(t, config.tmax)]
            for latency in latencies for mode, t in TOKENS.items()]
    began = time.monotonic()
    if args.no_rtl:
        rows = []
        for latency, mode, n, k, t in runs:
            cost = model(mode, n, k, t, latency, config, axi, machine)
            rows.append({"latency": latency, "mode": mode, "n": n, "k": k, "t": t,
                         "model": cost.cycles, "wait_mem": cost.wait_mem})
    else:
        print(f"{len(runs)} passes on Verilator (the default configuration); progress "
              f"below as the bench logs it", file=sys.stderr)
        rows = run_rtl(runs)
        for r in rows:
            want = model(r["mode"], r["n"], r["k"], r["t"], r["latency"], config, axi, machine,
                         r["wbase"]).cycles
            assert r["cycles"] == want == r["model"], f"model {want} against RTL {r}"
    for r in rows:
        r["roofline"] = perf.roofline(r["mode"], r["n"], r["k"], r["t"], pes=machine["pes"],
                                      lanes=config.draft_lanes, mem_bits=config.mem_bits)
    text = table(rows, not args.no_rtl)
    print(text)
    print(f"{time.monotonic() - began:.0f} s", file=sys.stderr)
    if args.write_docs:
        doc = Path(args.write_docs)
        command = bench_command("bench/axi_latency.py", argv)
        what = ("the model (`golden.axi_perf`) only" if args.no_rtl else
                "the RTL on Verilator, equal to the model (`golden.axi_perf`) on every pass")
        body = (f"Command: `{command}`: {what}. The default configuration (4x4 one-lane "
                f"PEs, a 32-bit port, `AxiConfig()`: bursts of 16, 8 in flight, FIFOs of 128 "
                f"words); the memory answers a burst's first beat a fixed read latency after "
                f"its AR, then a beat a cycle, with no pauses anywhere "
                f"([axi.md](axi.md#latency-behaviour)).\n\n{text}")
        write_section(doc, SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
