"""Greedy speculative decoding with the SPEQ draft, and its cost on the accelerator.

The draft model is the target model itself with every linear layer run as a
draft pass (SPEQ-16 draft weights, `golden.arith.draft_gemm`); the target runs
verify passes (`verify_gemm`, exact FP16 weights). One round:

1. the draft proposes ``gamma`` tokens, one single-token draft pass each;
2. the target checks them in one verify pass over ``gamma + 1`` tokens (the
   last accepted token and the proposals) and keeps the longest prefix that
   agrees with its own greedy choice, plus one token of its own.

The output is exactly the target's greedy output (`autoregressive`): the
verify pass gives every token what a single-token pass gives it.

Cost: every pass the sessions log is costed by the cycle model
`golden.perf.pass_cost` through `golden.projection.StepModel`: the linear
layers (draft, verify over T tokens, or the FP16 baseline for plain
decoding), attention over each model's own FP16 KV cache (baseline passes
over the new tokens' queries: the verify round reads the target's cache once
for all its tokens) and the cache writes. The host's softmax, LayerNorm, GELU
and embeddings cost nothing here. The linear layers alone are reported
beside the whole step.

CLI::

    python -m golden.specdec --prompt "def main(" --gamma 4 --tokens 200
"""

import argparse
from dataclasses import dataclass, field
import sys
import time

import numpy as np

from .arith import DRAFT_LANES
from .projection import Machine, Shape, StepModel
from .model import DEFAULT_WEIGHTS, KV_DESIGNS, Session, TinyLM


__all__ = ["Stats", "autoregressive", "speculative", "Costs", "main"]


@dataclass
class Stats:
    """What a speculative run did.

    Members
    -------
    rounds : int
        Verify passes.
    proposed, accepted : int
        Draft tokens proposed and accepted.
    per_round : list of int
        Tokens each round produced (accepted + 1).
    round_proposals : list of int
        Tokens each round proposed (gamma, or fewer at the end).
    round_starts : list of int
        The target's cache length at each round's verify pass.
    draft_passes, verify_passes : list of tuple
        ``(mode, N, K, T)`` of every pass and cache write after the prompt.
    kv : str
        The draft's KV design (`golden.model.KV_DESIGNS`).
    target_kv_bytes, draft_kv_bytes : int
        Bytes of KV memory the target and the draft hold (their arrays): the
        target's cache, and the draft's own cache or its scratch.
    """

    rounds: int = 0
    proposed: int = 0
    accepted: int = 0
    per_round: list = field(default_factory=list)
    round_proposals: list = field(default_factory=list)
    round_starts: list = field(default_factory=list)
    draft_passes: list = field(default_factory=list)
    verify_passes: list = field(default_factory=list)
    kv: str = "half"
    target_kv_bytes: int = 0
    draft_kv_bytes: int = 0

    @property
    def acceptance(self):
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_round(self):
        return float(np.mean(self.per_round)) if self.per_round else 0.0


def _check(model, prompt, tokens):
    prompt = list(prompt)
    if not prompt:
        raise ValueError("the prompt must hold at least one token")
    if tokens < 1:
        raise ValueError(f"tokens must be at least 1, not {tokens}")
    if len(prompt) + tokens > model.context:
        raise ValueError(f"prompt ({len(prompt)}) + tokens ({tokens}) exceed the model's "
                         f"context of {model.context}")
    return prompt


def autoregressive(model, prompt, tokens, mode="verify", progress=None):
    """Greedy decoding, one single-token pass per token.

    Returns ``(generated tokens, passes after the prompt)``. ``mode`` is the
    arithmetic of the linear layers: ``verify`` (the target; also what the
    FP16 baseline computes) or ``draft``.
    """
    prompt = _check(model, prompt, tokens)
    s = Session(model, mode)
    s.forward(prompt[:-1])
    s.passes.clear()
    out, last = [], prompt[-1]
    for _ in range(tokens):
        last = int(np.argmax(s.forward([last])[-1]))
        out.append(last)
        if progress:
            progress(len(out))
    return out, s.passes


def speculative(model, prompt, tokens, gamma, kv="half", progress=None):
    """Greedy speculative decoding (module docstring).

    ``kv`` is how the draft gets its keys and values (`golden.model.KV_DESIGNS`):
    ``half`` (default) and ``shared`` read the target's cache (at half and at
    full width) and keep the round's own K/V in a scratch of ``gamma``
    positions; ``own`` gives the draft a full FP16 cache of its own, filled
    by a prefill of the prompt and, after a fully accepted round, a catch-up
    step.

    Returns ``(generated tokens, Stats)``.
    """
    if gamma < 1:
        raise ValueError(f"gamma must be at least 1, not {gamma}")
    if kv not in KV_DESIGNS:
        raise ValueError(f"kv must be one of {', '.join(KV_DESIGNS)}, not {kv!r}")
    prompt = _check(model, prompt, tokens)
    target = Session(model, "verify")
    if kv == "own":
        draft = Session(model, "draft")
    else:
        draft = Session(model, "draft", target=target, half=kv == "half", scratch=gamma)
    seq = list(prompt)
    target.forward(seq[:-1])
    if kv == "own":
        draft.forward(seq[:-1])
    target.passes.clear()
    draft.passes.clear()
    stats = Stats(kv=kv, target_kv_bytes=target.kv_bytes, draft_kv_bytes=draft.kv_bytes)
    end = len(prompt) + tokens
    while len(seq) < end:
        if kv == "own":
            # The target has cached everything but the last token; so must
            # the draft (after a fully accepted round it lacks the last
            # proposal).
            draft.forward(seq[draft.length:-1])
        g = min(gamma, end - len(seq), model.context - len(seq))
        proposals, last = [], seq[-1]
        for _ in range(g):
            last = int(np.argmax(draft.forward([last])[-1]))
            proposals.append(last)
        base = target.length
        choice = np.argmax(target.forward([seq[-1]] + proposals), axis=-1)
        n_ok = 0
        while n_ok < g and choice[n_ok] == proposals[n_ok]:
            n_ok += 1
        new = proposals[:n_ok] + [int(choice[n_ok])]
        seq += new
        target.truncate(base + 1 + n_ok)
        if kv == "own":
            draft.truncate(min(draft.length, len(seq) - 1))
        else:
            draft.drop_scratch()
        stats.rounds += 1
        stats.proposed += g
        stats.accepted += n_ok
        stats.per_round.append(len(new))
        stats.round_proposals.append(g)
        stats.round_starts.append(base)
        if progress:
            progress(min(len(seq), end) - len(prompt))
    stats.draft_passes, stats.verify_passes = draft.passes, target.passes
    return seq[len(prompt):end], stats


class Costs:
    """Accelerator cycles of logged passes and of FP16 decoding, by the cycle
    model (a `golden.projection.StepModel` of the model on the configuration).

    Parameters
    ----------
    config : hw.config.SpeqConfig
    model : golden.model.TinyLM
    mem_latency : int
    kv : {"half", "shared", "own"}
        The KV design of the speculative runs costed (`golden.model.KV_DESIGNS`).
    """

    LINEAR = ("draft", "verify")

    def __init__(self, config, model, mem_latency=8, kv="half"):
        self.steps = StepModel(Shape.of(model),
                               Machine.from_config(config, 1.0, mem_latency=mem_latency), kv)

    def pass_cycles(self, mode, n, k, t):
        """One pass (more than tmax tokens: several)."""
        return self.steps.pass_cost(mode, n, k, t).cycles

    def cycles(self, passes, linear_only=False):
        """Total cycles of logged passes and cache writes (``linear_only``:
        the draft and verify passes of the linear layers alone)."""
        if linear_only:
            passes = [p for p in passes if p[0] in self.LINEAR]
        return self.steps.logged(passes).cycles

    def fp16(self, start, tokens, linear_only=False):
        """Cycles of FP16 autoregressive decoding of ``tokens`` tokens, the
        first at cache length ``start`` (``linear_only``: the baseline passes
        of the linear layers alone)."""
        if linear_only:
            return tokens * self.steps.linear("baseline", 1).cycles
        return sum(self.steps.fp16_token(start + i).cycles for i in range(tokens))


def _progress_bar(total, stream=sys.stderr):
    start = time.monotonic()

    def show(done):
        width = 30
        filled = width * done // total
        rate = done / max(time.monotonic() - start, 1e-9)
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} tokens "
                     f"{rate:.1f} tok/s")
        if done >= total:
            stream.write("\n")
        stream.flush()
    return show


def parser():
    p = argparse.ArgumentParser(
        prog="python -m golden.specdec",
        description="Greedy speculative decoding with the SPEQ draft (the model's own "
                    "weights through draft passes) on the golden model; prints the text and "
                    "the acceptance and accelerator-cycle statistics.")
    p.add_argument("--prompt", required=True, help="prompt text (UTF-8 bytes are the tokens)")
    p.add_argument("--gamma", type=int, default=4, help="draft tokens per round (default: 4)")
    p.add_argument("--tokens", type=int, default=200, help="tokens to generate (default: 200)")
    p.add_argument("--kv", choices=KV_DESIGNS, default="half",
                   help="how the draft gets its keys and values: half (default: it reads the "
                        "target's KV cache through its high byte plane, SPEC section 2a), "
                        "shared (the target's cache at full width) or own (a full FP16 cache "
                        "of its own, the earlier design)")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS),
                   help="model file (default: models/speqlm.npz)")
    p.add_argument("--mem-latency", type=int, default=8,
                   help="memory latency of the cycle model, cycles (default: 8)")
    p.add_argument("--draft-lanes", type=int, choices=DRAFT_LANES, default=None,
                   help="L, draft weights per PE and draft step (SPEC section 3), for the "
                        "draft arithmetic and the cycle model (default: the default "
                        "configuration's, hw.config.SpeqConfig)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the plain autoregressive run that checks the output is identical")
    return p


def main(argv=None):
    from hw.config import SpeqConfig
    p = parser()
    args = p.parse_args(argv)
    if args.gamma < 1:
        p.error(f"--gamma must be at least 1, not {args.gamma}")
    if args.mem_latency < 1:
        p.error(f"--mem-latency must be at least 1, not {args.mem_latency}")
    if args.tokens < 1:
        p.error(f"--tokens must be at least 1, not {args.tokens}")
    try:
        prompt = list(args.prompt.encode())
    except UnicodeEncodeError:
        # Bytes of the command line that are not UTF-8 reach Python as
        # lone surrogates.
        p.error("argument --prompt: not UTF-8 text")
    if not prompt:
        p.error("argument --prompt: the prompt must hold at least one token")
    config = SpeqConfig() if args.draft_lanes is None else SpeqConfig(draft_lanes=args.draft_lanes)
    try:
        model = TinyLM(args.weights, draft_lanes=config.draft_lanes)
    except (OSError, ValueError) as error:
        p.error(f"argument --weights: {error}")
    try:
        _check(model, prompt, args.tokens)
    except ValueError as error:
        p.error(f"argument --tokens: {error}")
    out, stats = speculative(model, prompt, args.tokens, args.gamma, kv=args.kv,
                             progress=_progress_bar(args.tokens))
    sys.stdout.write(args.prompt + bytes(out).decode("utf-8", errors="replace") + "\n")
    costs = Costs(config, model, args.mem_latency, kv=args.kv)
    print(f"\ngamma {args.gamma}: {stats.rounds} verify passes, acceptance "
          f"{stats.acceptance:.3f}, {stats.tokens_per_round:.2f} tokens per verify pass")
    print(f"KV memory: the target's cache {stats.target_kv_bytes:,} bytes, the draft's "
          f"{'scratch' if args.kv != 'own' else 'own cache'} {stats.draft_kv_bytes:,} bytes "
          f"(kv {args.kv})")
    print(f"accelerator cycles (default configuration with L = {config.draft_lanes}, cycle "
          f"model):")
    for what, linear_only in (("whole decode steps (linear layers, attention, KV writes)",
                               False), ("linear layers alone", True)):
        spec = costs.cycles(stats.draft_passes + stats.verify_passes, linear_only)
        plain = costs.fp16(len(prompt) - 1, len(out), linear_only)
        print(f"  {what}: speculative {spec:,}, FP16 autoregressive {plain:,}, "
              f"speedup {plain / spec:.2f}x")
    if not args.no_check:
        ref, _ = autoregressive(model, prompt, args.tokens)
        same = ref == out
        print("lossless: identical to plain autoregressive decoding" if same else
              "MISMATCH with plain autoregressive decoding")
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
