"""Bulk transfers between a bench's Python and the memories of its top module,
through files (``$readmemh`` and ``$writememh``).

The harnesses (`tb.harness.StreamHarness`, `tb.accel_harness.AccelHarness`)
hold stimulus and results in memories of the bench's top module. Written and
read one word per VPI access, a PE bench of 100,000 steps per mode spent 10 of
its 12 s of Python in those accesses; through a file, a batch of 16,384 words
is one simulator call.

How it works:

- a harness adds `members` to its signature (``memfile_*`` input ports) and
  names the memories that take part in its ``memfiles`` attribute (read by
  `tb.runner.run`);
- `inject` (called by `tb.runner.run` on the Verilog text) adds to the top
  module an ``always`` block that, on every toggle of ``memfile_strobe``,
  runs ``$readmemh`` (``memfile_op`` 1) into, or ``$writememh`` (2) out of,
  the memory numbered ``memfile_sel``, words ``memfile_lo .. memfile_hi``,
  with the file ``memfile_<name>.hex`` of the simulation's directory (each
  bench and simulator has its own, ``build/tb/<bench>/<sim>/``); it also
  writes ``memfiles.json`` there (each memory's number, width and depth);
- `load` and `dump` (in the cocotb test) write the file and toggle the strobe,
  or toggle it and parse the file.

The semantics of the per-word accesses are kept: `dump` raises ValueError on
a word with an X or Z bit (``$writememh`` writes those digits as x and z), and
both raise on a count or address outside the memory or a value wider than a
word, and check that the file holds exactly the words asked for.
"""

import itertools
import json
import re
from pathlib import Path

from cocotb.triggers import FallingEdge, ReadOnly, ReadWrite

from amaranth.lib.wiring import In


__all__ = ["members", "inject", "load", "dump"]


#: ``memfile_op`` values.
OP_LOAD, OP_DUMP = 1, 2
#: The description of the memories that `inject` leaves beside the Verilog.
TABLE = "memfiles.json"
_COMMENT = re.compile(r"//[^\n]*")
_HEX = re.compile(r"[0-9a-fA-F]+")


def members():
    """The input ports of a harness that uses memory files."""
    return {"memfile_strobe": In(1), "memfile_op": In(2), "memfile_sel": In(8),
            "memfile_lo": In(32), "memfile_hi": In(32)}


def _file(name):
    return f"memfile_{name}.hex"


def inject(text, toplevel, names):
    """``text`` (Verilog) with the memory file block in module ``toplevel``,
    for its memories ``names``; and the table of those memories (a dict to
    write as `TABLE`). Raises ValueError if the module or a memory is not
    there. Without ``names``: ``text`` unchanged (an empty ``case`` is a
    syntax error to Icarus)."""
    if not names:
        return text, {}
    module = re.search(rf"^module {re.escape(toplevel)}\(.*?^endmodule$", text, re.M | re.S)
    if module is None:
        raise ValueError(f"no module {toplevel} in the Verilog")
    body = module[0]
    table, loads, dumps = {}, [], []
    for index, name in enumerate(names):
        decl = re.search(rf"^\s*reg \[(\d+):0\] {re.escape(name)} \[(\d+):0\];$", body, re.M)
        if decl is None:
            raise ValueError(f"no memory {name} in module {toplevel}")
        table[name] = {"index": index, "width": int(decl[1]) + 1, "depth": int(decl[2]) + 1}
        last = int(decl[2])
        # The whole range to $readmemh: the file's @address says where its
        # words go (without a range Icarus warns about the order of a
        # descending array's addresses).
        loads.append(f'        8\'d{index}: $readmemh("{_file(name)}", {name}, 0, {last});')
        dumps.append(f'        8\'d{index}: $writememh("{_file(name)}", {name}, '
                     f'memfile_lo, memfile_hi);')
    block = "\n".join([
        "  // tb.memfile: bulk loads and dumps of the bench's memories through files.",
        "  always @(posedge memfile_strobe or negedge memfile_strobe) begin",
        f"    if (memfile_op == 2'd{OP_LOAD})",
        "      case (memfile_sel)", *loads, "      endcase",
        f"    else if (memfile_op == 2'd{OP_DUMP})",
        "      case (memfile_sel)", *dumps, "      endcase",
        "  end",
        ""])
    end = module.end() - len("endmodule")
    return text[:end] + block + text[end:], table


_tables = {}


def _memory(name):
    path = Path(TABLE).resolve()
    if path not in _tables:
        _tables[path] = json.loads(path.read_text())
    try:
        return _tables[path][name]
    except KeyError:
        raise ValueError(f"memory {name} has no memory file (tb.memfile)") from None


def _strobe(dut, op, index):
    dut.memfile_op.value = op
    dut.memfile_sel.value = index
    strobe = dut.memfile_strobe.value
    dut.memfile_strobe.value = 0 if strobe.is_resolvable and int(strobe) else 1


async def load(dut, name, segments):
    """Write memory ``name`` of bench top ``dut``: ``segments`` is a list of
    ``(address, words)`` (ints); the other words keep their contents.

    Returns in the ReadWrite phase of the current time step, the words in
    the memory. Raises ValueError if a word does not fit the memory's width
    (a negative one is taken in two's complement, down to -2**(width-1), as
    a handle's ``.value`` takes it) or a segment runs past the memory.
    """
    memory = _memory(name)
    width, depth = memory["width"], memory["depth"]
    mask, low = (1 << width) - 1, -(1 << (width - 1))
    lines = []
    for address, words in segments:
        words = [int(word) for word in words]
        if not words:
            continue
        if address < 0 or address + len(words) > depth:
            raise ValueError(f"{name}: {len(words)} words at {address} do not fit its "
                             f"{depth} words")
        if min(words) < low or max(words) > mask:
            bad = next(w for w in words if not low <= w <= mask)
            raise ValueError(f"{name}: {bad} does not fit its {width}-bit words")
        lines.append(f"@{address:x}")
        lines += [f"{word & mask:x}" for word in words]
    if not lines:
        return
    Path(_file(name)).write_text("\n".join(lines) + "\n")
    _strobe(dut, OP_LOAD, memory["index"])
    await ReadWrite()           # the strobe is applied; the block runs right after
    await ReadWrite()           # ... and has run


async def dump(dut, name, count, address=0):
    """Words ``address .. address + count - 1`` of memory ``name`` of bench
    top ``dut``, as ints; ValueError on a word with an X or Z bit (as
    ``.value.to_unsigned()`` raises) or a range outside the memory.

    Takes the simulation to the next falling edge of ``dut.clk`` (the file
    is read in the ReadOnly phase, where nothing may be written).
    """
    memory = _memory(name)
    if count < 0 or address < 0 or address + count > memory["depth"]:
        raise ValueError(f"{name}: {count} words at {address} are not in its "
                         f"{memory['depth']} words")
    if not count:
        return []
    path = Path(_file(name))
    path.unlink(missing_ok=True)
    dut.memfile_lo.value = address
    dut.memfile_hi.value = address + count - 1
    _strobe(dut, OP_DUMP, memory["index"])
    await ReadOnly()
    text = path.read_text()
    await FallingEdge(dut.clk)
    # Icarus starts the file with an address comment; the words are one a line.
    tokens = _COMMENT.sub("", text).split()
    if "@" in text:
        raise ValueError(f"{name}: an address in the dump")
    try:
        words = list(map(int, tokens, itertools.repeat(16)))
    except ValueError:
        bad = next(i for i, token in enumerate(tokens) if not _HEX.fullmatch(token))
        raise ValueError(f"{name}: word {address + bad} has X or Z bits: "
                         f"{tokens[bad]}") from None
    if len(words) != count:
        raise ValueError(f"{name}: the dump holds {len(words)} words, not {count}")
    return words
