"""The arithmetic contract (SPEC section 3), golden model.

Verify (and the FP16 baseline): one MAC per step, ``acc = fl32(acc + a*w)``
in ascending ``k``, from ``acc = +0.0``. The product of two FP16 values is
exact in binary32, so this is NumPy float32 arithmetic in that order.

Draft with ``L`` lanes (``L`` = 1, 2 or 4 draft weights per step): the exact
terms ``a * dw`` are taken ``L`` at a time along ``k``. With ``L = 1`` a step
is the verify step with the draft value in the weight's place (IEEE); with
``L = 2`` or ``4`` it is a fused aligned sum of the accumulator and the ``L``
terms, rounded once.
"""

import numpy as np

from . import speq16


__all__ = ["verify_gemm", "verify_step", "draft_gemm", "draft_step", "draft_terms",
           "DRAFT_FRAC_BITS_RANGE", "DRAFT_LANES", "check_lanes"]


#: Allowed ``F``: every aligned operand and their sum stay below 2**53, so the
#: integers are exact in int64 and in float64 for the final rounding.
DRAFT_FRAC_BITS_RANGE = (2, 48)
#: The draft lane counts ``L`` of the contract: steps of ``L`` terms must tile
#: the four weights of a draft-plane word.
DRAFT_LANES = (1, 2, 4)


def check_lanes(lanes):
    """Raise `ValueError` unless ``lanes`` is one of `DRAFT_LANES`."""
    if lanes not in DRAFT_LANES or isinstance(lanes, bool):
        raise ValueError(f"lanes must be one of {', '.join(map(str, DRAFT_LANES))}, "
                         f"not {lanes!r}")


def _check_activations(x, k=None):
    if not isinstance(x, np.ndarray) or x.dtype != np.float16:
        raise ValueError(f"activations must be a numpy.ndarray of float16, not "
                         f"{getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim != 2:
        raise ValueError(f"activations must have rank 2 (T, K), not shape {x.shape}")
    if k is not None and x.shape[1] != k:
        raise ValueError(f"activations have K = {x.shape[1]} but the weights have K = {k}")


def verify_step(acc, a, w):
    """One verify MAC: ``fl32(acc + a * w)`` elementwise.

    Parameters
    ----------
    acc : numpy.ndarray of float32
    a, w : numpy.ndarray of float16 (broadcast against ``acc``)

    Returns
    -------
    numpy.ndarray of float32
    """
    with np.errstate(all="ignore"):
        # Exact product (FP16 x FP16 fits binary32), then one rounding.
        return np.asarray(acc, np.float32) + \
            np.asarray(a, np.float16).astype(np.float32) * np.asarray(w, np.float16).astype(np.float32)


def verify_gemm(x, w):
    """Verify-pass GEMM ``Y = X @ W.T`` with one IEEE binary32 MAC per step.

    Parameters
    ----------
    x : numpy.ndarray of float16, shape (T, K)
    w : numpy.ndarray of float16, shape (N, K)

    Returns
    -------
    numpy.ndarray of float32, shape (T, N)
        ``y[t, n]`` accumulated as ``acc = fl32(acc + x[t, k] * w[n, k])`` for
        ``k`` ascending from ``acc = +0.0``.
    """
    if not isinstance(w, np.ndarray) or w.dtype != np.float16 or w.ndim != 2:
        raise ValueError("weights must be a rank-2 numpy.ndarray of float16")
    _check_activations(x, w.shape[1])
    return _mac_chain(x, w.astype(np.float32))


#: Products a `_mac_chain` block holds at once (T x rows x K binary32), and
#: the most chains (T x N) it runs as running sums; more go step by step.
_CHAIN_BLOCK = 1 << 22
_CHAIN_ACCUMULATE = 384


def _mac_chain(x, wf):
    """``acc = fl32(acc + x[t, k] * wf[n, k])`` for ``k`` ascending from +0:
    `verify_step` unrolled over ``k``. Every product of an FP16 activation and
    a weight (FP16, or a draft value) is exact in binary32, so each step is
    one rounding of acc + product. ``np.add.accumulate`` in binary32 is that
    chain (a running sum, rounded at every step, in index order); it starts
    from the first product instead of +0 + it, which differs only where that
    product is -0 and the sum is still zero, and adding +0 at the end turns
    such a -0 into the +0 the chain gives (a chain from +0 never ends in -0:
    an exact cancellation rounds to +0)."""
    xf = x.astype(np.float32)                       # (T, K)
    t, k = xf.shape
    n = wf.shape[0]
    if t * n > _CHAIN_ACCUMULATE:
        # Wide: one step of every chain at a time is faster.
        xk, wk = xf.T.copy(), np.ascontiguousarray(wf.T)         # (K, T), (K, N)
        acc = np.zeros((t, n), dtype=np.float32)
        product = np.empty_like(acc)
        with np.errstate(all="ignore"):
            for i in range(k):
                np.multiply(xk[i, :, None], wk[i, None, :], out=product)
                np.add(acc, product, out=acc)
        return acc
    acc = np.empty((t, n), dtype=np.float32)
    rows = max(1, _CHAIN_BLOCK // max(1, t * k))
    with np.errstate(all="ignore"):
        for start in range(0, n, rows):
            products = xf[:, None, :] * wf[None, start:start + rows, :]    # (T, rows, K)
            np.add.accumulate(products, axis=2, out=products)
            acc[:, start:start + rows] = products[:, :, -1] + np.float32(0.0)
    return acc


def _binade(v):
    """``floor(log2(|v|))`` of non-zero finite float64 values (exact, via frexp)."""
    return np.frexp(v)[1].astype(np.int64) - 1


def _significand(v):
    """Integer ``M`` and exponent ``k`` with ``v = M * 2**k`` exactly, ``|M| < 2**53``."""
    m, e = np.frexp(v)
    return (m * 2.0**53).astype(np.int64), e.astype(np.int64) - 53


def draft_step(acc, terms, F=30):
    """One draft step over ``L = terms.shape[-1]`` terms, by the contract.

    Parameters
    ----------
    acc : numpy.ndarray of float32, shape S
        Accumulators.
    terms : numpy.ndarray, shape S + (L,)
        The exact products ``a * dw`` (float64 holds them exactly).
    F : int
        Draft fraction bits (unused when ``L = 1``).

    Returns
    -------
    numpy.ndarray of float32, shape S
        ``L = 1``: ``fl32(acc + t0)``, the IEEE verify step (a draft term is
        exact in binary32). ``L >= 2``: ``fl32(acc + t0 + ... + t_{L-1})``
        fused: let ``E`` be the largest binade among the non-zero operands;
        every operand becomes ``floor(x * 2**(F - E))``; the integers are
        summed exactly and ``sum * 2**(E - F)`` is rounded once to binary32.
        An exact zero sum gives ``+0.0``; ``inf``/``NaN`` operands give the
        IEEE sum.
    """
    terms = np.asarray(terms)
    if terms.shape[-1] == 1:
        with np.errstate(all="ignore"):
            return np.asarray(acc, np.float32) + terms[..., 0].astype(np.float32)
    ops = np.concatenate([np.asarray(acc, dtype=np.float64)[..., None],
                          np.asarray(terms, dtype=np.float64)], axis=-1)
    finite = np.isfinite(ops).all(axis=-1)
    live = finite[..., None] & (ops != 0.0)
    safe = np.where(live, ops, 1.0)
    big = np.where(live, _binade(safe), -(1 << 20)).max(axis=-1)
    big = np.where(live.any(axis=-1), big, 0)
    # floor(M * 2**(k + F - E)): k + F - E <= F - 52 < 0, so it is a right
    # shift, and NumPy's >> on signed integers floors. A shift of 63 or more
    # leaves 0 or -1, which is the floor as well.
    mant, exp = _significand(safe)
    shift = np.clip(big[..., None] - F - exp, 0, 63)
    aligned = np.where(live, mant >> shift, 0)
    total = aligned.sum(axis=-1)
    # |total| < 5 * 2**(F+1) <= 2**53: exact in float64, and so is the scaling;
    # the cast to float32 is then the single IEEE round-to-nearest-even.
    scaled = np.ldexp(total.astype(np.float64), big - F)
    with np.errstate(all="ignore"):
        result = scaled.astype(np.float32)
        ieee = ops.sum(axis=-1).astype(np.float32)  # only where an operand is inf/NaN
    return np.where(finite, result, ieee)


def draft_terms(a, dw):
    """The exact draft terms ``a * dw`` as float64 (``inf * 0`` is NaN)."""
    with np.errstate(all="ignore"):
        return np.asarray(a, np.float16).astype(np.float64) * np.asarray(dw, np.float64)


def _draft_chain_finite(terms, F):
    """The chain of draft steps over ``terms`` (S, T, N, L), all finite, while
    the accumulator stays finite: ``floor(v * 2**(F - E))`` is an exact float64
    scaling and floor, and the sum of L + 1 <= 5 such integers (< 2**53) is exact."""
    none = -(1 << 20)
    with np.errstate(all="ignore"):
        _, term_exp = np.frexp(terms)
        term_big = np.where(terms != 0.0, term_exp - 1, none).max(axis=-1)   # (G, T, N)
    acc = np.zeros(terms.shape[1:3], dtype=np.float32)
    for g in range(terms.shape[0]):
        _, acc_exp = np.frexp(acc)
        big = np.maximum(np.where(acc != 0.0, acc_exp - 1, none), term_big[g])
        big = np.where(big > none, big, 0)
        scale = F - big
        total = np.floor(np.ldexp(acc.astype(np.float64), scale))
        total += np.floor(np.ldexp(terms[g], scale[..., None])).sum(axis=-1)
        # + 0.0: an exact zero sum is +0, never -0.
        with np.errstate(over="ignore"):
            acc = np.ldexp(total + 0.0, -scale).astype(np.float32)
    return acc


def draft_gemm(x, enc, F=30, lanes=4, draft_weights=None):
    """Draft-pass GEMM with the SPEQ-16 draft weights of ``enc``.

    Parameters
    ----------
    x : numpy.ndarray of float16, shape (T, K)
    enc : golden.speq16.Encoded, weights of shape (N, K)
    F : int
        Draft fraction bits (SPEC section 3; default 30; unused when
        ``lanes`` is 1).
    lanes : {1, 2, 4}
        ``L``, the draft terms of one step (SPEC section 3; default 4).
    draft_weights : numpy.ndarray of float32, shape (N, K), optional
        ``speq16.draft(enc)``, when the caller keeps it (a model calling
        the same weights many times); computed from ``enc`` otherwise.

    Returns
    -------
    numpy.ndarray of float32, shape (T, N)
        One draft step (`draft_step`) per ``L`` consecutive weights along K,
        in ascending order, from ``acc = +0.0``. With ``L = 1`` that is the
        verify GEMM over the draft weights.

    Raises
    ------
    ValueError
        For bad activations, ``F`` outside `DRAFT_FRAC_BITS_RANGE` or
        ``lanes`` not in `DRAFT_LANES`.
    """
    n, k = enc.words.shape
    _check_activations(x, k)
    F = int(F)
    lo, hi = DRAFT_FRAC_BITS_RANGE
    if not lo <= F <= hi:
        raise ValueError(f"F must be between {lo} and {hi}, not {F}")
    check_lanes(lanes)
    if draft_weights is None:
        draft_weights = speq16.draft(enc)
    elif draft_weights.shape != (n, k) or draft_weights.dtype != np.float32:
        raise ValueError(f"draft_weights must be float32 {(n, k)}, not {draft_weights.dtype} "
                         f"{draft_weights.shape}")
    if lanes == 1:
        return _mac_chain(x, draft_weights)
    # The draft steps of `draft_step`, with everything that does not depend
    # on the accumulator (the exact terms, their integer significands and
    # binades) computed for all steps at once; the chain over the steps
    # then only aligns the accumulator and sums. Same arithmetic, step for
    # step (tests/test_arith.py checks it against chains of draft_step).
    t, steps = x.shape[0], k // lanes
    dw = draft_weights.astype(np.float64)            # (N, K), exact
    with np.errstate(all="ignore"):
        terms = x.astype(np.float64)[:, None, :] * dw[None, :, :]     # (T, N, K), exact
    terms = np.ascontiguousarray(terms.reshape(t, n, steps, lanes).transpose(2, 0, 1, 3))
    if np.isfinite(terms).all():
        acc = _draft_chain_finite(terms, F)
        if np.isfinite(acc).all():
            return acc
        # An accumulator overflowed: redo the chain with the IEEE cases.
    finite_terms = np.isfinite(terms).all(axis=-1)                  # (S, T, N)
    live = np.isfinite(terms) & (terms != 0.0)
    safe = np.where(live, terms, 1.0)
    mant, exp = _significand(safe)
    mant = np.where(live, mant, 0)
    none = -(1 << 20)
    term_big = np.where(live, _binade(safe), none).max(axis=-1)     # (S, T, N)
    with np.errstate(all="ignore"):
        term_sum = terms.sum(axis=-1)                               # only where not finite
    acc = np.zeros((t, n), dtype=np.float32)
    for g in range(steps):
        a = acc.astype(np.float64)
        a_live = np.isfinite(a) & (a != 0.0)
        a_safe = np.where(a_live, a, 1.0)
        a_mant, a_exp = _significand(a_safe)
        big = np.maximum(np.where(a_live, _binade(a_safe), none), term_big[g])
        big = np.where(big > none, big, 0)
        shift = np.clip(big[..., None] - F - exp[g], 0, 63)
        total = (mant[g] >> shift).sum(axis=-1) + \
            np.where(a_live, a_mant >> np.clip(big - F - a_exp, 0, 63), 0)
        with np.errstate(all="ignore"):
            result = np.ldexp(total.astype(np.float64), big - F).astype(np.float32)
            ieee = (a + term_sum[g]).astype(np.float32)
        acc = np.where(np.isfinite(a) & finite_terms[g], result, ieee)
    return acc
