"""SPEQ-16 format: lossless encoding, the two planes, the tables, bad input."""

import time

import numpy as np
import pytest

from golden import speq16


def all_finite_fp16():
    """Every finite FP16 bit pattern (63,488 of them) as a (248, 256) tensor."""
    bits = np.arange(1 << 16, dtype=np.uint16)
    bits = bits[(bits & 0x7C00) != 0x7C00]
    assert bits.size == 63488
    return bits.view(np.float16).reshape(248, 256)


def gaussian(shape, sigma=0.02, outliers=0.001, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape) * sigma
    mask = rng.random(shape) < outliers
    w[mask] *= 40
    return w.astype(np.float16)


def assert_lossless(w):
    enc = speq16.encode(w)
    assert enc.words.dtype == np.uint16 and enc.words.shape == w.shape
    out = speq16.decode(enc)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out.view(np.uint16), w.view(np.uint16))
    return enc


def test_every_finite_fp16_pattern_is_lossless():
    enc = assert_lossless(all_finite_fp16())
    # All 124 classes are present, so the ranges must tile 0..123 exactly.
    ends = list(enc.base[1:].astype(int)) + [speq16.Q_MAX + 1]
    assert enc.base[0] == 0
    assert all(0 < e - b <= 16 for b, e in zip(enc.base.astype(int), ends))


@pytest.mark.parametrize("shape,seed", [((1, 4), 1), ((7, 12), 2), ((64, 256), 3), ((384, 1536), 4)])
def test_random_tensors_are_lossless(shape, seed):
    rng = np.random.default_rng(seed)
    # Random bit patterns cover every class, sign and low fraction.
    bits = rng.integers(0, 1 << 16, size=shape, dtype=np.uint16)
    bits = np.where((bits & 0x7C00) == 0x7C00, bits & 0x83FF, bits).astype(np.uint16)
    assert_lossless(bits.view(np.float16))
    assert_lossless(gaussian(shape, seed=seed))


@pytest.mark.parametrize("values", [[0.0], [-0.0, 0.0], [6e-8], [65504.0, -65504.0], [1.0], [0.02, -0.5]])
def test_degenerate_tensors(values):
    w = np.resize(np.array(values, dtype=np.float16), (3, 8))
    enc = assert_lossless(w)
    assert np.all(np.diff(enc.base.astype(int)) > 0)


def test_tables_have_contract_types_and_order():
    enc = speq16.encode(gaussian((128, 512)))
    assert enc.base.dtype == np.uint8 and enc.base.shape == (8,)
    assert enc.draft_exp.dtype == np.int16 and enc.draft_exp.shape == (8,)
    assert enc.draft_half.dtype == bool and enc.draft_zero.dtype == bool
    assert np.all(np.diff(enc.base.astype(int)) > 0)
    # Each weight's class lies in its code's range, which ends before the next base.
    q = speq16.classes(speq16.decode(enc).view(np.uint16))
    code = (enc.words >> 12) & 7
    delta = (enc.words >> 8) & 0xF
    np.testing.assert_array_equal(enc.base[code].astype(int) + delta, q)
    nxt = np.append(enc.base[1:].astype(int), 1 << 8)
    assert np.all(q < nxt[code])
    assert np.all((enc.draft_exp >= speq16.DRAFT_EXP_MIN) & (enc.draft_exp <= speq16.DRAFT_EXP_MAX))


def test_plane_layout_matches_the_contract():
    rng = np.random.default_rng(5)
    words = rng.integers(0, 1 << 16, size=(3, 16), dtype=np.uint16)
    draft, residual = speq16.pack_planes(words)
    assert draft.shape == (3, 4) and residual.shape == (3, 12)
    for n in range(3):
        for g in range(4):
            nib = sum(int(words[n, 4 * g + j] >> 12) << (4 * j) for j in range(4))
            assert draft[n, g] == nib
            group = sum(int(residual[n, 3 * g + i]) << (16 * i) for i in range(3))
            for j in range(4):
                assert (group >> (12 * j)) & 0xFFF == words[n, 4 * g + j] & 0xFFF
    np.testing.assert_array_equal(speq16.unpack_planes(draft, residual), words)


def test_encoded_planes_are_a_quarter_and_three_quarters():
    enc = speq16.encode(gaussian((16, 64)))
    assert enc.draft_plane.dtype == np.uint16 and enc.draft_plane.shape == (16, 16)
    assert enc.residual_plane.dtype == np.uint16 and enc.residual_plane.shape == (16, 48)
    np.testing.assert_array_equal(speq16.unpack_planes(enc.draft_plane, enc.residual_plane), enc.words)


def test_draft_weights_follow_the_tables():
    w = gaussian((64, 256))
    enc = speq16.encode(w)
    d = speq16.draft(enc)
    assert d.dtype == np.float32 and d.shape == w.shape
    code = (enc.words >> 12) & 7
    sign = np.where(enc.words >> 15, -1.0, 1.0)
    value = np.where(enc.draft_zero, 0.0,
                     (1.0 + 0.5 * enc.draft_half) * 2.0 ** enc.draft_exp.astype(float))
    np.testing.assert_array_equal(d, (sign * value[code]).astype(np.float32))
    # The draft fields of the draft plane carry the same values.
    s, x, h, z = speq16.draft_fields(enc.draft_plane, enc)
    rebuilt = np.where(z, 0.0, np.where(s, -1.0, 1.0) * (1.0 + 0.5 * h) * 2.0 ** x.astype(float))
    np.testing.assert_array_equal(rebuilt.reshape(w.shape), d)


def draft_error(w, enc):
    return float(((speq16.draft(enc).astype(np.float64) - w.astype(np.float64)) ** 2).sum())


def test_draft_values_are_the_best_for_their_ranges():
    # Moving any code's draft value to a neighbouring candidate must not help.
    w = gaussian((64, 512), seed=7)
    enc = speq16.encode(w)
    best = draft_error(w, enc)
    for d in range(8):
        if enc.draft_zero[d]:
            continue
        for dx, half in [(-1, False), (-1, True), (0, not enc.draft_half[d]), (1, False), (1, True)]:
            exp = enc.draft_exp.copy()
            hal = enc.draft_half.copy()
            exp[d] += dx
            hal[d] = half
            other = speq16.Encoded(enc.words, enc.base, exp, hal, enc.draft_zero)
            assert draft_error(w, other) >= best


def test_remap_beats_random_valid_tables():
    # The dynamic program is optimal: no other valid set of ranges (each with
    # its best draft value) has a smaller error.
    w = gaussian((64, 512), seed=8)
    enc = speq16.encode(w)
    best = draft_error(w, enc)
    q = speq16.classes(w.view(np.uint16))
    lo, hi = int(q.min()), int(q.max())
    rng = np.random.default_rng(0)
    tried = 0
    while tried < 200:
        cuts = np.sort(rng.choice(np.arange(lo + 1, hi + 1), size=7, replace=False))
        bases = np.concatenate([[lo], cuts])
        if np.any(np.diff(np.append(bases, hi + 1)) > 16):
            continue
        tried += 1
        err = 0.0
        for d in range(8):
            end = bases[d + 1] if d < 7 else hi + 1
            mag = np.abs(w.astype(np.float64))[(q >= bases[d]) & (q < end)]
            if mag.size == 0:
                continue
            zero, x, half = speq16._nearest_draft(mag.mean(), True)
            v = 0.0 if zero else (1.5 if half else 1.0) * 2.0 ** x
            err += float(((mag - v) ** 2).sum())
        assert err >= best * (1 - 1e-12)


def test_power_of_two_only_drafts():
    w = gaussian((64, 256))
    enc = speq16.encode(w, allow_half=False)
    assert not enc.draft_half.any()
    np.testing.assert_array_equal(speq16.decode(enc).view(np.uint16), w.view(np.uint16))
    assert draft_error(w, enc) > draft_error(w, speq16.encode(w))


def test_encoding_a_large_tensor_takes_seconds():
    w = gaussian((4096, 4096))
    start = time.perf_counter()
    enc = speq16.encode(w)
    elapsed = time.perf_counter() - start
    assert elapsed < 20, f"encoding 4096x4096 took {elapsed:.1f} s"
    np.testing.assert_array_equal(enc.words[:8] >> 15, w[:8].view(np.uint16) >> 15)


@pytest.mark.parametrize("bad,where", [(np.inf, (2, 5)), (-np.inf, (0, 0)), (np.nan, (3, 7))])
def test_nonfinite_weights_are_rejected_with_their_index(bad, where):
    w = np.ones((4, 8), dtype=np.float16)
    w[3, 7] = np.nan  # a later non-finite weight: the first one is named
    w[where] = bad
    with pytest.raises(ValueError, match=rf"weights\[{where[0]}, {where[1]}\]"):
        speq16.encode(w)


@pytest.mark.parametrize("w,message", [
    (np.ones((2, 6), dtype=np.float16), "multiple of 4, not 6"),
    (np.ones((2, 8), dtype=np.float32), "dtype float16, not float32"),
    (np.ones((8,), dtype=np.float16), r"rank 2 \(N, K\), not shape \(8,\)"),
    (np.ones((2, 2, 4), dtype=np.float16), "rank 2"),
    ([[1.0, 2.0, 3.0, 4.0]], "numpy.ndarray"),
])
def test_bad_weights_are_rejected(w, message):
    with pytest.raises(ValueError, match=message):
        speq16.encode(w)


def test_words_outside_the_table_decode_to_nan():
    base = np.array([0, 16, 32, 48, 64, 80, 96, 112], dtype=np.uint8)
    words = np.array([0x7F00, 0x7B00, 0xFC12, 0x0000], dtype=np.uint16)
    # code 7: 112 + 15 = 127 > 123; 112 + 11 = 123 (the largest finite class).
    np.testing.assert_array_equal(speq16.invalid_words(words, base), [True, False, True, False])
    out = speq16.decode_words(words, base)
    assert out[0] == speq16.INVALID_WORD_VALUE and out[2] == speq16.INVALID_WORD_VALUE
    assert out[1] == 0x7B00 and out[3] == 0


# -- the KV cache's byte planes and the draft's value (SPEC section 2a) ----------

def every_fp16():
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)


def test_kv_planes_split_every_value_and_join_exactly():
    u = every_fp16()
    high, low = speq16.kv_planes(u)
    assert high.dtype == low.dtype == np.uint8
    bits = u.view(np.uint16).astype(np.int64)
    assert (high.astype(np.int64) * 256 + low == bits).all()
    assert (speq16.kv_join(high, low).view(np.uint16) == u.view(np.uint16)).all()


def test_kv_draft_is_the_middle_of_the_high_bytes_interval():
    u = every_fp16()
    d = speq16.kv_draft(u)
    assert d.dtype == np.float16 and d.shape == u.shape
    finite = np.isfinite(u)
    assert finite.sum() == 63488
    # Same sign, exponent field and fraction bits 9..8: the high byte is read.
    assert (d.view(np.uint16) >> 8 == u.view(np.uint16) >> 8).all()
    # Finite: the value lies within half an interval (128 units of the last
    # place) of u, in the middle of the 256 values that share its high byte.
    uf, df = u[finite].astype(np.float64), d[finite].astype(np.float64)
    exp = (u[finite].view(np.uint16) >> 10) & 31
    ulp = np.ldexp(1.0, np.maximum(exp.astype(np.int64), 1) - 25)
    assert (np.abs(df - uf) <= 128 * ulp).all()
    assert (np.abs(df - uf) == 128 * ulp).sum() == finite.sum() // 256   # low byte 0x00 only
    # Exponent 31: inf stays inf; NaN stays NaN when fraction bits 9..8 hold
    # payload, and reads as inf when only the low byte does.
    special = u[~finite].view(np.uint16)
    dd = d[~finite]
    assert (np.isinf(dd) == ((special & 0x300) == 0)).all()
    assert (np.isnan(dd) == ((special & 0x300) != 0)).all()
    assert (np.signbit(dd) == (special >> 15).astype(bool)).all()


def test_kv_draft_of_a_few_values():
    u = np.array([1.0, -2.5, 0.0, -0.0, np.inf, -np.inf], dtype=np.float16)
    assert speq16.kv_draft(u).view(np.uint16).tolist() == \
        [0x3C80, 0xC180, 0x0080, 0x8080, 0x7C00, 0xFC00]
    assert speq16.kv_draft(u.reshape(2, 3)).shape == (2, 3)
    assert speq16.kv_draft(np.float16(1.0)).view(np.uint16) == 0x3C80
    assert (speq16.kv_draft_high(np.array([0x3C, 0x7E], np.uint8)).view(np.uint16)
            .tolist() == [0x3C80, 0x7E00])


@pytest.mark.parametrize("bad", [np.ones(3, np.float32), [1.0, 2.0]])
def test_kv_draft_rejects_what_is_not_float16(bad):
    with pytest.raises(ValueError, match="float16"):
        speq16.kv_draft(bad)
