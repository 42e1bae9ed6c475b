# amaranth: UnusedElaboratable=no
"""Bench of the exponent-remap decoder (`hw.decoder.RemapDecoder`).

Every one of the 65,536 word patterns goes through the decoder under each of
several tables, loaded through the table write port: tables that
`golden.speq16.encode` chose for real tensors (Gaussian weights with outliers,
uniform magnitudes, tiny and subnormal values, every finite FP16 value), the
reset tables, and a synthetic table with extreme entries (bases near the top,
where ``base + δ`` needs its carry; exponents at both ends of their range).
Both decodings of every output are compared bit for bit with the golden model,
under random input gaps and output stalls.

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
from cocotb.triggers import FallingEdge, ReadOnly

import pytest

from amaranth.lib import data

from golden import speq16
from hw.decoder import (RemapDecoder, DecoderIn, DecoderOut, DraftOperand,
                        Mode, NUM_CODES, GROUP)
from tb import drive, runner


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
            if field.shape.signed and value >> (field.width - 1):
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


async def _reset(dut):
    await drive.reset(dut, ("i__valid", "i__payload", "o__ready", "table__en", "table__code",
                 "table__base", "table__exp", "table__half", "table__zero"))


async def _stream(dut, payloads, p_valid, p_ready, rng, latency):
    """Send ``payloads`` through the decoder under random valid/ready; return the outputs.

    Inputs are written just after a falling edge; at ``ReadOnly`` of the
    same time step everything has settled to what the next rising edge
    samples, so a transfer is exactly ``valid & ready`` as read there. This
    checks the stream rules on the way: the output's valid and payload hold
    while stalled, and every word appears within ``latency`` cycles of entering.
    """
    i_valid, i_payload, i_ready = dut.i__valid, dut.i__payload, dut.i__ready
    o_valid, o_payload, o_ready = dut.o__valid, dut.o__payload, dut.o__ready
    falling, settled = FallingEdge(dut.clk), ReadOnly()

    n = len(payloads)
    payloads = payloads.tolist()
    chunk = 4096
    outputs = []
    offered = [None] * n  # cycle each word was first presented
    entered = [None] * n  # cycle each word was taken
    sent = cycle = 0
    driving = False
    stalled = None  # the payload held since the last cycle, if stalled
    ready = 0
    o_ready.value = ready
    while len(outputs) < n:
        if cycle % chunk == 0:
            valid_draws = (rng.random(chunk) < p_valid).tolist()
            ready_draws = (rng.random(chunk) < p_ready).astype(int).tolist()
        await falling
        if not driving and sent < n and valid_draws[cycle % chunk]:
            i_payload.value = payloads[sent]
            i_valid.value = 1
            offered[sent] = cycle
            driving = True
        elif not driving:
            i_valid.value = 0
        if ready_draws[cycle % chunk] != ready:
            ready = ready_draws[cycle % chunk]
            o_ready.value = ready

        await settled
        if driving and i_ready.value:
            entered[sent] = cycle
            sent += 1
            driving = False
        if o_valid.value:
            payload = o_payload.value.to_unsigned()
            if stalled is None:
                # Visible once it has had `latency` cycles since it was offered, and
                # no later than `latency` cycles after it was taken.
                j = len(outputs)
                late = entered[j] is not None and cycle > entered[j] + latency
                assert offered[j] is not None and offered[j] + latency <= cycle and not late, (
                    f"word {j} offered in cycle {offered[j]}, taken in cycle {entered[j]} "
                    f"appeared in cycle {cycle}; the latency is {latency}")
            else:
                assert payload == stalled, (
                    f"output payload changed while stalled: {stalled:#x} -> {payload:#x}")
            if ready:
                outputs.append(payload)
                stalled = None
            else:
                stalled = payload
        else:
            assert stalled is None, "output valid dropped while stalled"
        cycle += 1
    return outputs, cycle


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
        outputs, cycles = await _stream(
            dut, _pack_inputs(words, modes), p_valid, p_ready, rng, latency)
        _check(name, outputs, _expected_outputs(words, modes, enc), words)
        checked += len(outputs)
        dut._log.info("table %-12s %d words in %d cycles: all match", name, len(outputs), cycles)

    summary = {"words": int(WORDS.size), "tables": len(tables), "checked": checked, "seed": seed}
    dut._log.info("decoder: %(words)d words x %(tables)d tables = %(checked)d checked "
                  "(seed %(seed)d)", summary)
    Path("summary.json").write_text(json.dumps(summary))


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
    want_old = int(_expected_outputs(np.array([word], np.uint16), np.array([0]), old)[0])
    want_new = int(_expected_outputs(np.array([word], np.uint16), np.array([0]), new)[0])
    assert want_old != want_new, "the two tables must decode the word differently"

    # The same word enters on every cycle; cycle k writes the k-th entry it
    # reads. Output j is the word that entered in cycle j, whatever the
    # latency: the first sees only old entries, the one after the last write
    # only new ones.
    got = []
    for cycle in range(len(codes) + 2 + latency):
        await FallingEdge(dut.clk)
        if cycle == 0:
            dut.o__ready.value = 1
            dut.i__payload.value = payload
            dut.i__valid.value = 1
        if cycle < len(codes):
            drive.table_entry(dut, codes[cycle], new)
        else:
            dut.table__en.value = 0
        await ReadOnly()
        if dut.o__valid.value:
            got.append(dut.o__payload.value.to_unsigned())
    assert got[0] == want_old, f"first output {_describe(got[0])}, want {_describe(want_old)}"
    assert got[len(codes)] == want_new, (
        f"output after all writes {_describe(got[len(codes)])}, want {_describe(want_new)}")

    # A stalled output keeps its value while the table changes under it.
    await FallingEdge(dut.clk)
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await ReadOnly()
    if latency:
        held = dut.o__payload.value.to_unsigned()
        for code in range(NUM_CODES):
            await FallingEdge(dut.clk)
            drive.table_entry(dut, code, old)
            await ReadOnly()
            assert dut.o__valid.value and dut.o__payload.value.to_unsigned() == held, (
                "a stalled output changed under a table write")


# --- pytest entry points ---------------------------------------------------------------------

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
    build_dir = runner.run(RemapDecoder(), bench="decoder", toplevel=TOPLEVEL,
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
    runner.run(RemapDecoder(**params), bench="decoder_comb", toplevel=TOPLEVEL,
               test_module="tb.test_decoder", sim=runner.SIMULATORS[0],
               extra_env={"DUT_PARAMS": json.dumps(params),
                          "DECODER_TABLES": "extreme"})
