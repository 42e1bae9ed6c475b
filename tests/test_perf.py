"""Memory images and cycle model of a pass (`golden.perf`), and the checks of
the accelerator's parameters.

The image tests place every weight by an independent reading of the layout in
``docs/array.md`` (row -> tile, slot, PE; entry index counted over the tiles)
rather than by the gather `golden.perf` uses. The cycle counts themselves are
checked against the RTL by ``tb/test_accel.py``; here their relations are.
"""

import numpy as np
import pytest

from golden import perf, speq16
from hw.accel import SpeqAccel
from hw.config import SpeqConfig


def _bits(image, mem_bits, offset, width):
    word, shift = divmod(offset, mem_bits)
    value = image[word] >> shift
    if shift + width > mem_bits:
        value |= image[word + 1] << (mem_bits - shift)
    return value & ((1 << width) - 1)


def _entry(r, g, n, k, pes, slots):
    """Index of the entry holding row r, group g, and the row's PE."""
    tile_rows = pes * slots
    tile, inside = divmod(r, tile_rows)
    used = perf.tiles(n, pes, slots)
    before = sum(used[:tile]) * (k // 4)
    j, p = divmod(inside, pes)
    return before + g * used[tile] + j, p


@pytest.mark.parametrize("n,k,pes,slots,mem_bits", [
    (37, 12, 4, 3, 32), (5, 8, 1, 2, 16), (64, 16, 16, 5, 256), (50, 4, 3, 4, 48)])
def test_images_place_every_weight(n, k, pes, slots, mem_bits):
    rng = np.random.default_rng(n)
    w = (rng.standard_normal((n, k)) * 0.1).astype(np.float16)
    enc = speq16.encode(w)
    draft = perf.draft_image(enc, pes, slots, mem_bits)
    resid = perf.residual_image(enc, pes, slots, mem_bits)
    base = perf.baseline_image(w, pes, slots, mem_bits)
    kv = perf.kv_images(w, pes, slots, mem_bits)
    entries = sum(perf.tiles(n, pes, slots)) * (k // 4)
    assert len(kv[0]) == len(kv[1]) == 2 * len(draft)
    assert len(draft) * mem_bits == entries * 16 * pes
    assert len(resid) == 3 * len(draft) and len(base) == 4 * len(draft)
    plain = w.view(np.uint16)
    for r in range(n):
        for g in range(k // 4):
            e, p = _entry(r, g, n, k, pes, slots)
            assert _bits(draft, mem_bits, e * 16 * pes + 16 * p, 16) == enc.draft_plane[r, g]
            for lane in range(4):
                got = _bits(resid, mem_bits, e * 48 * pes + 48 * p + 12 * lane, 12)
                assert got == enc.words[r, 4 * g + lane] & 0xFFF
                got = _bits(base, mem_bits, e * 64 * pes + 64 * p + 16 * lane, 16)
                assert got == plain[r, 4 * g + lane]
                # The KV cache's planes: byte `lane` of the row's 4 bytes.
                for plane, part in zip(kv, (plain >> 8, plain & 0xFF)):
                    got = _bits(plane, mem_bits, e * 32 * pes + 32 * p + 8 * lane, 8)
                    assert got == part[r, 4 * g + lane]
    # Rows past N in the last slot are zero.
    for r in range(n, -(-n // pes) * pes):
        for g in range(k // 4):
            e, p = _entry(r, g, n, k, pes, slots)
            assert _bits(draft, mem_bits, e * 16 * pes + 16 * p, 16) == 0
            assert _bits(base, mem_bits, e * 64 * pes + 64 * p, 64) == 0


@pytest.mark.parametrize("n,k,pes,slots,heads,mem_bits", [
    (5, 8, 4, 3, 2, 32), (13, 4, 6, 2, 3, 96), (7, 12, 4, 5, 4, 64)])
def test_multihead_images_put_each_head_on_its_group(n, k, pes, slots, heads, mem_bits):
    # A multi-head pass: head q's rows are a plain pass's on pes / heads PEs,
    # at PE q pes / heads + p of every entry; its cost is the plain pass's
    # walk on a head's PEs, with every head's activations loaded first.
    rng = np.random.default_rng(n)
    w = (rng.standard_normal((heads * n, k)) * 0.1).astype(np.float16)
    per = pes // heads
    kv = perf.kv_images(w, pes, slots, mem_bits, heads)
    base = perf.baseline_image(w, pes, slots, mem_bits, heads)
    assert len(base) * mem_bits == sum(perf.tiles(n, per, slots)) * (k // 4) * 64 * pes
    plain = w.view(np.uint16)
    for q in range(heads):
        for r in range(n):
            for g in range(k // 4):
                e, p = _entry(r, g, n, k, per, slots)
                p += q * per
                for lane in range(4):
                    got = _bits(base, mem_bits, e * 64 * pes + 64 * p + 16 * lane, 16)
                    assert got == plain[q * n + r, 4 * g + lane]
                    got = _bits(kv[1], mem_bits, e * 32 * pes + 32 * p + 8 * lane, 8)
                    assert got == plain[q * n + r, 4 * g + lane] & 0xFF
    machine = dict(MACHINE, pes=pes, slots=slots, mem_bits=mem_bits)
    many = perf.pass_cost("kv", n, k, 2, mem_latency=8, heads=heads, **machine)
    one = perf.pass_cost("kv", n, k, 2, mem_latency=8,
                         **dict(machine, pes=per, mem_bits=mem_bits // heads))
    assert many.macs == heads * one.macs and many.bits == heads * one.bits
    # Same walk; the activations of every head come before the first step.
    assert many.cycles >= one.cycles
    with pytest.raises(ValueError, match=r"the heads of a pass \(5\) must divide the PEs"):
        perf.pass_cost("kv", n, k, 2, mem_latency=8, heads=5, **machine)


@pytest.mark.parametrize("n,pes,slots,want", [
    (1, 4, 3, [1]), (12, 4, 3, [3]), (13, 4, 3, [3, 1]), (30, 4, 3, [3, 3, 2]), (7, 1, 5, [5, 2])])
def test_tiles(n, pes, slots, want):
    assert perf.tiles(n, pes, slots) == want


MACHINE = {"pes": 16, "slots": 10, "lanes": 1, "mem_bits": 32, "result_latency": 15}


def test_machine_reads_the_configuration():
    config = SpeqConfig(rows=2, cols=3, pe_stages=4, draft_lanes=2, mem_bits=32)
    assert perf.machine(config) == {"pes": 6, "slots": 5, "lanes": 2, "mem_bits": 32,
                                    "result_latency": 9}
    assert perf.machine(SpeqConfig(pe_stages=10, draft_lanes=1)) == MACHINE


# The array is built for its latency and interleave, not elaborated
# (conftest.py frees it in the test's teardown).
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("stages", range(1, 11))
def test_machine_latency_is_the_arrays(stages):
    """`SpeqConfig.array_latency` and `SpeqConfig.interleave` are the
    generated array's; the cycle model's slots are the interleave, its
    result latency two more than the array's (the controller's rounding
    stage and result buffer), and the array's latency is its interleave plus
    the decoding stage, plus from 8 stages on the cycle the PE takes its
    accumulator after its step (the register after its unpacking)."""
    from hw.array import SpeqArray
    config = SpeqConfig(rows=1, cols=2, pe_stages=stages)
    array = SpeqArray(config)
    assert config.array_latency == array.latency == stages + 2
    assert config.acc_latency == (stages >= 8)
    assert config.interleave == array.interleave == \
        array.latency - perf.DECODE_STAGES - config.acc_latency
    assert perf.machine(config)["slots"] == array.interleave
    assert perf.machine(config)["result_latency"] == (perf.OPERAND_STAGES + array.latency
                                                   + perf.RESULT_STAGES)


@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("n,k", [(1, 4), (5, 40), (256, 256), (300, 1024)])
def test_draft_reads_a_quarter_of_verify(n, k, lanes):
    machine = {**MACHINE, "lanes": lanes}
    draft = perf.pass_cost("draft", n, k, 1, mem_latency=8, **machine)
    for t in (1, 8):
        verify = perf.pass_cost("verify", n, k, t, mem_latency=8, **machine)
        assert 4 * draft.bits == verify.bits
        assert verify.macs == t * draft.macs      # one MAC per weight and token
    assert draft.macs == lanes * draft.steps * MACHINE["pes"]


@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("mode,t", [("draft", 1), ("baseline", 1), ("verify", 1), ("verify", 8)])
@pytest.mark.parametrize("n,k", [(256, 256), (1024, 1024), (4096, 256)])
def test_large_passes_near_roofline(mode, t, n, k, lanes):
    # The default machine (16 PEs, B = 32) is memory-bound with any L.
    cost = perf.pass_cost(mode, n, k, t, mem_latency=8, **{**MACHINE, "lanes": lanes})
    bound = perf.roofline(mode, n, k, t, pes=16, lanes=lanes, mem_bits=32)
    assert bound == n * k * (4 if mode == "draft" else 16) / 32
    assert bound <= cost.cycles <= bound / 0.9


def test_lanes_decide_the_draft_pass_when_it_is_compute_bound():
    # One PE behind a 32-bit port: a draft pass gets 8 draft weights a cycle
    # and takes L of them per cycle, so its cycles fall with L until L = 4
    # (docs/array.md, sizing rule); verify and baseline passes do not change.
    # Whole tiles: a part-filled last tile still takes `slots` cycles a round.
    one = {**MACHINE, "pes": 1, "mem_bits": 16}
    n = 7 * one["slots"]
    cycles = {lanes: perf.pass_cost("draft", n, 1024, 1, mem_latency=8,
                                    **{**one, "lanes": lanes}).cycles for lanes in (1, 2, 4)}
    bounds = {lanes: perf.roofline("draft", n, 1024, 1, pes=1, lanes=lanes, mem_bits=16)
              for lanes in (1, 2, 4)}
    assert bounds == {1: n * 1024, 2: n * 512, 4: n * 256}
    assert cycles[1] > cycles[2] > cycles[4] >= bounds[4]
    # Compute-bound: within 5% of the roofline. (L = 4 balances the port and
    # the PE, and two buffer halves then hide only part of the latency.)
    for lanes in (1, 2):
        assert bounds[lanes] <= cycles[lanes] <= bounds[lanes] / 0.95
    verify = {perf.pass_cost("verify", n, 1024, 2, mem_latency=8, **{**one, "lanes": lanes})
              for lanes in (1, 2, 4)}
    assert len(verify) == 1


@pytest.mark.parametrize("lanes", [0, 3, 8])
def test_bad_lanes(lanes):
    with pytest.raises(ValueError, match=f"lanes must be one of 1, 2, 4, not {lanes}"):
        perf.pass_cost("draft", 4, 4, 1, mem_latency=1, **{**MACHINE, "lanes": lanes})
    with pytest.raises(ValueError, match=f"lanes must be one of 1, 2, 4, not {lanes}"):
        perf.roofline("draft", 4, 4, 1, pes=1, lanes=lanes, mem_bits=16)


@pytest.mark.parametrize("lanes", [1, 4])
@pytest.mark.parametrize("n,k,t", [(9, 32, 3), (300, 256, 8), (32, 1024, 1)])
def test_kv_passes_read_the_cache_planes(n, k, t, lanes):
    # A kv pass reads what a baseline pass reads (two byte planes instead of
    # one FP16 image) and costs the same; a kv_draft pass reads half of it
    # and walks the same steps.
    machine = {**MACHINE, "lanes": lanes}
    base = perf.pass_cost("baseline", n, k, t, mem_latency=8, **machine)
    kv = perf.pass_cost("kv", n, k, t, mem_latency=8, **machine)
    half = perf.pass_cost("kv_draft", n, k, t, mem_latency=8, **machine)
    assert kv == base
    assert 2 * half.bits == kv.bits and (half.macs, half.steps) == (kv.macs, kv.steps)
    assert half.cycles <= kv.cycles
    assert perf.roofline("kv_draft", n, k, t, pes=16, lanes=lanes, mem_bits=32) == \
        max(n * k * 8 / 32, n * k * t / 16)


@pytest.mark.parametrize("t", [1, 3, 8])
def test_a_baseline_pass_over_t_tokens_walks_a_verify_pass(t):
    # Attention runs as baseline passes over T queries (docs/projection.md):
    # the same schedule, cycles, bits and MACs as a verify pass over T tokens.
    from golden.schedule import schedule
    base = perf.pass_cost("baseline", 100, 64, t, mem_latency=8, **MACHINE)
    verify = perf.pass_cost("verify", 100, 64, t, mem_latency=8, **MACHINE)
    assert base == verify and base.macs == 100 * 64 * t + (112 - 100) * 64 * t
    a, b = (schedule(mode, 100, 64, t, MACHINE["pes"], MACHINE["slots"]) for mode in
            ("baseline", "verify"))
    for field in ("first", "last", "slot", "token", "k", "rows"):
        assert (getattr(a, field) == getattr(b, field)).all(), field


def test_latency_and_slowdowns_add_cycles():
    base = perf.pass_cost("verify", 100, 64, 3, mem_latency=1, **MACHINE)
    later = perf.pass_cost("verify", 100, 64, 3, mem_latency=40, **MACHINE)
    assert later.cycles > base.cycles and later.bits == base.bits
    narrow = perf.pass_cost("draft", 100, 64, 1, mem_latency=1, **{**MACHINE, "mem_bits": 16})
    wide = perf.pass_cost("draft", 100, 64, 1, mem_latency=1, **{**MACHINE, "mem_bits": 256})
    assert narrow.cycles > wide.cycles


@pytest.mark.parametrize("args,message", [
    (("fast", 4, 4, 1), "mode must be one of"),
    (("draft", 0, 4, 1), "N must be at least 1, not 0"),
    (("draft", 4, 6, 1), "K must be a positive multiple of 4, not 6"),
    (("draft", 4, 8, 2), "T must be 1 for a draft pass, not 2"),
    (("verify", 4, 8, 0), "T must be at least 1, not 0"),
    (("baseline", 4, 8, 0), "T must be at least 1, not 0"),
    (("kv_draft", 4, 8, 0), "T must be at least 1, not 0"),
])
def test_bad_pass_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        perf.pass_cost(*args, mem_latency=1, **MACHINE)


@pytest.mark.parametrize("kwargs,message", [
    ({"mem_bits": 40}, "mem_bits must be a multiple of 16, not 40"),
    ({"kmax": 10}, "kmax must be a multiple of 4, not 10"),
    ({"kmax": 2}, "kmax must be between 4 and 16384, not 2"),
    ({"draft_lanes": 3}, "draft_lanes must be one of 1, 2, 4, not 3"),
    ({"draft_lanes": 8}, "draft_lanes must be between 1 and 4, not 8"),
])
def test_config_checks(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpeqConfig(**kwargs)


# The refused accelerator exists (its constructor raised), unelaborated.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_accel_needs_mem_bits_to_divide_the_draft_row():
    message = r"mem_bits must divide 16 x rows x cols = 48 .*not 32"
    with pytest.raises(ValueError, match=message):
        SpeqAccel.check(SpeqConfig(rows=1, cols=3, mem_bits=32))
    with pytest.raises(ValueError, match=message):
        SpeqAccel(SpeqConfig(rows=1, cols=3, mem_bits=32))
    with pytest.raises(ValueError, match="the KV write path needs mem_bits a multiple of 32"):
        SpeqAccel.check(SpeqConfig(rows=1, cols=3, mem_bits=48), kv_write=True)


def test_pass_images_are_the_planes_a_pass_reads():
    rng = np.random.default_rng(5)
    w = (rng.standard_normal((9, 8)) * 0.05).astype(np.float16)
    enc = speq16.encode(w)
    args = (4, 3, 32)
    same = lambda a, b: len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert same(perf.pass_images("baseline", w, None, *args), [perf.baseline_image(w, *args)])
    assert same(perf.pass_images("draft", None, enc, *args), [perf.draft_image(enc, *args)])
    assert same(perf.pass_images("verify", None, enc, *args),
                [perf.draft_image(enc, *args), perf.residual_image(enc, *args)])
    assert same(perf.pass_images("kv", w, None, *args), perf.kv_images(w, *args))
    assert same(perf.pass_images("kv_draft", speq16.kv_draft(w), None, *args),
                perf.kv_images(w, *args)[:1])
