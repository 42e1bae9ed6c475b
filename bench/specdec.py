"""Speculative decoding with the SPEQ draft: acceptance and speedup for gamma = 1 .. 8.

For each prompt of ``models/prompts.json`` the target model decodes
``--tokens`` tokens greedily (the reference), then the real decoding loop
(`golden.specdec.speculative`) decodes them again speculatively for every
gamma and KV design, and every output is checked against the reference
(lossless). The KV designs (`golden.model.KV_DESIGNS`, SPEC section 2a):

- ``half`` (the design): one KV cache, the target's; the draft reads it
  through its high byte plane and keeps the round's own K/V in a scratch of
  gamma positions;
- ``shared``: the same, read at full width;
- ``own`` (the earlier design): the draft keeps a full FP16 cache of its own,
  filled by a prefill and caught up after a fully accepted round.

With a shared cache the draft's proposals depend on where the rounds fall
(the positions it reads from the target's cache and from its scratch), so
every gamma is decoded for real; there is no replay shortcut.

Cost: every pass the loop logs is costed by the cycle model (`golden.perf`,
the model the RTL benches check cycle for cycle) on the default
configuration, for whole decode steps (linear layers, attention over the KV
cache, cache writes: `golden.projection.StepModel`) and for the linear
layers alone; plain decoding is one FP16 step per token. The speedup is the
ratio of the two cycle counts for the same tokens. On the first ``--check``
prompts the logged passes are also checked against the StepModel's round
formula (the one `golden.projection` uses). The linear-only speedup is
compared with the bound ``(gamma + 1) / (gamma c + 1)`` (every proposal
accepted, a verify pass as cheap as a baseline pass) and SPEQ's reported
2.07x. The bench runs again with ``L = 4`` draft lanes (the half design) and
to the end of the model's context (``--long``).

    python bench/specdec.py [--prompts 32] [--tokens 64] [--long 8] [--jobs 2]
                            [--write-docs [PATH]] [--plots DIR]
"""

import argparse
import importlib.util
import json
from multiprocessing import get_context
import os
from pathlib import Path
import sys
import time

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from golden import specdec                          # noqa: E402
from golden.model import DEFAULT_WEIGHTS, KV_DESIGNS, TinyLM  # noqa: E402
from hw.config import SpeqConfig                    # noqa: E402
from rtl_gen import cli                              # noqa: E402
from rtl_gen.docs import bench_command, write_section  # noqa: E402


SECTION = "## Speculative decoding with the SPEQ draft"
GAMMAS = range(1, 9)
SPEQ_REPORTED = 2.07
#: Every design in the short runs; the long runs compare the design with the
#: earlier one.
LONG_DESIGNS = ("half", "own")


def round_costs_whole(stats, steps):
    """Whole-step cycles of a run's rounds by the StepModel's formula: the
    draft steps at their positions, the verify step over the round's tokens,
    and (``own``) the catch-up step after a fully accepted round."""
    cycles, catch_up = 0, False
    for g, n, at in zip(stats.round_proposals, stats.per_round, stats.round_starts):
        if catch_up:
            cycles += steps.step("draft", at - 1, 1).cycles
        cycles += sum(steps.step("draft", at + i, 1).cycles for i in range(g))
        cycles += steps.step("verify", at, g + 1).cycles
        catch_up = steps.kv == "own" and n == g + 1
    return cycles


_MODELS = {}


def _model(weights, lanes):
    key = (weights, lanes)
    if key not in _MODELS:
        _MODELS[key] = TinyLM(weights, draft_lanes=lanes)
    return _MODELS[key]


def decode_prompt(task):
    """One prompt: the reference, then every (design, gamma); returns the
    per-(design, gamma) counts and cycles. Runs in a worker process."""
    weights, lanes, text, tokens, designs, check = task
    model = _model(weights, lanes)
    config = SpeqConfig(draft_lanes=lanes)
    prompt = list(text.encode())
    reference, _ = specdec.autoregressive(model, prompt, tokens)
    out = {"context": len(prompt) + tokens, "runs": {}}
    for kv in designs:
        costs = specdec.Costs(config, model, kv=kv)
        fp16 = costs.fp16(len(prompt) - 1, tokens)
        fp16_linear = costs.fp16(len(prompt) - 1, tokens, linear_only=True)
        for g in GAMMAS:
            got, stats = specdec.speculative(model, prompt, tokens, g, kv=kv)
            if got != reference:
                raise AssertionError(f"prompt {text!r}, gamma {g}, kv {kv}: the speculative "
                                     f"output differs from plain decoding")
            passes = stats.draft_passes + stats.verify_passes
            whole = costs.cycles(passes)
            if check and whole != round_costs_whole(stats, costs.steps):
                raise AssertionError(f"prompt {text!r}, gamma {g}, kv {kv}: the logged passes "
                                     f"and the StepModel's rounds differ in cycles")
            out["runs"][(kv, g)] = {
                "proposed": stats.proposed, "accepted": stats.accepted, "rounds": stats.rounds,
                "tokens": tokens, "whole": whole, "fp16_whole": fp16,
                "linear": costs.cycles(passes, linear_only=True), "fp16_linear": fp16_linear,
                "scratch_bytes": stats.draft_kv_bytes}
    return out


def run(weights, lanes, prompts, tokens, designs, check, jobs, label):
    """Decode ``prompts`` in ``jobs`` processes; returns ``({design: rows},
    (shortest, longest) context, checked)``. A row: (gamma, acceptance, tokens
    per round, linear speedup, bound, whole-step speedup)."""
    tasks = [(weights, lanes, text, tokens if isinstance(tokens, int) else tokens[i],
              designs, i < check) for i, text in enumerate(prompts)]
    totals = {(kv, g): {} for kv in designs for g in GAMMAS}
    contexts = []
    start = time.monotonic()
    with get_context("fork").Pool(jobs) as pool:
        for done, result in enumerate(pool.imap_unordered(decode_prompt, tasks), 1):
            contexts.append(result["context"])
            for key, counts in result["runs"].items():
                for name, value in counts.items():
                    totals[key][name] = totals[key].get(name, 0) + value
            elapsed = time.monotonic() - start
            print(f"\r[specdec] {label}: {done}/{len(tasks)} prompts, {elapsed:.0f} s, about "
                  f"{elapsed / done * (len(tasks) - done):.0f} s to go   ",
                  end="" if done < len(tasks) else "\n", file=sys.stderr, flush=True)
    model = _model(weights, lanes)
    costs = specdec.Costs(SpeqConfig(draft_lanes=lanes), model)
    c = costs.steps.linear("draft", 1).cycles / costs.steps.linear("baseline", 1).cycles
    rows = {}
    for kv in designs:
        rows[kv] = []
        for g in GAMMAS:
            s = totals[(kv, g)]
            rows[kv].append((g, s["accepted"] / s["proposed"], s["tokens"] / s["rounds"],
                             s["fp16_linear"] / s["linear"], (g + 1) / (g * c + 1),
                             s["fp16_whole"] / s["whole"]))
    return rows, c, (min(contexts), max(contexts)), sum(1 for t in tasks if t[-1])


def exponent_histogram(model):
    """Counts of the FP16 exponent field (0 .. 31) over all linear weights."""
    fields = np.concatenate([((model.w[name].view(np.uint16) >> 10) & 31).ravel()
                             for name, _, _ in model.linear_shapes()])
    return np.bincount(fields, minlength=32)


def plots(rows, histogram, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    half, own = rows["half"], rows["own"]
    g = [r[0] for r in half]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(g, [r[1] for r in half], "o-", label="acceptance, one cache, half width")
    ax.plot(g, [r[1] for r in own], "o:", label="acceptance, draft's own cache")
    ax.plot(g, [r[2] / (r[0] + 1) for r in half], "s--", label="tokens per round / (gamma+1)")
    ax.set_xlabel("gamma (draft tokens per round)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "specdec_acceptance.png", dpi=120)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(g, [r[5] for r in half], "o-", label="whole steps, one cache (half width)")
    ax.plot(g, [r[5] for r in own], "o:", label="whole steps, draft's own cache")
    ax.plot(g, [r[3] for r in half], "^-", label="linear layers alone")
    ax.plot(g, [r[4] for r in half], "s--", label="bound, linear layers")
    ax.axhline(SPEQ_REPORTED, color="gray", ls=":", label="SPEQ paper, 2.07x")
    ax.set_xlabel("gamma (draft tokens per round)")
    ax.set_ylabel("speedup over FP16 decoding")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "specdec_speedup.png", dpi=120)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(range(32), histogram)
    ax.axvline(15.5, color="red", ls="--", label="exponent field 15 (|w| < 2)")
    ax.set_xlabel("FP16 exponent field")
    ax.set_ylabel("weights")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "specdec_exponents.png", dpi=120)
    return [out / "specdec_acceptance.png", out / "specdec_speedup.png",
            out / "specdec_exponents.png"]


def design_table(rows, designs):
    """Acceptance, tokens per round and speedups of every design, by gamma."""
    head = ["gamma"]
    for kv in designs:
        head += [f"acceptance, {kv}", f"tokens/round, {kv}", f"whole-step speedup, {kv}"]
    head += ["linear-only speedup, half", "bound (gamma+1)/(gamma c+1)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for i, g in enumerate(GAMMAS):
        cells = [str(g)]
        for kv in designs:
            _, alpha, per_round, _, _, whole = rows[kv][i]
            cells += [f"{alpha:.3f}", f"{per_round:.2f}", f"{whole:.2f}x"]
        cells += [f"{rows['half'][i][3]:.2f}x", f"{rows['half'][i][4]:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def report(rows, c, histogram, model, args, checked, contexts, four, long_run):
    cfg = model.config
    half, own = rows["half"], rows["own"]
    best = max(half, key=lambda r: r[5])
    best_own = max(own, key=lambda r: r[5])
    best_linear = max(half, key=lambda r: r[3])
    scratch = 2 * model.layers * model.d       # bytes per scratch position (high plane)
    lines = [
        f"Model: `{Path(args.weights).name}` ({cfg['n_layers']} layers, d = {cfg['d_model']}, "
        f"d_ff = {cfg['d_ff']}, byte vocabulary; validation loss "
        f"{cfg.get('val_loss_fp16', cfg.get('val_loss', float('nan'))):.3f} nats/byte with FP16 "
        f"weights). {args.prompts} prompts of `models/prompts.json`, {args.tokens} tokens each, "
        f"greedy, decoded by the real speculative loop for every gamma and KV design, every "
        f"output identical to plain decoding. KV designs (SPEC section 2a): **half** (the "
        f"design: one cache, the draft reads the target's through its high byte plane and "
        f"keeps the round's K/V in a scratch of gamma positions, {scratch:,} bytes each), "
        f"**shared** (the same at full width), **own** (the earlier design: a second FP16 "
        f"cache, a prefill and a catch-up step). Cycles: `golden.perf` on the default "
        f"configuration (4x4 PEs, B = 32, L = {model.lanes}, memory latency 8): whole decode "
        f"steps (linear layers, attention, cache writes; the sequences end at {contexts[0]} "
        f"to {contexts[1]} of the model's {cfg['context']} positions) and the linear layers "
        f"alone; c = draft / baseline cycles of the linear layers per token = {c:.4f}. The "
        f"logged passes matched the StepModel's round formula on {checked} prompts x 8 "
        f"gammas x {len(rows)} designs.",
        "",
    ] + design_table(rows, list(rows)) + [
        "",
        f"Best: gamma = {best[0]}, **{best[5]:.2f}x** over FP16 autoregressive decoding for "
        f"whole decode steps with one cache read at half width (the draft's own cache: "
        f"{best_own[5]:.2f}x at gamma = {best_own[0]}); the linear layers alone "
        f"{best_linear[3]:.2f}x at gamma = {best_linear[0]} (SPEQ reports {SPEQ_REPORTED}x). "
        f"FP16 exponent fields of the model's linear weights: {int(histogram[16:].sum())} of "
        f"{int(histogram.sum())} above 15.", ""]
    if four is not None:
        four_rows, four_c = four
        lines += [f"Draft lanes: L = {model.lanes} (the default, above) beside L = 4, the "
                  f"half design, the same prompts and tokens (c = {c:.4f} and {four_c:.4f}). "
                  f"Only the draft arithmetic differs: the fused 4-term step floors each term "
                  f"at F bits below the largest, L = 1 rounds each MAC.", "",
                  f"| gamma | acceptance, L = {model.lanes} | acceptance, L = 4 | "
                  f"whole-step speedup, L = {model.lanes} | whole-step speedup, L = 4 | "
                  f"linear-only speedup, L = {model.lanes} | linear-only speedup, L = 4 |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for mine, theirs in zip(half, four_rows["half"]):
            lines.append(f"| {mine[0]} | {mine[1]:.3f} | {theirs[1]:.3f} | {mine[5]:.2f}x | "
                         f"{theirs[5]:.2f}x | {mine[3]:.2f}x | {theirs[3]:.2f}x |")
        lines.append("")
    if long_run is not None:
        long_rows, long_contexts, prompts = long_run
        best = max(long_rows["half"], key=lambda r: r[5])
        best_own = max(long_rows["own"], key=lambda r: r[5])
        lines += [f"**At the model's own context:** the first {prompts} prompts decoded to the "
                  f"end of the model's context (the sequences end at {long_contexts[0]} to "
                  f"{long_contexts[1]} of {cfg['context']} positions; `--long`), the two "
                  f"designs:", ""] + design_table(long_rows, list(long_rows)) + [
                  "", f"Best: gamma = {best[0]}, **{best[5]:.2f}x** for whole decode steps "
                  f"with one cache at half width ({best[3]:.2f}x for the linear layers alone); "
                  f"the draft's own cache: {best_own[5]:.2f}x at gamma = {best_own[0]}.", ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python bench/specdec.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=32, help="prompts to decode (default: 32)")
    p.add_argument("--tokens", type=int, default=64, help="tokens per prompt (default: 64)")
    p.add_argument("--check", type=cli.integer(0), default=2,
                   help="prompts on which the logged passes are checked against the "
                        "StepModel's round formula for every gamma and design (default: 2)")
    p.add_argument("--long", type=cli.integer(0), default=8, metavar="PROMPTS",
                   help="prompts decoded again to the end of the model's context, for the "
                        "whole-step speedup at the model's own context (default: 8; 0 skips)")
    p.add_argument("--no-lanes", action="store_true",
                   help="skip the run with L = 4 draft lanes")
    p.add_argument("--jobs", type=cli.integer(1, 64), default=os.cpu_count() or 1,
                   help="worker processes (default: the CPUs, "
                        f"{os.cpu_count() or 1} here)")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="model file")
    cli.docs_arguments(p, SECTION, plots="the PNG plots")
    args = p.parse_args(argv)
    # The plots and the docs are written after the whole run: their paths,
    # and matplotlib, are checked before it.
    cli.check_docs_arguments(p, args)
    config = SpeqConfig()
    try:
        model = TinyLM(args.weights, draft_lanes=config.draft_lanes)
    except (OSError, ValueError) as error:
        p.error(f"argument --weights: {error}")
    prompts = json.loads((REPO / "models" / "prompts.json").read_text())["prompts"]
    if not 1 <= args.prompts <= len(prompts):
        p.error(f"--prompts must be between 1 and {len(prompts)}, not {args.prompts}")
    if args.long > len(prompts):
        p.error(f"--long must be at most {len(prompts)}, not {args.long}")
    longest = max(len(t.encode()) for t in prompts[:args.prompts])
    if not 1 <= args.tokens <= model.context - longest:
        p.error(f"--tokens must be between 1 and {model.context - longest} (context "
                f"{model.context}, longest prompt {longest}), not {args.tokens}")
    if importlib.util.find_spec("matplotlib") is None:
        p.error("argument --plots: the plots need matplotlib, which is not installed: "
                ".venv/bin/pip install matplotlib (`make bench` installs it)")
    chosen = prompts[:args.prompts]
    rows, c, contexts, checked = run(args.weights, config.draft_lanes, chosen, args.tokens,
                                     KV_DESIGNS, args.check, args.jobs,
                                     f"L = {config.draft_lanes}, {len(KV_DESIGNS)} designs")
    four = None
    if not args.no_lanes and config.draft_lanes != 4:
        four_rows, four_c, _, _ = run(args.weights, 4, chosen, args.tokens, ("half",), 0,
                                      args.jobs, "L = 4, half")
        four = (four_rows, four_c)
    long_run = None
    if args.long:
        texts = prompts[:args.long]
        tokens = [model.context - len(t.encode()) for t in texts]
        long_rows, _, long_contexts, _ = run(args.weights, config.draft_lanes, texts, tokens,
                                             LONG_DESIGNS, 0, args.jobs, "to the end of the context")
        long_run = (long_rows, long_contexts, args.long)
    histogram = exponent_histogram(model)
    text = report(rows, c, histogram, model, args, checked, contexts, four, long_run)
    print(text)
    print("MEASURED_TOKENS_PER_ROUND (golden.projection): " + ", ".join(
        f"{kv}: {{{', '.join(f'{r[0]}: {r[2]:.2f}' for r in rows[kv])}}}" for kv in rows),
        file=sys.stderr)
    for path in plots(rows, histogram, args.plots):
        print(f"wrote {path}", file=sys.stderr)
    if args.write_docs:
        path = Path(args.write_docs)
        command = bench_command("bench/specdec.py", argv)
        body = (f"Command: `{command}`\n\n" + text +
                "\n![acceptance](specdec_acceptance.png) ![speedup](specdec_speedup.png) "
                "![exponents](specdec_exponents.png)\n")
        write_section(path, SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
