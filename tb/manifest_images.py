"""Memory images of a pass built from a build manifest alone.

An integrator's driver in C or Python builds the weight and KV-cache images
from ``manifest.json``'s ``memory_images`` section, without this project's
Python. This module does the same, reading nothing but that section, so that
the benches can show it suffices: `tests/test_manifest_images.py` compares
its images with `golden.perf`'s, and `tb/test_axi.py` runs its passes on
them.
"""

__all__ = ["images"]


def images(layout, mode, n, k, *, words=None, fp16=None, heads=1):
    """The images a ``mode`` pass over ``n`` rows and ``k`` columns reads,
    as lists of ``mem_bits``-wide ints, plane 0 first.

    Parameters
    ----------
    layout : dict
        The manifest's ``memory_images``.
    words, fp16 : 2-D arrays of ints (n x k), optional
        The SPEQ-16 words of the weights (draft, verify) and the FP16 bits of
        the weights or cached values (baseline, kv, kv_draft); for a
        multi-head pass the heads' ``heads x n`` rows stacked.
    heads : int
        1, or the manifest's ``head_groups`` for a multi-head pass (its
        ``multihead`` layout).
    """
    pes, slots, bits = layout["pes"], layout["slots"], layout["mem_bits"]
    per = pes
    if heads > 1:
        assert heads == layout["head_groups"], (heads, layout["head_groups"])
        per = layout["head_pes"]
    out = []
    for plane in ("plane0", "plane1"):
        spec = layout["modes"][mode][plane]
        if spec is None:
            continue
        source = words if spec["source"] == "speq16_word" else fp16
        shift, mask, lane_bits = spec["shift"], spec["mask"], spec["lane_bits"]
        fields = []
        for tile in range(0, n, per * slots):
            used = min(slots, -(-(n - tile) // per))
            for group in range(k // 4):
                for slot in range(used):
                    for pe in range(pes):
                        head, i = divmod(pe, per)
                        row = tile + slot * per + i
                        field = 0
                        if row < n:
                            for lane in range(4):
                                value = (int(source[head * n + row][4 * group + lane]) >>
                                         shift) & mask
                                field |= value << (lane_bits * lane)
                        fields.append(field)
        row_bits = spec["row_bits"]
        image = 0
        for index, field in enumerate(fields):
            image |= field << (row_bits * index)
        total = row_bits * len(fields)
        assert total % bits == 0, (total, bits)
        out.append([(image >> (bits * i)) & ((1 << bits) - 1) for i in range(total // bits)])
    return out
