"""Pack and unpack flat payload integers by the `amaranth.lib.data` layouts.

Amaranth's Verilog carries a struct payload as one port (``i__payload``); the
benches build its integer from the component's own layout, never from a
width written by hand.
"""

import numpy as np

from amaranth.hdl import Shape
from amaranth.lib import data


__all__ = ["offset", "width", "pack", "field"]


def _walk(layout, path):
    offset = 0
    for key in path:
        item = data.Layout.cast(layout)[key]
        offset += item.offset
        layout = item.shape
    return offset, layout


#: ``(id(layout), path)``: ``(layout, offset, width)``. Amaranth's layouts
#: compute a field's offset and width anew on every lookup (tens of
#: microseconds); the benches look the same fields up for every payload.
_fields = {}


def _field(layout, path):
    key = (id(layout), path)
    hit = _fields.get(key)
    if hit is None or hit[0] is not layout:
        at, shape = _walk(layout, path)
        # The layout stays referenced, so that its id is not another's.
        hit = _fields[key] = (layout, at, Shape.cast(shape).width)
    return hit[1], hit[2]


def offset(layout, *path):
    """Bit offset of the field at ``path`` (names and array indices)."""
    return _field(layout, path)[0]


def width(layout, *path):
    """Width in bits of the field at ``path``."""
    return _field(layout, path)[1]


def pack(layout, fields):
    """Payload integers (a list of Python ints) from ``{path: values}``.

    ``fields`` maps a path tuple (``("act", 2)``) or a name to an array of
    values (fields up to 64 bits wide); signed values are taken in two's
    complement at the field's width. The packing runs in NumPy, 64 bits at a
    time: a bench packs hundreds of thousands of payloads.
    """
    words = (Shape.cast(layout).width + 63) // 64
    total = None
    for path, values in fields.items():
        path = path if isinstance(path, tuple) else (path,)
        bits, at = width(layout, *path), offset(layout, *path)
        values = np.asarray(values).astype(np.int64).astype(np.uint64)
        values &= np.uint64((1 << bits) - 1)
        if total is None:
            total = np.zeros((values.size, words + 1), dtype=np.uint64)
        word, shift = divmod(at, 64)
        total[:, word] |= values << np.uint64(shift)
        if shift and shift + bits > 64:
            total[:, word + 1] |= values >> np.uint64(64 - shift)
    raw = total[:, :words].astype("<u8").tobytes()
    step = 8 * words
    return [int.from_bytes(raw[i:i + step], "little") for i in range(0, len(raw), step)]


def field(layout, payloads, *path):
    """The unsigned values of one field of payload integers, as a list."""
    shift, mask = offset(layout, *path), (1 << width(layout, *path)) - 1
    return [(p >> shift) & mask for p in payloads]
