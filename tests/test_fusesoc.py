"""The IP as an SoC integrator receives it: the FuseSoC core and the IP-XACT
register map that ``python -m rtl_gen.build`` writes beside the Verilog.

FuseSoC runs for real on a generated core: its Verilator lint target (and a
broken copy of the Verilog fails it), and its Yosys synthesis target through
edalize (an ECP5 netlist), on the pinned YoWASP Yosys through
`rtl_gen.yosys_tcl`. The IP-XACT file is read back with PeakRDL's importer
and compared with the SystemRDL source, register by register and field by
field.
"""

from dataclasses import replace
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hw import regmap
from rtl_gen import build
from tb import runner


REPO = Path(__file__).resolve().parents[1]
#: The smallest AXI top (its FIFOs too): FuseSoC's synthesis stays short.
SMALL = ["--rows", "1", "--cols", "1", "--mem-bits", "16", "--kmax", "16", "--tmax", "2",
         "--pe-stages", "1", "--draft-lanes", "4", "--axi-burst-beats", "4",
         "--axi-fifo-depth", "4", "--axi-act-depth", "4", "--axi-out-depth", "4"]


# Session scope: conftest.py orders the tests across modules, and pytest tears a
# module fixture down whenever the next test is another module's.
@pytest.fixture(scope="session")
def axi_ip(tmp_path_factory):
    out = tmp_path_factory.mktemp("axi_ip")
    assert build.main(["--top", "axi", *SMALL, "--out", str(out)]) == 0
    return out


def _fusesoc(cores, target, build_root, extra_path=()):
    env = {**os.environ, **runner._verilator_env()}
    env["PATH"] = os.pathsep.join([*map(str, extra_path), env["PATH"],
                                   str(Path(sys.executable).parent)])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "fusesoc.main", "--cores-root", str(cores), "run",
         "--build-root", str(build_root), "--target", target, "speq:speq:axi"],
        capture_output=True, text=True, env=env, timeout=600)


def test_the_build_writes_a_core_and_ip_xact(axi_ip):
    core = (axi_ip / "speq_axi.core").read_text()
    assert core.startswith("CAPI=2:\n") and '"speq:speq:axi:' in core
    for name in ("axi.v", "speq_axi_regs.h", "speq_axi_regs.xml"):
        assert f'"{name}"' in core and (axi_ip / name).exists()
    for target in ("lint:", "sim:", "synth:"):
        assert f"\n  {target}\n" in core
    manifest = json.loads((axi_ip / "manifest.json").read_text())
    assert {"speq_axi.core", "speq_axi_regs.xml"} <= set(manifest["files"])


def _same_map(a, b):
    """Registers equal but for ``singlepulse`` (IP-XACT 1685-2014 has no such
    property: START and FLUSH export as write-only fields)."""
    strip = lambda m: [replace(r, fields=tuple(replace(f, singlepulse=False) for f in r.fields))
                       for r in m.registers]
    return strip(a) == strip(b)


def test_ip_xact_matches_the_systemrdl_source(axi_ip):
    source = regmap.register_map()
    exported = regmap.read_ipxact(axi_ip / "speq_axi_regs.xml")
    assert len(exported.registers) == len(source.registers) == 31
    assert _same_map(source, exported)
    assert exported["STATUS"].field("DONE").woclr
    # The comparison sees a change: an offset moved in the XML.
    xml = (axi_ip / "speq_axi_regs.xml").read_text()
    moved = axi_ip / "moved.xml"
    moved.write_text(xml.replace("<ipxact:addressOffset>'h14</ipxact:addressOffset>",
                                 "<ipxact:addressOffset>'h5C</ipxact:addressOffset>", 1))
    assert moved.read_text() != xml
    assert not _same_map(source, regmap.read_ipxact(moved))


def test_fusesoc_lints_the_core_with_verilator(axi_ip, tmp_path):
    run = _fusesoc(axi_ip, "lint", tmp_path / "ok")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "lint-verilator" in run.stdout + run.stderr
    # A broken copy of the Verilog fails the same target.
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in axi_ip.iterdir():
        if path.is_file():
            (broken / path.name).write_text(path.read_text())
    with open(broken / "axi.v", "a") as f:
        f.write("\nmodule broken(input a;\n")
    run = _fusesoc(broken, "lint", tmp_path / "bad")
    assert run.returncode != 0
    assert "syntax error" in run.stdout + run.stderr


def test_fusesoc_synthesises_the_core_with_yosys(axi_ip, tmp_path):
    # edalize drives Yosys through Tcl; the pinned YoWASP Yosys has none, so
    # rtl_gen.yosys_tcl stands in for `yosys` (its module docstring).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "yosys"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m rtl_gen.yosys_tcl "$@"\n')
    shim.chmod(0o755)
    run = _fusesoc(axi_ip, "synth", tmp_path / "build", [bin_dir])
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    work = next((tmp_path / "build").glob("*/synth-yosys"))
    log = (work / "yosys.log").read_text()
    # synth_ecp5 is Yosys' synth_lattice for the ECP5 family.
    assert "Executing SYNTH_LATTICE pass" in log and "cells_sim_ecp5.v" in log
    assert "End of script" in log
    netlist = json.loads(next(work.glob("*.json")).read_text())
    cells = netlist["modules"]["axi"]["cells"]
    kinds = {cell["type"] for cell in cells.values()}
    assert "LUT4" in kinds and "TRELLIS_FF" in kinds and len(cells) > 1000
