"""The step schedule of a pass on the PE array (``docs/array.md``).

A pass computes ``Y[T x N] = X[T x K] . W[N x K]^T`` tile by tile. A tile is
``pes x interleave`` rows: slot ``j`` of PE ``p`` holds row
``tile * pes * interleave + j * pes + p``. Within a tile (innermost last):

- draft:    group ``g`` (K/4), lane step ``s`` (``4/L`` of them), row slot
  ``j``: ``L`` draft weights per PE and step (``L`` = draft lanes), columns
  ``4g + sL .. 4g + sL + L - 1``;
- verify:   ``g``, ``k`` in ``4g .. 4g+3``, ``j``, token ``t``;
- baseline: as verify (``T`` tokens; the FP16 decode step has one);
- kv, kv_draft: as verify, over a cached K or V^T held in two byte planes
  (SPEC section 2a; attention passes: ``T`` queries).

Accumulator slot of a step: ``j * T + t`` (``t = 0`` for draft),
so a slot comes back every ``interleave * T`` steps. Rows past ``N`` (the
padding of the last tile) are marked ``-1``.
"""

import numpy as np

from .arith import check_lanes


__all__ = ["MODES", "PLANE_WORDS", "Schedule", "check_pass", "schedule"]


#: The pass modes: the linear layers' draft, verify and FP16 baseline passes;
#: attention over the KV cache's two byte planes, exact (``kv``) or through
#: the high plane alone as the draft reads it (``kv_draft``, SPEC section 2a).
MODES = ("draft", "verify", "baseline", "kv", "kv_draft")
#: What one entry (four columns of K for each of the array's PEs) reads from
#: each of a pass' two memory planes, in 16-bit words per PE: the draft plane
#: (a nibble per weight) and the residual plane (12 bits per weight) of a
#: verify pass, the plain FP16 weights of a baseline pass, the high and the
#: low byte plane of the KV cache. Plane 0 is read first.
PLANE_WORDS = {"draft": (1, 0), "verify": (1, 3), "baseline": (4, 0), "kv": (2, 2),
               "kv_draft": (2, 0)}


class Schedule:
    """The steps of one pass, as NumPy arrays over the steps.

    Members
    -------
    mode : str
    first, last : bool (S,)
        The step starts its slot from +0 / finishes it.
    slot : int (S,)
    token : int (S,)
    k : int (S,)
        The weight column (verify, baseline), or the index ``4g/L + s`` of the
        step's ``L`` columns ``L k .. L k + L - 1`` (draft).
    rows : int (S, pes)
        Each PE's row, ``-1`` for padding.
    """

    def __init__(self, mode, first, last, slot, token, k, rows):
        self.mode, self.first, self.last = mode, first, last
        self.slot, self.token, self.k, self.rows = slot, token, k, rows

    def __len__(self):
        return len(self.slot)


def check_pass(mode, n, k, t):
    """Raise `ValueError` for a pass the array cannot run: an unknown mode,
    N < 1, K not a positive multiple of 4, T below 1, or T other than 1 in a
    draft pass."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if n < 1:
        raise ValueError(f"N must be at least 1, not {n}")
    if k < 4 or k % 4:
        raise ValueError(f"K must be a positive multiple of 4, not {k}")
    if t < 1 or (mode == "draft" and t != 1):
        raise ValueError(f"T must be 1 for a draft pass, not {t}" if t >= 1
                         else f"T must be at least 1, not {t}")


def schedule(mode, n, k, t, pes, interleave, lanes=4):
    """The step schedule of a pass.

    Parameters
    ----------
    mode : {"draft", "verify", "baseline"}
    n, k, t : int
        Output rows, reduction length (a multiple of 4) and tokens (1 in a
        draft pass).
    pes, interleave : int
        PEs of the array and row slots per PE.
    lanes : {1, 2, 4}
        ``L``, the draft weights a PE takes per draft step.

    Raises
    ------
    ValueError
        For an unknown mode, K not a positive multiple of 4, N < 1, T < 1, or
        T other than 1 in a draft pass.
    """
    check_pass(mode, n, k, t)
    tile_rows = pes * interleave
    tiles = -(-n // tile_rows)
    check_lanes(lanes)
    if mode == "draft":
        # (tile, g and s, j)
        shape = (tiles, k // lanes, interleave, 1)
        kk = np.arange(k // lanes)[None, :, None, None]
        last_k = k // lanes - 1
    else:
        # (tile, k, j, t)
        shape = (tiles, k, interleave, t)
        kk = np.arange(k)[None, :, None, None]
        last_k = k - 1
    tile = np.arange(tiles)[:, None, None, None]
    j = np.arange(interleave)[None, None, :, None]
    tok = np.arange(shape[3])[None, None, None, :]
    full = np.broadcast_to
    kk, tile, j, tok = (full(a, shape).ravel() for a in (kk, tile, j, tok))
    rows = tile[:, None] * tile_rows + j[:, None] * pes + np.arange(pes)[None, :]
    rows = np.where(rows < n, rows, -1)
    return Schedule(mode=mode, first=kk == 0, last=kk == last_k, slot=j * shape[3] + tok,
                    token=tok, k=kk, rows=rows)
