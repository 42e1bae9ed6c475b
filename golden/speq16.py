"""SPEQ-16: the weight format (SPEC section 2), golden model.

Every FP16 weight ``w = (s, e, m)`` is stored in one 16-bit word::

    bit   15 | 14..12 | 11..8 | 7..0
          s  |   D    |   δ   | m[7:0]

with the magnitude class ``q = (e << 2) | m[9:8]`` recovered as
``q = base[D] + δ``. The draft nibble ``{s, D}`` selects one of 8 per-tensor
draft values (zero, ``2**x`` or ``1.5 * 2**x``).

The encoder picks the 8 class ranges and their draft values with a dynamic
program over the tensor's histogram of classes that minimises the squared
draft error ``sum((w - draft(w))**2)``; see `encode`.
"""

from dataclasses import dataclass

import numpy as np


__all__ = [
    "NUM_CODES", "DELTA_MAX", "Q_MAX", "NUM_CLASSES", "DRAFT_EXP_BITS",
    "DRAFT_EXP_MIN", "DRAFT_EXP_MAX", "INVALID_WORD_VALUE",
    "Encoded", "encode", "decode", "draft", "decode_words", "invalid_words",
    "draft_fields", "draft_values", "draft_weight", "classes", "pack_planes", "unpack_planes",
    "kv_draft", "kv_draft_high", "kv_planes", "kv_join",
]


#: Number of draft codes ``D`` (3 bits).
NUM_CODES = 8
#: Largest class offset ``δ`` within a code's range (4 bits).
DELTA_MAX = 15
#: Largest magnitude class of a finite FP16 value: exponent field 30, m[9:8] = 3.
Q_MAX = (30 << 2) | 3
#: Number of finite magnitude classes (0 .. Q_MAX).
NUM_CLASSES = Q_MAX + 1
#: Width of the signed draft exponent ``x`` held in the decoder's tables.
DRAFT_EXP_BITS = 6
DRAFT_EXP_MIN = -(1 << (DRAFT_EXP_BITS - 1))
DRAFT_EXP_MAX = (1 << (DRAFT_EXP_BITS - 1)) - 1
#: What a word whose class lies outside the finite range (``q > Q_MAX``)
#: decodes to: the canonical quiet NaN, so that a word that does not belong to
#: the loaded table never silently becomes a number.
INVALID_WORD_VALUE = 0x7E00


@dataclass(frozen=True)
class Encoded:
    """A weight matrix in SPEQ-16 form with its per-tensor tables.

    Members
    -------
    words : numpy.ndarray of uint16, shape (N, K)
        SPEQ-16 words.
    base : numpy.ndarray of uint8, shape (8,)
        First magnitude class of each code's range; strictly ascending.
    draft_exp : numpy.ndarray of int16, shape (8,)
        ``x`` of each code's draft value (0 where the code drafts as zero).
    draft_half : numpy.ndarray of bool, shape (8,)
        The draft value is ``1.5 * 2**x`` instead of ``2**x``.
    draft_zero : numpy.ndarray of bool, shape (8,)
        The code drafts as zero.
    """

    words: np.ndarray
    base: np.ndarray
    draft_exp: np.ndarray
    draft_half: np.ndarray
    draft_zero: np.ndarray

    @property
    def shape(self):
        return self.words.shape

    @property
    def draft_plane(self):
        """uint16 (N, K/4): word ``(n, g)`` holds the nibbles of weights ``4g .. 4g+3``."""
        return pack_planes(self.words)[0]

    @property
    def residual_plane(self):
        """uint16 (N, 3K/4): the 12-bit residuals, 4 per 3 words, little-endian."""
        return pack_planes(self.words)[1]


def classes(bits):
    """Magnitude class ``q = (e << 2) | m[9:8]`` of FP16 bit patterns."""
    bits = np.asarray(bits, dtype=np.uint16)
    return ((bits >> 8) & 0x7F).astype(np.int64)


def draft_values(enc):
    """The 8 unsigned draft values of ``enc``'s codes, as float64 (exact)."""
    mag = np.ldexp(np.where(enc.draft_half, 1.5, 1.0), enc.draft_exp.astype(np.int64))
    return np.where(enc.draft_zero, 0.0, mag)


def _check_weights(w):
    if not isinstance(w, np.ndarray):
        raise ValueError(f"weights must be a numpy.ndarray of float16, not {type(w).__name__}")
    if w.dtype != np.float16:
        raise ValueError(f"weights must have dtype float16, not {w.dtype}")
    if w.ndim != 2:
        raise ValueError(f"weights must have rank 2 (N, K), not shape {w.shape}")
    if w.shape[1] % 4 != 0:
        raise ValueError(f"K (weights.shape[1]) must be a multiple of 4, not {w.shape[1]}")
    bits = np.ascontiguousarray(w).view(np.uint16)
    nonfinite = (bits & 0x7C00) == 0x7C00
    if nonfinite.any():
        index = tuple(int(i) for i in np.argwhere(nonfinite)[0])
        raise ValueError(
            f"weights must be finite; weights[{index[0]}, {index[1]}] is {w[index]}")
    return bits


def _nearest_draft(mean, allow_half):
    """Draft value ``(zero, x, half)`` nearest to ``mean`` (> 0).

    The squared error of a code with ``n`` weights of magnitudes ``|w_i|`` and
    draft value ``v`` is ``n * (v - mean)**2 + const``, so the best value is the
    candidate nearest to the mean magnitude. Ties go to the smaller value.
    """
    x = int(np.floor(np.log2(mean)))
    # log2 of a float64 can be off by one ulp at exact powers of two.
    if np.ldexp(1.0, x) > mean:
        x -= 1
    elif np.ldexp(1.0, x + 1) <= mean:
        x += 1
    candidates = [(np.ldexp(1.0, x), x, False), (np.ldexp(1.0, x + 1), x + 1, False)]
    if allow_half:
        candidates.insert(1, (np.ldexp(1.5, x), x, True))
    candidates = [c for c in candidates if DRAFT_EXP_MIN <= c[1] <= DRAFT_EXP_MAX]
    candidates.append((0.0, 0, False))
    value, x, half = min(candidates, key=lambda c: (abs(c[0] - mean), c[0]))
    return value == 0.0, x, half


def _range_cost(count, s1, s2, allow_half):
    """Least squared draft error of one code's weights, and its draft value."""
    if count == 0 or s1 == 0.0:
        return s2, (True, 0, False)
    zero, x, half = _nearest_draft(s1 / count, allow_half)
    v = 0.0 if zero else np.ldexp(1.5 if half else 1.0, x)
    return max(s2 - 2.0 * v * s1 + count * v * v, 0.0), (zero, x, half)


def _remap_tables(count, s1, s2, allow_half):
    """The dynamic program: 8 class ranges and draft values of least error.

    Code ``D`` covers classes ``base[D] .. min(base[D] + 15, base[D+1] - 1)``;
    the classes between one range's end and the next base (if any) must be
    empty, as must those below ``base[0]`` and above the last range. The bases
    are strictly ascending in ``0 .. Q_MAX``.
    """
    n = NUM_CLASSES
    present = np.flatnonzero(count)
    first = int(present[0]) if present.size else 0
    cum = [np.concatenate([[0.0], np.cumsum(a, dtype=np.float64)]) for a in (count, s1, s2)]
    cum_present = np.concatenate([[0], np.cumsum(count > 0)])

    cost_cache = {}

    def cost(lo, hi):  # classes lo .. hi-1
        key = (lo, hi)
        if key not in cost_cache:
            c, a, b = (cum[i][hi] - cum[i][lo] for i in range(3))
            cost_cache[key] = _range_cost(int(round(c)), a, b, allow_half)
        return cost_cache[key]

    def empty(lo, hi):
        return lo >= hi or cum_present[hi] == cum_present[lo]

    inf = float("inf")
    # best[d][b]: least error of codes d..7 given base[d] = b, covering every
    # present class >= b.
    best = np.full((NUM_CODES, n), inf)
    choice = np.zeros((NUM_CODES, n), dtype=np.int64)
    for b in range(n):
        end = min(b + DELTA_MAX + 1, n)
        if empty(end, n):
            best[NUM_CODES - 1][b] = cost(b, end)[0]
    for d in range(NUM_CODES - 2, -1, -1):
        for b in range(n):
            for nb in range(b + 1, n):
                end = min(b + DELTA_MAX + 1, nb)
                if not empty(end, nb):
                    break
                total = cost(b, end)[0] + best[d + 1][nb]
                if total < best[d][b]:
                    best[d][b], choice[d][b] = total, nb
    starts = [b for b in range(first + 1) if empty(0, b)]
    b = min(starts, key=lambda b: (best[0][b], -b))
    if not np.isfinite(best[0][b]):  # pragma: no cover - 8 x 16 slots hold 124 classes
        raise AssertionError("no SPEQ-16 table covers these classes")
    bases = [b]
    for d in range(NUM_CODES - 1):
        bases.append(int(choice[d][bases[-1]]))
    ends = [min(bases[d] + DELTA_MAX + 1, bases[d + 1] if d + 1 < NUM_CODES else n)
            for d in range(NUM_CODES)]
    drafts = [cost(bases[d], ends[d])[1] for d in range(NUM_CODES)]
    assert empty(0, bases[0]) and empty(ends[-1], n)
    return np.array(bases, dtype=np.uint8), drafts


def encode(w, *, allow_half=True):
    """Encode an FP16 weight matrix into SPEQ-16.

    Parameters
    ----------
    w : numpy.ndarray of float16, shape (N, K)
        Weights; K must be a multiple of 4 and every weight finite.
    allow_half : bool
        Allow draft values ``1.5 * 2**x``. With ``False`` the draft values are
        powers of two only (a comparison point for the draft-quality bench).

    Returns
    -------
    Encoded

    Raises
    ------
    ValueError
        If ``w`` is not a rank-2 float16 array, K is not a multiple of 4, or a
        weight is ``inf`` or ``NaN`` (the message gives the first index).
    """
    bits = _check_weights(w)
    q = classes(bits).ravel()
    mag = np.abs(w.astype(np.float64)).ravel()
    count = np.bincount(q, minlength=NUM_CLASSES).astype(np.float64)
    s1 = np.bincount(q, weights=mag, minlength=NUM_CLASSES)
    s2 = np.bincount(q, weights=mag * mag, minlength=NUM_CLASSES)
    base, drafts = _remap_tables(count, s1, s2, bool(allow_half))

    code = (np.searchsorted(base, classes(bits), side="right") - 1).astype(np.uint16)
    delta = (classes(bits) - base[code].astype(np.int64)).astype(np.uint16)
    assert delta.max(initial=0) <= DELTA_MAX
    words = (bits & 0x8000) | (code << 12) | (delta << 8) | (bits & 0xFF)
    return Encoded(
        words=words.astype(np.uint16),
        base=base,
        draft_exp=np.array([0 if z else x for z, x, _ in drafts], dtype=np.int16),
        draft_half=np.array([h and not z for z, _, h in drafts], dtype=bool),
        draft_zero=np.array([z for z, _, _ in drafts], dtype=bool),
    )


def _fields(words):
    words = np.asarray(words, dtype=np.uint16).astype(np.int64)
    return words >> 15, (words >> 12) & 7, (words >> 8) & 0xF, words & 0xFF


def invalid_words(words, base):
    """Which words name a class outside the finite range (``base[D] + δ > Q_MAX``)."""
    _, code, delta, _ = _fields(words)
    return np.asarray(base, dtype=np.int64)[code] + delta > Q_MAX


def decode_words(words, base):
    """FP16 bit patterns (uint16) of SPEQ-16 words under a table of bases.

    A word whose class ``base[D] + δ`` exceeds `Q_MAX` (never produced by
    `encode`) decodes to `INVALID_WORD_VALUE`.
    """
    sign, code, delta, low = _fields(words)
    q = np.asarray(base, dtype=np.int64)[code] + delta
    bits = (sign << 15) | (q << 8) | low
    return np.where(q > Q_MAX, INVALID_WORD_VALUE, bits).astype(np.uint16)


def decode(enc):
    """The exact FP16 weights (float16 (N, K)) of an `Encoded` tensor."""
    return decode_words(enc.words, enc.base).view(np.float16)


def draft_fields(plane_words, enc):
    """The four draft operands of each draft-plane word.

    Returns ``(sign, exp, half, zero)``, each of shape ``plane_words.shape +
    (4,)``; operand ``j`` comes from nibble ``(word >> 4j) & 0xF`` = ``{s, D}``.
    """
    words = np.asarray(plane_words, dtype=np.uint16).astype(np.int64)
    nibbles = (words[..., None] >> (4 * np.arange(4))) & 0xF
    code = nibbles & 7
    return (nibbles >> 3, enc.draft_exp.astype(np.int64)[code],
            enc.draft_half[code], enc.draft_zero[code])


def draft_weight(sign, exp, half, zero):
    """Signed draft weights (float64, exact) from draft-operand fields.

    ``0`` where ``zero``, else ``(-1)**sign * (1.5 if half else 1) * 2**exp``.
    """
    mag = np.ldexp(np.where(half, 1.5, 1.0), np.asarray(exp, np.int64))
    return np.where(zero, 0.0, np.where(sign, -mag, mag))


def draft(enc):
    """The signed draft weights (float32 (N, K)) of an `Encoded` tensor."""
    code = (enc.words >> 12) & 7
    return draft_weight(enc.words >> 15, enc.draft_exp[code], enc.draft_half[code],
                        enc.draft_zero[code]).astype(np.float32)


def pack_planes(words):
    """Split SPEQ-16 words (N, K) into the draft plane and the residual plane."""
    words = np.asarray(words, dtype=np.uint16)
    n, k = words.shape
    if k % 4:
        raise ValueError(f"K must be a multiple of 4, not {k}")
    groups = words.reshape(n, k // 4, 4).astype(np.uint64)
    shifts = np.arange(4, dtype=np.uint64)
    draft = ((groups >> np.uint64(12)) << (np.uint64(4) * shifts)).sum(axis=2)
    residual = ((groups & np.uint64(0xFFF)) << (np.uint64(12) * shifts)).sum(axis=2)
    residual = (residual[..., None] >> (np.uint64(16) * np.arange(3, dtype=np.uint64))) & np.uint64(0xFFFF)
    return draft.astype(np.uint16), residual.reshape(n, 3 * k // 4).astype(np.uint16)


def unpack_planes(draft_plane, residual_plane):
    """Rebuild SPEQ-16 words (N, K) from the two planes (inverse of `pack_planes`)."""
    draft_plane = np.asarray(draft_plane, dtype=np.uint16).astype(np.uint64)
    residual_plane = np.asarray(residual_plane, dtype=np.uint16).astype(np.uint64)
    n, g = draft_plane.shape
    if residual_plane.shape != (n, 3 * g):
        raise ValueError(
            f"residual plane must have shape {(n, 3 * g)} for a draft plane of shape "
            f"{(n, g)}, not {residual_plane.shape}")
    shifts = np.arange(4, dtype=np.uint64)
    nibbles = (draft_plane[..., None] >> (np.uint64(4) * shifts)) & np.uint64(0xF)
    triples = residual_plane.reshape(n, g, 3)
    group = (triples << (np.uint64(16) * np.arange(3, dtype=np.uint64))).sum(axis=2)
    residuals = (group[..., None] >> (np.uint64(12) * shifts)) & np.uint64(0xFFF)
    return ((nibbles << np.uint64(12)) | residuals).reshape(n, 4 * g).astype(np.uint16)


# -- the KV cache (SPEC section 2a) ----------------------------------------------

def _check_fp16(u, what):
    u = np.asarray(u)
    if u.dtype != np.float16:
        raise ValueError(f"{what} must have dtype float16, not {u.dtype}")
    return u


def kv_planes(u):
    """The two byte planes of cached FP16 values ``u`` (any shape): ``(high,
    low)``, uint8 arrays of ``u``'s shape holding ``bits >> 8`` (sign, the
    exponent field, fraction bits 9..8) and ``bits & 0xFF``."""
    bits = _check_fp16(u, "cached values").view(np.uint16)   # same item size: any strides
    return (bits >> 8).astype(np.uint8), (bits & 0xFF).astype(np.uint8)


def kv_join(high, low):
    """The exact FP16 values of two byte planes (the inverse of `kv_planes`)."""
    high, low = np.asarray(high), np.asarray(low)
    if high.dtype != np.uint8 or low.dtype != np.uint8 or high.shape != low.shape:
        raise ValueError(f"the planes must be uint8 arrays of one shape, not {high.dtype} "
                         f"{high.shape} and {low.dtype} {low.shape}")
    return ((high.astype(np.uint16) << 8) | low).view(np.float16)


def kv_draft(u):
    """The draft's value of each cached K/V value (SPEC section 2a).

    The draft reads the high byte plane only. Its value of ``u`` is the high
    byte with the low byte at its midpoint, ``(u & 0xFF00) | 0x80``, when the
    exponent field is below 31; with the exponent field 31 the low byte reads
    as zero (``inf`` stays ``inf``; a NaN with payload bits in fraction bits
    9..8 stays NaN, one with payload only in the low byte reads as ``inf``).

    Parameters
    ----------
    u : numpy.ndarray of float16 (any shape)

    Returns
    -------
    numpy.ndarray of float16, ``u``'s shape

    Raises
    ------
    ValueError
        If ``u`` is not float16.
    """
    high, _ = kv_planes(u)
    return kv_draft_high(high)


def kv_draft_high(high):
    """`kv_draft` from the high plane itself (uint8): the draft's value of
    each byte it reads."""
    high = np.asarray(high, dtype=np.uint8).astype(np.uint16)
    fill = np.where((high & 0x7C) == 0x7C, 0, 0x80).astype(np.uint16)
    return np.asarray((high << 8) | fill).view(np.float16)
