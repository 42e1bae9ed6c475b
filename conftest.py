"""Test order for ``make test``'s workers (pytest-xdist, ``--dist worksteal``).

The suite is a few long simulator and tool runs and many short tests. A
worker that draws a long run last keeps the whole suite waiting, so the long
ones go first (longest first, from a fresh clone's ``--durations``) and the
short ones fill in; worksteal moves what is left to whichever worker is idle.
"""

#: Test files (or node ids) by the time their longest item took on a fresh
#: clone, seconds; anything unnamed counts as short.
FIRST = {
    "tb/test_accel.py": 110,
    "tests/test_explore.py::test_sweep_on_a_ray_cluster": 95,
    "tests/test_bitstream.py::test_ecp5_bitstream": 75,
    "tb/test_pe.py": 60,
    "tb/test_axi.py": 45,
    "tests/test_specdec.py": 40,
    "tests/test_fusesoc.py::test_fusesoc_synthesises_the_core_with_yosys": 30,
    "tb/test_decoder.py": 40,
    "tb/test_board.py": 26,
    "tb/test_array.py": 20,
    "tests/test_build.py": 15,
}


def _weight(item):
    best = 0
    for prefix, seconds in FIRST.items():
        if item.nodeid.startswith(prefix):
            best = max(best, seconds)
    return best


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=_weight, reverse=True)      # stable: file order within a weight
