"""Drive a SPEQ board over its UART: ``python -m host --port /dev/ttyUSB0 ...``.

Commands:

- ``info``: print the board's configuration;
- ``gemm``: run random GEMMs (draft, verify and/or baseline passes) on the
  board and compare each with the golden model bit for bit, and its cycles
  with the cycle model; exit status 1 on any difference.
"""

import argparse
import asyncio
import math
import sys

import numpy as np

from golden import arith, perf, speq16
from hw.controller import N_BITS

from .board import MODES, Board, BoardError, SerialTransport


#: The longest --timeout: beyond about 1e12 s pyserial's deadline overflows
#: the platform's time_t; no board is waited for for more than days.
TIMEOUT_MAX = 1e6


def _int(lo, hi=None):
    """An argparse type: an integer from ``lo`` (to ``hi``)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: not an integer") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"invalid value {value}: must be at least {lo}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"invalid value {value}: must be at most {hi}")
        return value
    return parse


_positive = _int(1)


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    # float() takes "nan" and "inf"; pyserial would wait forever (or never)
    # and then fail deep inside a read.
    if not (math.isfinite(value) and 0 < value <= TIMEOUT_MAX):
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: must be a number of seconds above 0 and at most "
            f"{TIMEOUT_MAX:g}")
    return value


def _multiple_of_4(text):
    value = _positive(text)
    if value % 4:
        raise argparse.ArgumentTypeError(f"invalid value {value}: must be a multiple of 4")
    return value


def _parsers():
    """The command-line parser and its ``gemm`` subparser (whose errors its
    options report)."""
    p = argparse.ArgumentParser(
        prog="python -m host",
        description="Drive a SPEQ board (hw.board.SpeqBoard) over its UART; "
                    "the protocol is in docs/board.md.")
    p.add_argument("--port", required=True,
                   help="serial port of the board's UART, e.g. /dev/ttyUSB0 (iCEBreaker: the "
                        "second FTDI interface, usually /dev/ttyUSB1)")
    p.add_argument("--baud", type=_positive, default=115200,
                   help="baud rate the bitstream was built for (default: 115200)")
    p.add_argument("--timeout", type=_seconds, default=10.0,
                   help="seconds to wait for an answer before giving up (default: 10)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the board's configuration and sticky error flags")
    g = sub.add_parser("gemm", help="random GEMMs on the board, checked against the golden model")
    g.add_argument("--mode", choices=[*MODES, "all"], default="all",
                   help="pass to run (default: all three, over the same weights)")
    g.add_argument("--n", type=_int(1, (1 << N_BITS) - 1), default=32,
                   help="output rows N (default: 32)")
    g.add_argument("--k", type=_multiple_of_4, default=64,
                   help="reduction length K, a multiple of 4 up to the board's kmax (default: 64)")
    g.add_argument("--t", type=_positive, default=1,
                   help="tokens T of the verify and baseline passes, up to the board's tmax "
                        "(a draft pass takes the first; default: 1)")
    g.add_argument("--fp16", action="store_true", help="also ask for FP16 results")
    g.add_argument("--seed", type=_int(0), default=0,
                   help="seed of the random operands (default: 0)")
    g.add_argument("--repeat", type=_positive, default=1, help="how many GEMMs (default: 1)")
    return p, g


def parser():
    """The command-line parser of ``python -m host``."""
    return _parsers()[0]


def _differ(got, want):
    nan = np.isnan(want)
    return int(np.count_nonzero((np.isnan(got) != nan) |
                                (~nan & (got.view(np.uint32) != want.view(np.uint32)))))


async def gemm_check(board, args):
    """The ``gemm`` command on a connected `Board`; returns the number of failed passes."""
    config = board.config
    if args.k % 4 or args.k > config.kmax:
        raise ValueError(f"--k must be a multiple of 4 up to the board's kmax {config.kmax}, "
                         f"not {args.k}")
    if args.t > config.tmax:
        raise ValueError(f"--t must be at most the board's tmax {config.tmax}, not {args.t}")
    # The verify images hold all 16 bits of every weight: a lower bound on
    # the words, checked before the images of a too large N are made.
    if args.n * args.k * 16 > board.info["weight_words"] * config.mem_bits:
        raise ValueError(f"--n {args.n} and --k {args.k} need more than the board's "
                         f"{board.info['weight_words']} weight words")
    words = sum(len(image) for image in board.images(
        "verify", enc=speq16.encode(np.zeros((args.n, args.k), np.float16))))
    if words > board.info["weight_words"]:
        raise ValueError(f"--n {args.n} and --k {args.k} need {words} weight words; the board has "
                         f"{board.info['weight_words']}")
    rng = np.random.default_rng(args.seed)
    machine = perf.machine(config)
    modes = list(MODES) if args.mode == "all" else [args.mode]
    failures = 0
    print(f"{'pass':<9} {'N':>5} {'K':>5} {'T':>2} {'bit-exact':>10} {'cycles':>8} "
          f"{'frozen':>8} {'model':>8} {'bits':>9} {'MACs':>9}")
    for _ in range(args.repeat):
        w = (rng.standard_normal((args.n, args.k)) * 0.05).astype(np.float16)
        x = rng.standard_normal((args.t, args.k)).astype(np.float16)
        enc = speq16.encode(w)
        for mode in modes:
            t = 1 if mode == "draft" else args.t
            xs = x[:t]
            result = await board.gemm(mode, xs, w, enc=enc, fp16=args.fp16)
            if result.status["error"]:
                print(f"{mode:<9} refused: {result.status}")
                failures += 1
                continue
            if mode == "draft":
                want = arith.draft_gemm(xs, enc, config.draft_frac_bits, config.draft_lanes)
            else:
                want = arith.verify_gemm(xs, w if mode == "baseline" else speq16.decode(enc))
            bad = _differ(result.y, want)
            cost = perf.pass_cost(mode, args.n, args.k, t, mem_latency=board.info["mem_latency"],
                                   **machine)
            ok = (not bad and result.busy_cycles == cost.cycles and not result.flags
                  and (result.status["bits"], result.status["macs"]) == (cost.bits, cost.macs))
            failures += not ok
            exact = "yes" if not bad else f"{bad} differ"
            print(f"{mode:<9} {args.n:>5} {args.k:>5} {t:>2} {exact:>10} "
                  f"{result.status['cycles']:>8} {result.frozen:>8} {cost.cycles:>8} "
                  f"{result.status['bits']:>9} {result.status['macs']:>9}"
                  + (f"  flags {result.flags!r}" if result.flags else ""))
    print("cycles - frozen must equal the model's cycles (golden.perf.pass_cost, memory latency "
          f"{board.info['mem_latency']})")
    return failures


async def _main(args, transport):
    try:
        board = Board(transport)
        info = await board.connect()
        if args.command == "info":
            for name, value in info.items():
                print(f"{name:>16}: {value}")
            return 0
        return 1 if await gemm_check(board, args) else 0
    finally:
        transport.close()


def main(argv=None):
    p, g = _parsers()
    args = p.parse_args(argv)
    try:
        transport = SerialTransport(args.port, args.baud, args.timeout)
    except BoardError as error:
        p.error(f"argument --port: {error}")
    try:
        return asyncio.run(_main(args, transport))
    except ValueError as error:
        # gemm_check's limits of --n, --k and --t, known once the board
        # has said its configuration.
        (g if args.command == "gemm" else p).error(str(error))
    except BoardError as error:
        # The board did not answer or broke the protocol: not a usage error.
        print(f"{p.prog}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
