"""Bad input on every command line: one error line naming the input, exit 2, no traceback.

Every command line of the project gets bad paths (an output directory that
cannot be created, an existing file where a directory goes, a document that
is a directory or missing, a model file that is missing, a directory or not
an ``.npz``) and bad values (negative, zero, non-numeric, out of range, NaN).
Each must end as argparse ends: its usage, then exactly one line
``<prog>: error: ...`` that names the option (or, for a check across
configuration parameters, the parameter), exit status 2.

The commands run in-process through their ``main(argv)``, with their long
work (synthesis, place and route, bitstreams, benches) replaced by a
failure: a check that lets a bad value through fails the test instead of
starting minutes of tool runs. A few run in a subprocess, for the exit status
and stderr the shell sees. The other tests of these commands (good runs,
the configuration options' ranges) are in ``test_build.py``,
``test_bitstream.py``, ``test_specdec.py`` and ``test_draft_quality.py``.
"""

import functools
import importlib.util
import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

import golden.specdec
from golden.model import DEFAULT_WEIGHTS, TinyLM
import host.__main__ as host_cli
from hw.config import SpeqConfig
from rtl_gen import bitstream, build, synth


REPO = Path(__file__).resolve().parent.parent


def _load_bench(name):
    # bench/ is a directory of scripts, not a package.
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = {name: _load_bench(name) for name in ("draft_quality", "pe_lanes", "pe_area", "roofline",
                                                 "specdec", "projection")}

#: ``{command: (main, prog)}``; prog starts the error line.
COMMANDS = {
    "build": (build.main, "python -m rtl_gen.build"),
    "bitstream": (bitstream.main, "python -m rtl_gen.bitstream"),
    "host": (host_cli.main, "python -m host"),
    "host gemm": (host_cli.main, "python -m host gemm"),
    "specdec": (golden.specdec.main, "python -m golden.specdec"),
    "draft_quality": (BENCH["draft_quality"].main, "bench/draft_quality.py"),
    "pe_lanes": (BENCH["pe_lanes"].main, "python bench/pe_lanes.py"),
    "pe_area": (BENCH["pe_area"].main, "python bench/pe_area.py"),
    "roofline": (BENCH["roofline"].main, "python bench/roofline.py"),
    "bench_specdec": (BENCH["specdec"].main, "python bench/specdec.py"),
    "bench_projection": (BENCH["projection"].main, "python bench/projection.py"),
}

#: A path no one can create: procfs takes no new entries, even from root.
PROC = "/proc/speq_cli_test/x"
proc = pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
#: A read-only directory stops everyone but root.
not_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                              reason="root writes into read-only directories")

# A small draft-quality run, so that a bad value let through ends at once.
DQ = ["--no-minilm", "--shape", "8", "8", "--tokens", "1"]

#: ``(command, argv, what the error line names)``. In argv, ``{file}`` is an
#: existing file, ``{dir}`` an existing directory, ``{ro}`` a read-only
#: directory, ``{text}`` a text file named .npz, ``{npy}`` an .npy array
#: named .npz, ``{trunc}`` a truncated copy of the model, ``{noconf}`` an
#: .npz without a config, ``{badconf}`` one whose config lacks the sizes.
CASES = [
    # --- python -m rtl_gen.build ---------------------------------------------------------
    pytest.param("build", ["--top", "pe", "--out", PROC], "--out", marks=proc),
    ("build", ["--out", "{file}"], "--out"),
    ("build", ["--top", "accel", "--axi-burst-beats", "8"], "--axi-burst-beats"),
    ("build", ["--top", "axi", "--axi-burst-beats", "512"], "--axi-burst-beats"),
    ("build", ["--top", "axi", "--axi-max-outstanding", "0"], "--axi-max-outstanding"),
    ("build", ["--top", "axi", "--axi-burst-beats", "12"], "burst_beats must be a power of two"),
    ("build", ["--top", "axi", "--axi-burst-beats", "64", "--axi-fifo-depth", "32"],
     "must not exceed fifo_depth"),
    ("build", ["--out", "{file}/sub"], "--out"),
    pytest.param("build", ["--out", "{ro}/sub"], "--out", marks=not_root),
    ("build", ["--write-docs", "{dir}/r.md"], "--write-docs"),
    ("build", ["--jobs", "2"], "--jobs"),
    pytest.param("build", ["--report", "area", "--out", PROC], "--out", marks=proc),
    ("build", ["--report", "area", "--out", "{file}"], "--out"),
    ("build", ["--report", "area", "--blocks", "all", "--write-docs", "{dir}"], "--write-docs"),
    ("build", ["--report", "area", "--blocks", "all", "--write-docs", "{file}/r.md"],
     "--write-docs"),
    pytest.param("build", ["--report", "area", "--blocks", "all", "--write-docs", PROC],
                 "--write-docs", marks=proc),
    ("build", ["--report", "area", "--write-docs", "{dir}/r.md"], "--write-docs"),
    ("build", ["--report", "area", "--jobs", "0"], "--jobs"),
    ("build", ["--report", "area", "--jobs", "-3"], "--jobs"),
    ("build", ["--report", "area", "--jobs", "many"], "--jobs"),
    ("build", ["--report", "area", "--seed", "x"], "--seed"),
    ("build", ["--report", "area", "--blocks", "pe,nonesuch"], "--blocks"),
    ("build", ["--report", "area", "--targets", "ice41"], "--targets"),
    ("build", ["--report", "area", "--top", "pe", "--blocks", "pe"], "--blocks"),
    ("build", ["--report", "area", "--top", "nonesuch"], "--top"),
    # --- python -m rtl_gen.bitstream -----------------------------------------------------
    pytest.param("bitstream", ["--board", "icebreaker", "--out", PROC], "--out", marks=proc),
    ("bitstream", ["--board", "icebreaker", "--out", "{file}"], "--out"),
    ("bitstream", ["--board", "ulx3s-85f", "--search", "--out", "{file}"], "--out"),
    ("bitstream", ["--board", "icebreaker", "--baud", "0"], "--baud"),
    ("bitstream", ["--board", "icebreaker", "--baud", "-9600"], "--baud"),
    ("bitstream", ["--board", "icebreaker", "--baud", "fast"], "--baud"),
    ("bitstream", ["--board", "icebreaker", "--weight-words", "-1"], "--weight-words"),
    ("bitstream", ["--board", "icebreaker", "--weight-words", "1e3"], "--weight-words"),
    ("bitstream", ["--board", "icebreaker", "--weight-words", str(1 << 30)], "--weight-words"),
    ("bitstream", ["--board", "icebreaker", "--tmax", "0"], "--tmax"),
    ("bitstream", ["--out", "{dir}"], "--board"),
    # --- python -m host ------------------------------------------------------------------
    ("host", ["--port", "{dir}/no_such_tty", "info"], "--port"),
    ("host", ["--port", "{dir}", "info"], "--port"),
    ("host", ["--port", "{file}", "info"], "--port"),
    ("host", ["--port", "nonesuch://x", "info"], "--port"),
    ("host", ["--port", "x", "--timeout", "-1", "info"], "--timeout"),
    ("host", ["--port", "x", "--timeout", "0", "info"], "--timeout"),
    ("host", ["--port", "x", "--timeout", "abc", "info"], "--timeout"),
    ("host", ["--port", "x", "--timeout", "nan", "info"], "--timeout"),
    ("host", ["--port", "x", "--timeout", "inf", "info"], "--timeout"),
    ("host", ["--port", "x", "--timeout", "1e300", "info"], "--timeout"),
    ("host", ["--port", "x", "--baud", "0", "info"], "--baud"),
    ("host", ["--port", "x", "--baud", "1e5", "info"], "--baud"),
    ("host", ["--port", "x"], "command"),
    ("host gemm", ["--port", "x", "gemm", "--n", "0"], "--n"),
    ("host gemm", ["--port", "x", "gemm", "--n", "-5"], "--n"),
    ("host gemm", ["--port", "x", "gemm", "--n", str(1 << 16)], "--n"),
    ("host gemm", ["--port", "x", "gemm", "--k", "6"], "--k"),
    ("host gemm", ["--port", "x", "gemm", "--k", "0"], "--k"),
    ("host gemm", ["--port", "x", "gemm", "--t", "two"], "--t"),
    ("host gemm", ["--port", "x", "gemm", "--seed", "-1"], "--seed"),
    ("host gemm", ["--port", "x", "gemm", "--repeat", "0"], "--repeat"),
    ("host gemm", ["--port", "x", "gemm", "--mode", "fast"], "--mode"),
    # --- python -m golden.specdec (test_specdec.py has --gamma 0, --tokens 400 and a
    # missing --weights) -------------------------------------------------------------------
    ("specdec", ["--prompt", "x", "--weights", "{dir}"], "--weights"),
    ("specdec", ["--prompt", "x", "--weights", "{text}"], "--weights"),
    ("specdec", ["--prompt", "x", "--weights", "{npy}"], "--weights"),
    ("specdec", ["--prompt", "x", "--weights", "{trunc}"], "--weights"),
    ("specdec", ["--prompt", "x", "--weights", "{noconf}"], "--weights"),
    ("specdec", ["--prompt", "x", "--weights", "{badconf}"], "--weights"),
    ("specdec", ["--prompt", "x", "--tokens", "-1"], "--tokens"),
    ("specdec", ["--prompt", "x", "--tokens", "ten"], "--tokens"),
    ("specdec", ["--prompt", "x", "--gamma", "-2"], "--gamma"),
    ("specdec", ["--prompt", "x", "--mem-latency", "0"], "--mem-latency"),
    ("specdec", ["--prompt", ""], "--prompt"),
    ("specdec", ["--prompt", "\udcff"], "--prompt"),
    ("specdec", ["--tokens", "3"], "--prompt"),
    # --- bench/draft_quality.py (test_draft_quality.py has --shape, --tokens, --rows and
    # --frac-bits out of range) ------------------------------------------------------------
    ("draft_quality", [*DQ, "--sigma", "nan"], "--sigma"),
    ("draft_quality", [*DQ, "--sigma", "-0.02"], "--sigma"),
    ("draft_quality", [*DQ, "--sigma", "0"], "--sigma"),
    ("draft_quality", [*DQ, "--sigma", "1e6"], "--sigma"),
    ("draft_quality", [*DQ, "--sigma", "1e-12"], "--sigma"),
    ("draft_quality", [*DQ, "--outlier-frac", "1.5"], "--outlier-frac"),
    ("draft_quality", [*DQ, "--outlier-frac", "-0.1"], "--outlier-frac"),
    ("draft_quality", [*DQ, "--outlier-frac", "nan"], "--outlier-frac"),
    ("draft_quality", [*DQ, "--outlier-gain", "inf"], "--outlier-gain"),
    ("draft_quality", [*DQ, "--outlier-gain", "0"], "--outlier-gain"),
    ("draft_quality", [*DQ, "--outlier-frac", "1", "--outlier-gain", "1e7"], "--outlier-gain"),
    ("draft_quality", [*DQ, "--seed", "-1"], "--seed"),
    ("draft_quality", [*DQ, "--tokens", "x"], "--tokens"),
    ("draft_quality", [*DQ, "--write-docs", "--docs", "{dir}"], "--docs"),
    ("draft_quality", [*DQ, "--write-docs", "--docs", "{file}/r.md"], "--docs"),
    pytest.param("draft_quality", [*DQ, "--write-docs", "--docs", PROC], "--docs", marks=proc),
    ("draft_quality", ["--shape", "8", "8", "--tokens", "1"], "--no-minilm"),
    # --- bench/pe_lanes.py ---------------------------------------------------------------
    ("pe_lanes", ["--pe-stages", "0"], "--pe-stages"),
    ("pe_lanes", ["--pe-stages", "four"], "--pe-stages"),
    pytest.param("pe_lanes", ["--out", PROC], "--out", marks=proc),
    ("pe_lanes", ["--out", "{file}"], "--out"),
    ("pe_lanes", ["--write-docs", "{dir}/missing.md"], "--write-docs"),
    ("pe_lanes", ["--write-docs", "{dir}"], "--write-docs"),
    # --- bench/pe_area.py ----------------------------------------------------------------
    ("pe_area", ["--sizes", "4by4"], "--sizes"),
    ("pe_area", ["--sizes", "2x40"], "--sizes"),
    ("pe_area", ["--draft-lanes", "3"], "--draft-lanes"),
    ("pe_area", ["--pe-stages", "0"], "--pe-stages"),
    ("pe_area", ["--accel", "--mem-bits", "48"], "--accel"),
    ("pe_area", ["--accel", "--kmax", "3"], "--accel"),
    ("pe_area", ["--out", "{file}"], "--out"),
    ("pe_area", ["--write-docs", "{dir}/missing.md"], "--write-docs"),
    # --- bench/roofline.py ---------------------------------------------------------------
    ("roofline", ["--rows", "0"], "--rows"),
    ("roofline", ["--mem-bits", "abc"], "--mem-bits"),
    ("roofline", ["--rows", "1", "--cols", "1", "--mem-bits", "32"], "mem_bits"),
    ("roofline", ["--mem-latency", "0"], "--mem-latency"),
    ("roofline", ["--rtl", "--write-docs", "{dir}"], "--write-docs"),
    ("roofline", ["--rtl", "--write-docs", "{file}/r.md"], "--write-docs"),
    pytest.param("roofline", ["--rtl", "--write-docs", PROC], "--write-docs", marks=proc),
    # --- bench/specdec.py ----------------------------------------------------------------
    ("bench_specdec", ["--weights", "{dir}/missing.npz"], "--weights"),
    ("bench_specdec", ["--weights", "{dir}"], "--weights"),
    ("bench_specdec", ["--weights", "{text}"], "--weights"),
    ("bench_specdec", ["--prompts", "0"], "--prompts"),
    ("bench_specdec", ["--prompts", "100000"], "--prompts"),
    ("bench_specdec", ["--tokens", "-4"], "--tokens"),
    ("bench_specdec", ["--check", "-1"], "--check"),
    ("bench_specdec", ["--long", "-1"], "--long"),
    ("bench_specdec", ["--long", "100000"], "--long"),
    ("bench_specdec", ["--plots", "{file}"], "--plots"),
    pytest.param("bench_specdec", ["--plots", PROC], "--plots", marks=proc),
    ("bench_specdec", ["--write-docs", "{dir}/missing.md"], "--write-docs"),
    ("bench_specdec", ["--write-docs", "{dir}"], "--write-docs"),
    # --- bench/projection.py ---------------------------------------------------------------
    ("bench_projection", ["--plots", "{file}"], "--plots"),
    ("bench_projection", ["--write-docs", "{dir}/missing.md"], "--write-docs"),
    ("bench_projection", ["--write-docs", "{dir}"], "--write-docs"),
]


def _with_ids(cases):
    """`CASES` as pytest params whose ids are the command lines."""
    params = []
    for case in cases:
        values, marks = (case.values, case.marks) if hasattr(case, "values") else (case, ())
        command, argv = values[:2]
        params.append(pytest.param(*values, marks=marks, id=" ".join([command, *argv])))
    return params


@pytest.fixture
def paths(tmp_path):
    """The paths the ``{name}`` placeholders of `CASES` stand for."""
    (tmp_path / "file").write_text("a file, not a directory\n")
    (tmp_path / "dir").mkdir()
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    (tmp_path / "text.npz").write_text("weights\n")
    np.save(tmp_path / "array.npy", np.zeros(3, np.float16))
    (tmp_path / "array.npy").rename(tmp_path / "npy.npz")
    (tmp_path / "trunc.npz").write_bytes(DEFAULT_WEIGHTS.read_bytes()[:4096])
    np.savez(tmp_path / "noconf.npz", w=np.zeros(3, np.float16))
    np.savez(tmp_path / "badconf.npz", config=np.array('{"d_model": 64}'))
    yield {name: str(tmp_path / name) for name in ("file", "dir", "ro")} | {
        name: str(tmp_path / f"{name}.npz") for name in ("text", "npy", "trunc", "noconf",
                                                           "badconf")}
    ro.chmod(0o700)


def _must_not_run(*args, **kwargs):
    raise AssertionError("a bad input got past the checks to the long work")


class _NoPort:
    """Stands for `host.board.SerialTransport`: opens nothing (the fake board
    of `test_host_board_limits` never uses it)."""

    def __init__(self, port, baud, timeout):
        pass

    def close(self):
        pass


@pytest.fixture
def guarded(monkeypatch):
    """The long work of every command replaced by `_must_not_run`."""
    monkeypatch.setattr(synth, "report", _must_not_run)
    monkeypatch.setattr(synth, "Tool", _must_not_run)
    monkeypatch.setattr(build, "write", _must_not_run)
    monkeypatch.setattr(bitstream, "build", _must_not_run)
    monkeypatch.setattr(bitstream, "search", _must_not_run)
    monkeypatch.setattr(host_cli, "gemm_check", _must_not_run)
    monkeypatch.setattr(golden.specdec, "speculative", _must_not_run)
    monkeypatch.setattr(BENCH["pe_lanes"], "generic_area", _must_not_run)
    monkeypatch.setattr(BENCH["pe_area"], "area", _must_not_run)
    monkeypatch.setattr(BENCH["roofline"], "check_rtl", _must_not_run)
    monkeypatch.setattr(BENCH["roofline"], "format_report", _must_not_run)
    monkeypatch.setattr(BENCH["specdec"], "run", _must_not_run)
    monkeypatch.setattr(BENCH["projection"], "tables", _must_not_run)
    # One load of the shipped model for all cases (about a second each).
    monkeypatch.setattr(BENCH["specdec"], "TinyLM", _cached_model)
    # draft_quality's run() is where the Gaussian weights are checked; DQ keeps
    # it tiny, and a bad value let through returns results instead of exiting.
    # Its MiniLM weights are missing here even where they are installed.
    monkeypatch.setattr(BENCH["draft_quality"], "MINILM_PACKAGE", "no_such_package_for_speq")


@functools.cache
def _cached_model(path, draft_lanes=None):
    return TinyLM(path, draft_lanes=draft_lanes)


def _check_error(code, err, prog, names):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    # argparse's usage (its first line, then indented ones), then one error line.
    assert lines[0].startswith("usage: "), err
    assert all(line.startswith(" ") for line in lines[1:-1]), err
    last = lines[-1]
    assert last.startswith(f"{prog}: error: "), last
    assert names in last, last


@pytest.mark.parametrize("command,argv,names", _with_ids(CASES))
def test_bad_input_is_one_error_line(guarded, paths, capsys, command, argv, names):
    main, prog = COMMANDS[command]
    argv = [arg.format(**paths) for arg in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    _check_error(exit_info.value.code, capsys.readouterr().err, prog, names)


@pytest.mark.parametrize("argv,names", [
    (["gemm", "--k", "128"], "--k"),             # the board's kmax is 64
    (["gemm", "--t", "3"], "--t"),               # its tmax is 2
    (["gemm", "--n", "4096", "--k", "64"], "--n"),   # 1024 weight words
])
def test_host_board_limits(monkeypatch, capsys, argv, names):
    """Limits the board states when it connects: errors of the gemm options too."""
    class Board:
        config = SpeqConfig(rows=1, cols=1, tmax=2, kmax=64, mem_bits=16)
        info = {"weight_words": 1024}

        def __init__(self, transport):
            pass

        async def connect(self):
            return self.info

        def images(self, *args, **kwargs):
            raise AssertionError("N x K must be refused before its images are made")

    monkeypatch.setattr(host_cli, "SerialTransport", _NoPort)
    monkeypatch.setattr(host_cli, "Board", Board)
    with pytest.raises(SystemExit) as exit_info:
        host_cli.main(["--port", "x", *argv])
    _check_error(exit_info.value.code, capsys.readouterr().err, "python -m host gemm", names)


@pytest.mark.parametrize("argv,prog,names", [
    # The example: a traceback from mkdir before.
    pytest.param(["-m", "rtl_gen.build", "--top", "pe", "--out", PROC],
                 "python -m rtl_gen.build", "--out", marks=proc),
    (["-m", "host", "--port", "{dir}/no_such_tty", "info"], "python -m host", "--port"),
    (["-m", "host", "--port", "x", "--timeout", "-1", "info"], "python -m host", "--timeout"),
    (["bench/roofline.py", "--write-docs", "{dir}"], "python bench/roofline.py", "--write-docs"),
])
def test_from_the_shell(paths, argv, prog, names):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    run = subprocess.run([sys.executable, *(arg.format(**paths) for arg in argv)],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    _check_error(run.returncode, run.stderr, prog, names)
    assert run.stdout == ""


def test_checks_leave_nothing_behind(guarded, paths, capsys, tmp_path):
    """The path checks create nothing: a directory made before a later check
    fails would be left empty."""
    out = tmp_path / "new" / "out"
    with pytest.raises(SystemExit):
        # --out is fine; --write-docs is not, and is checked after it.
        build.main(["--report", "area", "--blocks", "all", "--out", str(out),
                    "--write-docs", paths["dir"]])
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in Path(paths["dir"]).iterdir()) == []
    capsys.readouterr()


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_roofline_rtl_check_builds_the_accelerator_bench_top():
    # make bench's `bench/roofline.py --rtl` builds tb.test_accel's top; when
    # that bench's harness() came to take an accelerator, the RTL check
    # broke and nothing in make test saw it.
    from hw.config import SpeqConfig
    from tb.accel_harness import AccelHarness
    top = BENCH["roofline"].rtl_top(SpeqConfig(rows=1, cols=2, tmax=2, kmax=16), 8)
    assert isinstance(top, AccelHarness)
    assert top.accel.config == SpeqConfig(rows=1, cols=2, tmax=2, kmax=16)
