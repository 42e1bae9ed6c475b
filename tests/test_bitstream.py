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


def _cli(*args, timeout=1200):
    return subprocess.run([sys.executable, "-m", "rtl_gen.bitstream", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)


@pytest.mark.parametrize("args,message", [
    (["--board", "nope"], "invalid choice: 'nope'"),
    (["--board", "icebreaker", "--rows", "17"], "must be an integer from 1 to 16"),
    (["--board", "icebreaker", "--rows", "2", "--mem-bits", "48"], "mem_bits must divide 16 x rows x cols = 32"),
    (["--board", "icebreaker", "--weight-words", "0"], "weight_words must be an integer from 1"),
    (["--board", "icebreaker", "--baud", "9000000"], "the UART needs at least 4"),
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
    assert summary["fmax_mhz"] > summary["clock_mhz"] == 25
    assert "Fmax" in run.stdout and summary["bitstream"] in run.stdout
