"""Whole decode steps on the accelerator, from a model's shapes alone.

A decode step of a transformer is, on the array:

- its linear layers: one pass each (draft, verify over T tokens, or the FP16
  baseline), as `golden.perf.pass_cost` counts them;
- its attention: per layer and KV head, ``Q K^T`` is a pass whose weights are
  the cached keys (N = the keys attended to, K = the head dimension) and
  ``P V`` a pass whose weights are the cached values transposed (N = the head
  dimension, K = the keys, padded to a multiple of 4); on a machine with
  head groups (`Machine.head_groups` G > 1) ``P V`` is a multi-head pass of
  G KV heads at once, each on its own group of PEs (`golden.perf`): its N is
  a fraction of a tile, so a wide array would otherwise run one head's
  rows at a time, bound by the interleave. The cache is one,
  shared by target and draft and kept as two byte planes (SPEC section 2a):
  the target's passes are ``kv`` passes (both planes), a half-width draft's
  ``kv_draft`` passes (the high plane). The query heads that share a KV head
  (GQA) and the tokens of a verify round are its tokens ``T`` (split into
  passes of at most ``tmax``; `Machine.round_tmax` raises tmax so that a
  round reads each cache once).
- its KV writes: the new tokens' keys and values, split into the cache's two
  byte planes by the KV write path (`hw.kv_writer`, a KV_WRITE command per
  KV head for its keys and one for its values), `golden.perf.kv_write_cycles`
  each.

Softmax, normalisation, activation functions and the embedding lookup run on
the host and cost nothing here.

Speculative decoding (SPEQ): the draft is the target's own weights through
draft passes, reading the target's KV cache (`KV_DESIGNS`: at half width by
default) and keeping only its round's keys and values in a scratch of gamma
positions. A round at cache length ``c`` is ``gamma`` draft steps (the
draft's linear layers, its attention over ``c + 1 .. c + gamma`` keys and its
scratch writes) and one verify step over ``gamma + 1`` tokens; with the
earlier design, a draft with its own FP16 cache (``own``), when every
proposal is accepted (probability ``a**gamma``), one more draft step puts
the last proposal into the draft's cache. With
an i.i.d. per-token acceptance ``a`` a round yields ``(1 - a**(gamma + 1)) /
(1 - a)`` tokens. FP16 autoregressive decoding is one baseline step per token.

Energy per token: the bits read and written times the memory's energy per
bit, plus the MACs (padding included) times a MAC's energy (`Energy`, with
the sources of its defaults).

CLI::

    python -m golden.projection --preset llama2-7b --context 2048 --gamma 4 --acceptance 0.9
"""

import argparse
from dataclasses import asdict, dataclass, replace
import json
import sys

from . import perf


__all__ = ["Shape", "PRESETS", "Machine", "Energy", "Cost", "StepModel", "RooflineModel",
           "KV_DESIGNS", "project",
           "MEASURED_TOKENS_PER_ROUND", "MEASURED_TOKENS_PER_ROUND_BY_KV", "tokens_per_round",
           "measured_acceptance", "main"]


@dataclass(frozen=True)
class Shape:
    """A decoder-only transformer's shapes.

    Members
    -------
    name : str
    layers, d_model, heads, kv_heads, d_ff, vocab : int
        ``kv_heads`` < ``heads`` is grouped-query attention.
    mlp : {"swiglu", "gelu"}
        Three matrices (gate, up, down: Llama) or two (up, down).

    Raises
    ------
    ValueError
        For a size below 1, heads that do not divide ``d_model``, KV heads
        that do not divide the heads, or a width the array cannot take (the
        head dimension, ``d_model`` and ``d_ff`` are reduction lengths, so
        multiples of 4).
    """

    name: str
    layers: int
    d_model: int
    heads: int
    kv_heads: int
    d_ff: int
    vocab: int
    mlp: str = "swiglu"

    def __post_init__(self):
        for name in ("layers", "d_model", "heads", "kv_heads", "d_ff", "vocab"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if self.d_model % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide d_model ({self.d_model})")
        if self.heads % self.kv_heads:
            raise ValueError(f"kv_heads ({self.kv_heads}) must divide heads ({self.heads})")
        for name, value in (("the head dimension", self.head_dim), ("d_model", self.d_model),
                            ("d_ff", self.d_ff)):
            if value % 4:
                raise ValueError(f"{name} must be a multiple of 4 (a reduction length of the "
                                 f"array), not {value}")
        if self.mlp not in ("swiglu", "gelu"):
            raise ValueError(f"mlp must be swiglu or gelu, not {self.mlp!r}")

    @classmethod
    def of(cls, model):
        """The shape of a `golden.model.TinyLM` (GELU MLP, no GQA)."""
        return cls("TinyLM", model.layers, model.d,
                   model.heads, model.heads, model.w["layer0.w1"].shape[0], model.vocab,
                   mlp="gelu")

    @property
    def head_dim(self):
        return self.d_model // self.heads

    @property
    def group(self):
        """Query heads per KV head."""
        return self.heads // self.kv_heads

    @property
    def d_kv(self):
        return self.kv_heads * self.head_dim

    def linears(self):
        """``(N, K)`` of every linear layer a token passes through, in order."""
        d, kv, ff = self.d_model, self.d_kv, self.d_ff
        mlp = [(ff, d), (ff, d), (d, ff)] if self.mlp == "swiglu" else [(ff, d), (d, ff)]
        layer = [(d, d), (kv, d), (kv, d), (d, d)] + mlp
        return layer * self.layers + [(self.vocab, d)]

    def weights(self):
        """Parameters of the linear layers."""
        return sum(n * k for n, k in self.linears())


#: The shapes of issue 13: the LLaMA family the SPEQ paper evaluates, and the
#: shipped model (models/speqlm.npz: GELU MLP, byte vocabulary, context 256).
PRESETS = {
    "llama2-7b": Shape("Llama-2-7B", 32, 4096, 32, 32, 11008, 32000),
    "llama2-13b": Shape("Llama-2-13B", 40, 5120, 40, 40, 13824, 32000),
    "llama3.1-8b": Shape("Llama-3.1-8B", 32, 4096, 32, 8, 14336, 128256),
    "speqlm": Shape("speqlm (shipped)", 4, 128, 4, 4, 512, 256, mlp="gelu"),
}

#: Tokens per verify round measured on the shipped model at each gamma, by
#: KV design (`python bench/specdec.py`: the real decoding loop, default
#: configuration, 32 prompts x 64 tokens; docs/results.md). Its acceptance
#: (accepted / proposed: 0.771 at gamma 7 with the half-width cache) is not
#: an i.i.d. per-token probability: agreements come in runs, so a round
#: yields more tokens than that probability would give. The projection uses
#: the *effective* i.i.d. acceptance that yields the measured tokens per
#: round (`measured_acceptance`).
MEASURED_TOKENS_PER_ROUND_BY_KV = {
    "half": {1: 1.94, 2: 2.75, 3: 3.61, 4: 4.29, 5: 4.95, 6: 5.45, 7: 6.13, 8: 6.59},
    "shared": {1: 1.95, 2: 2.76, 3: 3.68, 4: 4.41, 5: 5.12, 6: 5.58, 7: 6.34, 8: 6.69},
    "own": {1: 1.94, 2: 2.81, 3: 3.65, 4: 4.46, 5: 5.17, 6: 5.66, 7: 6.38, 8: 6.90},
}
#: The design's (one cache, read by the draft at half width).
MEASURED_TOKENS_PER_ROUND = MEASURED_TOKENS_PER_ROUND_BY_KV["half"]


def tokens_per_round(gamma, acceptance):
    """Expected tokens of a round with i.i.d. per-token ``acceptance``:
    ``(1 - a**(gamma + 1)) / (1 - a)``."""
    a = acceptance
    return gamma + 1 if a >= 1 else (1 - a ** (gamma + 1)) / (1 - a)


def measured_acceptance(gamma, kv="half"):
    """The i.i.d. acceptance whose rounds yield the tokens measured on the
    shipped model at ``gamma`` with KV design ``kv``
    (`MEASURED_TOKENS_PER_ROUND_BY_KV`), by bisection."""
    want = MEASURED_TOKENS_PER_ROUND_BY_KV[kv][gamma]
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tokens_per_round(gamma, mid) < want else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Machine:
    """The accelerator a projection runs on.

    Members
    -------
    pes, slots, lanes, mem_bits, tmax : int
        As `golden.perf.pass_cost` (``slots`` is the array's interleave,
        `hw.config.SpeqConfig.interleave`) and the most tokens of a pass.
    clock_mhz : float
    mem_latency : int
        Memory latency in cycles.
    head_groups : int
        PE groups with activations of their own (`hw.config.SpeqConfig.head_groups`):
        above 1, attention's ``P V`` runs as multi-head passes.
    result_latency : int or None
        As `golden.perf.pass_cost`; ``None``: that of an array whose PE takes
        the accumulator with its step (`hw.config.SpeqConfig.acc_latency`
        0), ``slots`` plus the stages around the array.
    """

    pes: int
    slots: int
    lanes: int
    mem_bits: int
    tmax: int
    clock_mhz: float
    mem_latency: int = 8
    head_groups: int = 1
    result_latency: int = None

    def __post_init__(self):
        perf.head_pes(self.pes, self.head_groups)     # the groups divide the PEs
        if self.result_latency is None:
            object.__setattr__(self, "result_latency", perf.OPERAND_STAGES + self.slots
                               + perf.DECODE_STAGES + perf.RESULT_STAGES)

    @classmethod
    def from_config(cls, config, clock_mhz, mem_latency=8):
        """The machine of a `hw.config.SpeqConfig` (an array the generator builds)."""
        m = perf.machine(config)
        return cls(pes=m["pes"], slots=m["slots"], lanes=m["lanes"], mem_bits=m["mem_bits"],
                   tmax=config.tmax, clock_mhz=clock_mhz, mem_latency=mem_latency,
                   head_groups=config.head_groups, result_latency=m["result_latency"])

    @classmethod
    def sized_for(cls, mem_gbps, clock_mhz, *, tmax=8, balance=8, pe_stages=10, lanes=1,
                  mem_latency=8):
        """An array sized by the rule of docs/array.md for a memory of
        ``mem_gbps`` GB/s at ``clock_mhz``: B = the bits per cycle (down to a
        multiple of 16), P = B x ``balance`` / 16 PEs (a verify pass over
        ``balance`` tokens stays memory-bound). One lane keeps up with the
        port by that rule, but a wide array holds few rows per PE, and a
        round of a tile still takes ``slots`` cycles: `best_lanes` picks L
        for a shape; `round_tmax` picks tmax."""
        bits = int(mem_gbps * 8e9 / (clock_mhz * 1e6)) // 16 * 16
        if bits < 16:
            raise ValueError(f"{mem_gbps} GB/s at {clock_mhz} MHz is below 16 bits per cycle")
        from hw.config import SpeqConfig       # the parameters only: no hardware
        config = SpeqConfig(pe_stages=pe_stages)
        return cls(pes=bits * balance // 16, slots=config.interleave, lanes=lanes,
                   mem_bits=bits, tmax=tmax, clock_mhz=clock_mhz, mem_latency=mem_latency,
                   result_latency=config.result_latency)

    def round_tmax(self, shape, gamma):
        """This machine with tmax raised, to at most `TMAX_LIMIT`, so that a
        verify round's attention over a KV head (its ``heads / kv_heads``
        query heads times ``gamma + 1`` tokens) is one pass: one read of the
        cache (the accumulators per PE grow with tmax; the PEs do not)."""
        want = min(TMAX_LIMIT, shape.group * (gamma + 1))
        return replace(self, tmax=max(self.tmax, want))

    def best_head_groups(self, shape, keys=1024):
        """This machine with the head groups (a divisor of the PEs, at most
        the KV heads) that make a draft step's attention over ``keys`` keys
        fastest; the fewest of equals."""
        model = {}
        for groups in range(1, min(shape.kv_heads, self.pes) + 1):
            if self.pes % groups == 0:
                step = StepModel(shape, replace(self, head_groups=groups))
                model[groups] = step.attention(keys, 1, "kv_draft").cycles
        return replace(self, head_groups=min(model, key=lambda g: (model[g], g)))

    def best_lanes(self, shape):
        """This machine with the fewest draft lanes (1, 2 or 4) that make the
        draft step's linear layers of ``shape`` fastest."""
        cycles = {lanes: StepModel(shape, replace(self, lanes=lanes)).linear("draft", 1).cycles
                  for lanes in (1, 2, 4)}
        return replace(self, lanes=min(cycles, key=lambda lanes: (cycles[lanes], lanes)))

    @property
    def gbps(self):
        """The memory bandwidth the port takes, GB/s."""
        return self.mem_bits * self.clock_mhz * 1e6 / 8e9


@dataclass(frozen=True)
class Energy:
    """Energy inputs, pJ (change them to the technology at hand).

    Members
    -------
    mem_pj_per_bit : float
        Off-chip memory, per bit read or written. Default 20: Horowitz,
        "Computing's energy problem (and what we can do about it)", ISSCC
        2014, gives 1.3-2.6 nJ per 64-bit DRAM access (45 nm); 20 pJ/bit is
        the low end. HBM2 is about 4 pJ/bit (O'Connor et al., "Fine-Grained
        DRAM", MICRO 2017).
    mac_pj : float
        One FP16 x FP16 multiply and FP32 add. Default 2.0: Horowitz (ISSCC
        2014, 45 nm) gives 1.1 pJ for a 16-bit float multiply and 0.9 pJ for
        a 32-bit float add. A one-lane draft MAC runs on the same datapath,
        so it costs the same here.
    """

    mem_pj_per_bit: float = 20.0
    mac_pj: float = 2.0


@dataclass
class Cost:
    """Cycles, memory bits (read and written) and MACs of some work."""

    cycles: float = 0
    bits: float = 0
    macs: float = 0

    def __add__(self, other):
        return Cost(self.cycles + other.cycles, self.bits + other.bits, self.macs + other.macs)

    def __mul__(self, factor):
        return Cost(self.cycles * factor, self.bits * factor, self.macs * factor)

    def energy_j(self, energy):
        return (self.bits * energy.mem_pj_per_bit + self.macs * energy.mac_pj) * 1e-12


def _pad4(n):
    return -(-n // 4) * 4


#: The KV-cache designs of a SPEQ round (`golden.model.KV_DESIGNS`): the
#: draft reads the target's cache at half width (``half``, the default) or
#: full width (``shared``), or keeps a full FP16 cache of its own (``own``).
KV_DESIGNS = ("half", "shared", "own")


#: One line on each KV design, for tables.
KV_TEXT = {"half": "one cache, the draft reads its high byte plane",
           "shared": "one cache, the draft reads it at full width",
           "own": "the draft keeps a full FP16 cache of its own"}


#: The most tokens a pass takes (`hw.config.PARAM_RANGES`: the command's T field).
TMAX_LIMIT = 31


class StepModel:
    """Costs of decode steps of ``shape`` on ``machine`` (module docstring).

    Parameters
    ----------
    shape : Shape
    machine : Machine
    kv : {"half", "shared", "own"}
        How a SPEQ draft gets its keys and values (`KV_DESIGNS`).
    """

    def __init__(self, shape, machine, kv="half"):
        if kv not in KV_DESIGNS:
            raise ValueError(f"kv must be one of {', '.join(KV_DESIGNS)}, not {kv!r}")
        self.shape, self.machine, self.kv = shape, machine, kv
        self._memo = {}

    def pass_cost(self, mode, n, k, t, heads=1):
        """One pass as `golden.perf.pass_cost` counts it (a multi-head pass
        of ``heads`` heads); more than ``tmax`` tokens take several passes
        (a draft pass one per token)."""
        key = (mode, n, k, t, heads)
        if key not in self._memo:
            m = self.machine
            kwargs = dict(pes=m.pes, slots=m.slots, lanes=m.lanes, mem_bits=m.mem_bits,
                          mem_latency=m.mem_latency,
                          result_latency=m.result_latency,
                          heads=heads)
            cost = Cost()
            most = 1 if mode == "draft" else m.tmax
            for start in range(0, t, most):
                c = perf.pass_cost(mode, n, k, min(most, t - start), **kwargs)
                cost = cost + Cost(c.cycles, c.bits, c.macs)
            self._memo[key] = cost
        return self._memo[key]

    def linear(self, mode, t):
        """Every linear layer in ``mode`` over ``t`` tokens."""
        cost = Cost()
        for n, k in self.shape.linears():
            cost = cost + self.pass_cost(mode, n, k, t)
        return cost

    def attention(self, keys, t, mode="kv"):
        """Attention of ``t`` new tokens over ``keys`` cached keys (theirs
        included): Q K^T and P V of every layer and KV head, ``mode`` passes
        (``kv``: the cache's two byte planes; ``kv_draft``: its high plane)
        over the queries of the KV head's query heads."""
        s = self.shape
        queries = s.group * t
        return (self.heads_pass(mode, keys, s.head_dim, queries) +
                self.heads_pass(mode, s.head_dim, _pad4(keys), queries)) * s.layers

    def heads_pass(self, mode, n, k, queries):
        """An attention pass (``Q K^T`` or ``P V``) of every KV head of a
        layer: a pass per KV head, or with head groups G a multi-head pass per
        G KV heads (the last one's missing heads cost as much)."""
        s, groups = self.shape, self.machine.head_groups
        if groups == 1:
            return self.pass_cost(mode, n, k, queries) * s.kv_heads
        return self.pass_cost(mode, n, k, queries, groups) * -(-s.kv_heads // groups)

    def write_cost(self, values, t, bits=16):
        """A layer's new keys and values, ``values`` per token (``2 x
        kv_heads x head_dim``), for each of ``t`` tokens, written by the KV
        write path (`hw.kv_writer`): per KV head one KV_WRITE of its keys and
        one of its values, `golden.perf.kv_write_cycles` each with a write
        port that is always ready. The writer writes both byte planes, so a
        half-width draft's scratch (``bits`` = 8: what it keeps) costs the
        cycles and the 16 bits per value of a full write: the RTL has no
        high-plane-only write."""
        d = self.shape.head_dim
        heads, left = divmod(values, 2 * d)
        if left or bits not in (8, 16):
            raise ValueError(f"a KV write is the keys and values of whole heads of {d} in 8 "
                             f"or 16 bits, not {values} values of {bits} bits")
        cycles = heads * (perf.kv_write_cycles(0, d, t) + perf.kv_write_cycles(1, d, t))
        return Cost(cycles=cycles, bits=values * 16 * t)

    def kv_write(self, t, bits=16):
        """The keys and values of ``t`` tokens written to every layer's cache
        (``bits`` = 8: a half-width draft's scratch, see `write_cost`)."""
        return self.write_cost(2 * self.shape.d_kv, t, bits) * self.shape.layers

    def logged(self, entries, linear_mode=None):
        """The cost of entries logged by `golden.model.Session`: passes
        ``(mode, N, K, T)`` and cache writes ``("kv_write", values, bits, T)``.
        ``linear_mode`` replaces the mode of the draft and verify passes
        (``baseline``: what FP16 decoding of the same tokens costs)."""
        cost = Cost()
        for mode, n, k, t in entries:
            if mode == "kv_write":
                cost = cost + self.write_cost(n, t, k)
            else:
                mode = linear_mode if linear_mode and mode in ("draft", "verify") else mode
                cost = cost + self.pass_cost(mode, n, k, t)
        return cost

    def step(self, mode, cached, t):
        """One forward of ``t`` tokens after ``cached`` cached ones: the
        linear layers in ``mode``; a draft step's attention and cache writes
        as the KV design has them."""
        if mode == "draft" and self.kv == "half":
            return self.linear(mode, t) + self.attention(cached + t, t, "kv_draft") + \
                self.kv_write(t, 8)
        return self.linear(mode, t) + self.attention(cached + t, t) + self.kv_write(t)

    def fp16_token(self, context):
        """FP16 autoregressive decoding: one token at cache length ``context``."""
        return self.step("baseline", context, 1)

    def speq_round(self, context, gamma, acceptance):
        """The expected cost of one round at cache length ``context``, and the
        expected tokens it yields."""
        cost = Cost()
        for i in range(gamma):
            cost = cost + self.step("draft", context + i, 1)
        cost = cost + self.step("verify", context, gamma + 1)
        if self.kv == "own":
            # All accepted: the draft's own cache lacks the last proposal.
            cost = cost + self.step("draft", context + gamma, 1) * acceptance ** gamma
        return cost, tokens_per_round(gamma, acceptance)

    def kv_bytes(self, context, gamma=None):
        """Bytes of KV memory at cache length ``context``: FP16 decoding's
        cache (``gamma`` None), or a SPEQ round's at its largest: the target's
        cache with the round's ``gamma + 1`` tokens, and the draft's scratch
        of ``gamma`` positions (its high plane alone at half width) or its own
        cache (``own``)."""
        per_position = 2 * self.shape.d_kv * self.shape.layers        # values
        if gamma is None:
            return 2 * per_position * (context + 1)
        target = 2 * per_position * (context + gamma + 1)
        draft = {"half": per_position * gamma, "shared": 2 * per_position * gamma,
                 "own": 2 * per_position * (context + gamma)}[self.kv]
        return target + draft


class RooflineModel(StepModel):
    """The steps of `StepModel`, each pass at its roofline: the least any
    schedule of it on this machine could take.

    A pass costs `golden.perf.roofline` of its whole shape (weight bits over
    B, or its MACs over the PEs' MACs per cycle, whichever is more): every
    token of a verify round and every query head of a KV group in one read
    (no tmax split), no padding, no pipeline fill, no wait for activations;
    a KV write its bits over B. Passes do not overlap, as on the
    accelerator. `project` divides FP16 decoding's cycles by a SPEQ round's
    here: no SPEQ schedule on this machine reaches a higher speedup.
    """

    def pass_cost(self, mode, n, k, t, heads=1):
        m = self.machine
        # A draft pass takes one token: t of them read their weights t times.
        passes, t = (t, 1) if mode == "draft" else (1, t)
        cycles = perf.roofline(mode, n, k, t, pes=m.pes, lanes=m.lanes, mem_bits=m.mem_bits)
        bits = n * k * 4 * sum(perf.PLANE_WORDS[mode])
        return Cost(cycles, bits, n * k * t) * (passes * heads)

    def heads_pass(self, mode, n, k, queries):
        # Every KV head once, whatever the head groups.
        return self.pass_cost(mode, n, k, queries) * self.shape.kv_heads

    def write_cost(self, values, t, bits=16):
        cost = super().write_cost(values, t, bits)
        return Cost(cost.bits / self.machine.mem_bits, cost.bits)


def project(shape, machine, context, gamma, acceptance, energy=Energy(), kv="half"):
    """FP16 and SPEQ decoding of ``shape`` at cache length ``context``, the
    SPEQ draft getting its keys and values as ``kv`` says (`KV_DESIGNS`).

    Returns
    -------
    dict
        ``fp16`` and ``speq`` (each ``cycles_per_token``, ``tokens_per_s``,
        ``energy_per_token_j``, ``bits_per_token``, ``macs_per_token``),
        ``speedup``, ``tokens_per_round``, ``kv_bytes`` (``fp16`` and
        ``speq``: the KV memory each holds, `StepModel.kv_bytes`) and, for
        the check of the linear layers alone, ``linear_only_speedup``.
    """
    if context < 0:
        raise ValueError(f"context must be at least 0, not {context}")
    if gamma < 1:
        raise ValueError(f"gamma must be at least 1, not {gamma}")
    if not 0 <= acceptance <= 1:
        raise ValueError(f"acceptance must be between 0 and 1, not {acceptance}")
    model = StepModel(shape, machine, kv)
    hz = machine.clock_mhz * 1e6

    def figures(cost, tokens):
        return {"cycles_per_token": cost.cycles / tokens,
                "tokens_per_s": hz * tokens / cost.cycles,
                "energy_per_token_j": cost.energy_j(energy) / tokens,
                "bits_per_token": cost.bits / tokens, "macs_per_token": cost.macs / tokens}

    fp16 = figures(model.fp16_token(context), 1)
    round_cost, tokens = model.speq_round(context, gamma, acceptance)
    speq = figures(round_cost, tokens)
    bound_cost, _ = RooflineModel(shape, machine, kv).speq_round(context, gamma, acceptance)
    catch_up = acceptance ** gamma if kv == "own" else 0
    linear_round = model.linear("draft", 1) * (gamma + catch_up) + \
        model.linear("verify", gamma + 1)
    return {
        "model": shape.name, "context": context, "gamma": gamma, "acceptance": acceptance,
        "kv": kv, "tokens_per_round": tokens, "fp16": fp16, "speq": speq,
        "speedup": speq["tokens_per_s"] / fp16["tokens_per_s"],
        "speedup_bound": fp16["cycles_per_token"] * tokens / bound_cost.cycles,
        "linear_only_speedup": model.linear("baseline", 1).cycles * tokens / linear_round.cycles,
        "tokens_per_s": speq["tokens_per_s"], "fp16_tokens_per_s": fp16["tokens_per_s"],
        "energy_per_token_j": {"fp16": fp16["energy_per_token_j"],
                               "speq": speq["energy_per_token_j"]},
        "kv_bytes": {"fp16": model.kv_bytes(context), "speq": model.kv_bytes(context, gamma)},
        "machine": asdict(machine), "energy_inputs": asdict(energy),
    }


# -- command line -------------------------------------------------------------------

def parser():
    from rtl_gen import cli
    p = argparse.ArgumentParser(
        prog="python -m golden.projection",
        description="Tokens/s, speedup over FP16 decoding and energy per token of SPEQ "
                    "speculative decoding for a transformer's shapes, on the accelerator's "
                    "cycle model (golden.perf) with attention and KV-cache traffic "
                    "(docs/projection.md).")
    g = p.add_argument_group("the model (a preset, or every size)")
    g.add_argument("--preset", choices=sorted(PRESETS),
                   help="a preset shape (default: llama2-7b unless the sizes are given)")
    for name, text in (("layers", "transformer layers"), ("d-model", "model width"),
                       ("heads", "attention heads (they divide d_model)"),
                       ("kv-heads", "KV heads (they divide heads; fewer: GQA)"),
                       ("d-ff", "MLP width"), ("vocab", "vocabulary (the output layer's rows)")):
        g.add_argument(f"--{name}", type=cli.integer(), metavar="N", help=text)
    g.add_argument("--mlp", choices=("swiglu", "gelu"), default="swiglu",
                   help="MLP of a shape given by sizes: three matrices (swiglu, default) or two")
    r = p.add_argument_group("the run")
    r.add_argument("--context", type=cli.integer(0), default=2048, metavar="N",
                   help="tokens already in the KV cache (default: 2048)")
    r.add_argument("--gamma", type=cli.integer(1, 15), default=4, metavar="G",
                   help="draft tokens per round, 1 to 15 (a verify pass takes gamma + 1 "
                        "tokens; default: 4)")
    r.add_argument("--kv", choices=KV_DESIGNS, default="half",
                   help="how the SPEQ draft gets its keys and values: half (default: it "
                        "reads the target's KV cache through its high byte plane, SPEC "
                        "section 2a), shared (the target's cache at full width) or own (a "
                        "full FP16 cache of its own, with a catch-up step after a fully "
                        "accepted round: the earlier design)")
    r.add_argument("--acceptance", type=cli.real(0, 1), metavar="A",
                   help="i.i.d. per-token acceptance probability, 0 to 1 (default: the one "
                        "that yields the tokens per round measured on the shipped model at "
                        "this gamma, MEASURED_TOKENS_PER_ROUND)")
    m = p.add_argument_group("the machine (default: the default configuration, 4x4 PEs, B = 32)")
    m.add_argument("--mem-gbps", type=cli.real(0, lo_open=True), metavar="GBPS",
                   help="memory bandwidth: the array is sized for it (B from the bandwidth "
                        "and the clock, B x tmax / 16 PEs, one lane; docs/array.md)")
    m.add_argument("--clock-mhz", type=cli.real(0, 1e5, lo_open=True), default=1000.0,
                   metavar="MHZ", help="clock (default: 1000)")
    m.add_argument("--rows", type=cli.integer(1, 64), metavar="R", help="PE rows")
    m.add_argument("--cols", type=cli.integer(1, 64), metavar="C", help="PE columns")
    m.add_argument("--mem-bits", type=cli.integer(16), metavar="B",
                   help="memory port bits per cycle (a multiple of 16 dividing 16 x R x C)")
    m.add_argument("--draft-lanes", type=cli.integer(1, 4, choices=(1, 2, 4)), metavar="L",
                   help="draft lanes (default: the configuration's, 1; with --mem-gbps the "
                        "fewest that make the draft step fastest for the shape)")
    m.add_argument("--head-groups", type=cli.integer(1), metavar="G",
                   help="PE groups with activations of their own; above 1 attention runs "
                        "as multi-head passes of G KV heads (a divisor of the PEs; default: "
                        "1; with --mem-gbps the number that makes a draft step's attention "
                        "fastest for the shape)")
    e = p.add_argument_group("energy inputs (class Energy: sources there and in "
                             "docs/projection.md)")
    e.add_argument("--mem-pj-per-bit", type=cli.real(0), default=Energy.mem_pj_per_bit,
                   metavar="PJ", help=f"memory energy per bit (default: {Energy.mem_pj_per_bit})")
    e.add_argument("--mac-pj", type=cli.real(0), default=Energy.mac_pj, metavar="PJ",
                   help=f"energy of one MAC (default: {Energy.mac_pj})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


_SIZES = ("layers", "d_model", "heads", "kv_heads", "d_ff", "vocab")


def _shape(p, args):
    given = {name: getattr(args, name) for name in _SIZES if getattr(args, name) is not None}
    if args.preset and given:
        p.error(f"--preset {args.preset} and {', '.join('--' + n.replace('_', '-') for n in given)}: "
                f"give a preset or the sizes")
    if not given:
        return PRESETS[args.preset or "llama2-7b"]
    missing = [name for name in _SIZES if name not in given]
    if missing:
        p.error(f"a shape needs every size: missing {', '.join('--' + n.replace('_', '-') for n in missing)}")
    try:
        return Shape("custom", mlp=args.mlp, **given)
    except ValueError as error:
        p.error(f"impossible shape: {error}")


def _machine(p, args):
    from hw.config import SpeqConfig
    if args.mem_gbps is not None:
        if args.mem_bits is not None:
            p.error("--mem-gbps and --mem-bits: give the bandwidth or the port width")
        try:
            machine = Machine.sized_for(args.mem_gbps, args.clock_mhz)
        except ValueError as error:
            p.error(f"argument --mem-gbps: {error}")
        if args.rows or args.cols:
            pes = (args.rows or 1) * (args.cols or 1)
            if (16 * pes) % machine.mem_bits:
                p.error(f"--rows x --cols = {pes} PEs cannot take a {machine.mem_bits}-bit port "
                        f"(B must divide 16 x P)")
            machine = replace(machine, pes=pes)
        return machine
    values = {name: getattr(args, name) for name in ("rows", "cols", "mem_bits")
              if getattr(args, name) is not None}
    try:
        config = SpeqConfig(**values)
    except (TypeError, ValueError) as error:
        p.error(str(error))
    if (16 * config.rows * config.cols) % config.mem_bits:
        p.error(f"mem_bits must divide 16 x rows x cols = {16 * config.rows * config.cols}, "
                f"not {config.mem_bits}")
    return Machine.from_config(config, args.clock_mhz)


def format_result(r):
    m = r["machine"]
    lines = [
        f"{r['model']}, context {r['context']}, gamma {r['gamma']}, acceptance "
        f"{r['acceptance']:.3f} ({r['tokens_per_round']:.2f} tokens per round)",
        f"machine: {m['pes']} PEs, B = {m['mem_bits']} bits at {m['clock_mhz']:g} MHz "
        f"({m['mem_bits'] * m['clock_mhz'] / 8e3:.1f} GB/s), L = {m['lanes']}, tmax {m['tmax']}"
        + (f", {m['head_groups']} head groups" if m["head_groups"] > 1 else ""),
        "",
        f"SPEQ's KV cache: {r['kv']} ({KV_TEXT[r['kv']]})",
        "",
        "| decoding | tokens/s | cycles/token | MB read+written/token | energy/token | KV cache MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("fp16", "speq"):
        f = r[name]
        lines.append(f"| {name.upper()} | {f['tokens_per_s']:,.2f} | {f['cycles_per_token']:,.0f} | "
                     f"{f['bits_per_token'] / 8e6:,.2f} | {f['energy_per_token_j'] * 1e3:,.3f} mJ | "
                     f"{r['kv_bytes'][name] / 1e6:,.2f} |")
    lines += ["", f"speedup {r['speedup']:.2f}x (linear layers alone: "
              f"{r['linear_only_speedup']:.2f}x; at most {r['speedup_bound']:.2f}x with "
              f"every SPEQ pass at its roofline)"]
    return "\n".join(lines)


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    shape = _shape(p, args)
    machine = _machine(p, args)
    if args.draft_lanes is not None:
        machine = replace(machine, lanes=args.draft_lanes)
    elif args.mem_gbps is not None:
        machine = machine.best_lanes(shape)
    if args.head_groups is not None:
        if machine.pes % args.head_groups:
            p.error(f"argument --head-groups: {args.head_groups} does not divide the "
                    f"{machine.pes} PEs")
        machine = replace(machine, head_groups=args.head_groups)
    elif args.mem_gbps is not None:
        machine = machine.best_head_groups(shape)
    acceptance = args.acceptance
    if acceptance is None:
        if args.gamma not in MEASURED_TOKENS_PER_ROUND:
            p.error(f"argument --acceptance: nothing measured at gamma {args.gamma} "
                    f"(measured: gamma {min(MEASURED_TOKENS_PER_ROUND)} to "
                    f"{max(MEASURED_TOKENS_PER_ROUND)}); give one")
        acceptance = measured_acceptance(args.gamma, args.kv)
    result = project(shape, machine, args.context, args.gamma, acceptance,
                     Energy(args.mem_pj_per_bit, args.mac_pj), kv=args.kv)
    result["acceptance_source"] = (
        "given (assumed)" if args.acceptance is not None else
        f"measured: the i.i.d. acceptance that yields the shipped model's "
        f"{MEASURED_TOKENS_PER_ROUND_BY_KV[args.kv][args.gamma]} tokens per round at gamma "
        f"{args.gamma} with the {args.kv} KV design (bench/specdec.py)")
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(format_result(result))
        print(f"acceptance: {result['acceptance_source']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
