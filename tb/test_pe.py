# amaranth: UnusedElaboratable=no
"""Bench of the processing elements (`hw.pe.SpeqPE`, `hw.pe.Fp16PE`).

Every step the PE computes is compared bit for bit with the golden model
(`golden.arith.verify_step` and `golden.arith.draft_step`; any NaN may stand
for any NaN). The vectors are directed ones for every special class (±0,
subnormals, the largest values, ±inf, NaN, exact cancellation, overflow,
rounding ties) followed by random ones, with the mode chosen at random on
every step, through a `tb.harness.StreamHarness` (batches of steps from a
memory, random input gaps and output stalls, which freeze the pipeline; no
Python per cycle). The bench also checks that each result appears exactly
``latency`` enabled cycles after its step entered, and that a waiting
result holds.

The pytest functions at the bottom run the cocotb test per configuration and
simulator (`CONFIGS`). ``SEED=<n>`` changes the random seed, ``WAVES=1``
records waveforms, ``PE_VECTORS=<n>`` sets the number of random steps per
mode of every run (``make soak`` sets it high).
"""

import json
import os
from pathlib import Path

import numpy as np

import cocotb

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring

import pytest

from golden import arith, speq16
from hw.config import SpeqConfig
from hw.decoder import Mode
from hw.pe import Fp16PE, PEOut, SpeqPE, pe_input_layout, unpack16
from tb import drive, harness, payload, runner
from tb.harness import StreamHarness


TOPLEVEL = "pe"
#: Steps per harness batch (the depth of its memories).
BATCH = 16384
DEFAULT_VECTORS = 100_000


# --- Vectors ---------------------------------------------------------------------------------

FP16_SPECIAL = np.array([
    0x0000, 0x8000,            # ±0
    0x0001, 0x8001, 0x03FF,    # smallest and largest subnormal
    0x0400, 0x8400,            # smallest normal
    0x3C00, 0xBC00, 0x3E00,    # ±1, 1.5
    0x7BFF, 0xFBFF,            # ±65504
    0x7C00, 0xFC00,            # ±inf
    0x7E00, 0x7C01, 0xFE00,    # NaNs
], dtype=np.uint16)

FP32_SPECIAL = np.array([
    0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x00800000, 0x3F800000, 0xBF800000,
    0x4B800000,                # 2**24: adding 1 is a tie
    # 2 - 2**-23, odd: 2**-24 more ties and rounds up, carrying out of the
    # significand into the exponent; 1.5 - 2**-23 rounds up without a carry.
    0x3FFFFFFF, 0xBFFFFFFF, 0x3FBFFFFF,
    0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001,
], dtype=np.uint32)


def _fp16(rng, n):
    """FP16 bit patterns: mostly ordinary values, plus every class."""
    kind = rng.random(n)
    sign = rng.integers(0, 2, n, dtype=np.uint16) << 15
    ordinary = sign | (rng.integers(5, 26, n, dtype=np.uint16) << 10) | rng.integers(0, 1024, n, dtype=np.uint16)
    anything = rng.integers(0, 1 << 16, n, dtype=np.uint16)
    subnormal = sign | rng.integers(1, 1024, n, dtype=np.uint16)
    special = rng.choice(FP16_SPECIAL, n)
    return np.select([kind < 0.55, kind < 0.8, kind < 0.9], [ordinary, anything, subnormal],
                     special).astype(np.uint16)


def _fp32_near(rng, values):
    """FP32 accumulators at a random distance (in binades) from ``values``."""
    with np.errstate(all="ignore"):
        scaled = values * np.ldexp(1.0, rng.integers(-40, 40, values.shape)) * \
            rng.choice([-1.0, 1.0, 0.75, -1.25], values.shape)
    return scaled.astype(np.float32).view(np.uint32)


def _fp32(rng, n, near):
    kind = rng.random(n)
    anything = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    subnormal = (rng.integers(0, 2, n, dtype=np.uint32) << 31) | rng.integers(1, 1 << 23, n, dtype=np.uint32)
    with np.errstate(all="ignore"):
        cancel = (-near).astype(np.float32).view(np.uint32)
    return np.select(
        [kind < 0.45, kind < 0.6, kind < 0.75, kind < 0.8, kind < 0.85],
        [_fp32_near(rng, near), anything, cancel, subnormal, np.zeros(n, np.uint32)],
        rng.choice(FP32_SPECIAL, n)).astype(np.uint32)


def _draft_operands(rng, n, lanes):
    exp_bits = payload.width(pe_input_layout(True, lanes), "draft", 0, "exp")
    lo, hi = -(1 << (exp_bits - 1)), 1 << (exp_bits - 1)
    # Exponents in the range the encoder picks, and the field's extremes.
    exp = np.where(rng.random((n, lanes)) < 0.8,
                   rng.integers(-12, 4, (n, lanes)), rng.integers(lo, hi, (n, lanes)))
    return dict(sign=rng.integers(0, 2, (n, lanes)), exp=exp,
                half=rng.integers(0, 2, (n, lanes)),
                zero=rng.random((n, lanes)) < 0.1)


def directed(has_draft, lanes):
    """Every pairing of special accumulators, activations and weights; in
    draft mode, of special accumulators and activations with draft values."""
    acc, act, weight = np.meshgrid(FP32_SPECIAL, FP16_SPECIAL, FP16_SPECIAL, indexing="ij")
    n = acc.size
    acts = np.repeat(act.reshape(-1, 1), lanes, axis=1)
    vectors = dict(mode=np.zeros(n, int), acc=acc.ravel(), act=acts, weight=weight.ravel())
    if has_draft:
        # Draft: the same specials against draft values of both kinds and zero;
        # the other lanes hold other specials so that infinities of both signs meet.
        rng = np.random.default_rng(0)
        others = rng.choice(FP16_SPECIAL, (n, lanes))
        others[:, 0] = act.ravel()
        ops = dict(sign=rng.integers(0, 2, (n, lanes)), exp=rng.integers(-32, 32, (n, lanes)),
                   half=rng.integers(0, 2, (n, lanes)), zero=rng.random((n, lanes)) < 0.25)
        vectors = _concat(
            dict(vectors, draft=_draft_operands(np.random.default_rng(1), n, lanes)),
            dict(mode=np.ones(n, int), acc=acc.ravel(), act=others, weight=weight.ravel(), draft=ops))
    return vectors


def random_vectors(rng, count, has_draft, lanes):
    """``count`` random steps per mode, the modes shuffled together."""
    n = count * (2 if has_draft else 1)
    mode = rng.permutation(np.arange(n) < count).astype(int) if has_draft else np.zeros(n, int)
    act = np.stack([_fp16(rng, n) for _ in range(lanes)], axis=1)
    weight = _fp16(rng, n)
    ops = _draft_operands(rng, n, lanes)
    # Accumulators near the value the step adds, so the alignment, the
    # cancellation and the rounding all get exercised.
    with np.errstate(all="ignore"):
        near = arith.verify_step(np.zeros(n, np.float32), act[:, 0].view(np.float16),
                                 weight.view(np.float16)).astype(np.float64)
        if has_draft:
            terms = arith.draft_terms(act.view(np.float16), speq16.draft_weight(**ops))
            near = np.where(mode == 1, terms.sum(axis=1), near)
    vectors = dict(mode=mode, acc=_fp32(rng, n, np.nan_to_num(near)), act=act, weight=weight)
    if has_draft:
        vectors["draft"] = ops
    return vectors


def _concat(a, b):
    return {k: _concat(a[k], b[k]) if isinstance(a[k], dict) else np.concatenate([a[k], b[k]])
            for k in a}


def expected(vectors, F):
    """Golden results (uint32) of every step."""
    acc = vectors["acc"].view(np.float32)
    act = vectors["act"].view(np.float16)
    want = arith.verify_step(acc, act[:, 0], vectors["weight"].view(np.float16))
    if "draft" in vectors:
        terms = arith.draft_terms(act, speq16.draft_weight(**vectors["draft"]))
        want = np.where(vectors["mode"] == Mode.DRAFT.value, arith.draft_step(acc, terms, F), want)
    return want.astype(np.float32).view(np.uint32)


def pack(vectors, has_draft, lanes):
    layout = pe_input_layout(has_draft, lanes)
    fields = {"acc": vectors["acc"], "weight": vectors["weight"]}
    for lane in range(vectors["act"].shape[1]):
        fields[("act", lane)] = vectors["act"][:, lane]
    if has_draft:
        fields["mode"] = vectors["mode"]
        for name, values in vectors["draft"].items():
            for lane in range(lanes):
                fields[("draft", lane, name)] = values[:, lane]
    return payload.pack(layout, fields)


# --- Driving the design ----------------------------------------------------------------------

def _params():
    return json.loads(os.environ["PE_PARAMS"])


class _AsTheArrayBuildsIt(wiring.Component):
    """A `SpeqPE` built as `hw.array.SpeqArray` builds it, behind the
    array's part of the work: its activations are unpacked here
    (`hw.pe.unpack16`, as the array unpacks them once for many PEs), and
    its accumulator input (``late_acc``) is delayed by the PE's
    ``acc_latency`` (cycles the pipeline advances, with ``o.ready`` high).
    The bench's steps carry FP16 activations and their accumulators as
    they do for every other PE."""

    def __init__(self, pe):
        self._pe = pe
        super().__init__({
            "i": wiring.In(stream.Signature(pe_input_layout(pe.has_draft, pe.lanes))),
            "o": wiring.Out(stream.Signature(PEOut)),
        })

    config = property(lambda self: self._pe.config)
    has_draft = property(lambda self: self._pe.has_draft)
    lanes = property(lambda self: self._pe.lanes)
    latency = property(lambda self: self._pe.latency)

    def elaborate(self, platform):
        m = Module()
        m.submodules.pe = pe = self._pe
        acc = self.i.payload.acc
        for stage in range(pe.acc_latency):
            delayed = Signal.like(acc, name=f"acc_{stage}")
            with m.If(self.o.ready):
                m.d.sync += delayed.eq(acc)
            acc = delayed
        m.d.comb += [
            pe.i.valid.eq(self.i.valid), pe.i.payload.mode.eq(self.i.payload.mode),
            pe.i.payload.weight.eq(self.i.payload.weight),
            pe.i.payload.draft.eq(self.i.payload.draft),
            pe.i.payload.acc.eq(acc), self.i.ready.eq(pe.i.ready),
            self.o.valid.eq(pe.o.valid), self.o.payload.eq(pe.o.payload),
            pe.o.ready.eq(self.o.ready),
        ]
        for j in range(pe.lanes):
            m.d.comb += pe.i.payload.act[j].eq(
                unpack16(m, self.i.payload.act[j], pe.act_layout, f"act{j}"))
        return m


def _build(params):
    config = SpeqConfig(**params["config"])
    if params["kind"] == "fp16":
        return Fp16PE(config)
    if params["kind"] == "speq_in_array":
        return _AsTheArrayBuildsIt(SpeqPE(config, late_acc=True, unpacked_act=True))
    return SpeqPE(config)


async def _reset(dut):
    await drive.reset(dut, ("go", "count_in", "count_out", "p_valid", "p_ready", "seed"))


async def _stream(dut, payloads, seed, latency, p_valid=0.95, p_ready=0.9):
    """Send every step through the harness (`tb.harness`), a batch at a time,
    under random gaps and stalls; return the results and the cycles taken.

    A rising edge with ``o.ready`` high is *enabled* (it advances the whole
    pipeline); a step taken on enabled edge ``e`` must be accepted on enabled
    edge ``e + latency`` (the output waits while ``o.ready`` is low), and a
    waiting output must hold.
    """
    results, cycles = [], 0
    for batch, start in enumerate(range(0, len(payloads), BATCH)):
        chunk = payloads[start:start + BATCH]
        out = await harness.run_batch(dut, chunk, len(chunk), p_valid=p_valid, p_ready=p_ready,
                                      seed=seed * 7919 + batch,
                                      records=("take_edge", "accept_edge"))
        assert out["violations"] == 0, \
            f"batch {batch}: a waiting output changed or dropped {out['violations']} times"
        late = np.flatnonzero(out["accept_edge"] != out["take_edge"] + latency)
        assert not late.size, (
            f"step {start + late[0]} entered on enabled edge {out['take_edge'][late[0]]} and "
            f"left on {out['accept_edge'][late[0]]}; the latency is {latency}")
        results += out["result"]
        cycles += out["cycles"]
    return results, cycles


def _check(got, want, vectors):
    got = np.array(got, dtype=np.uint32)
    nan = np.isnan(want.view(np.float32))
    bad = np.flatnonzero(np.where(nan, ~np.isnan(got.view(np.float32)), got != want))
    if bad.size:
        lines = [f"{bad.size} of {want.size} results differ from the golden model"]
        for i in bad[:8]:
            mode = "draft" if vectors["mode"][i] == Mode.DRAFT.value else "verify"
            line = (f"  step {i} ({mode}): acc {vectors['acc'][i]:#010x} "
                    f"act {[hex(a) for a in vectors['act'][i]]} weight {vectors['weight'][i]:#06x}")
            if mode == "draft":
                line += " draft " + str({k: v[i].tolist() for k, v in vectors["draft"].items()})
            lines.append(line + f": got {int(got[i]):#010x}, want {int(want[i]):#010x}")
        raise AssertionError("\n".join(lines))


@cocotb.test()
async def pe_stream(dut):
    """Directed and random steps of both modes, random stalls, bit-exact."""
    params = _params()
    pe = _build(params)
    seed = runner.seed()
    rng = np.random.default_rng(seed)
    count = int(os.environ.get("PE_VECTORS", DEFAULT_VECTORS))
    vectors = _concat(directed(pe.has_draft, pe.lanes),
                      random_vectors(rng, count, pe.has_draft, pe.lanes))
    want = expected(vectors, pe.config.draft_frac_bits)
    await _reset(dut)
    got, cycles = await _stream(dut, pack(vectors, pe.has_draft, pe.lanes), seed, pe.latency)
    _check(got, want, vectors)
    draft_steps = int((vectors["mode"] == Mode.DRAFT.value).sum())
    summary = {"verify": int(len(got) - draft_steps), "draft": draft_steps,
               "lanes": pe.lanes, "cycles": cycles, "seed": seed}
    dut._log.info("pe: %(verify)d verify MACs and %(draft)d draft steps in %(cycles)d cycles, "
                  "all bit-exact (seed %(seed)d)", summary)
    Path("summary.json").write_text(json.dumps(summary))


# --- pytest entry points ---------------------------------------------------------------------

# (name, config, kind, {simulator: random steps per mode}); kind "speq",
# "fp16" (the baseline) or "speq_in_array" (the SpeqPE as the array builds
# it: taking its accumulator `acc_latency` cycles after its step and its
# activations unpacked, with their trailing zeros from 7 registers on). The default PE
# (one lane), the four-lane PE and the baseline run 100,000 steps per mode on
# Verilator and 4,000 on Icarus, whose simulation of a PE costs about 0.2 ms
# a cycle (Icarus shows that the Verilog means the same to a second
# simulator; the volume is Verilator's); the other configurations 50,000 on
# Verilator (`make soak` runs more).
# Two lanes, the shallowest pipelines with the narrowest and widest F, and
# the DSP aligners run on Verilator.
CONFIGS = [
    ("speq_l1", {"draft_lanes": 1}, "speq", {"verilator": 100_000, "icarus": 4_000}),
    ("speq_l4", {"draft_lanes": 4}, "speq", {"verilator": 100_000, "icarus": 4_000}),
    ("fp16", {}, "fp16", {"verilator": 100_000, "icarus": 4_000}),
    ("speq_l1_s1", {"draft_lanes": 1, "pe_stages": 1}, "speq", {"verilator": 50_000}),
    # Eight registers: the first depth whose last one ends the unpacking.
    ("speq_l1_s8", {"draft_lanes": 1, "pe_stages": 8}, "speq", {"verilator": 20_000}),
    # The array's PEs: from 8 registers on the accumulator a cycle late;
    # below 7 the activations without their trailing zeros (the iCEBreaker's 6).
    ("speq_l1_s8_array", {"draft_lanes": 1, "pe_stages": 8}, "speq_in_array",
     {"verilator": 20_000}),
    ("speq_l4_array", {"draft_lanes": 4}, "speq_in_array", {"verilator": 20_000}),
    ("speq_l2_s6_array", {"draft_lanes": 2, "pe_stages": 6, "draft_frac_bits": 23},
     "speq_in_array", {"verilator": 20_000}),
    ("speq_l2_s1_f23", {"draft_lanes": 2, "pe_stages": 1, "draft_frac_bits": 23}, "speq",
     {"verilator": 50_000}),
    # dsp_align: terms 1 to L-1 aligned by multipliers, with two coarse cases
    # (F 30) and four (F 48); the default shifters are in the cases above.
    ("speq_l4_s6_f48_dsp", {"draft_lanes": 4, "pe_stages": 6, "draft_frac_bits": 48,
                            "dsp_align": 1}, "speq", {"verilator": 50_000}),
    ("speq_l2_s4_dsp", {"draft_lanes": 2, "pe_stages": 4, "dsp_align": 1}, "speq",
     {"verilator": 50_000}),
]


@pytest.mark.parametrize("name,config,kind,sim,count", [
    pytest.param(name, config, kind, sim, count, id=f"{name}-{sim}")
    for name, config, kind, counts in CONFIGS for sim, count in counts.items()])
def test_pe(name, config, kind, sim, count):
    params = {"config": config, "kind": kind}
    draft = kind != "fp16"
    count = int(os.environ.get("PE_VECTORS", count))
    build_dir = runner.BUILD_ROOT / f"pe_{name}" / sim
    (build_dir / "summary.json").unlink(missing_ok=True)
    runner.run(StreamHarness(_build(params), depth=BATCH), bench=f"pe_{name}", toplevel=TOPLEVEL,
               test_module="tb.test_pe",
               sim=sim, extra_env={"PE_PARAMS": json.dumps(params), "PE_VECTORS": str(count)})
    summary = json.loads((build_dir / "summary.json").read_text())
    assert summary["verify"] >= count and summary["draft"] >= (count if draft else 0)
    print(f"pe {name} [{sim}]: {summary['verify']} verify MACs, {summary['draft']} draft steps "
          f"({summary['lanes'] * summary['draft']} draft MACs), bit-exact, {summary['cycles']} cycles")
