"""Host driver of the SPEQ AXI top (`hw.axi.SpeqAxi`, ``docs/axi.md``).

A driver is a class over two callbacks, ``read(offset) -> int`` and
``write(offset, value)``, that access the 32-bit registers of the AXI4-Lite
slave at a byte offset (an ``mmap`` of ``/dev/mem``, a debugger, a simulated
bus). `AxiDriver` takes plain callbacks; `AsyncAxiDriver` takes coroutines
(the cocotb bench's ``AxiLiteMaster``) and has the same methods as
coroutines. Every method is written once, as a generator of register
accesses that both drive.

The weights are read by the accelerator from memory (``golden.perf``'s
images at the WBASE addresses); activations and results travel over the
AXI4-Stream ports, which a DMA or the bench feeds: `activation_beats` and
`gather_results` give their beats' contents.

Register offsets and fields come from ``hw/speq_axi.rdl`` (`hw.regmap`).
"""

import functools

import numpy as np

from hw.controller import Error, Op
from hw.regmap import register_map


__all__ = ["AxiDriver", "AsyncAxiDriver", "DriverError", "activation_beats", "gather_results",
           "MODES"]


#: Commands (the pass modes and KV_WRITE) and their op codes.
MODES = {"draft": Op.DRAFT, "verify": Op.VERIFY, "baseline": Op.BASELINE, "kv": Op.KV,
         "kv_draft": Op.KV_DRAFT, "kv_write": Op.KV_WRITE}


class DriverError(RuntimeError):
    """The accelerator refused a command, or did not finish in time."""


def _fields(register, value):
    """``{field: value}`` of a register word."""
    return {f.name: (value >> f.lsb) & ((1 << f.width) - 1) for f in register.fields}


def _word(register, **values):
    """A register word from field values (others 0)."""
    word = 0
    for name, value in values.items():
        f = register.field(name)
        if not 0 <= value < 1 << f.width:
            raise ValueError(f"{register.name}.{name} takes {f.width} bits, not {value}")
        word |= value << f.lsb
    return word


class _Programs:
    """The driver's operations as generators: each yields ``("r", offset)``
    (and is sent the value read) or ``("w", offset, value)``."""

    def __init__(self):
        self.regs = register_map()

    def _read(self, name):
        value = yield ("r", self.regs[name].offset)
        return value

    def _write(self, name, **fields):
        register = self.regs[name]
        yield ("w", register.offset, _word(register, **fields))

    def info(self):
        """ID, version and the generated configuration."""
        ident = yield from self._read("ID")
        version = _fields(self.regs["VERSION"], (yield from self._read("VERSION")))
        config = _fields(self.regs["CONFIG0"], (yield from self._read("CONFIG0")))
        config.update(_fields(self.regs["CONFIG1"], (yield from self._read("CONFIG1"))))
        config.update(_fields(self.regs["CONFIG2"], (yield from self._read("CONFIG2"))))
        return {"id": ident, "version": (version["MAJOR"], version["MINOR"]),
                **{name.lower(): value for name, value in config.items()}}

    def load_table(self, enc):
        """The remap tables of ``enc`` (a `golden.speq16` encoding): eight
        register writes; they reach the accelerator at the next start."""
        for code in range(8):
            yield from self._write(
                f"TABLE{code}", BASE=int(enc.base[code]),
                EXP=int(enc.draft_exp[code]) & 0x3F, HALF=int(enc.draft_half[code]),
                ZERO=int(enc.draft_zero[code]))

    def read_table(self):
        """The eight table registers: ``[{"base", "exp", "half", "zero"}]``."""
        entries = []
        for code in range(8):
            raw = _fields(self.regs[f"TABLE{code}"], (yield from self._read(f"TABLE{code}")))
            exp = raw["EXP"] - (64 if raw["EXP"] & 32 else 0)
            entries.append({"base": raw["BASE"], "exp": exp, "half": raw["HALF"],
                            "zero": raw["ZERO"]})
        return entries

    def start(self, mode, n, k, t=1, *, wbase0, wbase1=0, fp16=False, pos=0, vt=0,
              multihead=False, head=0):
        """Write a command and start it (the activations follow on
        ``s_axis``). ``mode``: a key of `MODES` or an op code. A
        ``"kv_write"`` writes ``t`` positions from ``pos`` of a keys image
        (``vt`` 0; ``n`` = the capacity, ``k`` = the head dimension) or a
        values image (``vt`` 1; ``n`` rows of one tile, ``k`` = the
        capacity) whose planes are at ``wbase0`` (high) and ``wbase1``
        (low); its ``t x D/4`` beats are `activation_beats` of the ``t x D``
        new values. ``multihead``: a multi-head pass (its ``head_groups``
        heads' activations one after the other), or a KV_WRITE of head
        ``head`` into multi-head images. Interrupts are `irq_enable`'s, in
        a register of their own."""
        op = MODES[mode] if isinstance(mode, str) else mode
        op = int(getattr(op, "value", op))
        yield from self._write("OP", OP=op, FP16=int(fp16), MULTIHEAD=int(multihead))
        yield from self._write("N", N=n)
        yield from self._write("K", K=k)
        yield from self._write("T", T=t)
        yield from self._write("WBASE0", ADDR=wbase0)
        yield from self._write("WBASE1", ADDR=wbase1)
        if op == Op.KV_WRITE.value:
            yield from self._write("KV", POS=pos, VT=vt, HEAD=head)
        yield from self._write("CONTROL", START=1)

    def irq_enable(self, on=True):
        """Raise ``irq`` while STATUS.DONE (IRQ_ENABLE.DONE); kept across commands."""
        yield from self._write("IRQ_ENABLE", DONE=int(on))

    def abort(self, polls=100_000):
        """Stop the running command (CONTROL.ABORT) and wait until it is
        over; returns STATUS (ERROR 7, ABORTED, when a command was running).
        Stop the activation and result DMAs first (docs/axi.md)."""
        yield from self._write("CONTROL", ABORT=1)
        for _ in range(polls):
            status = yield from self.status()
            if not status["busy"]:
                return status
        raise DriverError(f"still BUSY {polls} status reads after ABORT")

    def status(self):
        """STATUS: ``{"busy", "done", "error", "op"}``."""
        value = yield from self._read("STATUS")
        return {name.lower(): value for name, value in _fields(self.regs["STATUS"], value).items()}

    def wait(self, polls=100_000):
        """Poll STATUS until DONE; raise `DriverError` after ``polls`` reads."""
        for _ in range(polls):
            status = yield from self.status()
            if status["done"] and not status["busy"]:
                return status
        raise DriverError(f"no DONE after {polls} status reads")

    def counters(self):
        """The last pass' ``cycles``, ``bits``, ``macs``, ``wait_mem``, ``wait_out``."""
        out = {}
        for name in ("CYCLES", "WAIT_MEM", "WAIT_OUT"):
            out[name.lower()] = yield from self._read(name)
        for name in ("BITS", "MACS"):
            low = yield from self._read(f"{name}_LO")
            high = yield from self._read(f"{name}_HI")
            out[name.lower()] = low | high << 32
        return out

    def flush(self, polls=1000):
        """Drop the activation beats waiting in the AXI top (CONTROL.FLUSH),
        such as those sent for a pass that was then refused; returns when
        they are gone."""
        yield from self._write("CONTROL", FLUSH=1)
        for _ in range(polls):
            status = yield from self.status()
            if not status["busy"]:
                return
        raise DriverError(f"still BUSY after {polls} status reads (a pass running?)")

    def clear_done(self):
        yield from self._write("STATUS", DONE=1)

    def run_pass(self, mode, n, k, t=1, *, wbase0, wbase1=0, fp16=False, enc=None,
                 polls=100_000):
        """Tables (if ``enc``), start, wait; returns ``{status..., counters...}``
        and raises `DriverError` if the pass was refused."""
        if enc is not None:
            yield from self.load_table(enc)
        yield from self.start(mode, n, k, t, wbase0=wbase0, wbase1=wbase1, fp16=fp16)
        status = yield from self.wait(polls)
        if status["error"] != Error.OK.value:
            raise DriverError(f"{mode} N={n} K={k} T={t}: {Error(status['error']).name} "
                              f"(activations sent for it wait in the AXI top: flush())")
        counters = yield from self.counters()
        return {**status, **counters}


def _sync(program):
    @functools.wraps(program)
    def method(self, *args, **kwargs):
        gen = program(self._programs, *args, **kwargs)
        value = None
        try:
            while True:
                access = gen.send(value)
                value = self._access(access)
        except StopIteration as stop:
            return stop.value
    return method


def _async(program):
    @functools.wraps(program)
    async def method(self, *args, **kwargs):
        gen = program(self._programs, *args, **kwargs)
        value = None
        try:
            while True:
                access = gen.send(value)
                value = await self._access(access)
        except StopIteration as stop:
            return stop.value
    return method


_PUBLIC = ("info", "load_table", "read_table", "start", "irq_enable", "abort", "status", "wait",
           "counters", "flush", "clear_done", "run_pass")


class AxiDriver:
    """The driver over plain callbacks ``read(offset) -> int`` and
    ``write(offset, value)`` (byte offsets of 32-bit registers).

    Methods: ``info``, ``load_table(enc)``, ``read_table``, ``start(mode, n,
    k, t, wbase0=, wbase1=, fp16=)``, ``irq_enable(on)``, ``abort``,
    ``status``, ``wait``, ``counters``, ``flush``, ``clear_done``,
    ``run_pass``.
    """

    def __init__(self, read, write):
        self._read, self._write = read, write
        self._programs = _Programs()

    def _access(self, access):
        if access[0] == "r":
            return self._read(access[1])
        self._write(access[1], access[2])


class AsyncAxiDriver:
    """`AxiDriver` over coroutine callbacks; its methods are coroutines."""

    def __init__(self, read, write):
        self._read, self._write = read, write
        self._programs = _Programs()

    async def _access(self, access):
        if access[0] == "r":
            return await self._read(access[1])
        await self._write(access[1], access[2])


for _name in _PUBLIC:
    setattr(AxiDriver, _name, _sync(getattr(_Programs, _name)))
    setattr(AsyncAxiDriver, _name, _async(getattr(_Programs, _name)))


def activation_beats(x):
    """The activation stream of ``x`` (float16, T x K): ``T x K/4`` ints of
    64 bits, ``X[t, 4g + j]`` at bit ``16 j`` of beat ``t K/4 + g``."""
    x = np.ascontiguousarray(x, dtype=np.float16)
    if x.ndim != 2 or x.shape[1] % 4:
        raise ValueError(f"x must be T x K with K a multiple of 4, not {x.shape}")
    return [int(v) for v in x.view("<u8").ravel()]


def gather_results(beats, users, *, n, t, pes, token_bits=None, heads=1):
    """``Y`` (float32, T x N), ``Y16`` (float16) and the times each output
    was seen (int, T x N) from result stream beats (``tdata`` ints) and
    their ``tuser`` ints (row of PE 0, then the token). A multi-head pass'
    (``heads`` = HEAD_GROUPS): each heads x T x N, PE p's result head
    p // (pes / heads)'s row ``row + p % (pes / heads)``."""
    y = np.zeros((heads, t, n), dtype=np.uint32)
    y16 = np.zeros((heads, t, n), dtype=np.uint16)
    seen = np.zeros((heads, t, n), dtype=np.int64)
    per = pes // heads
    for tdata, tuser in zip(beats, users):
        row, token = tuser & 0xFFFF, tuser >> 16
        for p in range(pes):
            q, col = divmod(p, per)
            if row + col < n and token < t:
                y[q, token, row + col] = (tdata >> (32 * p)) & 0xFFFFFFFF
                y16[q, token, row + col] = (tdata >> (32 * pes + 16 * p)) & 0xFFFF
                seen[q, token, row + col] += 1
    if heads == 1:
        y, y16, seen = y[0], y16[0], seen[0]
    return y.view(np.float32), y16.view(np.float16), seen
