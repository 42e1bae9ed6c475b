"""Cycle model of a pass on the AXI top (`hw.axi.SpeqAxi`, ``docs/axi.md``).

The accelerator behind the AXI top sees a memory of latency one: every cycle
it advances is a cycle of `golden.perf.pass_cost` with ``mem_latency=1``,
and it freezes (WAIT_MEM) in the cycle after it asked for a word (the
answer's cycle) while that word is not yet at the head of its plane's FIFO. So a pass takes ``pass_cost`` plus
WAIT_MEM, and WAIT_MEM follows from when each weight word arrives, which
follows from when the read master asks for its burst, which follows (through
the FIFOs' room) from when the accelerator took earlier words. This module
replays that loop burst by burst.

The memory it assumes (what ``tb/test_axi.py``'s ``FixedLatencyRam`` does):

- ARREADY is always high, so a burst the master decides on in cycle ``c``
  is handed over in cycle ``c + 1``;
- the first R beat of a burst comes ``read_latency`` cycles (>= 1) after its
  AR handshake, or the cycle after the previous burst's last beat if that is
  later (one R channel, bursts answered in the order asked, whatever the
  plane); its other beats follow one a cycle;
- the activations are in the activation FIFO when the accelerator wants them
  (the bench sends them before START, without pauses) and the result stream
  never blocks (WAIT_OUT is 0).

The master (as `hw.axi.SpeqAxi` has it, cycle 0 being the cycle the
accelerator takes the command): from cycle 1 it decides on at most one burst
a cycle, for plane ``p`` when the plane has words left, fewer than
``max_outstanding`` bursts are in flight (decided, and their last beat not
before this cycle) and the FIFO has room for the whole burst, counting the
words asked for and not taken by the accelerator before this cycle; with
both planes ready it alternates, starting at plane 0. A burst is
``min(burst_beats, words left, words to the next 4 KB boundary)`` long. A
word written into an empty plane FIFO in cycle ``w`` is at its head in
cycle ``w + HEAD_CYCLES`` (two `amaranth.lib.fifo.SyncFIFOBuffered` in a row,
2 cycles each: the plane's and the small one in front of it).

The accelerator: its ``g``-th request goes out on its advancing cycle
``A[g]`` (`golden.perf.fetch_schedule`), in real time in cycle ``A[g] + S``
with ``S`` the cycles frozen before it; it is answered (the word taken from
its FIFO) in cycle ``R[g] = max(A[g] + S + 1, W[g] + HEAD_CYCLES)`` with ``W[g]`` the
cycle the word was written into its FIFO; ``R[g] - A[g] - 1`` is then the
frozen cycles so far.

A KV_WRITE command (`axi_kv_write_cost`) writes through the master's write
channels instead, behind a slave that keeps AWREADY and WREADY high and
answers every write with its B response ``write_latency`` cycles after the
handshake of its AW and W (one write a cycle at most, so the responses come
in order, never two in a cycle).
"""

from dataclasses import dataclass

import numpy as np

from . import perf


__all__ = ["AxiPassCost", "axi_pass_cost", "AxiKvWriteCost", "axi_kv_write_cost", "bursts",
           "BOUNDARY", "HEAD_CYCLES"]


#: INCR bursts do not cross 4 KB (AXI4).
BOUNDARY = 4096

#: Cycles from a weight word's write into its empty plane FIFO to the head of
#: the plane (`hw.axi.SpeqAxi`: the plane's FIFO and the small one in front).
HEAD_CYCLES = 4


@dataclass(frozen=True)
class AxiPassCost:
    """What one pass on the AXI top costs.

    Members
    -------
    cycles : int
        STATUS.CYCLES: ``pass_cost(mem_latency=1).cycles + wait_mem``.
    bits, macs, steps : int
        As `golden.perf.PassCost`.
    wait_mem : int
        WAIT_MEM: cycles frozen for a weight word not yet arrived.
    bursts : int
        Read bursts of the pass.
    most_in_flight : int
        Most bursts decided on and not yet ended at once.
    """

    cycles: int
    bits: int
    macs: int
    steps: int
    wait_mem: int
    bursts: int
    most_in_flight: int


def bursts(base, words, *, mem_bits, burst_beats):
    """``(first word, length)`` of the bursts reading ``words`` words from
    byte address ``base`` (its low bits below the bus width ignored)."""
    bus_bytes = mem_bits // 8
    addr = base & ~(bus_bytes - 1)
    out, at = [], 0
    while at < words:
        to_boundary = (BOUNDARY - addr % BOUNDARY) // bus_bytes
        length = min(burst_beats, words - at, to_boundary)
        out.append((at, length))
        at += length
        addr += length * bus_bytes
    return out


def axi_pass_cost(mode, n, k, t, *, pes, slots, lanes, mem_bits, result_latency, read_latency,
                  burst_beats, max_outstanding, fifo_depth, wbase0=0, wbase1=0, heads=1):
    """Cycles (and bits, MACs, WAIT_MEM) of one pass on `hw.axi.SpeqAxi`
    behind the memory of the module docstring.

    Parameters
    ----------
    mode : {"draft", "verify", "baseline", "kv", "kv_draft"}
    n, k, t : int
        The pass' shape.
    pes, slots, lanes, mem_bits, result_latency : int
        The accelerator, as `golden.perf.machine` gives them.
    read_latency : int
        Cycles from a burst's AR handshake to its first R beat (>= 1).
    burst_beats, max_outstanding, fifo_depth : int
        The `hw.axi.AxiConfig`.
    wbase0, wbase1 : int
        Byte addresses of the planes (WBASE0, WBASE1): they place the 4 KB
        boundaries that cut bursts.
    heads : int
        1, or the heads of a multi-head pass (`golden.perf`).

    Raises
    ------
    ValueError
        If ``read_latency`` is below 1.
    """
    if read_latency < 1:
        raise ValueError(f"read_latency must be at least 1, not {read_latency}")
    cost, groups = perf.fetch_schedule(mode, n, k, t, pes=pes, slots=slots, lanes=lanes,
                                       mem_bits=mem_bits, mem_latency=1,
                                       result_latency=result_latency, heads=heads)
    # Advancing cycle of every request, and its plane.
    starts = np.array([first for first, _ in groups], dtype=np.int64)
    counts = np.array([beats for _, beats in groups], dtype=np.int64)
    total = int(counts.sum())
    offsets = np.cumsum(counts) - counts
    a = (np.repeat(starts - offsets, counts) + np.arange(total)).tolist()
    # Each entry reads PLANE_WORDS[mode] words (x 16 P / B) from plane 0, then plane 1.
    words0, words1 = (16 * words * pes // mem_bits for words in perf.PLANE_WORDS[mode])
    plane = np.arange(total) % (words0 + words1) >= words0
    where = [np.flatnonzero(~plane).tolist(), np.flatnonzero(plane).tolist()]
    todo = [bursts(base, len(where[p]), mem_bits=mem_bits, burst_beats=burst_beats)
            for p, base in enumerate((wbase0, wbase1))]

    written = [0] * total       # cycle each word is written into its FIFO
    taken = [0] * total         # cycle the accelerator takes it
    frozen = 0                  # cycles frozen before the next request
    known = 0                   # `taken` is known for requests below this
    nxt = [0, 0]                # next burst of each plane
    issued = [0, 0]             # words of each plane asked for
    ends = []                   # cycle of each burst's last beat, in issue order
    last_issue = 0              # the master decides from cycle 1 on
    r_free = 0                  # first cycle the R channel is free
    prefer1 = False
    most = 0
    inf = float("inf")

    def take(upto):
        nonlocal frozen, known
        for g in range(known, upto):
            served = max(a[g] + frozen + 1, written[g] + HEAD_CYCLES)
            frozen = served - a[g] - 1
            taken[g] = served
        known = max(known, upto)

    while nxt[0] < len(todo[0]) or nxt[1] < len(todo[1]):
        # Requests below `limit` have all their words asked for.
        limit = min(where[p][issued[p]] if issued[p] < len(where[p]) else total
                    for p in range(2))
        earliest = [inf, inf]
        for p in range(2):
            if nxt[p] == len(todo[p]):
                continue
            first, length = todo[p][nxt[p]]
            cycle = last_issue + 1
            if len(ends) >= max_outstanding:
                cycle = max(cycle, ends[len(ends) - max_outstanding] + 1)
            # Room: the plane word `first + length - fifo_depth - 1` taken.
            j = first + length - fifo_depth - 1
            if j >= 0:
                g = where[p][j]
                if g >= limit:
                    # Taken only after words of the other plane not yet asked
                    # for: the other plane goes first.
                    continue
                take(g + 1)
                cycle = max(cycle, taken[g] + 1)
            earliest[p] = cycle
        if earliest[0] == earliest[1] == inf:      # pragma: no cover - a model bug
            raise AssertionError(f"the master cannot go on: {nxt}, {issued}")
        if earliest[0] == earliest[1]:
            p = 1 if prefer1 else 0
        else:
            p = 0 if earliest[0] < earliest[1] else 1
        cycle = earliest[p]
        first, length = todo[p][nxt[p]]
        beat = max(cycle + 1 + read_latency, r_free)
        for i, g in enumerate(where[p][first:first + length]):
            written[g] = beat + i
        r_free = beat + length
        ends.append(r_free - 1)
        # Bursts in flight just after this decision: decided ones whose last
        # beat is not before the next cycle.
        most = max(most, sum(1 for end in ends[-max_outstanding:] if end > cycle))
        nxt[p] += 1
        issued[p] += length
        prefer1 = p == 0
        last_issue = cycle
    take(total)
    return AxiPassCost(cycles=cost.cycles + frozen, bits=cost.bits, macs=cost.macs,
                       steps=cost.steps, wait_mem=frozen, bursts=len(ends), most_in_flight=most)


@dataclass(frozen=True)
class AxiKvWriteCost:
    """What one KV_WRITE command on the AXI top costs.

    Members
    -------
    cycles : int
        STATUS.CYCLES: ``golden.perf.kv_write_cycles`` plus ``wait_mem``.
    wait_mem : int
        WAIT_MEM: the cycles a write waited for the write master (its
        ``max_outstanding`` writes in flight), then the cycles from the last
        write to its response (``write_latency + 1``).
    bits : int
        STATUS.BITS: 16 bits of each value written (both planes).
    writes : int
        Writes (single-beat bursts) of the command.
    most_in_flight : int
        Most writes taken from the accelerator and not yet answered at once.
    """

    cycles: int
    wait_mem: int
    bits: int
    writes: int
    most_in_flight: int


def axi_kv_write_cost(vt, d, t, *, write_latency, max_outstanding):
    """Cycles (and WAIT_MEM) of one KV_WRITE command on `hw.axi.SpeqAxi`
    behind the write slave of the module docstring, the activation beats
    there when the writer wants them.

    The writer (`hw.kv_writer`, cycle 0 being the cycle the accelerator
    takes the command) offers its writes one a cycle: the first of a beat a
    cycle after the beat's (a cycle to take it), the first of a position
    `golden.perf.KV_WRITE_SETUP` + 1 cycles after the last write before it
    (the position's set-up, then its first beat). The master
    takes a write in cycle ``c`` when fewer than ``max_outstanding`` writes
    are in flight: write ``j`` not before ``c[j - max_outstanding] +
    write_latency + 2`` (its AW and W handshaken in ``c + 1``, its response
    in ``c + 1 + write_latency``, counted from the cycle after). The
    accelerator's status comes the cycle after the last write and waits for
    every response: ``write_latency + 1`` cycles, counted in WAIT_MEM.

    Parameters
    ----------
    vt : {0, 1}
        A values image (1) or a keys image (0).
    d, t : int
        Values of a position (the keys image's K, the values image's N) and
        positions.
    write_latency : int
        Cycles from a write's AW and W handshake to its B response (>= 1).
    max_outstanding : int
        The `hw.axi.AxiConfig`'s: most writes in flight.

    Raises
    ------
    ValueError
        If ``write_latency`` is below 1.
    """
    if write_latency < 1:
        raise ValueError(f"write_latency must be at least 1, not {write_latency}")
    per_beat = perf.kv_writes_per_beat(vt)
    taken = []                  # cycle each write is taken from the accelerator
    cycle = 0
    most = 0
    for _ in range(t):
        for beat in range(d // 4):
            for write in range(per_beat):
                # After the position's set-up and the beat's, or the write before.
                cycle += perf.KV_WRITE_SETUP + 2 if beat == write == 0 else \
                    2 if write == 0 else 1
                j = len(taken)
                if j >= max_outstanding:
                    cycle = max(cycle, taken[j - max_outstanding] + write_latency + 2)
                taken.append(cycle)
                most = max(most, sum(1 for c in taken[-max_outstanding:]
                                     if c + write_latency + 1 >= cycle))
    stalled = cycle - perf.kv_write_cycles(vt, d, t)
    wait_mem = stalled + write_latency + 1
    return AxiKvWriteCost(cycles=perf.kv_write_cycles(vt, d, t) + wait_mem, wait_mem=wait_mem,
                          bits=16 * t * d, writes=len(taken), most_in_flight=most)
