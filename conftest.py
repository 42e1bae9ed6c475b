"""Test order for ``make test``'s workers (pytest-xdist, ``--dist worksteal``).

The suite is a few long simulator and tool runs and many short tests. A
worker that draws a long run last keeps the whole suite waiting, so the long
ones go first and the short ones fill in.

``--dist worksteal`` hands each worker one contiguous share of the collected
order (the first half to one worker, the second to the other) and lets an
idle worker take the second half of what another has still queued. So the
order is built as those shares: the tests go to the workers longest first,
each to the share with the least time so far (longest processing time
first), every share sorted longest first. Both workers then start on long
runs, and what is stolen at the end is the short tail.
"""

import gc

import pytest

#: Seconds each of these tests (node id prefixes, the longest match counts)
#: took on a two-core machine (CPU time of the test and its simulator and
#: tools; wall time for the Ray test, which waits for Ray); every other test
#: counts `SHORT`. Only the order depends on them.
SECONDS = {
    "tests/test_explore.py::test_sweep_on_a_ray_cluster": 70,
    "tb/test_axi.py::test_axi[2x2_l2-icarus]": 50,
    "tb/test_axi.py::test_axi[1x2-verilator]": 38,
    "tb/test_accel.py::test_accel[2x2_l4-icarus]": 45,
    "tb/test_accel.py::test_accel[2x2_l4-verilator]": 30,
    "tb/test_accel.py::test_accel[default-icarus]": 28,
    "tb/test_accel.py::test_accel[2x2_l1-verilator]": 20,
    "tb/test_accel.py::test_accel[1x3_s1_b48_l2-verilator]": 17,
    "tb/test_decoder.py::test_decoder[verilator]": 20,
    "tb/test_decoder.py::test_decoder[icarus]": 12,
    "tb/test_decoder.py::test_decoder_combinational": 12,
    "tb/test_memfile.py": 5,
    "tests/test_fusesoc.py::test_fusesoc_synthesises_the_core_with_yosys": 40,
    "tests/test_fusesoc.py::test_the_build_writes_a_core_and_ip_xact": 5,
    "tests/test_fusesoc.py::test_fusesoc_lints_the_core_with_verilator": 3,
    "tb/test_board.py::test_board[1x2_l4-icarus]": 28,
    "tb/test_board.py::test_board[1x2_l1-icarus]": 18,
    "tests/test_build.py::test_axi_outputs_are_registered": 20,
    "tb/test_array.py::test_array[2x2_l4-icarus]": 20,
    "tb/test_array.py::test_array[1x3_s1_l1-icarus]": 9,
    "tb/test_array.py::test_array[2x1_s2_l2-icarus]": 9,
    "tb/test_pe.py::test_pe[speq_l4-verilator]": 19,
    "tb/test_pe.py::test_pe[speq_l1-verilator]": 17,
    "tb/test_pe.py::test_pe[speq_l4_s6_f48_dsp-verilator]": 15,
    "tb/test_pe.py::test_pe[fp16-verilator]": 14,
    "tb/test_pe.py::test_pe[speq_l1_s1-verilator]": 13,
    "tb/test_pe.py::test_pe[speq_l2_s1_f23-verilator]": 13,
    "tb/test_pe.py::test_pe[speq_l2_s4_dsp-verilator]": 13,
    "tb/test_pe.py::test_pe[speq_l4-icarus]": 14,
    "tb/test_pe.py::test_pe[speq_l1-icarus]": 11,
    "tb/test_pe.py::test_pe[fp16-icarus]": 8,
    "tests/test_specdec.py::test_speculative_output_equals_autoregressive": 13,
    "tests/test_build.py::test_every_top_elaborates_with_a_latency[axi]": 9,
    "tests/test_build.py::test_every_top_elaborates_with_a_latency": 2,
    "tests/test_build.py::test_axi_verilog_lints_without_defect_warnings": 4,
    "tests/test_manifest_images.py::test_images_from_the_manifest_are_golden_perfs[accel_written]": 3,
    "tests/test_build.py::test_axi_top_writes_verilog_register_map_and_manifest": 3,
    "tests/test_build.py::test_axi_options_reach_the_top_and_the_manifest": 2,
    "tests/test_build.py::test_compute_bound_draft_lanes_warn_but_build": 2,
    "tests/test_build.py::test_accel_manifest_and_bad_mem_bits": 2,
    "tests/test_synth.py::test_place_and_route_of_the_decoder": 5,
    "tests/test_projection.py::test_the_shared_half_width_cache_holds_the_speedup": 4,
    "tests/test_enable.py": 3,
    "tests/test_synth.py": 2,
    "tests/test_projection.py": 2,
    "tests/test_specdec.py": 2,
}
#: Seconds of a test not in `SECONDS` (most take a fraction of a second).
SHORT = 0.1


def _seconds(item):
    best = None
    for prefix, seconds in SECONDS.items():
        if item.nodeid.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = prefix, seconds
    return best[1] if best else SHORT


def _shares(count, workers):
    """Sizes of the workers' first shares of ``count`` tests, as worksteal deals them."""
    sizes = []
    for worker in range(workers):
        sizes.append(count // (workers - worker))
        count -= sizes[-1]
    return sizes


def order(items, workers):
    """``items`` in the order described in the module docstring."""
    ranked = sorted(items, key=_seconds, reverse=True)      # stable: file order within a time
    sizes = _shares(len(ranked), max(1, workers))
    shares = [[] for _ in sizes]
    load = [0.0] * len(sizes)
    for item in ranked:
        share = min((i for i in range(len(sizes)) if len(shares[i]) < sizes[i]),
                    key=lambda i: load[i])
        shares[share].append(item)
        load[share] += _seconds(item)
    return [item for share in shares for item in share]


# After the other plugins' hooks (the soak marker's deselection): the shares
# are cut from the final collection.
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    items[:] = order(items, workers)


@pytest.fixture(autouse=True)
def _unused_tops_collected(request):
    """A test that builds tops without elaborating them says so with
    ``filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")``; Amaranth
    warns when such an object is freed, so it is freed here, in the test's
    teardown, where the filter holds (not at some later test or at exit)."""
    yield
    if any("UnusedElaboratable" in str(arg)
           for mark in request.node.iter_markers("filterwarnings") for arg in mark.args):
        gc.collect()
