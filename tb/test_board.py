# amaranth: UnusedElaboratable=no
"""End-to-end bench of the board top (`hw.board.SpeqBoard`) through its UART.

The host library (`host.board.Board`, the same code that drives a real board
over a serial port) talks to the simulated board through `SimUart`, which
sends bits on ``rx`` and decodes ``tx`` at the board's bit time. So every
byte goes host -> UART -> frame machine -> memories -> accelerator -> UART ->
host. For every pass the bench checks:

- ``Y`` bit for bit against `golden.arith` (draft, verify over T tokens,
  baseline over each token), and the FP16 results against NumPy's rounding;
- ``status.cycles - frozen`` (the cycles a result waited for the UART) equal
  to `golden.perf.pass_cost` with the board's memory latency
  (``mem_latency`` of its `Info`: 3 with a register after the memory's read,
  2 without), and the bits and
  MACs equal to the model's;
- refused commands, a weight span past the memory, an unknown request byte
  and a pass reading past the weight memory: each answered or flagged.
"""

import argparse
import collections
import json
import os
from pathlib import Path

import numpy as np

import cocotb
from cocotb.triggers import FallingEdge, Timer

import pytest

from golden import arith, perf, speq16
from host.__main__ import gemm_check
from host.board import Board, BoardError
from hw.board import Answer, Flag, Request, SpeqBoard
from hw.config import SpeqConfig
from hw.controller import Error, Op
from tb import drive, runner
from tb.test_accel import _same      # the bit-for-bit comparison of the accel bench


TOPLEVEL = "board"
PERIOD_NS = 10           # drive.reset's clock


def board_of(spec):
    """The `SpeqBoard` of a `CONFIGS` entry's ``board``."""
    return SpeqBoard(SpeqConfig(**spec["config"]), weight_words=spec["weight_words"],
                     divisor=spec["divisor"], round_stages=spec.get("round_stages", 1),
                     mem_stages=spec.get("mem_stages", 1),
                     registered_tests=spec.get("registered_tests", True))


def _board():
    return board_of(json.loads(os.environ["BOARD"]))


class SimUart:
    """A transport for `host.board.Board`: 8N1 bits on the simulated pins.

    ``read`` gives up (`host.board.BoardError`) when no byte arrives for
    ``timeout_bytes`` byte times.
    """

    def __init__(self, dut, divisor, timeout_bytes=200_000):
        self.dut = dut
        self.bit_ns = divisor * PERIOD_NS
        self.timeout_bytes = timeout_bytes
        self.received = collections.deque()
        self.sent_bytes = 0
        cocotb.start_soon(self._listen())

    async def write(self, payload):
        bit = Timer(self.bit_ns, unit="ns")
        for byte in payload:
            for level in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                self.dut.rx.value = level
                await bit
        self.sent_bytes += len(payload)

    async def _listen(self):
        tx, half, bit = self.dut.tx, Timer(self.bit_ns // 2, unit="ns"), Timer(self.bit_ns, unit="ns")
        while True:
            await FallingEdge(tx)
            await half
            assert int(tx.value) == 0, "a glitch on tx, not a start bit"
            byte = 0
            for i in range(8):
                await bit
                byte |= int(tx.value) << i
            await bit
            assert int(tx.value) == 1, "tx stop bit low (framing error)"
            self.received.append(byte)

    async def read(self, count):
        out = bytearray()
        idle, wait = 0, Timer(10 * self.bit_ns, unit="ns")
        while len(out) < count:
            if self.received:
                out.append(self.received.popleft())
                idle = 0
                continue
            await wait
            idle += 1
            if idle > self.timeout_bytes:
                raise BoardError(f"no byte from the board for {idle} byte times "
                                 f"({len(out)} of {count} read)")
        return bytes(out)


@cocotb.test()
async def board_uart(dut):
    board_hw = _board()
    config = board_hw.config
    dut.rx.value = 1                 # idle line (drive.reset drives its inputs to 0)
    await drive.reset(dut, ())
    await Timer(20 * board_hw.divisor * PERIOD_NS, unit="ns")
    uart = SimUart(dut, board_hw.divisor)
    board = Board(uart)
    rng = np.random.default_rng(runner.seed())
    machine = perf.machine(config)
    summary = {"passes": 0, "outputs": 0, "frozen": 0, "refused": 0, "flags": 0}

    info = await board.connect()
    want = board_hw.info()
    assert info == want, f"info {info}, want {want}"
    mem_latency = info["mem_latency"]        # the cycle model's, from the board

    def check(mode, result, n, k, t, want_y, fp16=False):
        what = f"{mode} N={n} K={k} T={t}"
        assert result.status["error"] == Error.OK.value, f"{what} refused: {result.status}"
        assert result.flags == 0, f"{what}: flags {result.flags!r}"
        _same(result.y, want_y, what)
        # The board rounds the results itself (state ROUND): FP16 values
        # exactly when asked for, zeros otherwise.
        if fp16:
            with np.errstate(over="ignore"):
                _same(result.y16, want_y.astype(np.float16), f"{what} FP16 results")
        else:
            assert not result.y16.view(np.uint16).any(), f"{what}: FP16 results unasked"
        cost = perf.pass_cost(mode, n, k, t, mem_latency=mem_latency, **machine)
        assert result.busy_cycles == cost.cycles, (
            f"{what}: {result.status['cycles']} cycles, {result.frozen} frozen; "
            f"model {cost.cycles}")
        assert (result.status["bits"], result.status["macs"]) == (cost.bits, cost.macs), what
        summary["passes"] += 1
        summary["outputs"] += n * t
        summary["frozen"] += result.frozen

    shapes = json.loads(os.environ["BOARD_SHAPES"])
    for number, (n, k, t) in enumerate(shapes):
        w = (rng.standard_normal((n, k)) * 0.05).astype(np.float16)
        w[rng.random(w.shape) < 0.02] = 0
        x = rng.standard_normal((t, k)).astype(np.float16)
        enc = speq16.encode(w)
        result = await board.gemm("draft", x[:1], w, enc=enc)
        check("draft", result, n, k, 1, arith.draft_gemm(x[:1], enc, config.draft_frac_bits,
                                                             config.draft_lanes))
        fp16 = number % 2 == 0
        result = await board.gemm("verify", x, w, enc=enc, fp16=fp16, table=False)
        check("verify", result, n, k, t, arith.verify_gemm(x, speq16.decode(enc)), fp16)
        verify_y = result.y
        for token in range(t):
            result = await board.gemm("baseline", x[token:token + 1], w, fp16=token == 1)
            check("baseline", result, n, k, 1, arith.verify_gemm(x[token:token + 1], w),
                  token == 1)
            _same(verify_y[token:token + 1], result.y, f"verify token {token} vs baseline")
        dut._log.info("N=%d K=%d T=%d: bit-exact and cycle-exact through the UART", n, k, t)

    # A multi-head pass (head_groups > 1): each head's Y against its own
    # product, the cycles against the model's.
    heads = config.head_groups
    if heads > 1:
        n, k, t = 3, 8, 2
        w = (rng.standard_normal((heads * n, k)) * 0.5).astype(np.float16)
        x = rng.standard_normal((heads, t, k)).astype(np.float16)
        result = await board.gemm("baseline", x, w, heads=heads)
        assert result.status["error"] == Error.OK.value and result.flags == 0, result
        for q in range(heads):
            _same(result.y[q], arith.verify_gemm(x[q], w[q * n:(q + 1) * n]),
                  f"baseline N={n} K={k} T={t}, head {q} of {heads}")
        cost = perf.pass_cost("baseline", n, k, t, mem_latency=mem_latency, heads=heads,
                              **machine)
        assert result.busy_cycles == cost.cycles, (result.status, result.frozen, cost)
        with pytest.raises(ValueError, match="head_groups"):
            await board.gemm("baseline", x, w, heads=heads + 1)
        summary["passes"] += 1
        summary["multihead"] = 1

    # A refused command: its error, no results; the board goes on.
    report, beats = await board.command(Op.VERIFY, n=4, k=6, t=1)
    assert report["status"]["error"] == Error.BAD_K.value and not beats, report
    report, beats = await board.command(Op.DRAFT, n=4, k=8, t=config.tmax + 1)
    assert report["status"]["error"] == Error.BAD_T.value and not beats, report
    summary["refused"] += 2

    # A weight span past the memory: the host refuses it, the board too.
    depth = board_hw.weight_words
    with pytest.raises(ValueError, match="do not fit"):
        await board.write_weights(depth - 1, [0, 0])
    with pytest.raises(BoardError, match="refused weight words"):
        await board._write_span(Request.WEIGHTS, Request.WEIGHTS | 0x20, depth - 1, [1, 2],
                                config.mem_bits // 8, depth + 1, "weight")
    # An empty span is answered at once, with code 0 (the board's registered
    # count of words left starts at zero).
    await board._write_span(Request.WEIGHTS, Answer.WEIGHTS, 0, [],
                            config.mem_bits // 8, depth, "weight")
    # An unknown request byte is flagged (and cleared by the next connect).
    await uart.write(b"?")
    info = await board.connect()
    assert info["flags"] == Flag.BAD_REQUEST, info
    assert (await board.connect())["flags"] == 0
    # A pass reading past the weight memory is flagged in its report.
    x = rng.standard_normal((1, 8)).astype(np.float16)
    result = await board.run_pass("baseline", x, 3, [depth - 1])
    assert result.flags == Flag.MEM_RANGE, result
    assert (await board.connect())["flags"] == Flag.MEM_RANGE
    summary["flags"] += 2
    # ... and the board still computes.
    w = rng.standard_normal((5, 8)).astype(np.float16)
    result = await board.gemm("baseline", x, w)
    check("baseline", result, 5, 8, 1, arith.verify_gemm(x, w))

    # The CLI's check (python -m host gemm) on the same board.
    args = argparse.Namespace(mode="all", n=6, k=16, t=2, fp16=True, seed=3, repeat=1)
    assert await gemm_check(board, args) == 0
    summary["passes"] += 3

    summary["uart_bytes_to_board"] = uart.sent_bytes
    dut._log.info("board: %s", summary)
    Path("summary.json").write_text(json.dumps(summary))


#: (name, board, shapes, simulators). A small iCE40 board's configuration
#: (see rtl_gen.bitstream.BOARDS) with four draft lanes and with one, at 4
#: clock cycles per UART bit.
CONFIGS = [
    ("1x2_l4", {"config": {"rows": 1, "cols": 2, "tmax": 2, "kmax": 64, "mem_bits": 16,
                           "pe_stages": 4, "dsp_align": 1, "draft_lanes": 4},
                "weight_words": 2048, "divisor": 4},
     # N = 23: several tiles, so results go out through the UART (and
     # freeze the engines) while the next tile's weights are in flight.
     [[5, 16, 2], [9, 32, 2], [23, 16, 2]], ("icarus",)),
    # Two head groups of one PE (multi-head passes); the FP16 rounder
    # without its register, the weight memory without the register after
    # its read (memory latency 2, against 3 above) and the controller's
    # tests worked out, not registered: the iCEBreaker's.
    ("1x2_l1", {"config": {"rows": 1, "cols": 2, "tmax": 2, "kmax": 64, "mem_bits": 16,
                           "pe_stages": 4, "draft_lanes": 1, "head_groups": 2},
                "weight_words": 2048, "divisor": 4, "round_stages": 0, "mem_stages": 0,
                "registered_tests": False},
     [[5, 16, 2], [9, 32, 2]], ("icarus",)),
    # A result beat of more than TX_MUX_BITS (6 x 48 bits): its 40 bytes
    # (with the tag) chosen through the board's registered multiplexers,
    # 16, 16 and 8 ways, then 3; the FP16 rounder with both its registers.
    ("2x3_l1", {"config": {"rows": 2, "cols": 3, "tmax": 2, "kmax": 32, "mem_bits": 32,
                           "pe_stages": 4, "draft_lanes": 1},
                "weight_words": 1024, "divisor": 4, "round_stages": 2},
     [[7, 16, 2]], ("icarus",)),
    # A memory word wider than a command (256 bits): received into and
    # written from the frame register. The PE's value chosen for the FP16
    # rounder in two registered steps (round_stages 3: two groups of
    # ROUND_WAYS = 8 PEs).
    ("4x4_b256", {"config": {"rows": 4, "cols": 4, "tmax": 2, "kmax": 16, "mem_bits": 256,
                             "pe_stages": 1, "draft_lanes": 1},
                  "weight_words": 64, "divisor": 4, "round_stages": 3},
     [[17, 8, 2]], ("icarus",)),
]


@pytest.mark.parametrize("name,board,shapes,sim", [
    pytest.param(name, board, shapes, sim, id=f"{name}-{sim}")
    for name, board, shapes, sims in CONFIGS for sim in sims])
def test_board(name, board, shapes, sim):
    build_dir = runner.BUILD_ROOT / f"board_{name}" / sim
    (build_dir / "summary.json").unlink(missing_ok=True)
    spec = dict(board)
    runner.run(board_of(spec),
               bench=f"board_{name}", toplevel=TOPLEVEL, test_module="tb.test_board", sim=sim,
               extra_env={"BOARD": json.dumps(board), "BOARD_SHAPES": json.dumps(shapes)})
    summary = json.loads((build_dir / "summary.json").read_text())
    multihead = spec["config"].get("head_groups", 1) > 1
    assert summary["passes"] == sum(2 + t for _, _, t in shapes) + 1 + 3 + multihead
    assert summary.get("multihead", 0) == multihead, summary
    print(f"board {name} [{sim}]: {summary}")
