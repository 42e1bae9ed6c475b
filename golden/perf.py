"""Memory layout and cycle model of a pass on the accelerator (``docs/array.md``).

A pass computes ``Y[T x N] = X[T x K] . W[N x K]^T`` on ``pes`` PEs that each
interleave ``slots`` rows (the array's ``interleave``). Rows are cut into
*tiles* of ``pes x slots`` rows; the last tile uses only the slots it needs
(``ceil(rows left / pes)``). A *group* is four columns of K of one tile; its
*entries* are one per slot, each holding the weights of ``pes`` rows:

- draft: ``pes`` draft-plane words (16 bits each);
- verify: the same ``pes`` draft words, then ``pes`` 48-bit residual groups;
- baseline: ``pes x 4`` plain FP16 weights;
- kv: ``pes x 4`` high bytes of cached FP16 values, then their ``pes x 4``
  low bytes (the KV cache's two byte planes, SPEC section 2a);
- kv_draft: the ``pes x 4`` high bytes alone.

Memory images hold the entries in pass order (tile, group, slot), each cut
into ``mem_bits``-wide words, low bits first. Rows past ``N`` in the last
slot are zero.

A *multi-head* pass (``groups`` > 1: `hw.config.SpeqConfig.head_groups`)
computes ``groups`` products of the same shape at once, head ``q``'s
``Y_q[T x N] = X_q[T x K] . W_q[N x K]^T``, each on its own group of ``pes /
groups`` PEs (PEs ``q pes / groups ..``) with its own activations: the rows
are tiled as above on ``pes / groups`` PEs, and an entry holds, PE after
PE, head ``q``'s rows for group ``q``. Its ``w`` is the heads' matrices
stacked (``groups x N`` rows, head ``q``'s rows from ``q N``). It is how a
wide array's attention fills its PEs: ``P V`` has N = the head dimension,
a fraction of a tile (docs/array.md).

The cycle model follows the controller (`hw.controller`): the fetcher
requests one group after another into two buffer halves, the issuer runs a
landed group in rounds (4 in verify and baseline, ``4/L`` in draft with ``L``
draft lanes) of
``max(slots used x T, slots)`` cycles. It predicts the count of cycles from
the command to its status when nothing stalls; a stall cycle (memory or
output) adds exactly one.
"""

from dataclasses import dataclass

import numpy as np

from .arith import check_lanes
from .schedule import MODES, PLANE_WORDS, check_pass
from .speq16 import kv_planes


__all__ = ["MODES", "PLANE_WORDS", "tiles", "head_pes", "entry_rows", "draft_image", "residual_image",
           "baseline_image", "kv_images", "kv_cache_rows", "kv_writes_per_beat", "kv_write_cycles",
           "pass_images", "PassCost", "pass_cost", "fetch_schedule", "roofline", "machine"]


def tiles(n, pes, slots):
    """Slots used by each tile of a pass over ``n`` rows (a list); ``pes``
    is a head's PEs in a multi-head pass."""
    tile_rows = pes * slots
    out = []
    for start in range(0, n, tile_rows):
        out.append(min(slots, -(-(n - start) // pes)))
    return out


def head_pes(pes, heads):
    """PEs of one head of a multi-head pass of ``heads`` heads (1: a plain pass)."""
    if heads < 1 or pes % heads:
        raise ValueError(f"the heads of a pass ({heads}) must divide the PEs ({pes})")
    return pes // heads


def entry_rows(n, k, pes, slots, heads=1):
    """Rows of every entry in memory order: int array (entries, pes), -1 for
    padding; and the group of each entry (entries,). ``n`` rows per head;
    with ``heads`` > 1 a row is one of the stacked ``heads x n`` rows."""
    per = head_pes(pes, heads)
    rows, groups = [], []
    for tile, used in enumerate(tiles(n, per, slots)):
        base = tile * per * slots
        r = base + np.arange(used)[:, None] * per + np.arange(per)[None, :]   # (used, per)
        r = np.where(r < n, r, -1)
        r = np.concatenate([np.where(r < 0, -1, r + q * n) for q in range(heads)], axis=1)
        rows.append(np.tile(r, (k // 4, 1)))
        groups.append(np.repeat(np.arange(k // 4), used))
    return np.concatenate(rows), np.concatenate(groups)


def _head_rows(rows, heads):
    """A head's rows of stacked ``rows`` (they divide by ``heads``)."""
    if rows % heads:
        raise ValueError(f"a multi-head pass' {rows} stacked rows do not divide into "
                         f"{heads} heads")
    return rows // heads


def _image(entry_bytes, mem_bits):
    """Python ints of ``mem_bits`` each from the entries' bytes (little-endian)."""
    flat = np.ascontiguousarray(entry_bytes).view(np.uint8).ravel()
    step = mem_bits // 8
    assert flat.size % step == 0
    raw = flat.tobytes()
    return [int.from_bytes(raw[i:i + step], "little") for i in range(0, len(raw), step)]


def _gather(plane, rows, cols):
    """plane[rows, cols] with zero for padding rows (rows == -1)."""
    out = plane[np.maximum(rows, 0)[..., None], cols]
    out[rows < 0] = 0
    return out


def draft_image(enc, pes, slots, mem_bits, heads=1):
    """Memory words of the draft plane of ``enc`` (a `golden.speq16` encoding)."""
    n, k = enc.words.shape
    rows, groups = entry_rows(_head_rows(n, heads), k, pes, slots, heads)
    words = _gather(enc.draft_plane, rows, groups[:, None, None])[..., 0]   # (E, pes)
    return _image(words.astype("<u2"), mem_bits)


def residual_image(enc, pes, slots, mem_bits, heads=1):
    """Memory words of the residual plane: 3 plane words (48 bits) per row and entry."""
    n, k = enc.words.shape
    rows, groups = entry_rows(_head_rows(n, heads), k, pes, slots, heads)
    cols = 3 * groups[:, None, None] + np.arange(3)[None, None, :]
    words = _gather(enc.residual_plane, rows, cols)                       # (E, pes, 3)
    return _image(words.astype("<u2"), mem_bits)


def baseline_image(w, pes, slots, mem_bits, heads=1):
    """Memory words of plain FP16 weights ``w`` (N x K), 4 per row and entry."""
    n, k = w.shape
    rows, groups = entry_rows(_head_rows(n, heads), k, pes, slots, heads)
    cols = 4 * groups[:, None, None] + np.arange(4)[None, None, :]
    words = _gather(np.ascontiguousarray(w).view(np.uint16), rows, cols)  # (E, pes, 4)
    return _image(words.astype("<u2"), mem_bits)


def kv_images(u, pes, slots, mem_bits, heads=1):
    """Memory words of the two byte planes of cached FP16 values ``u`` (N x
    K), the weights of a ``kv`` pass: ``[high plane, low plane]``, 4 bytes
    per row and entry (column ``4g + j`` in byte ``j``)."""
    n, k = u.shape
    rows, groups = entry_rows(_head_rows(n, heads), k, pes, slots, heads)
    cols = 4 * groups[:, None, None] + np.arange(4)[None, None, :]
    return [_image(_gather(plane, rows, cols), mem_bits) for plane in kv_planes(u)]


def kv_cache_rows(keys, capacity, pes, slots):
    """Rows a ``kv`` or ``kv_draft`` pass reads from a keys image laid out for
    ``capacity`` positions to attend to ``keys`` of them: whole tiles (``pes
    x slots`` rows), or the capacity's last, so that a position keeps its
    place as the cache grows (the rows past ``keys`` are read and their
    results dropped)."""
    tile = pes * slots
    return min(capacity, -(-keys // tile) * tile)


def kv_writes_per_beat(vt):
    """Writes of one activation beat (4 values) of a KV_WRITE (`hw.kv_writer`):
    a keys image takes its 4 bytes per plane in one write (2), a values
    image one byte per PE and plane (8)."""
    return 8 if vt else 2


#: Cycles a step spends in the array before its accumulator read: its table
#: lookups and decoding (`hw.array.SpeqArray`, stage D). The array's latency
#: is its interleave (``slots``) plus these and `SpeqConfig.acc_latency`.
DECODE_STAGES = 1


#: Cycles between a step's reads and the array: the operands' register after
#: the activation block RAM (`hw.controller`).
OPERAND_STAGES = 1


#: Cycles between a result leaving the array and being ready for the
#: controller's output register: its rounding to FP16 and the result
#: buffer (`hw.controller`).
RESULT_STAGES = 2


#: Cycles the KV write path takes to set up a position (where its entries
#: are: one multiply or division a cycle, `hw.kv_writer`).
KV_WRITE_SETUP = 6


def kv_write_cycles(vt, d, t):
    """Cycles of a KV_WRITE command (`hw.kv_writer`) from the command to its
    status with a write port that is always ready: per position
    `KV_WRITE_SETUP` set-up cycles and ``d / 4`` activation beats of a cycle
    plus one per write (2 for a keys image, 8 for a values image); the status
    comes in the cycle after the last write. A write the port keeps waiting
    adds exactly its cycles."""
    return t * (KV_WRITE_SETUP + d // 4 * (1 + kv_writes_per_beat(vt)))


def pass_images(mode, w, enc, pes, slots, mem_bits, heads=1):
    """The memory images a pass reads: ``[plane]`` for a draft pass (``enc``)
    or a baseline pass (plain FP16 ``w``), ``[draft plane, residual plane]``
    for a verify pass (``enc``), ``[high plane, low plane]`` of the cached
    values ``w`` for a kv pass and ``[high plane]`` for a kv_draft pass (``w``
    may then be the values as the draft reads them: their high bytes are the
    stored ones). A multi-head pass' ``w`` and ``enc`` are its ``heads``
    heads' matrices stacked."""
    if mode == "baseline":
        return [baseline_image(w, pes, slots, mem_bits, heads)]
    if mode in ("kv", "kv_draft"):
        return kv_images(w, pes, slots, mem_bits, heads)[:sum(1 for words in PLANE_WORDS[mode]
                                                              if words)]
    images = [draft_image(enc, pes, slots, mem_bits, heads)]
    if mode == "verify":
        images.append(residual_image(enc, pes, slots, mem_bits, heads))
    return images


@dataclass(frozen=True)
class PassCost:
    """What one pass costs.

    Members
    -------
    cycles : int
        From the command to its status, with no stall.
    bits : int
        Weight bits read (padding rows of the last slot included).
    macs : int
        MACs the PEs do (padding rows of the used slots included).
    steps : int
        Array steps issued.
    """

    cycles: int
    bits: int
    macs: int
    steps: int


def pass_cost(mode, n, k, t, *, pes, slots, lanes, mem_bits, mem_latency, result_latency,
              heads=1):
    """Cycle count, bits and MACs of one pass (module docstring).

    Parameters
    ----------
    mode : {"draft", "verify", "baseline", "kv", "kv_draft"}
    n, k, t : int
        Shape: N rows, K columns (a multiple of 4), T tokens (1 in a draft
        pass); per head in a multi-head pass.
    pes, slots : int
        PEs of the array and its ``interleave``.
    lanes : {1, 2, 4}
        ``L``, draft weights per PE and draft step (`hw.config.SpeqConfig.draft_lanes`).
    mem_bits, mem_latency : int
        ``B`` and the memory's request-to-data latency in cycles (>= 1).
    result_latency : int
        Cycles from a step entering the array to its result, rounded to
        FP16 as well, being ready for the output register:
        `hw.config.SpeqConfig.result_latency` (the array's latency, then
        the controller's rounding stage).
    heads : int
        1, or the heads of a multi-head pass (`hw.config.SpeqConfig.head_groups`).
    """
    return fetch_schedule(mode, n, k, t, pes=pes, slots=slots, lanes=lanes, mem_bits=mem_bits,
                          mem_latency=mem_latency, result_latency=result_latency,
                          heads=heads)[0]


def fetch_schedule(mode, n, k, t, *, pes, slots, lanes, mem_bits, mem_latency, result_latency,
                   heads=1):
    """`pass_cost`'s walk over the pass, with the fetcher's requests.

    Returns ``(cost, requests)``: the `PassCost` and, per group in pass order,
    ``(first, beats)``: its ``beats`` requests go out on the advancing cycles
    ``first .. first + beats - 1`` (cycle 0 takes the command; frozen cycles
    are not counted). `golden.axi_perf` replays the AXI top's master against
    them.
    """
    check_pass(mode, n, k, t)
    check_lanes(lanes)
    if mode != "draft":
        lanes = 1
    rounds = 4 // lanes
    entry_beats = 16 * sum(PLANE_WORDS[mode]) * pes // mem_bits
    act_beats = heads * t * k // 4       # each head its own in a multi-head pass
    groups = k // 4

    # Per group x: requests from req_start to req_end; data landed at
    # land_end; steps issued from iss_start to cons_end (cycle 0 takes the
    # command). A half is free again the cycle after its group is consumed.
    cons = [0, 0]            # cons_end of groups x-2, x-1 (0: before the pass)
    req_end = 0
    bits = macs = steps = 0
    last_step = 0
    requests = []
    for used in tiles(n, head_pes(pes, heads), slots):
        beats = used * entry_beats
        round_cycles = max(used * t, slots)
        for _ in range(groups):
            req_start = max(req_end + 1, cons[0] + 1)
            req_end = req_start + beats - 1
            requests.append((req_start, beats))
            land_end = req_end + mem_latency
            iss_start = max(cons[1] + 1, land_end + 1, act_beats + 1)
            cons_end = iss_start + rounds * round_cycles - 1
            cons = [cons[1], cons_end]
            last_step = iss_start + (rounds - 1) * round_cycles + used * t - 1
            bits += beats * mem_bits
            macs += rounds * used * t * pes * lanes
            steps += rounds * used * t
    # The last result is ready result_latency + 1 cycles after its step is
    # issued, in the output register a cycle later; the status follows.
    cost = PassCost(cycles=last_step + 2 + result_latency, bits=bits, macs=macs, steps=steps)
    return cost, requests


def roofline(mode, n, k, t, *, pes, lanes, mem_bits):
    """The pass' lower bound in cycles: ``max(weight bits / B, MACs / MACs per
    cycle)`` with the bits and MACs of the shape itself (no padding); a PE
    does ``lanes`` MACs per draft step, one per verify or baseline step."""
    check_pass(mode, n, k, t)
    check_lanes(lanes)
    bits = n * k * 4 * sum(PLANE_WORDS[mode])
    macs_per_cycle = pes * (lanes if mode == "draft" else 1)
    return max(bits / mem_bits, n * k * t / macs_per_cycle)



def machine(config):
    """The ``pes``, ``slots``, ``lanes``, ``mem_bits`` and ``result_latency``
    keywords of `pass_cost` for a `hw.config.SpeqConfig`: the array's
    interleave, `SpeqConfig.interleave`, is a formula of the configuration
    that `hw.array.SpeqArray` asserts, and a result is ready
    `SpeqConfig.result_latency` cycles after its step is issued (three more
    than the array's latency: the controller registers the step's operands,
    rounds the result to FP16 in a stage of its own and passes it through its
    result buffer)."""
    return {"pes": config.rows * config.cols, "slots": config.interleave,
            "lanes": config.draft_lanes, "mem_bits": config.mem_bits,
            "result_latency": config.result_latency}
