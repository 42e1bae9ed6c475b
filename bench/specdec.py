"""Speculative decoding with the SPEQ draft: acceptance and speedup for gamma = 1 .. 8.

For each prompt of ``models/prompts.json`` the target model (verify passes)
decodes ``--tokens`` tokens greedily; one draft forward over the whole
sequence then gives, for every position, whether the draft's greedy choice
there equals the target's. In greedy speculative decoding the draft only ever
proposes from a prefix the target has accepted, so these indicators decide
every round: a round starting at position s accepts the run of agreements
from s, at most gamma, and adds one target token. The bench replays the rounds
for every gamma from that, and checks the replay against the real decoding
loop (`golden.specdec.speculative`) on the first prompts: same rounds, same
tokens.

Cost: every pass is costed by the cycle model (`golden.perf`, the model the
RTL benches check cycle for cycle) on the default configuration, for whole
decode steps and for the linear layers alone. Per round: ``gamma``
single-token draft steps (one more after a fully accepted round, to catch
the draft's cache up), one verify step over the round's tokens; plain
decoding is one FP16 step per token. A step is its linear passes, its
attention over the model's own FP16 KV cache at the step's position (baseline
passes, `golden.model`) and its cache writes (`golden.projection.StepModel`).
The speedup is the ratio of the two cycle counts for the same tokens. The
linear-only speedup is compared with the bound ``(gamma + 1) / (gamma c +
1)`` (every proposal accepted, a verify pass as cheap as a baseline pass) and
SPEQ's reported 2.07x. The draft arithmetic and the cycles are those of the default draft
lanes ``L``; the bench runs again with ``L = 4`` (the fused four-term draft
step) and prints the two side by side.

    python bench/specdec.py [--prompts 32] [--tokens 64] [--write-docs [PATH]] [--plots DIR]
"""

import argparse
from dataclasses import replace
import importlib.util
from pathlib import Path
import sys
import time

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from golden import specdec                          # noqa: E402
from golden.model import DEFAULT_WEIGHTS, Session, TinyLM  # noqa: E402
from hw.config import SpeqConfig                    # noqa: E402
from rtl_gen import cli                              # noqa: E402
from rtl_gen.docs import bench_command, write_section  # noqa: E402


SECTION = "## Speculative decoding with the SPEQ draft"
GAMMAS = range(1, 9)
SPEQ_REPORTED = 2.07


def agreement(model, prompt, tokens):
    """Target greedy tokens after ``prompt`` and, per generated position, whether
    the draft's greedy choice there equals the target's."""
    target, _ = specdec.autoregressive(model, prompt, tokens)
    seq = prompt + target
    logits = Session(model, "draft").forward(seq[:-1])        # row j predicts seq[j + 1]
    choice = logits.argmax(axis=-1)[len(prompt) - 1:]
    return target, choice == np.array(target)


def replay(agree, gamma):
    """Rounds of greedy speculative decoding from the agreement indicators:
    a list of (proposals, accepted) per round."""
    rounds, pos, n = [], 0, len(agree)
    while pos < n:
        g = min(gamma, n - pos)
        ok = 0
        while ok < g and agree[pos + ok]:
            ok += 1
        rounds.append((g, ok))
        pos += ok + 1
    return rounds


def round_costs(rounds, costs, per_layer):
    """Accelerator cycles of the rounds: draft passes (with the catch-up pass
    after a fully accepted round) and one verify pass of g + 1 tokens each."""
    draft_pass = sum(costs.pass_cycles("draft", n, k, 1) for n, k in per_layer)
    cycles, catch_up = 0, False
    for g, ok in rounds:
        cycles += (g + catch_up) * draft_pass
        cycles += sum(costs.pass_cycles("verify", n, k, g + 1) for n, k in per_layer)
        catch_up = ok == g
    return cycles


def round_costs_whole(rounds, steps, start):
    """Accelerator cycles of the rounds' whole decode steps (linear layers,
    attention, cache writes; ``steps`` a `golden.projection.StepModel`), the
    first round's cache holding ``start`` tokens."""
    cycles, catch_up, at = 0, False, start
    for g, ok in rounds:
        if catch_up:
            cycles += steps.step("draft", at - 1, 1).cycles
        cycles += sum(steps.step("draft", at + i, 1).cycles for i in range(g))
        cycles += steps.step("verify", at, g + 1).cycles
        catch_up = ok == g
        at += ok + 1
    return cycles


def run(model, prompts, tokens, check, config, progress=True):
    """Acceptance and speedup per gamma for ``model`` (its draft lanes) on
    ``config``'s accelerator: ``(rows, c, checked)``."""
    costs = specdec.Costs(config, model)
    per_layer = [(n, k) for _, n, k in model.linear_shapes()]
    baseline_token = sum(costs.pass_cycles("baseline", n, k, 1) for n, k in per_layer)
    draft_token = sum(costs.pass_cycles("draft", n, k, 1) for n, k in per_layer)
    c = draft_token / baseline_token
    stats = {g: {"proposed": 0, "accepted": 0, "rounds": 0, "tokens": 0, "cycles": 0,
                 "whole": 0, "fp16_whole": 0} for g in GAMMAS}
    contexts = []
    start = time.monotonic()
    checked = 0
    for i, text in enumerate(prompts):
        prompt = list(text.encode())
        target, agree = agreement(model, prompt, tokens)
        fp16_whole = costs.fp16(len(prompt) - 1, tokens)
        contexts.append(len(prompt) + tokens)
        for g in GAMMAS:
            rounds = replay(agree, g)
            s = stats[g]
            s["proposed"] += sum(p for p, _ in rounds)
            s["accepted"] += sum(a for _, a in rounds)
            s["rounds"] += len(rounds)
            s["tokens"] += tokens
            s["cycles"] += round_costs(rounds, costs, per_layer)
            s["whole"] += round_costs_whole(rounds, costs.steps, len(prompt) - 1)
            s["fp16_whole"] += fp16_whole
            if i < check:
                out, real = specdec.speculative(model, prompt, tokens, g)
                assert out == target, f"prompt {i}, gamma {g}: speculative output differs"
                real_rounds = [(g_, n - 1) for g_, n in zip(real.round_proposals, real.per_round)]
                assert real_rounds == rounds, \
                    f"prompt {i}, gamma {g}: replayed rounds differ from the decoding loop"
                real_passes = real.draft_passes + real.verify_passes
                assert costs.cycles(real_passes, linear_only=True) == \
                    round_costs(rounds, costs, per_layer), f"prompt {i}, gamma {g}: cycles differ"
                assert costs.cycles(real_passes) == round_costs_whole(
                    rounds, costs.steps, len(prompt) - 1), \
                    f"prompt {i}, gamma {g}: whole-step cycles differ"
                checked += 1
        if progress:
            done = i + 1
            print(f"\r[specdec] L = {model.lanes}: {done}/{len(prompts)} prompts, "
                  f"{time.monotonic() - start:.0f} s",
                  end="" if done < len(prompts) else "\n", file=sys.stderr, flush=True)
    rows = []
    for g in GAMMAS:
        s = stats[g]
        alpha = s["accepted"] / s["proposed"]
        speedup = s["tokens"] * baseline_token / s["cycles"]
        bound = (g + 1) / (g * c + 1)
        rows.append((g, alpha, s["tokens"] / s["rounds"], speedup, bound,
                     s["fp16_whole"] / s["whole"]))
    return rows, c, checked, (min(contexts), max(contexts))


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
    g = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(g, [r[1] for r in rows], "o-", label="acceptance rate")
    ax.plot(g, [r[2] / (r[0] + 1) for r in rows], "s--", label="tokens per round / (gamma+1)")
    ax.set_xlabel("gamma (draft tokens per round)")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "specdec_acceptance.png", dpi=120)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(g, [r[5] for r in rows], "o-", label="whole decode steps (cycle model)")
    ax.plot(g, [r[3] for r in rows], "^-", label="linear layers alone (cycle model)")
    ax.plot(g, [r[4] for r in rows], "s--", label="bound, linear layers")
    ax.axhline(SPEQ_REPORTED, color="gray", ls=":", label="SPEQ paper, 2.07x")
    ax.set_xlabel("gamma (draft tokens per round)")
    ax.set_ylabel("speedup over FP16 decoding")
    ax.legend()
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
    return [out / "specdec_acceptance.png", out / "specdec_speedup.png", out / "specdec_exponents.png"]


def report(rows, c, histogram, model, args, checked, contexts, others=()):
    best = max(rows, key=lambda r: r[5])
    best_linear = max(rows, key=lambda r: r[3])
    cfg = model.config
    lines = [
        f"Model: `{Path(args.weights).name}` ({cfg['n_layers']} layers, d = {cfg['d_model']}, "
        f"d_ff = {cfg['d_ff']}, byte vocabulary; validation loss "
        f"{cfg.get('val_loss_fp16', cfg.get('val_loss', float('nan'))):.3f} nats/byte with FP16 weights). "
        f"{args.prompts} prompts of `models/prompts.json`, {args.tokens} tokens each, greedy. "
        f"Cycles: `golden.perf` on the default configuration (4x4 PEs, B = 32, L = "
        f"{model.lanes} draft lanes, memory latency 8): whole decode steps (linear layers, "
        f"attention over each model's own FP16 KV cache, cache writes; the sequences end at "
        f"{contexts[0]} to {contexts[1]} tokens of the model's context of "
        f"{cfg['context']}) and the linear layers alone; c = draft / baseline cycles per "
        f"token of the linear layers = {c:.4f}. The replayed rounds, and their cycles both "
        f"ways, were checked against the decoding loop on {checked} (prompt, gamma) runs.",
        "",
        "| gamma | acceptance | tokens per verify pass | speedup, whole steps | speedup, "
        "linear layers alone | bound (gamma+1)/(gamma c+1), linear layers |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for g, alpha, per_round, speedup, bound, whole in rows:
        lines.append(f"| {g} | {alpha:.3f} | {per_round:.2f} | {whole:.2f}x | {speedup:.2f}x | "
                     f"{bound:.2f}x |")
    lines += ["", f"Best: gamma = {best[0]}, **{best[5]:.2f}x** over FP16 autoregressive "
              f"decoding for whole decode steps; the linear layers alone {best_linear[3]:.2f}x "
              f"at gamma = {best_linear[0]} (SPEQ reports {SPEQ_REPORTED}x). FP16 exponent "
              f"fields of the model's linear weights: {int(histogram[16:].sum())} of "
              f"{int(histogram.sum())} above 15.", ""]
    for lanes, other_rows, other_c in others:
        lines += [f"Draft lanes: L = {model.lanes} (the default, above) beside L = {lanes}, the "
                  f"same prompts and tokens (c = {c:.4f} and {other_c:.4f}). Only the draft "
                  f"arithmetic differs: the fused {lanes}-term step floors each term at F bits "
                  f"below the largest, L = 1 rounds each MAC.", "",
                  f"| gamma | acceptance, L = {model.lanes} | acceptance, L = {lanes} | "
                  f"whole-step speedup, L = {model.lanes} | whole-step speedup, L = {lanes} | "
                  f"linear-only speedup, L = {model.lanes} | linear-only speedup, L = {lanes} |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for mine, theirs in zip(rows, other_rows):
            lines.append(f"| {mine[0]} | {mine[1]:.3f} | {theirs[1]:.3f} | {mine[5]:.2f}x | "
                         f"{theirs[5]:.2f}x | {mine[3]:.2f}x | {theirs[3]:.2f}x |")
        lines.append("")
    return "\n".join(lines)


def long_report(rows, contexts, prompts, tokens, model):
    """The whole-step table of the run to the end of the model's context."""
    lines = [f"**At the model's own context:** the first {prompts} prompts, {tokens} tokens "
             f"each, so that the sequences end at {contexts[0]} to {contexts[1]} of the "
             f"model's {model.config['context']} positions (`--long`). The attention over "
             f"the longer caches costs more of every step, the draft's most:", "",
             "| gamma | acceptance | tokens per verify pass | speedup, whole steps | "
             "speedup, linear layers alone |", "|---:|---:|---:|---:|---:|"]
    for g, alpha, per_round, speedup, _, whole in rows:
        lines.append(f"| {g} | {alpha:.3f} | {per_round:.2f} | {whole:.2f}x | {speedup:.2f}x |")
    best = max(rows, key=lambda r: r[5])
    lines += ["", f"Best: gamma = {best[0]}, **{best[5]:.2f}x** for whole decode steps "
              f"({best[3]:.2f}x for the linear layers alone).", ""]
    return "\n".join(lines)


def main(argv=None):
    import json
    p = argparse.ArgumentParser(prog="python bench/specdec.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=32, help="prompts to decode (default: 32)")
    p.add_argument("--tokens", type=int, default=64, help="tokens per prompt (default: 64)")
    p.add_argument("--check", type=cli.integer(0), default=2,
                   help="prompts on which the replay is checked against the real decoding "
                        "loop for every gamma (default: 2)")
    p.add_argument("--long", type=cli.integer(0), default=8, metavar="PROMPTS",
                   help="prompts decoded again to the end of the model's context, for the "
                        "whole-step speedup at the model's own context (default: 8; 0 skips)")
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
    rows, c, checked, contexts = run(model, prompts[:args.prompts], args.tokens, args.check,
                                     config)
    others = []
    for lanes in [lanes for lanes in (4,) if lanes != config.draft_lanes]:
        other = replace(config, draft_lanes=lanes)
        other_rows, other_c, _, _ = run(TinyLM(args.weights, draft_lanes=lanes),
                                     prompts[:args.prompts], args.tokens, 0, other)
        others.append((lanes, other_rows, other_c))
    histogram = exponent_histogram(model)
    text = report(rows, c, histogram, model, args, checked, contexts, others)
    if args.long:
        chosen = prompts[:args.long]
        tokens = model.context - max(len(t.encode()) for t in chosen)
        long_rows, _, _, long_contexts = run(model, chosen, tokens, 0, config)
        text += "\n" + long_report(long_rows, long_contexts, args.long, tokens, model)
    print(text)
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
