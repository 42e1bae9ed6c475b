# amaranth: UnusedElaboratable=no
"""The manifest's memory-image layout is enough to build every image a pass
reads: `tb.manifest_images` (which reads nothing but the manifest) against
`golden.perf` (the layout the RTL benches check), for every mode.

One manifest is the one ``python -m rtl_gen.build`` writes; the others are
`rtl_gen.build.manifest` of the elaborated top without its port list (the
layout does not depend on the ports, and converting a top for them takes
most of a build's time), which the first test also compares with the
written one."""

import json

import numpy as np
import pytest

# The tops are built for their manifests, not elaborated (the warning comes
# from the files that build them, which the comment on this file's first
# line does not cover).
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

from golden import perf, speq16
from hw.config import SpeqConfig
from rtl_gen import build
from tb import manifest_images


def _unconverted_manifest(top, config):
    """`build.manifest` of ``top`` under ``config`` as the JSON file holds
    it, but for the ports (an empty list: no conversion)."""
    component = build.elaborate(top, config)
    return json.loads(json.dumps(build.manifest(top, config, component, top, [])))


def _argv(top, config):
    return ["--top", top, *(word for name, value in config.to_dict().items()
                            if value != getattr(SpeqConfig(), name)
                            for word in (build._option(name), str(value)))]


@pytest.mark.parametrize("top,config,written", [
    ("accel", SpeqConfig(rows=1, cols=3, mem_bits=48, pe_stages=1, tmax=3, kmax=64,
                         draft_lanes=2), True),
    ("axi", SpeqConfig(rows=2, cols=2, mem_bits=32, pe_stages=2, tmax=3, kmax=64,
                       draft_lanes=2), False),
], ids=["accel_written", "axi"])
def test_images_from_the_manifest_are_golden_perfs(tmp_path, top, config, written):
    manifest = _unconverted_manifest(top, config)
    if written:
        assert build.main([*_argv(top, config), "--out", str(tmp_path)]) == 0
        written_manifest = json.loads((tmp_path / "manifest.json").read_text())
        assert written_manifest["ports"]
        assert {**written_manifest, "ports": [], "files": manifest["files"]} == manifest
        manifest = written_manifest
    layout = manifest["memory_images"]
    pes, slots, bits = layout["pes"], layout["slots"], layout["mem_bits"]
    rng = np.random.default_rng(16)      # the seed of the argv lists' length
    for n, k in [(1, 4), (pes * slots + 1, 8), (3 * pes * slots - 1, 12), (7, 40)]:
        w = (rng.standard_normal((n, k)) * 0.1).astype(np.float16)
        w[0, :4] = [np.inf, -np.inf, np.nan, 0]  # cached values may be anything
        enc = speq16.encode(np.nan_to_num(w, posinf=1, neginf=-1))
        for mode in perf.MODES:
            weights = np.nan_to_num(w, posinf=1, neginf=-1) if mode in \
                ("draft", "verify", "baseline") else w
            got = manifest_images.images(layout, mode, n, k, words=enc.words.tolist(),
                                         fp16=weights.view(np.uint16).tolist())
            want = perf.pass_images(mode, weights, enc, pes, slots, bits)
            assert got == want, f"{mode} N={n} K={k}"


def test_multi_head_images_from_the_manifest_are_golden_perfs():
    # head_groups 3 of 6 PEs: each head's rows on 2 PEs (the manifest's multihead).
    config = SpeqConfig(rows=2, cols=3, mem_bits=96, pe_stages=1, head_groups=3)
    layout = _unconverted_manifest("accel", config)["memory_images"]
    assert (layout["head_groups"], layout["head_pes"]) == (3, 2)
    pes, slots, bits = layout["pes"], layout["slots"], layout["mem_bits"]
    rng = np.random.default_rng(3)
    for n, k in [(1, 4), (2 * slots + 1, 8), (5, 12)]:
        w = (rng.standard_normal((3 * n, k)) * 0.1).astype(np.float16)
        enc = speq16.encode(w)
        for mode in perf.MODES:
            got = manifest_images.images(layout, mode, n, k, words=enc.words.tolist(),
                                         fp16=w.view(np.uint16).tolist(), heads=3)
            want = perf.pass_images(mode, w, enc, pes, slots, bits, heads=3)
            assert got == want, f"{mode} N={n} K={k} x 3 heads"


def test_a_wrong_layout_gives_other_images():
    # The comparison above can fail: the residual lanes of 4 bits instead of 12.
    layout = {"pes": 2, "slots": 2, "mem_bits": 32, "modes": {"verify": {
        "plane0": {"source": "speq16_word", "shift": 12, "mask": 15, "lane_bits": 4,
                   "row_bits": 16},
        "plane1": {"source": "speq16_word", "shift": 0, "mask": 15, "lane_bits": 4,
                   "row_bits": 16}}}}
    w = np.linspace(-1, 1, 24).astype(np.float16).reshape(3, 8)
    enc = speq16.encode(w)
    got = manifest_images.images(layout, "verify", 3, 8, words=enc.words.tolist())
    assert got[0] == perf.draft_image(enc, 2, 2, 32)
    assert got[1] != perf.residual_image(enc, 2, 2, 32)
