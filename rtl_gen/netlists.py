"""Readers of the synthesis tools' output: Yosys statistics and netlists,
nextpnr's log (Fmax, critical path, utilisation)."""

import json
import re


__all__ = ["parse_stat", "multipliers", "memory_bits", "register_bits", "parse_nextpnr",
           "register_name"]


# Flip-flop cells of the three libraries: Yosys' internal gates
# ($_DFF_*, $_DFFE_*, $_SDFF*_, $_DFFSR*_, $_ALDFF*_), iCE40 and ECP5.
_FLIP_FLOP = re.compile(r"^(\$_(AL|S)?DFF|SB_DFF|TRELLIS_FF$)")
# Bookkeeping cells of ``flatten`` that are no hardware.
_NOT_HARDWARE = {"$scopeinfo"}


def parse_stat(text):
    """Read Yosys' ``stat -json`` output (``-tech cmos`` optional).

    Returns
    -------
    dict
        ``cells`` (hardware cells, all types), ``by_type`` (``{type: count}``),
        ``flip_flops``, and with ``-tech cmos`` ``transistors`` (int) and
        ``transistors_partial`` (Yosys' ``+``: some cells, the flip-flops,
        have no estimate).

    Raises
    ------
    ValueError
        If ``text`` is not the output of ``stat -json``.
    """
    try:
        design = json.loads(text)["design"]
        by_type = {cell: int(count)
                   for cell, count in design["num_cells_by_type"].items()
                   if cell not in _NOT_HARDWARE}
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"not the output of Yosys' stat -json: {error}") from None
    result = {
        "cells": sum(by_type.values()),
        "by_type": by_type,
        "flip_flops": sum(n for cell, n in by_type.items() if _FLIP_FLOP.match(cell)),
    }
    estimate = design.get("estimated_num_transistors")
    if estimate is not None:
        match = re.fullmatch(r"(\d+)(\+?)", str(estimate))
        if not match:
            raise ValueError(f"unexpected transistor estimate {estimate!r}")
        result["transistors"] = int(match.group(1))
        result["transistors_partial"] = bool(match.group(2))
    return result


def _is_variable(bits):
    # write_json gives a net as an int and a constant bit as "0", "1", "x", "z".
    return any(isinstance(bit, int) for bit in bits)


def _slices(bits, widths):
    out, at = [], 0
    for width in widths:
        out.append(bits[at:at + width])
        at += width
    return out


def _param_int(value):
    return int(value, 2) if isinstance(value, str) else int(value)


def _param_ints(value, count, width=16):
    # A packed list parameter of $macc_v2: ``count`` fields of ``width`` bits,
    # field 0 lowest (the JSON string is MSB first).
    if count == 0:
        return []
    text = value.rjust(count * width, "0")
    return [int(text[len(text) - (i + 1) * width:len(text) - i * width], 2)
            for i in range(count)]


def multipliers(netlist):
    """The multipliers of a word-level netlist: products of two non-constant operands.

    Parameters
    ----------
    netlist : dict
        Yosys ``write_json`` output, after ``alumacc`` or before it: ``$mul``
        cells and the products of ``$macc_v2`` cells are counted.

    Returns
    -------
    list of tuple
        ``(module, cell, a_width, b_width)`` per multiplier.

    Raises
    ------
    ValueError
        For a ``$macc`` cell of the old format, which this does not read.
    """
    found = []
    for module_name, module in netlist["modules"].items():
        for cell_name, cell in module.get("cells", {}).items():
            kind, conns, params = cell["type"], cell["connections"], cell["parameters"]
            if kind == "$mul":
                if _is_variable(conns["A"]) and _is_variable(conns["B"]):
                    found.append((module_name, cell_name, len(conns["A"]), len(conns["B"])))
            elif kind == "$macc_v2":
                products = _param_int(params["NPRODUCTS"])
                a_widths = _param_ints(params["A_WIDTHS"], products)
                b_widths = _param_ints(params["B_WIDTHS"], products)
                for a, b in zip(_slices(conns["A"], a_widths), _slices(conns["B"], b_widths)):
                    if _is_variable(a) and _is_variable(b):
                        found.append((module_name, cell_name, len(a), len(b)))
            elif kind == "$macc":
                raise ValueError(f"cell {cell_name}: the old $macc format "
                                 f"(before $macc_v2) is not read")
    return found


def memory_bits(netlist):
    """Bits of the memories (``$mem_v2`` cells, width × depth) of a Yosys ``write_json`` netlist."""
    return sum(_param_int(cell["parameters"]["WIDTH"]) * _param_int(cell["parameters"]["SIZE"])
               for module in netlist["modules"].values()
               for cell in module.get("cells", {}).values() if cell["type"] == "$mem_v2")


def register_bits(rtlil_text):
    """Flip-flop bits of an Amaranth RTLIL design: the WIDTH of its register cells."""
    total = 0
    for match in re.finditer(r"^\s*cell \$(a|s|al)?dffe? \S+\n((?:\s+parameter .*\n)*)",
                             rtlil_text, re.M):
        width = re.search(r"parameter \\WIDTH (\d+)", match.group(2))
        total += int(width.group(1))
    return total


_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz")
_DELAY = re.compile(r"Max delay\s+(?:(?:posedge|negedge)\s+)?(\S+)\s+->\s+"
                    r"(?:(?:posedge|negedge)\s+)?(\S+)\s*:\s+([\d.]+) ns")
_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
_PATH_REPORT = re.compile(r"^Info: Critical path report for clock '([^']+)'.*?\n(.*?)"
                          r"(?=^Info: Critical path report|^\S+: Max frequency|\Z)", re.M | re.S)
_PATH_CELL = re.compile(r"^Info:\s+(?:[a-z-]+\s+)?[\d.]+\s+[\d.]+\s+(?:Source|Sink)\s+(\S+)",
                        re.M)


def parse_nextpnr(text):
    """Read a nextpnr log.

    Returns
    -------
    dict
        ``fmax`` (``{clock: MHz}``), ``delays`` (``{(from, to): ns}`` of the
        paths between different clocks or to and from pins, ``<async>``),
        each the last report (after routing); ``critical`` (``{clock: (from,
        to)}``, the cell pins that start and end the clock's critical path);
        ``utilisation`` (``{bel type: (used, available)}``); ``errors`` (the
        ``ERROR:`` lines).
    """
    fmax = {clock: float(mhz) for clock, mhz in _FMAX.findall(text)}
    delays = {(start, end): float(ns) for start, end, ns in _DELAY.findall(text)}
    utilisation = {bel: (int(used), int(available))
                   for bel, used, available in _UTIL.findall(text)}
    critical = {}
    for clock, body in _PATH_REPORT.findall(text):
        cells = _PATH_CELL.findall(body)
        if cells:
            critical[clock] = (cells[0], cells[-1])
    errors = [line for line in text.splitlines() if line.startswith("ERROR:")]
    return {"fmax": fmax, "delays": delays, "critical": critical,
            "utilisation": utilisation, "errors": errors}


def register_name(pin):
    """The design's name in a nextpnr cell pin: ``block.datapath.align_carry`` of
    ``block.datapath.align_carry_SB_DFFESR_Q_2_DFFLC.I0``."""
    name = pin.rsplit(".", 1)[0]
    return re.split(r"_(?:SB|TRELLIS)_|\$", name)[0]

