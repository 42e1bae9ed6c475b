"""Drive a SPEQ board over its UART: ``python -m host --port /dev/ttyUSB0 ...``.

Commands:

- ``info``: print the board's configuration;
- ``gemm``: run random GEMMs (draft, verify and/or baseline passes) on the
  board and compare each with the golden model bit for bit, and its cycles
  with the cycle model; exit status 1 on any difference.
"""

import argparse
import asyncio
import sys

import numpy as np

from golden import arith, perf, speq16

from .board import MODES, Board, BoardError, SerialTransport


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {value}: must be at least 1")
    return value


def parser():
    p = argparse.ArgumentParser(
        prog="python -m host",
        description="Drive a SPEQ board (hw.board.SpeqBoard) over its UART; "
                    "the protocol is in docs/board.md.")
    p.add_argument("--port", required=True,
                   help="serial port of the board's UART, e.g. /dev/ttyUSB0 (iCEBreaker: the "
                        "second FTDI interface, usually /dev/ttyUSB1)")
    p.add_argument("--baud", type=_positive, default=115200,
                   help="baud rate the bitstream was built for (default: 115200)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for an answer before giving up (default: 10)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the board's configuration and sticky error flags")
    g = sub.add_parser("gemm", help="random GEMMs on the board, checked against the golden model")
    g.add_argument("--mode", choices=[*MODES, "all"], default="all",
                   help="pass to run (default: all three, over the same weights)")
    g.add_argument("--n", type=_positive, default=32, help="output rows N (default: 32)")
    g.add_argument("--k", type=_positive, default=64,
                   help="reduction length K, a multiple of 4 up to the board's kmax (default: 64)")
    g.add_argument("--t", type=_positive, default=1,
                   help="tokens T of the verify pass, up to the board's tmax (default: 1)")
    g.add_argument("--fp16", action="store_true", help="also ask for FP16 results")
    g.add_argument("--seed", type=int, default=0, help="seed of the random operands (default: 0)")
    g.add_argument("--repeat", type=_positive, default=1, help="how many GEMMs (default: 1)")
    return p


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
    words = sum(len(image) for image in board.images(
        "verify", enc=speq16.encode(np.zeros((args.n, args.k), np.float16))))
    if words > board.info["weight_words"]:
        raise ValueError(f"N={args.n} K={args.k} needs {words} weight words; the board has "
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
            t = args.t if mode == "verify" else 1
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
            cost = perf.pass_cost(mode, args.n, args.k, t, mem_latency=1, **machine)
            ok = (not bad and result.busy_cycles == cost.cycles and not result.flags
                  and (result.status["bits"], result.status["macs"]) == (cost.bits, cost.macs))
            failures += not ok
            exact = "yes" if not bad else f"{bad} differ"
            print(f"{mode:<9} {args.n:>5} {args.k:>5} {t:>2} {exact:>10} "
                  f"{result.status['cycles']:>8} {result.frozen:>8} {cost.cycles:>8} "
                  f"{result.status['bits']:>9} {result.status['macs']:>9}"
                  + (f"  flags {result.flags!r}" if result.flags else ""))
    print("cycles - frozen must equal the model's cycles (golden.perf.pass_cost, memory latency 1)")
    return failures


async def _main(args):
    transport = SerialTransport(args.port, args.baud, args.timeout)
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
    p = parser()
    args = p.parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except (BoardError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
