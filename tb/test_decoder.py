# amaranth: UnusedElaboratable=no
"""Bench of the exponent-remap decoder (`hw.decoder.RemapDecoder`).

Every one of the 65,536 word patterns goes through the decoder under each of
several tables, loaded through the table write port: tables that
`golden.speq16.encode` chose for real tensors (Gaussian weights with outliers,
uniform magnitudes, tiny and subnormal values, every finite FP16 value), the
reset tables, and a synthetic table with extreme entries (bases near the top,
where ``base + δ`` needs its carry; exponents at both ends of their range).
Both decodings of every output are compared bit for bit with the golden model,
under random input gaps and output stalls, through a `tb.harness.StreamHarness`
(a table's 65,536 words from a memory, no Python per cycle); every output
must appear ``latency`` cycles after its word entered and hold while stalled.

The pytest functions at the bottom run the cocotb tests above them on each
simulator of `tb.runner.SIMULATORS`. ``SEED=<n>`` changes the random seed,
``WAVES=1`` records waveforms.
"""

import functools
import json
import os
from pathlib import Path

import numpy as np

import cocotb
from cocotb.triggers import FallingEdge

import pytest

from amaranth.hdl import Shape
from amaranth.lib import data

from golden import speq16
from hw.decoder import (RemapDecoder, DecoderIn, DecoderOut, DraftOperand,
                        Mode, NUM_CODES, GROUP)
from tb import drive, harness, runner
from tb.harness import StreamHarness


TOPLEVEL = "decoder"
WORDS = np.arange(1 << data.Layout.cast(DecoderIn)["word"].width, dtype=np.uint16)


# --- Tables ---------------------------------------------------------------------------------

@functools.cache
def _tables(seed):
    """The tables of the bench as ``(name, speq16.Encoded, (p_valid, p_ready))``.

    Each table runs at its own input and output handshake rates, from full
    throughput to heavy back-pressure.
    """
    rng = np.random.default_rng(seed)

    def f16(x):
        return np.asarray(x, dtype=np.float32).astype(np.float16)

    gauss = rng.normal(0.0, 0.02, size=(64, 256))
    outliers = rng.random(gauss.shape) < 0.002
    gauss[outliers] *= rng.uniform(20.0, 200.0, size=outliers.sum())
    uniform = rng.uniform(-1.0, 1.0, size=(64, 256))
    # Magnitudes log-uniform over 2**-24 .. 2**-10: subnormals and the
    # smallest normal binades.
    tiny = np.exp2(rng.uniform(-24.0, -10.0, size=(64, 256))) * rng.choice([-1, 1], (64, 256))
    finite = WORDS[(WORDS & 0x7C00) != 0x7C00]
    every = finite.view(np.float16).reshape(248, -1)

    def table(base, exp, half, zero):
        return speq16.Encoded(
            words=np.zeros((0, 4), np.uint16), base=np.array(base, np.uint8),
            draft_exp=np.array(exp, np.int16), draft_half=np.array(half, bool),
            draft_zero=np.array(zero, bool))

    zeros = [0] * NUM_CODES
    return [
        ("reset", table(zeros, zeros, zeros, zeros), (0.9, 0.9)),
        ("gaussian", speq16.encode(f16(gauss)), (1.0, 1.0)),
        ("uniform", speq16.encode(f16(uniform)), (0.9, 0.8)),
        ("tiny", speq16.encode(f16(tiny)), (0.7, 0.95)),
        ("every_finite", speq16.encode(every), (0.95, 0.7)),
        ("extreme", table([0, 9, 30, 61, 100, 113, 120, 127],
                          [-32, 31, -1, 0, 5, -7, 15, -16],
                          [1, 0, 1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 0, 1, 0, 0]), (0.8, 0.9)),
    ] + [
        # $DECODER_RANDOM_TABLES more (make soak): any bases, any draft values.
        (f"random{n}", table(np.sort(rng.choice(128, NUM_CODES, replace=False)),
                             rng.integers(-32, 32, NUM_CODES), rng.integers(0, 2, NUM_CODES),
                             rng.random(NUM_CODES) < 0.2),
         tuple(rng.uniform(0.5, 1.0, 2)))
        for n in range(int(os.environ.get("DECODER_RANDOM_TABLES", 0)))
    ]


# --- Payload packing, from the layouts of hw.decoder -----------------------------------------

def _offset(layout, *path):
    offset = 0
    for key in path:
        field = data.Layout.cast(layout)[key]
        offset += field.offset
        layout = field.shape
    return offset


def _width(layout, *path):
    return data.Layout.cast(layout)[path[0]].width if len(path) == 1 else \
        _width(data.Layout.cast(layout)[path[0]].shape, *path[1:])


def _pack_inputs(words, modes):
    return ((modes.astype(np.uint64) << np.uint64(_offset(DecoderIn, "mode")))
            | (words.astype(np.uint64) << np.uint64(_offset(DecoderIn, "word"))))


def _expected_outputs(words, modes, enc):
    """The golden model's output payloads (uint64) for ``words`` under ``enc``."""
    def put(value, *path):
        mask = (1 << _width(DecoderOut, *path)) - 1
        value = np.asarray(value).astype(np.int64) & mask
        return value.astype(np.uint64) << np.uint64(_offset(DecoderOut, *path))

    payload = put(modes, "mode")
    payload |= put(speq16.decode_words(words, enc.base), "weight")
    payload |= put(speq16.invalid_words(words, enc.base), "invalid")
    sign, exp, half, zero = speq16.draft_fields(words, enc)
    for lane in range(GROUP):
        for name, value in (("sign", sign), ("exp", exp), ("half", half), ("zero", zero)):
            payload |= put(value[:, lane], "draft", lane, name)
    return payload


def _describe(payload):
    """A payload as its fields, for failure messages."""
    view = {}
    for name in ("mode", "weight", "invalid"):
        view[name] = (payload >> _offset(DecoderOut, name)) & ((1 << _width(DecoderOut, name)) - 1)
    view["weight"] = f"{view['weight']:#06x}"
    draft = []
    for lane in range(GROUP):
        lane_view = {}
        for name, field in data.Layout.cast(DraftOperand):
            value = ((payload >> _offset(DecoderOut, "draft", lane, name))
                     & ((1 << field.width) - 1))
            if Shape.cast(field.shape).signed and value >> (field.width - 1):
                value -= 1 << field.width
            lane_view[name] = value
        draft.append(lane_view)
    view["draft"] = draft
    return view


# --- Driving the design ----------------------------------------------------------------------

def _params():
    """Constructor arguments of the design under test, from the pytest side."""
    return json.loads(os.environ.get("DUT_PARAMS", "{}"))


def _selected_tables(seed):
    """The tables to run: all, or those named in ``$DECODER_TABLES``."""
    names = os.environ.get("DECODER_TABLES")
    tables = _tables(seed)
    if names:
        tables = [t for t in tables if t[0] in names.split(",")]
    return tables


#: Inputs of the bench's top (`tb.harness.StreamHarness` around the decoder).
INPUTS = ("go", "count_in", "count_out", "p_valid", "p_ready", "seed", "table__en",
          "table__code", "table__base", "table__exp", "table__half", "table__zero")


async def _reset(dut):
    await drive.reset(dut, INPUTS)


def _check_timing(name, out, latency):
    """Every output visible ``latency`` cycles after its word was first
    offered or later, and no later than ``latency`` cycles after it was
    taken; a waiting output held (its valid and payload)."""
    assert out["violations"] == 0, (
        f"table {name}: a waiting output changed or dropped {out['violations']} times")
    offered, taken, visible = out["offer_cycle"], out["take_cycle"], out["visible_cycle"]
    bad = np.flatnonzero((visible < offered + latency) | (visible > taken + latency))
    assert not bad.size, (
        f"table {name}: word {bad[0]} offered in cycle {offered[bad[0]]}, taken in cycle "
        f"{taken[bad[0]]} appeared in cycle {visible[bad[0]]}; the latency is {latency} "
        f"({bad.size} words so)")


#: The time records the bench checks.
RECORDS = ("offer_cycle", "take_cycle", "visible_cycle")


def _check(name, got, want, words):
    got = np.array(got, dtype=np.uint64)
    bad = np.flatnonzero(got != want)
    if bad.size:
        lines = [f"table {name}: {bad.size} of {want.size} outputs differ from the golden model"]
        for index in bad[:5]:
            lines.append(f"  word {int(words[index]):#06x}: got {_describe(int(got[index]))}")
            lines.append(f"  {'':13} want {_describe(int(want[index]))}")
        raise AssertionError("\n".join(lines))


# --- cocotb tests ----------------------------------------------------------------------------

@cocotb.test()
async def decoder_exhaustive(dut):
    """All 65,536 words under every table, both decodings, random stalls."""
    seed = runner.seed()
    rng = np.random.default_rng(seed)
    latency = RemapDecoder(**_params()).latency
    await _reset(dut)

    tables = _selected_tables(seed)
    checked = 0
    loaded = False
    for name, enc, (p_valid, p_ready) in tables:
        # The reset tables are what the decoder starts with; later, they load.
        if name != "reset" or loaded:
            await drive.load_table(dut, enc)
            loaded = True
        words = rng.permutation(WORDS)
        modes = rng.integers(0, len(Mode), size=words.size)
        out = await harness.run_batch(dut, _pack_inputs(words, modes), words.size,
                                      p_valid=p_valid, p_ready=p_ready,
                                      seed=int(rng.integers(1, 1 << 32)), records=RECORDS)
        _check_timing(name, out, latency)
        _check(name, out["result"], _expected_outputs(words, modes, enc), words)
        checked += len(out["result"])
        dut._log.info("table %-12s %d words in %d cycles: all match", name, len(out["result"]),
                      out["cycles"])

    summary = {"words": int(WORDS.size), "tables": len(tables), "checked": checked, "seed": seed}
    dut._log.info("decoder: %(words)d words x %(tables)d tables = %(checked)d checked "
                  "(seed %(seed)d)", summary)
    Path("summary.json").write_text(json.dumps(summary))


def _mixed(old, new, codes):
    """``old``'s tables with the entries ``codes`` of ``new``'s."""
    fields = {}
    for field in ("base", "draft_exp", "draft_half", "draft_zero"):
        value = getattr(old, field).copy()
        for code in codes:
            value[code] = getattr(new, field)[code]
        fields[field] = value
    return speq16.Encoded(words=old.words, **fields)


@cocotb.test()
async def decoder_table_write_timing(dut):
    """A table write affects only words entering on later cycles.

    The word entering in the same cycle as the write still sees the old
    entry; an output held by a stalled consumer keeps its value across writes.
    """
    latency = RemapDecoder(**_params()).latency
    await _reset(dut)
    tables = {name: enc for name, enc, _ in _tables(runner.seed())}
    old, new = tables["uniform"], tables["every_finite"]
    await drive.load_table(dut, old)

    word = 0x5A5A  # code 5 in the verify view, codes 2 and 5 in the draft view
    codes = sorted({(word >> 12) & 7, *(((word >> 4 * lane) & 7) for lane in range(GROUP))})
    payload = int(_pack_inputs(np.array([word]), np.array([Mode.VERIFY.value]))[0])

    def want(table):
        return int(_expected_outputs(np.array([word], np.uint16), np.array([0]), table)[0])

    want_old, want_new = want(old), want(new)
    assert want_old != want_new, "the two tables must decode the word differently"

    # The same word is offered on every cycle and always taken; from the
    # cycle the first one enters (the harness offers from cycle 1 of a
    # batch), each cycle writes the next entry it reads. Every output must
    # decode under the entries written in cycles before its word entered:
    # the first sees only old entries, the one after the last write only new.
    count = len(codes) + 2 + latency
    await harness.start_batch(dut, [payload] * count, count, p_valid=1, p_ready=1, seed=1)
    writes = []                                      # (cycle, code)
    for code in codes:
        while int(dut.cycles.value) < 1:
            await FallingEdge(dut.clk)
        writes.append((int(dut.cycles.value), code))
        drive.table_entry(dut, code, new)
        await FallingEdge(dut.clk)
    dut.table__en.value = 0
    out = await harness.finish_batch(dut, count, count, records=RECORDS)
    _check_timing("write timing", out, latency)
    taken = out["take_cycle"]
    assert taken[0] == writes[0][0], (
        f"the first word entered in cycle {taken[0]}, the first write was in cycle "
        f"{writes[0][0]}: the bench means them to coincide")
    for j, got in enumerate(out["result"]):
        table = _mixed(old, new, [code for cycle, code in writes if cycle < taken[j]])
        assert got == want(table), (
            f"output {j} (entered in cycle {taken[j]}, writes in cycles {writes}): "
            f"{_describe(got)}, want {_describe(want(table))}")
    assert out["result"][0] == want_old, f"first output {_describe(out['result'][0])}"
    after = np.flatnonzero(taken > writes[-1][0])
    assert after.size and out["result"][after[0]] == want_new, (
        f"no output after all writes, or not the new tables' ({out['result']})")

    # A stalled output keeps its value while the table changes under it: one
    # word, never accepted until every entry has been written back to the
    # old tables, then accepted.
    if latency:
        await harness.start_batch(dut, [payload], 1, p_valid=1, p_ready=0, seed=1)
        for _ in range(4):
            await FallingEdge(dut.clk)
        first = int(dut.cycles.value)
        for code in range(NUM_CODES):
            drive.table_entry(dut, code, old)
            await FallingEdge(dut.clk)
        dut.table__en.value = 0
        dut.p_ready.value = 256
        out = await harness.finish_batch(dut, 1, 1, records=("visible_cycle",))
        assert out["violations"] == 0, "a stalled output changed under a table write"
        assert out["visible_cycle"][0] < first, (
            f"the output appeared in cycle {out['visible_cycle'][0]}, after the writes began "
            f"(cycle {first})")
        assert out["result"][0] == want_new, (
            f"the held output {_describe(out['result'][0])}, want {_describe(want_new)}")


# --- pytest entry points ---------------------------------------------------------------------

def _top(**params):
    """The bench's top: the decoder in a `tb.harness.StreamHarness` that
    holds every word of a table's pass."""
    return StreamHarness(RemapDecoder(**params), depth=WORDS.size)


_counts = {}


@pytest.fixture(scope="module")
def word_counts(pytestconfig):
    yield _counts
    # Shown even under output capture; xdist workers have no terminal.
    reporter = pytestconfig.pluginmanager.getplugin("terminalreporter")
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    if reporter is not None and capture is not None and _counts:
        total = sum(s["checked"] for s in _counts.values())
        tables = {s["tables"] for s in _counts.values()}
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                f"\ndecoder bench: {WORDS.size} words x {'/'.join(map(str, tables))} tables "
                f"x {len(_counts)} simulator(s) ({', '.join(_counts)}) = {total} decodes checked")


@pytest.mark.parametrize("sim", runner.SIMULATORS)
def test_decoder(sim, word_counts):
    (runner.BUILD_ROOT / "decoder" / sim / "summary.json").unlink(missing_ok=True)
    # Icarus, in the fast tier, runs every word under two of the tables (all
    # finite FP16 patterns encoded, and the extreme one); Verilator, and
    # Icarus in make soak (DECODER_RANDOM_TABLES set), under all of them.
    fast_icarus = sim == "icarus" and "DECODER_RANDOM_TABLES" not in os.environ and \
        "DECODER_TABLES" not in os.environ
    build_dir = runner.run(_top(), bench="decoder", toplevel=TOPLEVEL,
                           test_module="tb.test_decoder", sim=sim,
                           extra_env={"DECODER_TABLES": "every_finite,extreme"} if fast_icarus
                           else None)
    summary = json.loads((build_dir / "summary.json").read_text())
    assert summary["checked"] == summary["words"] * summary["tables"]
    word_counts[sim] = summary
    print(f"decoder [{sim}]: {summary['words']} words x {summary['tables']} tables "
          f"= {summary['checked']} checked (seed {summary['seed']})")


def test_decoder_combinational():
    """The unregistered variant (latency 0) on the default simulator.

    Its decoding logic is the registered variant's; what differs is the
    handshake, so one table suffices: the extreme one, which reaches the
    carry of ``base + δ``, invalid words, zero and 1.5 drafts and both ends of
    the exponent range. (Icarus is slow on this variant: every word ripples
    through the per-field wires Amaranth names on the output port.)
    """
    params = {"registered_output": False}
    runner.run(_top(**params), bench="decoder_comb", toplevel=TOPLEVEL,
               test_module="tb.test_decoder", sim=runner.SIMULATORS[0],
               extra_env={"DUT_PARAMS": json.dumps(params),
                          "DECODER_TABLES": "extreme"})
