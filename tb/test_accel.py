# amaranth: UnusedElaboratable=no
"""Bench of the accelerator (`hw.accel.SpeqAccel`): whole passes through the
controller, the memory port and the array.

The bench plays the host and the memory. The memory is a pipeline of
``mem_latency`` cycles that advances with the accelerator (``mem.en``) and
stalls it at random; the output is blocked at random. For every pass it checks:

- ``Y`` bit for bit against `golden.arith` (draft, verify over T tokens,
  baseline over T tokens), every output exactly once;
- the status: cycles equal to `golden.perf.pass_cost` plus the cycles the
  accelerator was frozen (memory stalls and blocked output), bits read and MACs
  equal to the model, and a draft pass reading a quarter of the bits of the
  verify pass over the same weights;
- the verify pass against a baseline pass over the same T tokens and, on
  Verilator, each token against a baseline pass over that token alone;
- refused commands (bad op, N, K, T, a draft or verify pass before the remap
  tables were loaded) answer with their error and leave the accelerator working.
"""

import functools
import json
import os
from pathlib import Path

import numpy as np

import cocotb

import pytest

from golden import arith, perf, speq16
from hw.accel import SpeqAccel
from hw.config import SpeqConfig
from hw.controller import Error, Op
from tb import accel_harness, drive, memfile, payload, runner


TOPLEVEL = "accel"
INPUTS = ("go", "cmd", "act_count", "p_stall", "p_block", "seed")
#: Words of the bench's weight memory (the images of a pass go anywhere in it).
MEM_DEPTH = 1 << 16
#: Result beats one command may send.
OUT_DEPTH = 4096


def accel_of(config):
    """The accelerator of a `CONFIGS` entry's ``config``: `SpeqConfig`'s
    parameters and, optionally, ``registered_tests`` (`SpeqAccel`)."""
    config = dict(config)
    registered_tests = config.pop("registered_tests", True)
    return SpeqAccel(SpeqConfig(**config), registered_tests=registered_tests)


def harness(accel, mem_latency):
    """The bench's top: ``accel`` in an `AccelHarness`."""
    config = accel.config
    return accel_harness.AccelHarness(
        accel, mem_depth=MEM_DEPTH, mem_latency=mem_latency,
        act_depth=config.tmax * config.kmax // 4, out_depth=OUT_DEPTH)


def _accel():
    return accel_of(json.loads(os.environ["ACCEL_CONFIG"]))


class Host:
    """Plays the host through the bench's `tb.accel_harness.AccelHarness`:
    commands, activations and the weight memory; collects outputs."""

    def __init__(self, dut, accel, rng):
        self.dut, self.accel, self.rng = dut, accel, rng
        self.cmd_layout = accel.cmd.payload.shape()
        self.act_layout = accel.act.payload.shape()
        self.out_layout = accel.out.payload.shape()
        self.status_layout = accel.status.payload.shape()
        self.commands = 0

    def command(self, op, **fields):
        values = {"op": [int(op.value) if isinstance(op, Op) else int(op)]}
        values.update({name: [value] for name, value in fields.items()})
        return payload.pack(self.cmd_layout, values)[0]

    def status(self, value):
        return {name: payload.field(self.status_layout, [value], name)[0]
                for name in ("op", "error", "cycles", "bits", "macs")}

    async def write_memory(self, segments):
        """Weight memory words: ``segments`` is a list of ``(word address,
        words)``."""
        await memfile.load(self.dut, "wmem", segments)

    async def read_memory(self, addr, count):
        """``count`` weight memory words from word address ``addr`` on."""
        return await memfile.dump(self.dut, "wmem", count, addr)

    async def run(self, cmd, acts=(), p_stall=0.0, p_block=0.0):
        """Send one command (and its activations); return (status, outputs,
        frozen cycles, busy cycles)."""
        self.commands += 1
        status, outs, frozen, busy = await accel_harness.run_command(
            self.dut, cmd, acts, p_stall=p_stall, p_block=p_block,
            seed=int(self.rng.integers(1, 1 << 32)), timeout=200_000 + 200 * len(acts))
        assert len(outs) <= OUT_DEPTH, f"{len(outs)} result beats, the bench keeps {OUT_DEPTH}"
        return self.status(status), outs, frozen, busy

    def gather(self, outs, t, n, fp16, heads=1):
        """Y (T x N, float32) from output beats; every output exactly once.
        With ``fp16`` each FP16 result must be ``fl16`` of its FP32 one, else 0.
        A multi-head pass' (``heads`` > 1): heads x T x N, PE p's result
        head p // (P / heads)'s."""
        layout = self.out_layout
        y = np.zeros((heads, t, n), dtype=np.uint32)
        y16 = np.zeros((heads, t, n), dtype=np.uint16)
        seen = np.zeros((heads, t, n), dtype=np.int64)
        pes = self.accel.array.pes
        per = pes // heads
        for value in outs:
            row = payload.field(layout, [value], "row")[0]
            token = payload.field(layout, [value], "token")[0]
            for p in range(pes):
                q, col = divmod(p, per)
                if row + col < n:
                    y[q, token, row + col] = payload.field(layout, [value], "acc", p)[0]
                    y16[q, token, row + col] = payload.field(layout, [value], "half", p)[0]
                    seen[q, token, row + col] += 1
        assert (seen == 1).all(), f"outputs seen {seen.min()}..{seen.max()} times, not once"
        y = y.view(np.float32)
        if fp16:
            with np.errstate(over="ignore"):
                _same(y16.view(np.float16), y.astype(np.float16), "FP16 outputs")
        else:
            assert not y16.any(), "FP16 outputs sent without a request"
        return y if heads > 1 else y[0]


_same = drive.same_bits


#: Most cycles of a random shape's verify pass on Icarus (by the cycle
#: model): it takes milliseconds per cycle of an array.
SHAPE_CYCLES = 800


def _shapes(rng, config, count, large):
    """Random (N, K, T): N and K up to 256 (K up to kmax), T up to tmax, with a
    bounded amount of work so that the bench stays quick (at most 12,000
    MACs); with ``large`` (Verilator) the first two may be single-token passes
    up to 40,000 weights, without it (Icarus) a verify pass takes at most
    `SHAPE_CYCLES` cycles."""
    machine = perf.machine(config)
    shapes = []
    while len(shapes) < count:
        n = int(rng.integers(1, 257))
        k = 4 * int(rng.integers(1, min(256, config.kmax) // 4 + 1))
        t = int(rng.integers(1, config.tmax + 1))
        most = int(os.environ.get("SHAPE_CYCLES", SHAPE_CYCLES))
        small = n * k * t <= 12_000 and (large or perf.pass_cost(
            "verify", n, k, t, mem_latency=8, **machine).cycles <= most)
        if small or (large and len(shapes) < 2 and n * k <= 40_000 and t == 1):
            shapes.append((n, k, t))
    return shapes


class Bench:
    """Host, memory model, cycle model and the checks of one pass."""

    def __init__(self, dut, accel, rng, seed):
        self.accel, self.config, self.rng = accel, accel.config, rng
        self.mem_latency = int(os.environ["MEM_LATENCY"])
        self.host = Host(dut, accel, rng)
        self.machine = perf.machine(self.config)
        self.summary = {"passes": 0, "outputs": 0, "refused": 0, "frozen": 0, "seed": seed,
                        "modes": {mode: 0 for mode in perf.MODES}}

    async def load_table(self, enc):
        host = self.host
        for code in range(8):
            status, _, _, _ = await host.run(host.command(
                Op.TABLE, code=code, base=int(enc.base[code]), exp=int(enc.draft_exp[code]),
                half=int(enc.draft_half[code]), zero=int(enc.draft_zero[code])))
            assert status["error"] == Error.OK.value and status["op"] == Op.TABLE.value

    async def run_pass(self, mode, x, w, enc, p_stall=0.0, p_block=0.0, fp16=False, heads=1):
        """Run one pass; check its status against the cycle model; return (Y, status).
        A multi-head pass (``heads`` = `head_groups`): ``x`` is heads x T x
        K, ``w`` (and ``enc``) the heads' N x K stacked, Y heads x T x N."""
        host, rng, machine = self.host, self.rng, self.machine
        pes, slots, bits = machine["pes"], machine["slots"], self.config.mem_bits
        t, k = x.shape[-2:]
        n = w.shape[0] // heads
        # Place the planes at random word addresses, one after the other.
        images = perf.pass_images(mode, w, enc, pes, slots, bits, heads)
        gaps = rng.integers(0, 100, len(images))
        room = MEM_DEPTH - sum(map(len, images)) - int(gaps.sum())
        assert room > 0, f"{mode} N={n} K={k}: the images do not fit the bench's memory"
        addrs, at = [], int(rng.integers(0, room))
        for image, gap in zip(images, gaps):
            addrs.append(at)
            at += len(image) + int(gap)
        await host.write_memory(list(zip(addrs, images)))
        addrs.append(0)
        rows = x.reshape(-1, k).view(np.uint16)        # head after head
        acts = payload.pack(host.act_layout, {
            (lane,): rows[:, lane::4].ravel() for lane in range(4)})
        op = Op[mode.upper()]
        status, outs, frozen, busy = await host.run(
            host.command(op, n=n, k=k, t=t, addr0=addrs[0], addr1=addrs[1], fp16=int(fp16),
                         **({"multihead": 1} if heads > 1 else {})), acts,
            p_stall=p_stall, p_block=p_block)
        what = f"{mode} pass N={n} K={k} T={t}" + (f" of {heads} heads" if heads > 1 else "")
        assert status["error"] == Error.OK.value, f"{what} refused: {status}"
        cost = perf.pass_cost(mode, n, k, t, mem_latency=self.mem_latency, heads=heads,
                              **machine)
        assert status["cycles"] == busy, f"{what}: status says {status['cycles']} cycles, bench saw {busy}"
        assert status["cycles"] - frozen == cost.cycles, (
            f"{what}: {status['cycles']} cycles with {frozen} frozen, model {cost.cycles}")
        assert status["bits"] == cost.bits and status["macs"] == cost.macs, (
            f"{what}: bits {status['bits']} macs {status['macs']}, model {cost.bits} {cost.macs}")
        summary = self.summary
        summary["passes"] += 1
        summary["modes"][mode] += 1
        summary["outputs"] += heads * t * n
        summary["frozen"] += frozen
        return host.gather(outs, t, n, fp16, heads), status


async def _bench(dut):
    accel = _accel()
    seed = runner.seed()
    await drive.reset(dut, INPUTS)
    return Bench(dut, accel, np.random.default_rng(seed), seed)


@cocotb.test()
async def accel_passes(dut):
    bench = await _bench(dut)
    config, rng, host, summary = bench.config, bench.rng, bench.host, bench.summary
    load_table, run_pass = bench.load_table, bench.run_pass

    # The remap tables are not cleared by reset: a draft or verify pass before
    # all eight entries were written is refused (a baseline pass needs none).
    for code in range(-1, 7):
        if code >= 0:
            status, _, _, _ = await host.run(host.command(Op.TABLE, code=code, base=16 * code))
            assert status["error"] == Error.OK.value, status
        if code in (-1, 6):
            for op in (Op.DRAFT, Op.VERIFY):
                status, outs, _, busy = await host.run(host.command(op, n=4, k=8, t=1))
                assert status["error"] == Error.NO_TABLE.value and busy == 0 and not outs, (
                    f"{op.name} with {code + 1} of 8 table entries: {status}")
                summary["refused"] += 1

    # SHAPES: how many random shapes, or a JSON list of [N, K, T] to rerun.
    shapes = json.loads(os.environ.get("SHAPES", "6"))
    shapes = _shapes(rng, config, shapes, os.environ.get("LARGE_SHAPES", "1") == "1") \
        if isinstance(shapes, int) else shapes
    for number, (n, k, t) in enumerate(shapes):
        w = (rng.standard_normal((n, k)) * 0.05).astype(np.float16)
        w[rng.random(w.shape) < 0.02] = 0
        x = rng.standard_normal((t, k)).astype(np.float16)
        enc = speq16.encode(w)
        await load_table(enc)
        # Every other shape runs without stalls: the cycle count is then the
        # model's exactly (frozen = 0).
        p_stall, p_block = (0.0, 0.0) if number % 2 == 0 else (0.05, 0.1)
        y, s_draft = await run_pass("draft", x[:1], w, enc, p_stall, p_block)
        _same(y, arith.draft_gemm(x[:1], enc, config.draft_frac_bits, config.draft_lanes),
              f"draft N={n} K={k}")
        y, s_verify = await run_pass("verify", x, w, enc, p_stall, p_block, fp16=number % 3 == 1)
        _same(y, arith.verify_gemm(x, speq16.decode(enc)), f"verify N={n} K={k} T={t}")
        assert 4 * s_draft["bits"] == s_verify["bits"], "a draft pass must read 1/4 of the verify bits"
        # A baseline pass over the T tokens (attention's passes are these;
        # env BASELINE_T_SHAPES: only for the first shapes, the others over
        # their first token), and for the first two shapes every token in a
        # baseline pass of its own (env BASELINE_TOKENS=0: none of those).
        if number < int(os.environ.get("BASELINE_T_SHAPES", len(shapes))):
            together, _ = await run_pass("baseline", x, w, enc, p_stall, p_block,
                                         fp16=number % 3 == 2)
            _same(together, y, f"baseline N={n} K={k} T={t} vs verify")
        else:
            first, _ = await run_pass("baseline", x[:1], w, enc, p_stall, p_block)
            _same(first, y[:1], f"baseline N={n} K={k} T=1 vs verify token 0")
        tokens = t if number < 2 else 0
        for token in range(min(tokens, int(os.environ.get("BASELINE_TOKENS", tokens)))):
            alone, _ = await run_pass("baseline", x[token:token + 1], w, enc, p_stall, p_block,
                                      fp16=token == 0)
            _same(y[token:token + 1], alone, f"verify token {token} vs its baseline pass")
        # The same weights as a KV cache's byte planes (attention's passes): the
        # exact values, and the draft's values from the high plane alone.
        u = w.copy()
        if number == 0:
            # Specials in the cache: every exponent-31 case of kv_draft.
            u.view(np.uint16).ravel()[:4] = [0x7C00, 0xFC00, 0x7D00, 0x7C01]
        y_kv, s_kv = await run_pass("kv", x, u, None, p_stall, p_block, fp16=number % 3 == 0)
        _same(y_kv, arith.verify_gemm(x, u), f"kv N={n} K={k} T={t}")
        y_kd, s_kd = await run_pass("kv_draft", x, u, None, p_stall, p_block)
        _same(y_kd, arith.verify_gemm(x, speq16.kv_draft(u)), f"kv_draft N={n} K={k} T={t}")
        assert 2 * s_kd["bits"] == s_kv["bits"] == s_verify["bits"], \
            "a kv_draft pass must read half the bits of a kv pass, which reads what verify does"
        dut._log.info("N=%d K=%d T=%d: draft, verify, baseline, kv, kv_draft bit-exact and "
                      "cycle-exact", n, k, t)

    # Refused commands answer at once with their error; the next pass works.
    bad = [(Op.DRAFT, dict(n=0, k=4, t=1), Error.BAD_N),
           (Op.VERIFY, dict(n=4, k=0, t=1), Error.BAD_K),
           (Op.VERIFY, dict(n=4, k=6, t=1), Error.BAD_K),
           (Op.BASELINE, dict(n=4, k=config.kmax + 4, t=1), Error.BAD_K),
           (Op.VERIFY, dict(n=4, k=8, t=0), Error.BAD_T),
           (Op.VERIFY, dict(n=4, k=8, t=config.tmax + 1), Error.BAD_T),
           (Op.DRAFT, dict(n=4, k=8, t=2), Error.BAD_T),
           (Op.BASELINE, dict(n=4, k=8, t=config.tmax + 1), Error.BAD_T),
           (Op.KV_DRAFT, dict(n=4, k=8, t=config.tmax + 1), Error.BAD_T),
           (7, dict(n=4, k=8, t=1), Error.BAD_OP),
           # KV_WRITE without a write path (mem_bits not a multiple of 32), or
           # with positions past the keys image's rows.
           (Op.KV_WRITE, dict(n=4, k=8, t=1, pos=4), Error.BAD_N if
            bench.accel.controller.kv_write else Error.BAD_OP),
           (7, dict(), Error.BAD_OP)]
    for op, fields, error in bad:
        status, outs, _, busy = await host.run(host.command(op, **fields))
        assert status["error"] == error.value and busy == 0 and not outs, (op, fields, status)
        summary["refused"] += 1
    x = rng.standard_normal((1, 8)).astype(np.float16)
    w = rng.standard_normal((3, 8)).astype(np.float16)
    y, _ = await run_pass("baseline", x, w, None, 0.0, 0.0)
    _same(y, arith.verify_gemm(x, w), "baseline pass after refused commands")

    dut._log.info("accel: %s", summary)
    Path("summary.json").write_text(json.dumps(summary))


@cocotb.test()
async def accel_kv_write(dut):
    """KV_WRITE (`hw.kv_writer`): new keys into a keys image laid out for the
    cache's capacity (rows = positions) and new values into a values image
    (one tile of rows, columns = positions), both byte planes, with random
    stale contents around them and a write port that stalls at random. After
    each command the memory holds exactly `golden.perf.kv_images` of the
    updated cache, the status counts the cycles `golden.perf.kv_write_cycles`
    says plus the writes' waits, and a kv and a kv_draft pass over the
    written image give the golden results; refused KV_WRITEs answer their
    error. With `head_groups` G > 1 the third and fourth writes go into
    multi-head images (the last head's keys, another head's values past the
    first), checked the same way with multi-head passes."""
    bench = await _bench(dut)
    host, rng, machine, config = bench.host, bench.rng, bench.machine, bench.config
    pes, slots, bits = machine["pes"], machine["slots"], config.mem_bits
    tile = pes * slots
    writes = {"keys": 0, "values": 0, "positions": 0, "waits": 0, "refused": 0}

    def fp16(shape):
        u = (rng.standard_normal(shape) * 2).astype(np.float16)
        u.view(np.uint16)[rng.random(shape) < 0.03] = 0x7C00     # a few specials
        u.view(np.uint16)[rng.random(shape) < 0.03] = 0x0001
        return u

    writes["multihead"] = 0
    for trial in range(int(os.environ.get("KV_WRITES", "6"))):
        vt = trial % 2
        heads = config.head_groups if trial in (2, 3) and \
            os.environ.get("MULTIHEAD_KV_WRITES", "1") == "1" else 1
        head_tile = config.head_pes * slots if heads > 1 else tile
        dims = 4 * int(rng.integers(1, min(head_tile, 64) // 4 + 1)) if vt else \
            4 * int(rng.integers(1, 9))
        capacity = 4 * int(rng.integers(1, 33)) if vt else \
            int(rng.integers(1, 3 * head_tile + 1))
        cache = fp16((heads,) + ((dims, capacity) if vt else (capacity, dims)))
        n, k = cache.shape[1:]
        t = int(rng.integers(1, min(config.tmax, capacity) + 1))
        pos = int(rng.integers(0, capacity - t + 1))
        # A head past the first (its rows after the other groups' fields).
        head = heads - 1 if not vt else int(rng.integers(min(1, heads - 1), heads))
        images = perf.kv_images(cache.reshape(-1, k), pes, slots, bits, heads)
        addrs = [int(rng.integers(0, MEM_DEPTH // 2 - len(images[0]))), 0]
        addrs[1] = MEM_DEPTH // 2 + int(rng.integers(0, MEM_DEPTH // 2 - len(images[1])))
        await host.write_memory(list(zip(addrs, images)))
        new = fp16((t, dims))
        acts = payload.pack(host.act_layout, {
            (lane,): new.view(np.uint16)[:, lane::4].ravel() for lane in range(4)})
        p_stall = 0.0 if trial < 2 else 0.2
        status, outs, _, busy = await host.run(host.command(
            Op.KV_WRITE, n=n, k=k, t=t, pos=pos, vt=vt, addr0=addrs[0], addr1=addrs[1],
            **({"multihead": 1, "head": head} if heads > 1 else {})),
            acts, p_stall=p_stall)
        what = f"KV_WRITE {'values' if vt else 'keys'} {n}x{k}, positions {pos}..{pos + t - 1}" \
            + (f", head {head} of a {heads}-head image" if heads > 1 else "")
        assert status["error"] == Error.OK.value and not outs, f"{what}: {status}"
        waits = accel_harness.write_waits(host.dut)
        want = perf.kv_write_cycles(vt, dims, t)
        assert status["cycles"] == busy and busy - waits == want, (
            f"{what}: {status['cycles']} cycles ({busy} busy, {waits} waits), model {want}")
        assert status["bits"] == 16 * t * dims and status["macs"] == 0, f"{what}: {status}"
        if vt:
            cache[head, :, pos:pos + t] = new.T
        else:
            cache[head, pos:pos + t] = new
        got = [await host.read_memory(addr, len(image)) for addr, image in zip(addrs, images)]
        want_images = perf.kv_images(cache.reshape(-1, k), pes, slots, bits, heads)
        for plane in range(2):
            bad = [i for i, (a, b) in enumerate(zip(got[plane], want_images[plane])) if a != b]
            assert not bad, f"{what}: plane {plane}: {len(bad)} of {len(got[plane])} words " \
                            f"differ, first at word {bad[0]}"
        writes["values" if vt else "keys"] += 1
        writes["positions"] += t
        writes["waits"] += waits
        writes["multihead"] += heads > 1
        # Attention over what was written: the keys image read by whole tiles.
        rows = perf.kv_cache_rows(pos + t, n, head_tile // slots, slots) if not vt else n
        cols = k if not vt else 4 * -(-(pos + t) // 4)
        w = cache[:, :rows] if not vt else cache[:, :, :cols]
        x = rng.standard_normal((heads, int(rng.integers(1, config.tmax + 1)), w.shape[2])) \
            .astype(np.float16)
        for mode, values in (("kv", w), ("kv_draft", speq16.kv_draft(w))):
            y, _ = await bench.run_pass(mode, x if heads > 1 else x[0],
                                        w.reshape(-1, w.shape[2]), None, heads=heads)
            y = y if heads > 1 else y[None]
            for q in range(heads):
                _same(y[q], arith.verify_gemm(x[q], values[q]), f"{mode} pass after {what}")
    # Refused: positions past the keys image's rows or the values image's
    # columns, a values image of more than one tile of rows or rows not a
    # multiple of 4.
    for fields, error in ((dict(n=10, k=8, t=3, pos=8, vt=0), Error.BAD_N),
                          (dict(n=8, k=12, t=2, pos=11, vt=1), Error.BAD_K),
                          (dict(n=6, k=12, t=1, pos=0, vt=1), Error.BAD_N),
                          (dict(n=4 * (tile // 4 + 1), k=12, t=1, pos=0, vt=1), Error.BAD_N)):
        status, outs, _, busy = await host.run(host.command(Op.KV_WRITE, **fields))
        assert status["error"] == error.value and busy == 0 and not outs, (fields, status)
        writes["refused"] += 1
    if config.head_groups > 1:
        # A multi-head image: a head past the groups, more rows than a head's tile.
        for fields in (dict(n=8, k=8, t=1, pos=0, vt=0, head=config.head_groups),
                       dict(n=4 * (config.head_pes * slots // 4 + 1), k=12, t=1, pos=0, vt=1,
                            head=0)):
            status, outs, _, busy = await host.run(host.command(Op.KV_WRITE, multihead=1,
                                                                **fields))
            assert status["error"] == Error.BAD_N.value and busy == 0 and not outs, \
                (fields, status)
            writes["refused"] += 1
    dut._log.info("kv writes: %s", writes)
    Path("summary_kv_write.json").write_text(json.dumps(writes))


#: Most cycles of a multi-head pass of the bench (by the cycle model).
MULTIHEAD_CYCLES = 900


@cocotb.test()
async def accel_multihead(dut):
    """Multi-head passes (`head_groups` G > 1, `golden.perf`): G products of
    one random shape at once, head q on PE group q with activations of its
    own, in every mode, every other shape with memory stalls and a blocked
    output. Each head's Y is bit-exact against its own product, the status
    cycle-exact against `golden.perf.pass_cost` with ``heads`` = G; a plain
    pass after them takes the same activations on every group again."""
    bench = await _bench(dut)
    config, rng = bench.config, bench.rng
    heads = config.head_groups
    assert heads > 1, "a multi-head bench needs head_groups > 1"
    count = int(os.environ.get("MULTIHEAD_SHAPES", "3"))
    shapes = []
    while len(shapes) < count:
        n = int(rng.integers(1, 4 * config.head_pes * bench.machine["slots"] // 3 + 2))
        k = 4 * int(rng.integers(1, min(64, config.kmax) // 4 + 1))
        t = int(rng.integers(1, config.tmax + 1))
        most = int(os.environ.get("MULTIHEAD_CYCLES", MULTIHEAD_CYCLES))
        if perf.pass_cost("verify", n, k, t, mem_latency=bench.mem_latency, heads=heads,
                          **bench.machine).cycles <= most:
            shapes.append((n, k, t))
    passes = {mode: 0 for mode in perf.MODES}
    for number, (n, k, t) in enumerate(shapes):
        w = (rng.standard_normal((heads * n, k)) * 0.05).astype(np.float16)
        x = rng.standard_normal((heads, t, k)).astype(np.float16)
        enc = speq16.encode(w)
        await bench.load_table(enc)
        p_stall, p_block = (0.0, 0.0) if number % 2 == 0 else (0.05, 0.1)
        wants = {
            "draft": lambda xq: arith.draft_gemm(xq, enc, config.draft_frac_bits,
                                                 config.draft_lanes),
            "verify": lambda xq: arith.verify_gemm(xq, speq16.decode(enc)),
            "baseline": lambda xq: arith.verify_gemm(xq, w),
            "kv": lambda xq: arith.verify_gemm(xq, w),
            "kv_draft": lambda xq: arith.verify_gemm(xq, speq16.kv_draft(w)),
        }
        for mode, want in wants.items():
            xs = x[:, :1] if mode == "draft" else x
            y, _ = await bench.run_pass(mode, xs, w, enc, p_stall, p_block,
                                        fp16=(number + sum(passes.values())) % 3 == 0, heads=heads)
            for q in range(heads):
                _same(y[q], want(xs[q])[:, q * n:(q + 1) * n],
                      f"{mode} N={n} K={k} T={t}, head {q} of {heads}")
            passes[mode] += 1
        dut._log.info("N=%d K=%d T=%d x %d heads: every mode bit-exact and cycle-exact",
                      n, k, t, heads)
    # A plain pass after them: every group takes the one activation vector.
    n, k, t = config.rows * config.cols + 1, 8, 2
    x = rng.standard_normal((t, k)).astype(np.float16)
    w = rng.standard_normal((n, k)).astype(np.float16)
    y, _ = await bench.run_pass("kv", x, w, None)
    _same(y, arith.verify_gemm(x, w), "a plain kv pass after multi-head ones")
    summary = {"heads": heads, "shapes": len(shapes), "passes": passes,
               "frozen": bench.summary["frozen"]}
    dut._log.info("multi-head: %s", summary)
    Path("summary_multihead.json").write_text(json.dumps(summary))


@functools.cache
def _tiny_lm():
    """The shipped language model (`golden.model.TinyLM`), built once per
    simulation: it encodes every weight matrix (about 20 s of CPU on a busy
    machine), and the model-layer and attention tests only read it."""
    from golden.model import TinyLM
    return TinyLM()


@cocotb.test()
async def accel_model_layer(dut):
    """A layer of the shipped language model (``MODEL_LAYER``) through the RTL:
    a draft pass and a verify pass over 3 tokens, with the model's own
    activations (the LayerNorm outputs of a prompt), bit-exact with the golden
    model's passes."""
    from golden.model import _layer_norm
    bench = await _bench(dut)
    model = _tiny_lm()
    name = os.environ["MODEL_LAYER"]
    w, enc = model.w[name], model.enc[name]
    p = model.f32
    tokens = list(b"def speq(")[:3]
    x = p["tok_emb"][tokens] + p["pos_emb"][:len(tokens)]
    h = np.stack([_layer_norm(row, p["layer0.ln1.g"], p["layer0.ln1.b"]) for row in x])
    x16 = h.astype(np.float16)[:, :w.shape[1]]
    await bench.load_table(enc)
    y, _ = await bench.run_pass("draft", x16[:1], w, enc)
    _same(y, arith.draft_gemm(x16[:1], enc, bench.config.draft_frac_bits,
                              bench.config.draft_lanes), f"{name} draft pass")
    y, _ = await bench.run_pass("verify", x16, w, enc, fp16=True)
    _same(y, arith.verify_gemm(x16, w), f"{name} verify pass")
    dut._log.info("%s (%d x %d): draft and verify passes bit-exact", name, *w.shape)
    Path("summary_model.json").write_text(json.dumps(bench.summary))


@cocotb.test()
async def accel_attention_head(dut):
    """Attention heads of the shipped language model through the RTL, over
    one KV cache shared by target and draft (SPEC section 2a). After a
    6-token prompt, the draft proposes 3 tokens (3 single-token forwards that
    read the target's cache through its high plane and their own scratch: per
    layer and head ``Q K^T`` over 7, 8, 9 keys and ``P V`` over as many
    values padded to a multiple of 4, as kv_draft passes), then the target's
    verify forward over the 3 tokens reads both planes (``Q K^T``: N = 9, K
    = 32, T = 3; ``P V``: N = 32, K = 12, T = 3; kv passes)
    (`golden.model.Session`). One head of the draft and one of the target run
    on the accelerator: bit-exact with the golden passes and cycle-exact with
    `golden.perf` (`Bench.run_pass`)."""
    from golden.model import Session
    bench = await _bench(dut)
    model = _tiny_lm()
    tokens = list(b"def speq(x):")[:9]
    target = Session(model, "verify")
    target.forward(tokens[:6])
    draft = Session(model, "draft", target=target, half=True, scratch=3)
    draft.trace = []
    for token in tokens[6:]:
        draft.forward([token])
    target.trace = []
    target.forward(tokens[6:])
    heads = 0
    for session, layer, head in ((draft, model.layers - 1, model.heads - 1), (target, 0, 0)):
        for lay, hd, kind, x, w, want in session.trace:
            if (lay, hd) != (layer, head):
                continue
            y, _ = await bench.run_pass(session.attention_mode, x, w, None, fp16=kind == "pv")
            _same(y, want, f"{session.mode} session, layer {layer} head {head}, {kind} pass "
                           f"N={w.shape[0]} K={w.shape[1]} T={x.shape[0]}")
        heads += 1
        dut._log.info("%s session, layer %d head %d: Q K^T and P V (%s passes) bit-exact and "
                      "cycle-exact", session.mode, layer, head, session.attention_mode)
    Path("summary_attention.json").write_text(json.dumps({**bench.summary, "heads": heads}))


# (name, config, memory latency, random shapes, simulators, tests beside
# accel_passes). Verilator runs a pass in about a second once its model is
# built (seconds, tb.runner); Icarus takes milliseconds per cycle of an
# array, so it runs the small 2x2 array and the default configuration on a
# few shapes of at most 12,000 MACs and 400 verify cycles (`ICARUS_CYCLES`;
# Verilator's run of the same 2x2 array takes shapes of any size, its first
# two larger still; make soak runs more on both, up to 800 cycles on Icarus).
# The 2x2 one-lane run also takes a layer of the shipped model and its
# attention heads; the 2x2 four-lane Icarus run the attention heads; both
# 2x2 arrays write the KV cache on Verilator, the four-lane one on Icarus too
# (`ICARUS_KV_WRITES` commands: keys and values, with and without stalls).
MODEL, ATTENTION, KV_WRITE = "accel_model_layer", "accel_attention_head", "accel_kv_write"
MULTIHEAD = "accel_multihead"
# Two head groups of two PEs on both simulators, four of one PE on Verilator.
CONFIGS = [
    ("2x2_l4", {"rows": 2, "cols": 2, "tmax": 8, "pe_stages": 4, "kmax": 256, "mem_bits": 32,
                "draft_lanes": 4, "head_groups": 2}, 3, 4, ("verilator",), (KV_WRITE, MULTIHEAD)),
    ("2x2_l4", {"rows": 2, "cols": 2, "tmax": 8, "pe_stages": 4, "kmax": 256, "mem_bits": 32,
                "draft_lanes": 4, "head_groups": 2}, 3, 2, ("icarus",),
     (ATTENTION, KV_WRITE, MULTIHEAD)),
    # Eight PE stages: the PEs take their accumulators a cycle after their
    # steps (SpeqConfig.acc_latency), the interleave is 8, not 9.
    ("2x2_l1", {"rows": 2, "cols": 2, "tmax": 8, "pe_stages": 8, "kmax": 256, "mem_bits": 32,
                "draft_lanes": 1, "head_groups": 4}, 3, 6, ("verilator",),
     (MODEL, ATTENTION, KV_WRITE, MULTIHEAD)),
    # tmax 20: passes of more tokens than the 16 tmax once allowed (attention
    # over grouped-query heads: a KV head's query heads x a round's tokens).
    # Its controller works out its counters' tests instead of registering
    # them (as the iCEBreaker's board does).
    ("1x3_s1_b48_l2", {"rows": 1, "cols": 3, "tmax": 20, "pe_stages": 1, "kmax": 128,
                       "mem_bits": 48, "draft_lanes": 2, "registered_tests": False},
     1, 6, ("verilator",), ()),
    # The default configuration (16 PEs) on Icarus: one shape of at most 400
    # verify cycles (make soak: 4 of at most 800).
    ("default", {}, 8, 1, ("icarus",), ()),
]
#: The shipped model's layer that the model-layer test runs.
MODEL_LAYER = "layer0.wq"
#: make test's bound on the verify cycles of an Icarus run's random shapes
#: (make soak, which sets ICARUS_SHAPES: `SHAPE_CYCLES`).
ICARUS_CYCLES = 400
#: KV_WRITE commands of an Icarus run in make test: a keys and a values write
#: without stalls, then one of each with stalls (Verilator: 6; make soak:
#: KV_WRITES on both).
ICARUS_KV_WRITES = 4


#: make soak only: the array bench/projection.py sizes for a grouped-query
#: verify round (5 x 8 PEs behind the default 32-bit port, tmax 20: 4 query
#: heads x 5 tokens of Llama-3.1-8B in one pass over the cache), whose
#: projection the results quote; its passes up to T = 20 are checked like
#: every other configuration's.
GQA_ROUND = ("5x8_t20", {"rows": 5, "cols": 8, "tmax": 20}, 8, 3, ("verilator",), ())


@pytest.mark.soak
@pytest.mark.parametrize("sim", GQA_ROUND[4])
def test_accel_gqa_round_array(sim):
    name, config, latency, shapes, _, extra = GQA_ROUND
    test_accel(name, config, latency, shapes, sim, extra)


@pytest.mark.parametrize("name,config,latency,shapes,sim,extra", [
    pytest.param(name, config, latency, shapes, sim, extra, id=f"{name}-{sim}")
    for name, config, latency, shapes, sims, extra in CONFIGS for sim in sims])
def test_accel(name, config, latency, shapes, sim, extra):
    build_dir = runner.BUILD_ROOT / f"accel_{name}" / sim
    for summary in ("summary.json", "summary_model.json", "summary_attention.json",
                    "summary_kv_write.json", "summary_multihead.json"):
        (build_dir / summary).unlink(missing_ok=True)
    # make soak: SHAPES random shapes per Verilator run, ICARUS_SHAPES per Icarus run.
    shapes = int(os.environ.get("SHAPES" if sim == "verilator" else "ICARUS_SHAPES", shapes))
    kv_writes = int(os.environ.get("KV_WRITES", 6 if sim == "verilator" else ICARUS_KV_WRITES))
    runner.run(harness(accel_of(config), latency), bench=f"accel_{name}", toplevel=TOPLEVEL,
               test_module="tb.test_accel", sim=sim,
               testcase=["accel_passes", *extra],
               extra_env={"ACCEL_CONFIG": json.dumps(config), "MEM_LATENCY": str(latency),
                          "SHAPES": str(shapes), "MODEL_LAYER": MODEL_LAYER,
                          "LARGE_SHAPES": str(int(sim == "verilator")),
                          "KV_WRITES": str(kv_writes),
                          # Multi-head passes: 3 shapes on Verilator, 2 on Icarus
                          # (one without stalls, one with) of at most 300 verify
                          # cycles (make soak: 12 of at most MULTIHEAD_CYCLES).
                          "MULTIHEAD_SHAPES": os.environ.get(
                              "MULTIHEAD_SHAPES", "3" if sim == "verilator" else "2"),
                          # Icarus: its KV writes into plain images only
                          # (Verilator's third and fourth go into multi-head ones).
                          **({"MULTIHEAD_CYCLES": "300", "MULTIHEAD_KV_WRITES": "0"}
                             if sim == "icarus" and "MULTIHEAD_SHAPES" not in os.environ
                             else {}),
                          # Icarus: one baseline pass over T tokens, no
                          # single-token ones beside it.
                          **({} if sim == "verilator" else {"BASELINE_TOKENS": "0",
                                                            "BASELINE_T_SHAPES": "1"}),
                          **({"SHAPE_CYCLES": str(ICARUS_CYCLES)} if sim == "icarus" and
                             "ICARUS_SHAPES" not in os.environ else {})})
    summary = json.loads((build_dir / "summary.json").read_text())
    assert summary["passes"] >= 5 * shapes + 1 and summary["refused"] == 16
    assert min(summary["modes"].values()) >= shapes
    print(f"accel {name} [{sim}]: {summary}")
    if MODEL in extra:
        summary = json.loads((build_dir / "summary_model.json").read_text())
        assert summary["modes"]["draft"] == 1 and summary["modes"]["verify"] == 1
        print(f"accel {name} [{sim}], {MODEL_LAYER} of the shipped model: {summary}")
    if ATTENTION in extra:
        summary = json.loads((build_dir / "summary_attention.json").read_text())
        assert summary["heads"] == 2 and summary["modes"]["kv"] == 2
        assert summary["modes"]["kv_draft"] == 6
        print(f"accel {name} [{sim}], attention heads of the shipped model: {summary}")
    if KV_WRITE in extra:
        summary = json.loads((build_dir / "summary_kv_write.json").read_text())
        assert summary["keys"] == (kv_writes + 1) // 2 and summary["values"] == kv_writes // 2
        multihead = config.get("head_groups", 1) > 1
        assert summary["refused"] == 4 + 2 * multihead
        written = sim == "verilator" or "MULTIHEAD_SHAPES" in os.environ
        assert summary["multihead"] == (min(kv_writes, 4) - 2 if multihead and written else 0), \
            summary
        assert summary["waits"] > 0, summary
        print(f"accel {name} [{sim}], KV writes: {summary}")
    if MULTIHEAD in extra:
        summary = json.loads((build_dir / "summary_multihead.json").read_text())
        assert summary["heads"] == config["head_groups"] and summary["shapes"] >= 2
        assert set(summary["passes"].values()) == {summary["shapes"]}, summary
        assert summary["frozen"] > 0, summary
        print(f"accel {name} [{sim}], multi-head passes: {summary}")
