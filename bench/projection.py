"""Whole decode steps and LLM-sized projections: tables and a plot (`golden.projection`).

For the shipped model at its own context and for Llama-2-7B, Llama-2-13B and
Llama-3.1-8B at contexts 256, 2k, 8k and 32k it prints, per machine (the
default 4x4 array; arrays sized for one DDR4-3200 channel and one HBM2e
stack), FP16 and SPEQ tokens/s and the speedup at the acceptance measured on
the shipped model and at the assumed acceptances 0.9 and 0.976, for the
design (one KV cache, read by the draft at half width: SPEC section 2a) and,
labelled, the earlier design (the draft's own FP16 cache); the KV memory
each holds; then the energy per generated token; and it plots the speedup
against the context. Every figure is the cycle model's (`golden.perf`) for
the passes of a whole decode step: linear layers, attention over the KV
cache, KV writes.

    python bench/projection.py [--write-docs [PATH]] [--plots DIR]
"""

import argparse
from dataclasses import replace
from pathlib import Path
import sys

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from golden import projection as proj              # noqa: E402
from hw.config import SpeqConfig                   # noqa: E402
from rtl_gen import cli                             # noqa: E402
from rtl_gen.docs import bench_command, write_section  # noqa: E402


SECTION = "## Whole decode steps and LLM projections"
GAMMA = 4
CONTEXTS = (256, 2048, 8192, 32768)
LLMS = ("llama2-7b", "llama2-13b", "llama3.1-8b")
ASSUMED = (0.9, 0.976)
CLOCK_MHZ = 1000.0
#: Memory energy per bit by machine (pJ): DRAM at Horowitz's low end for the
#: default array and DDR4; about 4 pJ/bit for HBM2 (O'Connor et al., MICRO 2017).
#: The machine: None (the default configuration), a bandwidth in GB/s (an
#: array sized for it), or a configuration of its own.
MACHINES = (
    ("default array (4x4, B = 32)", None, proj.Energy()),
    ("DDR4-3200 channel (25.6 GB/s)", 25.6, proj.Energy()),
    ("HBM2e stack (460.8 GB/s)", 460.8, proj.Energy(mem_pj_per_bit=3.9)),
    # The default port with the PEs a grouped-query verify round's attention
    # asks for: 4 query heads x 5 tokens = 20 queries per cached value, so
    # 2.5 times the 16 PEs that balance 8 tokens, and tmax 20.
    ("an array sized for a GQA round (5x8, B = 32, tmax 20)",
     SpeqConfig(rows=5, cols=8, tmax=20), proj.Energy()),
)


def machine_for(gbps, shape):
    """The default array as built, or an array sized for ``gbps`` with the
    draft lanes and the tmax that suit ``shape`` (tmax: a verify round's
    attention over a KV head in one pass)."""
    if gbps is None:
        return proj.Machine.from_config(SpeqConfig(), CLOCK_MHZ)
    if isinstance(gbps, SpeqConfig):
        return proj.Machine.from_config(gbps, CLOCK_MHZ)
    return proj.Machine.sized_for(gbps, CLOCK_MHZ).best_lanes(shape).round_tmax(
        shape, GAMMA).best_head_groups(shape)


def shipped(kv="half"):
    """The shipped model at its own context (256), gamma 7, on the default array."""
    shape = proj.PRESETS["speqlm"]
    return proj.project(shape, machine_for(None, shape), 256, 7,
                        proj.measured_acceptance(7, kv), kv=kv)


def tables():
    measured = proj.measured_acceptance(GAMMA)
    measured_own = proj.measured_acceptance(GAMMA, "own")
    tokens = proj.MEASURED_TOKENS_PER_ROUND_BY_KV
    out = []
    s, s_own = shipped(), shipped("own")
    out += [
        f"**The shipped model at its own context** (256, gamma 7, the default array at "
        f"{CLOCK_MHZ:g} MHz, the i.i.d. acceptance {s['acceptance']:.3f} that yields the "
        f"measured {tokens['half'][7]} tokens per round): whole-step speedup "
        f"**{s['speedup']:.2f}x** with one KV cache read at half width (the draft's own "
        f"cache: {s_own['speedup']:.2f}x at its {tokens['own'][7]} tokens per round); the "
        f"linear layers alone {s['linear_only_speedup']:.2f}x. FP16 "
        f"{s['fp16_tokens_per_s']:,.0f} and SPEQ {s['tokens_per_s']:,.0f} tokens/s. This is "
        f"the model's estimate from shapes and an i.i.d. acceptance; the section "
        f"'Speculative decoding with the SPEQ draft' above costs the passes of the real "
        f"rounds of the same model (`bench/specdec.py`), also to the end of the context, "
        f"where the greedy text repeats itself and the acceptance is higher than in the "
        f"64-token runs used here.", ""]
    energy_rows = []
    for title, gbps, energy in MACHINES:
        out += [f"**{title}**, {CLOCK_MHZ:g} MHz, gamma {GAMMA}. Measured acceptance: "
                f"{measured:.3f}, the i.i.d. acceptance that yields the {tokens['half'][GAMMA]} "
                f"tokens per round measured on the shipped model with one KV cache read at "
                f"half width (the design); the earlier design (the draft's own FP16 cache, "
                f"a catch-up step after a fully accepted round) at its own measured "
                f"{measured_own:.3f} ({tokens['own'][GAMMA]} tokens per round); 0.9 and "
                f"0.976 are **assumed**. At most: FP16 decoding's cycles over a SPEQ "
                f"round's with every pass at its roofline (weight bits over B or MACs over "
                f"the PEs' rate; a round's queries in one read; `golden.projection."
                f"RooflineModel`), the most any SPEQ schedule on this machine could reach. "
                f"KV memory: the cache FP16 decoding holds at the "
                f"context, and SPEQ's at its largest in a round (the round's gamma + 1 "
                f"tokens and the draft's scratch of gamma positions, high plane only).", "",
                "| model | machine | context | FP16 tok/s | SPEQ tok/s (measured) | speedup "
                "(measured) | at most (every pass at its roofline) | earlier design: own draft "
                "cache (measured) | speedup (0.9, "
                "assumed) | speedup (0.976, assumed) | linear layers alone (measured) | KV "
                "cache, FP16 decoding | KV memory, SPEQ (own cache) |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for key in LLMS:
            shape = proj.PRESETS[key]
            machine = machine_for(gbps, shape)
            what = f"{machine.pes} PEs, B = {machine.mem_bits}, L = {machine.lanes}, tmax {machine.tmax}" \
                + (f", {machine.head_groups} head groups" if machine.head_groups > 1 else "")
            for context in CONTEXTS:
                r = proj.project(shape, machine, context, GAMMA, measured, energy)
                own = proj.project(shape, machine, context, GAMMA, measured_own, energy, kv="own")
                assumed = [proj.project(shape, machine, context, GAMMA, a, energy)["speedup"]
                           for a in ASSUMED]
                kv = r["kv_bytes"]
                out.append(f"| {shape.name} | {what} | {context:,} | {r['fp16_tokens_per_s']:,.2f} | "
                           f"{r['tokens_per_s']:,.2f} | **{r['speedup']:.2f}x** | "
                           f"{r['speedup_bound']:.2f}x | {own['speedup']:.2f}x | {assumed[0]:.2f}x | {assumed[1]:.2f}x | "
                           f"{r['linear_only_speedup']:.2f}x | {kv['fp16'] / 2 ** 30:,.3f} GiB | "
                           f"{kv['speq'] / 2 ** 30:,.3f} GiB ({own['kv_bytes']['speq'] / 2 ** 30:,.3f}) |")
                if context == 2048:
                    energy_rows.append((shape.name, title, energy, r, own))
        out.append("")
    out += ["**Energy per generated token** (context 2,048, gamma 4, measured acceptance): "
            "memory bits read and written times the energy per bit, plus MACs times 2.0 pJ "
            "(Horowitz, ISSCC 2014, 45 nm: 16-bit float multiply 1.1 pJ, 32-bit float add "
            "0.9 pJ). Memory: 20 pJ/bit (Horowitz: 1.3-2.6 nJ per 64-bit DRAM access, the "
            "low end) for the default array and DDR4, 3.9 pJ/bit for HBM2e (about 4 pJ/bit "
            "for HBM2, O'Connor et al., MICRO 2017). Both are inputs "
            "(`--mem-pj-per-bit`, `--mac-pj`).", "",
            "| model | machine | FP16 mJ/token | SPEQ mJ/token | SPEQ / FP16 | earlier design "
            "(own draft cache) mJ/token |",
            "|---|---|---:|---:|---:|---:|"]
    for name, title, energy, r, own in energy_rows:
        e = r["energy_per_token_j"]
        out.append(f"| {name} | {title} | {e['fp16'] * 1e3:,.1f} | {e['speq'] * 1e3:,.1f} | "
                   f"{e['speq'] / e['fp16']:.2f} | "
                   f"{own['energy_per_token_j']['speq'] * 1e3:,.1f} |")
    return "\n".join(out) + "\n"


def plot(out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    measured = proj.measured_acceptance(GAMMA)
    contexts = [2 ** n for n in range(8, 16)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, (title, gbps, energy) in zip(axes, MACHINES[1:3]):
        measured_own = proj.measured_acceptance(GAMMA, "own")
        for index, key in enumerate(LLMS):
            shape = proj.PRESETS[key]
            machine = machine_for(gbps, shape)
            line, = ax.plot(contexts, [proj.project(shape, machine, c, GAMMA, measured)["speedup"]
                                       for c in contexts], "o-", label=shape.name)
            ax.plot(contexts, [proj.project(shape, machine, c, GAMMA, measured_own,
                                            kv="own")["speedup"] for c in contexts],
                    ":", color=line.get_color(),
                    label="dotted: the draft's own cache" if index == 0 else None)
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context (cached tokens)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"speedup over FP16 (gamma {GAMMA})")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(out) / "projection_speedup.png"
    fig.savefig(path, dpi=120)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(prog="python bench/projection.py",
                                description=__doc__.split("\n\n")[0])
    cli.docs_arguments(p, SECTION, plots="projection_speedup.png")
    args = p.parse_args(argv)
    cli.check_docs_arguments(p, args)
    text = tables()
    print(text)
    path = plot(args.plots)
    print(f"wrote {path}", file=sys.stderr)
    if args.write_docs:
        doc = Path(args.write_docs)
        command = bench_command("bench/projection.py", argv)
        body = (f"Command: `{command}` (the model: `golden.projection`, "
                f"[projection.md](projection.md)).\n\n{text}\n"
                f"![speedup against context](projection_speedup.png)\n")
        write_section(doc, SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
