"""The arithmetic contract: verify GEMM against a sequential float32 loop,
draft steps against an exact rational reference."""

from fractions import Fraction
import math

import numpy as np
import pytest

from golden import arith, speq16


SPECIALS16 = np.array([0.0, -0.0, 2.0**-24, -(2.0**-24), 2.0**-14 - 2.0**-24, 2.0**-14,
                       1.0, -1.5, 65504.0, -65504.0, np.inf, -np.inf, np.nan, 3.0e-5, 0.1],
                      dtype=np.float16)


def same_bits(a, b):
    """Bit-identical float32 arrays, where any NaN may stand for any NaN."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    nan = np.isnan(a)
    np.testing.assert_array_equal(nan, np.isnan(b))
    np.testing.assert_array_equal(a.view(np.uint32)[~nan], b.view(np.uint32)[~nan])


def sequential_verify(x, w):
    """The contract written as the plainest scalar loop."""
    y = np.zeros((x.shape[0], w.shape[0]), dtype=np.float32)
    with np.errstate(all="ignore"):
        for t in range(x.shape[0]):
            for n in range(w.shape[0]):
                acc = np.float32(0.0)
                for k in range(x.shape[1]):
                    acc = np.float32(acc + np.float32(x[t, k]) * np.float32(w[n, k]))
                y[t, n] = acc
    return y


def test_verify_gemm_matches_a_sequential_loop_on_special_values():
    rng = np.random.default_rng(1)
    x = rng.choice(SPECIALS16, size=(6, 16))
    w = rng.choice(SPECIALS16, size=(9, 16))
    x[0] = 1.0                      # finite rows too, so not every result is NaN
    w[0, :SPECIALS16.size] = SPECIALS16   # every special value meets every other
    w[1] = np.where(np.isfinite(w[1]), w[1], 0.5)
    same_bits(arith.verify_gemm(x, w), sequential_verify(x, w))


def test_verify_gemm_matches_a_sequential_loop_on_random_values():
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 1 << 16, size=(5, 64), dtype=np.uint16)
    x = np.where((bits & 0x7C00) == 0x7C00, bits & 0x03FF, bits).astype(np.uint16).view(np.float16)
    w = (rng.standard_normal((7, 64)) * 0.05).astype(np.float16)
    same_bits(arith.verify_gemm(x, w), sequential_verify(x, w))


def test_verify_gemm_matches_a_sequential_loop_both_ways():
    # Few chains (T x N) run as running sums, many step by step: both are
    # the contract's loop, with -0 products first in some chains.
    rng = np.random.default_rng(3)
    for t, n in ((1, 3), (2, 300)):
        assert (t * n > arith._CHAIN_ACCUMULATE) == (n == 300)
        x = rng.standard_normal((t, 32)).astype(np.float16)
        x[:, :3] = -0.0
        w = (rng.standard_normal((n, 32)) * 0.05).astype(np.float16)
        w[: n // 2, 5:] = 0
        x[-1], w[0] = -0.0, np.abs(w[0])        # every product -0: the sum is +0
        y = arith.verify_gemm(x, w)
        assert y.view(np.uint32)[-1, 0] == 0
        same_bits(y, sequential_verify(x, w))


def test_draft_gemm_takes_the_callers_draft_weights():
    rng = np.random.default_rng(4)
    enc = speq16.encode((rng.standard_normal((6, 16)) * 0.05).astype(np.float16))
    x = rng.standard_normal((1, 16)).astype(np.float16)
    for lanes in (1, 4):
        same_bits(arith.draft_gemm(x, enc, lanes=lanes, draft_weights=speq16.draft(enc)),
                  arith.draft_gemm(x, enc, lanes=lanes))
    with pytest.raises(ValueError, match="draft_weights must be float32"):
        arith.draft_gemm(x, enc, draft_weights=speq16.draft(enc)[:3])


def test_verify_exact_cancellation_is_positive_zero():
    x = np.array([[3.0, 3.0, -0.0, 0.0]], dtype=np.float16)
    w = np.array([[2.0, -2.0, 1.0, -1.0]], dtype=np.float16)
    y = arith.verify_gemm(x, w)
    assert y.view(np.uint32)[0, 0] == 0  # +0.0


def test_verify_order_is_ascending_k():
    # 2**24 + 1 - 2**24 loses the 1 in ascending order; another order would not.
    x = np.array([[4096.0, 1.0, -4096.0, 0.0]], dtype=np.float16)
    w = np.array([[4096.0, 1.0, 4096.0, 0.0]], dtype=np.float16)
    assert arith.verify_gemm(x, w)[0, 0] == 0.0


def test_verify_reaches_infinity_and_nan():
    x = np.array([[65504.0, 65504.0, 0, 0], [np.inf, 0, 0, 0], [np.inf, -np.inf, 0, 0]], dtype=np.float16)
    w = np.array([[65504.0, 65504.0, 0, 0], [0.0, 1, 1, 1]], dtype=np.float16)
    y = arith.verify_gemm(x, w)
    assert y[0, 0] == np.float32(65504.0 * 65504.0 * 2)
    assert np.isnan(y[1, 1])        # inf * 0
    assert y[1, 0] == np.inf
    assert np.isnan(y[2, 0])        # inf - inf


# --- draft -----------------------------------------------------------------

def round_to_f32(n, e):
    """Round the exact value n * 2**e (Python ints) to binary32, RNE, as float."""
    if n == 0:
        return 0.0
    sign = -1.0 if n < 0 else 1.0
    n = abs(n)
    binade = e + n.bit_length() - 1
    quantum = max(binade - 23, -149)
    if e < quantum:
        s = quantum - e
        kept, rem, half = n >> s, n & ((1 << s) - 1), 1 << (s - 1)
        if rem > half or (rem == half and kept & 1):
            kept += 1
        n, e = kept, quantum
    if n and e + n.bit_length() - 1 > 127:
        return sign * math.inf
    return sign * math.ldexp(n, e)


def reference_draft_step(acc, terms, F):
    """The draft step of SPEC section 3 in rationals, one scalar at a time."""
    ops = [float(acc)] + [float(t) for t in terms]
    if not all(math.isfinite(v) for v in ops):
        return np.float32(sum(ops))
    nonzero = [Fraction(v) for v in ops if v != 0.0]
    if not nonzero:
        return np.float32(0.0)
    E = max(math.floor(math.log2(abs(v))) for v in nonzero)
    # log2 of a Fraction is rounded: correct it to the exact binade.
    while max(abs(v) for v in nonzero) >= Fraction(2) ** (E + 1):
        E += 1
    while max(abs(v) for v in nonzero) < Fraction(2) ** E:
        E -= 1
    total = sum(math.floor(v * Fraction(2) ** (F - E)) for v in nonzero)
    return np.float32(round_to_f32(total, E - F))


def random_operands(rng, size):
    """Accumulators across the float32 range and exact draft terms."""
    acc = rng.standard_normal(size) * 2.0 ** rng.integers(-150, 120, size)
    acc = acc.astype(np.float32)
    a = rng.choice(np.concatenate([SPECIALS16[np.isfinite(SPECIALS16)],
                                   (rng.standard_normal(64)).astype(np.float16)]), size=(size, 4))
    x = rng.integers(speq16.DRAFT_EXP_MIN, speq16.DRAFT_EXP_MAX + 1, size=(size, 4))
    dw = np.where(rng.random((size, 4)) < 0.5, 1.0, 1.5) * np.ldexp(1.0, x)
    dw = np.where(rng.random((size, 4)) < 0.1, 0.0, dw) * rng.choice([-1.0, 1.0], (size, 4))
    terms = a.astype(np.float64) * dw
    # Near-cancelling cases: the accumulator is minus one of the terms.
    pick = rng.random(size) < 0.1
    acc[pick] = -terms[pick, 0]
    return acc, terms


@pytest.mark.parametrize("F", [2, 11, 24, 30, 48])
def test_draft_step_matches_the_rational_reference(F):
    rng = np.random.default_rng(F)
    acc, terms = random_operands(rng, 3000)
    got = arith.draft_step(acc, terms, F)
    want = np.array([reference_draft_step(a, t, F) for a, t in zip(acc, terms)], dtype=np.float32)
    same_bits(got, want)


def test_draft_step_special_cases():
    inf, nan = np.inf, np.nan
    acc = np.array([0.0, -0.0, 1.0, inf, 1.0, 1.0, 3.0e38, 2.0**-149], dtype=np.float32)
    terms = np.array([
        [0.0, -0.0, 0.0, 0.0],            # all zero -> +0
        [-0.0, -0.0, 0.0, 0.0],           # -0 accumulator, zeros -> +0
        [-1.0, 0.0, 0.0, 0.0],            # exact cancellation -> +0
        [1.0, 0.0, 0.0, 0.0],             # inf stays
        [inf, -inf, 0.0, 0.0],            # inf - inf -> NaN
        [nan, 0.0, 0.0, 0.0],             # NaN propagates
        [3.0e38, 0.0, 0.0, 0.0],          # overflow -> inf
        [0.0, 0.0, 0.0, 0.0],             # subnormal accumulator is exact
    ])
    got = arith.draft_step(acc, terms, 30)
    assert got.view(np.uint32)[0] == 0 and got.view(np.uint32)[1] == 0 and got.view(np.uint32)[2] == 0
    assert got[3] == inf and np.isnan(got[4]) and np.isnan(got[5]) and got[6] == inf
    assert got[7] == np.float32(2.0**-149)


def test_draft_step_truncates_small_operands_by_floor():
    # With F = 2 and E = 0 (operand 1.0): 2**-3 -> floor(0.5) = 0, -2**-3 -> -1.
    got = arith.draft_step(np.float32([1.0, 1.0]), np.array([[2.0**-3, 0, 0, 0], [-(2.0**-3), 0, 0, 0]]), 2)
    np.testing.assert_array_equal(got, np.float32([1.0, 0.75]))


@pytest.mark.parametrize("specials", [False, True])
@pytest.mark.parametrize("F", [2, 23, 30, 48])
def test_draft_gemm_equals_draft_steps_on_large_random_input(F, specials):
    # draft_gemm precomputes the terms; draft_step is the step as written from
    # the contract. Wide magnitudes, subnormal activations, zero codes, inf/NaN.
    rng = np.random.default_rng(F)
    w = (rng.standard_normal((37, 64)) * np.exp2(rng.integers(-12, 3, (37, 64)))).astype(np.float16)
    w[rng.random(w.shape) < 0.05] = 0
    x = (rng.standard_normal((5, 64)) * np.exp2(rng.integers(-20, 8, (5, 64)))).astype(np.float16)
    if specials:
        x[1, 7], x[2, 9], x[3, 11] = np.inf, -np.inf, np.nan
    enc = speq16.encode(w)
    dw = speq16.draft(enc)
    want = np.zeros((5, 37), dtype=np.float32)
    for g in range(16):
        sl = slice(4 * g, 4 * g + 4)
        want = arith.draft_step(want, arith.draft_terms(x[:, None, sl], dw[None, :, sl]), F)
    same_bits(arith.draft_gemm(x, enc, F), want)


@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_draft_gemm_is_a_chain_of_rational_steps_of_L_terms(lanes):
    # The steps of L terms along K, each by the rational reference (L >= 2)
    # or by IEEE float32 addition (L = 1); infinities and zero codes included.
    rng = np.random.default_rng(10 + lanes)
    w = (rng.standard_normal((4, 16)) * 0.05).astype(np.float16)
    x = (rng.standard_normal((2, 16)) * np.exp2(rng.integers(-16, 6, (2, 16)))).astype(np.float16)
    x[1, 6] = -np.inf                 # -inf times a draft value: -inf, or NaN on a zero code
    enc = speq16.encode(w)
    dw = speq16.draft(enc).astype(np.float64)
    want = np.zeros((2, 4), dtype=np.float32)
    for t in range(2):
        for n in range(4):
            acc = np.float32(0.0)
            for s in range(16 // lanes):
                cols = slice(lanes * s, lanes * s + lanes)
                with np.errstate(all="ignore"):
                    terms = x[t, cols].astype(np.float64) * dw[n, cols]
                    acc = (np.float32(acc + np.float32(terms[0])) if lanes == 1
                           else reference_draft_step(acc, terms, 30))
            want[t, n] = acc
    same_bits(arith.draft_gemm(x, enc, 30, lanes=lanes), want)


def test_one_lane_draft_is_a_verify_pass_over_the_draft_weights():
    # SPEC section 3: with L = 1 the draft value takes the weight's place.
    rng = np.random.default_rng(5)
    w = (rng.standard_normal((9, 32)) * 0.05).astype(np.float16)
    x = rng.standard_normal((3, 32)).astype(np.float16)
    enc = speq16.encode(w)
    dw = speq16.draft(enc)
    # Every draft value of this tensor is an FP16 value, so the verify GEMM
    # takes it as a weight.
    assert (dw.astype(np.float16).astype(np.float32) == dw).all()
    same_bits(arith.draft_gemm(x, enc, lanes=1), arith.verify_gemm(x, dw.astype(np.float16)))
    same_bits(arith.draft_gemm(x, enc, lanes=1), sequential_verify(x, dw))


@pytest.mark.parametrize("lanes", [2, 4])
@pytest.mark.parametrize("F", [23, 48])
def test_draft_gemm_of_L_lanes_equals_draft_steps_with_specials(lanes, F):
    rng = np.random.default_rng(F + lanes)
    w = (rng.standard_normal((11, 32)) * np.exp2(rng.integers(-12, 3, (11, 32)))).astype(np.float16)
    x = (rng.standard_normal((3, 32)) * np.exp2(rng.integers(-20, 8, (3, 32)))).astype(np.float16)
    x[1, 7], x[2, 9] = np.inf, np.nan
    enc = speq16.encode(w)
    dw = speq16.draft(enc)
    want = np.zeros((3, 11), dtype=np.float32)
    for s in range(32 // lanes):
        cols = slice(lanes * s, lanes * s + lanes)
        want = arith.draft_step(want, arith.draft_terms(x[:, None, cols], dw[None, :, cols]), F)
    same_bits(arith.draft_gemm(x, enc, F, lanes=lanes), want)


def test_draft_step_of_one_term_is_ieee():
    acc = np.float32([1.0, 2.0**24, -0.0, 3.0e38])
    terms = np.array([[2.0**-30], [1.0], [-0.0], [3.0e38]])
    got = arith.draft_step(acc, terms, 2)
    same_bits(got, np.float32([1.0, 2.0**24, -0.0, np.inf]))


@pytest.mark.parametrize("lanes", [0, 3, 8, "4"])
def test_draft_gemm_rejects_bad_lanes(lanes):
    enc = speq16.encode(np.ones((1, 4), dtype=np.float16))
    with pytest.raises(ValueError, match=f"lanes must be one of 1, 2, 4, not {lanes!r}"):
        arith.draft_gemm(np.ones((1, 4), dtype=np.float16), enc, lanes=lanes)


def test_draft_gemm_is_close_to_verify_on_gaussian_weights():
    # Not a contract check: a sanity bound on the draft's quality (SPEC: ~0.12).
    rng = np.random.default_rng(4)
    w = (rng.standard_normal((256, 1024)) * 0.02).astype(np.float16)
    x = rng.standard_normal((1, 1024)).astype(np.float16)
    enc = speq16.encode(w)
    y, yd = arith.verify_gemm(x, w), arith.draft_gemm(x, enc)
    rel = np.linalg.norm(yd - y) / np.linalg.norm(y)
    assert 0.05 < rel < 0.2


@pytest.mark.parametrize("F", [1, 49, 100])
def test_draft_gemm_rejects_bad_F(F):
    enc = speq16.encode(np.ones((1, 4), dtype=np.float16))
    with pytest.raises(ValueError, match=f"F must be between 2 and 48, not {F}"):
        arith.draft_gemm(np.ones((1, 4), dtype=np.float16), enc, F)


def test_gemms_reject_mismatched_activations():
    w = np.ones((2, 8), dtype=np.float16)
    with pytest.raises(ValueError, match="K = 4 but the weights have K = 8"):
        arith.verify_gemm(np.ones((1, 4), dtype=np.float16), w)
    with pytest.raises(ValueError, match="float16"):
        arith.draft_gemm(np.ones((1, 8), dtype=np.float32), speq16.encode(w))
