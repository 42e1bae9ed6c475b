# amaranth: UnusedElaboratable=no
"""Bench of the PE array (`hw.array.SpeqArray`) driven by the golden schedule.

The bench plays the controller: it writes the pass' remap tables into the
array, turns whole passes (draft, verify over T tokens, baseline) into the
step stream of `golden.schedule` (with the weight words undecoded: the array
decodes them), feeds it one step per cycle with random bubbles (the array has no enable:
every result must leave exactly ``latency`` cycles after its step), gathers
the finished accumulators and compares ``Y`` bit for bit with `golden.arith`. For every
verify pass it also runs a baseline pass per token and checks that each
token's verify result equals its single-token baseline result.
"""

import json
import os
from pathlib import Path

import numpy as np

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly

import pytest

from golden import arith, speq16
from golden.schedule import schedule
from hw.array import SpeqArray
from hw.config import SpeqConfig
from hw.decoder import GROUP, Mode
from tb import drive, payload, runner


TOPLEVEL = "array"


#: Width of the tag the bench gives every step (the step's index, wrapped).
TAG_BITS = 12


def _array():
    return SpeqArray(SpeqConfig(**json.loads(os.environ["ARRAY_CONFIG"])), tag_bits=TAG_BITS)


def _passes(rng, tmax):
    """The passes of the bench: (mode, N, K, T) with random shapes."""
    passes = []
    for mode in ("draft", "verify", "baseline"):
        for _ in range(2):
            n = int(rng.integers(1, 40))
            k = 4 * int(rng.integers(1, 17))
            t = int(rng.integers(1, tmax + 1)) if mode == "verify" else 1
            passes.append((mode, n, k, t))
    return passes


def _steps(array, mode, x, w, enc, sched):
    """Payload integers of every step of ``sched``."""
    layout = array.i.payload.shape()
    pes = array.pes
    rows = np.maximum(sched.rows, 0)              # padding rows read row 0, never used
    fields = {"mode": np.full(len(sched), (Mode.DRAFT if mode == "draft" else Mode.VERIFY).value),
              "plain": np.full(len(sched), int(mode == "baseline")),
              "first": sched.first, "last": sched.last, "slot": sched.slot,
              "tag": np.arange(len(sched)) % (1 << TAG_BITS)}
    xb = x.view(np.uint16)
    lanes = array.config.draft_lanes
    if mode == "draft":
        # Step k takes columns L k .. L k + L - 1: their nibbles go to the
        # top of the word, lane j in nibble 4 - L + j.
        for lane in range(lanes):
            fields[("act", lane)] = xb[0, lanes * sched.k + lane]
        group, first = divmod(lanes * sched.k, GROUP)
        words = enc.draft_plane[rows, group[:, None]]
        words = (words >> (4 * first[:, None])) << (4 * (GROUP - lanes)) & 0xFFFF
    else:
        fields[("act", 0)] = xb[sched.token, sched.k]
        words = (enc.words if mode == "verify" else w.view(np.uint16))[rows, sched.k[:, None]]
    for p in range(pes):
        fields[("word", p)] = words[:, p]
    return payload.pack(layout, fields)


async def _reset(dut):
    await drive.reset(dut, ("i__valid", "i__payload", "table__en", "table__code",
                            "table__base", "table__exp", "table__half", "table__zero"))


async def _run(dut, steps, last, latency, rng, p_valid=0.9):
    """Feed the steps with random bubbles between them; return the output
    payloads (in order) and the cycles taken. The array has no enable: every
    ``last`` step's result must leave exactly ``latency`` cycles after the
    step went in."""
    i_valid, i_payload = dut.i__valid, dut.i__payload
    o_valid, o_payload = dut.o__valid, dut.o__payload
    falling, settled = FallingEdge(dut.clk), ReadOnly()
    out, due, sent, cycle = [], [], 0, 0
    while len(out) < int(last.sum()):
        await falling
        driving = sent < len(steps) and rng.random() < p_valid
        if driving:
            i_payload.value = steps[sent]
        i_valid.value = int(driving)
        await settled
        if driving:
            if last[sent]:
                due.append(cycle + latency)
            sent += 1
        if o_valid.value:
            assert due and due[0] == cycle, (
                f"a result left in cycle {cycle}, due in cycle {due[0] if due else None}")
            due.pop(0)
            out.append(o_payload.value.to_unsigned())
        assert not due or due[0] >= cycle, f"the result due in cycle {due[0]} did not leave"
        cycle += 1
    return out, cycle


def _gather(array, sched, out, t, n):
    """Y (T x N, float32) from the output payloads of the ``last`` steps."""
    layout = array.o.payload.shape()
    y = np.full((t, n), np.nan, dtype=np.float32)
    seen = np.zeros((t, n), dtype=bool)
    last = np.flatnonzero(sched.last)
    assert len(out) == len(last), f"{len(out)} results for {len(last)} last steps"
    for s, value in zip(last, out):
        assert payload.field(layout, [value], "slot")[0] == sched.slot[s]
        assert payload.field(layout, [value], "tag")[0] == s % (1 << TAG_BITS), \
            f"result of step {s} came with another step's tag"
        for p, row in enumerate(sched.rows[s]):
            if row >= 0:
                bits = payload.field(layout, [value], "acc", p)[0]
                y[sched.token[s], row] = np.uint32(bits).view(np.float32)
                seen[sched.token[s], row] = True
    assert seen.all(), "some outputs never came out"
    return y


def _same(got, want, what):
    nan = np.isnan(want)
    bad = np.flatnonzero((np.isnan(got) != nan) |
                         (~nan & (got.view(np.uint32) != want.view(np.uint32))))
    assert not bad.size, (f"{what}: {bad.size} of {want.size} results differ; first at "
                          f"{np.unravel_index(bad[0], want.shape)}: got {got.flat[bad[0]]!r} "
                          f"want {want.flat[bad[0]]!r}")


@cocotb.test()
async def array_passes(dut):
    array = _array()
    seed = runner.seed()
    rng = np.random.default_rng(seed)
    await _reset(dut)
    summary = {"passes": 0, "steps": 0, "outputs": 0, "seed": seed}

    async def run_pass(mode, x, w, enc):
        t, k = x.shape
        n = w.shape[0]
        sched = schedule(mode, n, k, t, array.pes, array.interleave, array.config.draft_lanes)
        await drive.load_table(dut, enc)
        out, cycles = await _run(dut, _steps(array, mode, x, w, enc, sched), sched.last,
                                 array.latency, rng)
        summary["passes"] += 1
        summary["steps"] += len(sched)
        summary["outputs"] += t * n
        return _gather(array, sched, out, t, n)

    for mode, n, k, t in _passes(rng, array.config.tmax):
        w = (rng.standard_normal((n, k)) * 0.05).astype(np.float16)
        w[rng.random(w.shape) < 0.02] = 0
        x = rng.standard_normal((t, k)).astype(np.float16)
        enc = speq16.encode(w)
        y = await run_pass(mode, x, w, enc)
        if mode == "draft":
            want = arith.draft_gemm(x, enc, array.config.draft_frac_bits,
                                    array.config.draft_lanes)
        elif mode == "verify":
            want = arith.verify_gemm(x, speq16.decode(enc))
        else:
            want = arith.verify_gemm(x, w)
        _same(y, want, f"{mode} pass N={n} K={k} T={t}")
        if mode == "verify":
            for token in range(t):
                alone = await run_pass("baseline", x[token:token + 1], w, enc)
                _same(y[token:token + 1], alone, f"verify token {token} vs its baseline pass")
        dut._log.info("%s pass N=%d K=%d T=%d: bit-exact", mode, n, k, t)
    dut._log.info("array: %(passes)d passes, %(steps)d steps, %(outputs)d outputs, all bit-exact", summary)
    Path("summary.json").write_text(json.dumps(summary))


# Icarus only for now. Verilator's C++ build of even a 2x2 array took over
# ten minutes with every variable public (cocotb's --public-flat-rw); the
# runner now makes only the top module public (tb.runner._Verilator), which
# builds a 2x2 accelerator in seconds, so a Verilator run may be added here.
CONFIGS = [
    ("2x2_l4", {"rows": 2, "cols": 2, "tmax": 4, "pe_stages": 4, "draft_lanes": 4}, ("icarus",)),
    ("1x3_s1_l1", {"rows": 1, "cols": 3, "tmax": 3, "pe_stages": 1, "draft_lanes": 1},
     ("icarus",)),
    ("2x1_s2_l2", {"rows": 2, "cols": 1, "tmax": 2, "pe_stages": 2, "draft_lanes": 2},
     ("icarus",)),
    # Eight PE registers: the accumulators are read a cycle later, and a
    # slot comes back after 8 steps, not 9 (SpeqConfig.acc_latency).
    ("1x2_s8_l1", {"rows": 1, "cols": 2, "tmax": 3, "pe_stages": 8, "draft_lanes": 1},
     ("icarus",)),
]


@pytest.mark.parametrize("name,config,sim", [
    pytest.param(name, config, sim, id=f"{name}-{sim}")
    for name, config, sims in CONFIGS for sim in sims])
def test_array(name, config, sim):
    build_dir = runner.BUILD_ROOT / f"array_{name}" / sim
    (build_dir / "summary.json").unlink(missing_ok=True)
    runner.run(SpeqArray(SpeqConfig(**config), tag_bits=TAG_BITS), bench=f"array_{name}",
               toplevel=TOPLEVEL,
               test_module="tb.test_array", sim=sim,
               extra_env={"ARRAY_CONFIG": json.dumps(config)})
    summary = json.loads((build_dir / "summary.json").read_text())
    assert summary["passes"] >= 6
    print(f"array {name} [{sim}]: {summary}")
