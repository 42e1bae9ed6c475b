"""Host side of the board protocol (``docs/board.md``): a client for `hw.board.SpeqBoard`.

`Board` talks to a board over a *transport*: any object with

- ``async write(data: bytes)``, and
- ``async read(count: int) -> bytes``, which returns exactly ``count`` bytes
  or raises `BoardError`.

`SerialTransport` is a real board behind a serial port (pyserial); the UART
bench (``tb/test_board.py``) passes one that drives the simulated board's
``rx`` pin and listens to its ``tx`` pin. The methods are coroutines so that
both work: on a serial port nothing awaits, and ``asyncio.run`` drives them.

Every structure on the wire is the `amaranth.lib.data` layout the hardware
uses (`hw.board`, `hw.controller`), packed here by its field offsets.
"""

from dataclasses import dataclass
import enum

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

from golden import perf, speq16
from hw.board import (MAGIC, PROTOCOL_VERSION, Ack, Answer, Flag, Info, Report, Request,
                      Span, nbytes)
from hw.config import SpeqConfig
from hw.controller import Command, Error, Op, result_layout
from hw.fp import FP16, FP32


__all__ = ["BoardError", "SerialTransport", "Board", "PassResult", "pack", "unpack", "MODES"]


#: Pass modes, as `golden.perf` names them, and their op.
MODES = {"draft": Op.DRAFT, "verify": Op.VERIFY, "baseline": Op.BASELINE}


#: Layouts packed as one number.
_NUMBERS = tuple(data.Layout.cast(shape) for shape in (FP16, FP32))


class BoardError(RuntimeError):
    """The board did not answer, answered out of protocol, or refused a request."""


# -- packing ---------------------------------------------------------------------

def _inner(shape):
    """The layout to descend into at a field of ``shape``, or None for a
    number (plain, enum, or a floating-point format of `hw.fp`)."""
    try:
        layout = data.Layout.cast(shape)
    except TypeError:
        return None
    return None if layout in _NUMBERS else layout


def pack(layout, values):
    """An integer from nested ``values`` (dicts for structs, lists for arrays,
    ints or enum members for fields) laid out as ``layout``; missing fields are 0.

    Raises
    ------
    ValueError
        If a value does not fit its field (the message names both).
    """
    layout = data.Layout.cast(layout)
    word = 0
    items = values.items() if isinstance(layout, data.StructLayout) else enumerate(values)
    for key, value in items:
        field = layout[key]
        inner = _inner(field.shape)
        if inner is not None:
            value = pack(inner, value)
        elif isinstance(value, enum.Enum):
            value = value.value
        bits = Shape.cast(field.shape).width
        value = int(value)
        if not -(1 << bits) < value < (1 << bits):
            raise ValueError(f"field {key!r} takes {bits} bits; {value} does not fit")
        word |= (value & ((1 << bits) - 1)) << field.offset
    return word


def unpack(layout, word):
    """Nested dicts and lists of unsigned ints from an integer laid out as ``layout``."""
    layout = data.Layout.cast(layout)
    fields = {} if isinstance(layout, data.StructLayout) else []
    for key, field in layout:
        bits = Shape.cast(field.shape).width
        raw = (word >> field.offset) & ((1 << bits) - 1)
        inner = _inner(field.shape)
        value = unpack(inner, raw) if inner is not None else raw
        if isinstance(fields, dict):
            fields[key] = value
        else:
            fields.append(value)
    return fields


def _to_bytes(layout, word):
    return word.to_bytes(nbytes(layout), "little")


# -- transports --------------------------------------------------------------------

class SerialTransport:
    """A board behind a serial port.

    Parameters
    ----------
    port : str
        E.g. ``/dev/ttyUSB0``, or any pyserial URL (``socket://host:port``).
    baud : int
        The board's baud rate (the bitstream's ``--baud``).
    timeout : float
        Seconds a read may wait for its bytes.

    Raises
    ------
    BoardError
        If the port cannot be opened at ``baud`` (the message says why).
    """

    def __init__(self, port, baud=115200, timeout=5.0):
        import serial      # pyserial; only a real board needs it
        self._timeout = timeout
        try:
            self._serial = serial.serial_for_url(port, baudrate=baud, timeout=timeout)
        except serial.SerialException as error:
            raise BoardError(f"cannot open {port}: {error}") from None
        except (ValueError, OverflowError) as error:
            # pyserial's own checks (an unknown URL scheme, a baud rate or a
            # timeout it cannot set) raise these instead.
            raise BoardError(f"cannot open {port} at {baud} Bd: {error}") from None
        self._serial.reset_input_buffer()

    async def write(self, payload):
        self._serial.write(payload)
        self._serial.flush()

    async def read(self, count):
        got = self._serial.read(count)
        if len(got) != count:
            raise BoardError(f"the board sent {len(got)} of {count} bytes in "
                             f"{self._timeout} s; is it programmed, and at this baud rate?")
        return got

    def close(self):
        self._serial.close()


# -- the client --------------------------------------------------------------------

@dataclass
class PassResult:
    """One pass as the board reported it.

    Members
    -------
    status : dict
        `hw.controller.Status`: ``op``, ``error``, ``cycles``, ``bits``, ``macs``.
    frozen : int
        Cycles the pass waited for the UART to take a result.
    flags : Flag
    y : numpy.ndarray or None
        ``T x N`` float32 results (None for a refused command).
    y16 : numpy.ndarray or None
        ``T x N`` float16 results (all 0 unless the pass asked for them).
    """

    status: dict
    frozen: int
    flags: Flag
    y: np.ndarray = None
    y16: np.ndarray = None

    @property
    def busy_cycles(self):
        """``status.cycles - frozen``: the cycles `golden.perf.pass_cost` predicts."""
        return self.status["cycles"] - self.frozen


class Board:
    """A `hw.board.SpeqBoard` at the other end of ``transport``.

    Call `connect` first: it reads the board's configuration, which every
    other method checks its arguments against before anything is sent.
    """

    def __init__(self, transport):
        self._io = transport
        self.info = None
        self.config = None

    async def _expect(self, answer, layout):
        tag = (await self._io.read(1))[0]
        if tag != answer:
            raise BoardError(f"expected answer {chr(answer)!r}, got byte 0x{tag:02x}")
        return unpack(layout, int.from_bytes(await self._io.read(nbytes(layout)), "little"))

    async def connect(self):
        """Read the board's `Info` (and clear its sticky flags); return it."""
        await self._io.write(bytes([Request.INFO]))
        info = await self._expect(Answer.INFO, Info)
        if info["magic"] != MAGIC:
            raise BoardError(f"not a SPEQ board: magic 0x{info['magic']:08x}")
        if info["version"] != PROTOCOL_VERSION:
            raise BoardError(f"board speaks protocol {info['version']}, "
                             f"this host {PROTOCOL_VERSION}")
        self.info = info
        self.config = SpeqConfig(**{name: info[name] for name in (
            "draft_lanes", "draft_frac_bits", "pe_stages", "rows", "cols", "tmax", "kmax",
            "mem_bits", "head_groups")})
        self._result = result_layout(self.config)
        return info

    def _check_connected(self):
        if self.config is None:
            raise BoardError("call connect() first")

    async def _write_span(self, request, answer, addr, words, word_bytes, depth, what):
        self._check_connected()
        if addr < 0 or addr + len(words) > depth:
            raise ValueError(f"{what} words {addr}..{addr + len(words) - 1} do not fit the "
                             f"board's {depth}-word {what} memory")
        payload = b"".join(int(w).to_bytes(word_bytes, "little") for w in words)
        await self._io.write(bytes([request]) + _to_bytes(Span, pack(
            Span, {"addr": addr, "count": len(words)})) + payload)
        ack = await self._expect(answer, Ack)
        if ack["code"]:
            raise BoardError(f"the board refused {what} words {addr}..{addr + len(words) - 1}")

    async def write_weights(self, addr, words):
        """Write ``mem_bits``-wide words (ints) from weight word ``addr``."""
        await self._write_span(Request.WEIGHTS, Answer.WEIGHTS, addr, words,
                               self.config.mem_bits // 8, self.info["weight_words"], "weight")

    async def write_acts(self, x):
        """Write activations ``x`` (``T x K`` float16) from activation word 0,
        in the order a pass reads them: token by token, four columns a word."""
        self._check_connected()
        x = np.ascontiguousarray(x, dtype=np.float16)
        t, k = x.shape
        if k % 4:
            raise ValueError(f"K must be a multiple of 4, not {k}")
        raw = x.view("<u2").reshape(t * k // 4, 4)
        words = [int.from_bytes(row.tobytes(), "little") for row in raw]
        await self._write_span(Request.ACTS, Answer.ACTS, 0, words, 8,
                               self.info["act_words"], "activation")

    async def command(self, op, **fields):
        """Send one `hw.controller.Command`; collect its results and report.

        Returns ``(report, beats)``: the `Report` dict and the result beats
        (dicts of `hw.controller.result_layout`).
        """
        self._check_connected()
        word = pack(Command, {"op": op, **fields})
        await self._io.write(bytes([Request.RUN]) + _to_bytes(Command, word))
        beats = []
        while True:
            tag = (await self._io.read(1))[0]
            if tag == Answer.OUT:
                raw = await self._io.read(nbytes(self._result))
                beats.append(unpack(self._result, int.from_bytes(raw, "little")))
            elif tag == Answer.REPORT:
                raw = await self._io.read(nbytes(Report))
                return unpack(Report, int.from_bytes(raw, "little")), beats
            else:
                raise BoardError(f"expected a result or a report, got byte 0x{tag:02x}")

    async def load_table(self, enc):
        """The remap tables of encoding ``enc`` (`golden.speq16`), one ``TABLE`` command per code."""
        for code in range(len(enc.base)):
            report, _ = await self.command(
                Op.TABLE, code=code, base=int(enc.base[code]), exp=int(enc.draft_exp[code]),
                half=int(enc.draft_half[code]), zero=int(enc.draft_zero[code]))
            if report["status"]["error"] != Error.OK.value:
                raise BoardError(f"TABLE code {code} refused: {report['status']}")

    def _check_heads(self, heads):
        if heads not in (1, self.config.head_groups):
            raise ValueError(f"a multi-head pass has the board's head_groups = "
                             f"{self.config.head_groups} heads, not {heads}")

    def images(self, mode, w=None, enc=None, heads=1):
        """The weight memory words of a pass: ``[plane]`` (draft, baseline) or
        ``[draft plane, residual plane]`` (verify); of a multi-head pass with
        ``heads`` (the board's head groups) heads' ``w`` stacked."""
        self._check_connected()
        self._check_heads(heads)
        m = perf.machine(self.config)
        return perf.pass_images(mode, w, enc, m["pes"], m["slots"], self.config.mem_bits,
                                heads)

    async def run_pass(self, mode, x, n, addrs, fp16=False, heads=1):
        """Load ``x`` and run one pass over weights already at word addresses
        ``addrs``; return a `PassResult` with ``Y`` gathered from the beats.
        A multi-head pass (``heads`` = the board's head groups): ``x`` is
        heads x T x K, ``n`` the rows of a head, ``Y`` heads x T x N."""
        self._check_connected()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self._check_heads(heads)
        t, k = x.shape[-2:]
        await self.write_acts(x.reshape(-1, k))
        addrs = list(addrs) + [0] * (2 - len(addrs))
        report, beats = await self.command(MODES[mode], n=n, k=k, t=t, addr0=addrs[0],
                                           addr1=addrs[1], fp16=int(fp16),
                                           **({"multihead": 1} if heads > 1 else {}))
        status = report["status"]
        result = PassResult(status=status, frozen=report["frozen"], flags=Flag(report["flags"]))
        if status["error"] != Error.OK.value:
            return result
        pes = self.config.rows * self.config.cols
        per = pes // heads                    # PE p: head p // per, row + p % per
        y = np.zeros((heads, t, n), dtype=np.uint32)
        y16 = np.zeros((heads, t, n), dtype=np.uint16)
        seen = np.zeros((heads, t, n), dtype=np.int64)
        for beat in beats:
            for p in range(pes):
                q, row = p // per, beat["row"] + p % per
                if row < n:
                    y[q, beat["token"], row] = beat["acc"][p]
                    y16[q, beat["token"], row] = beat["half"][p]
                    seen[q, beat["token"], row] += 1
        if not (seen == 1).all():
            raise BoardError(f"results came {seen.min()} to {seen.max()} times, not once each")
        if heads == 1:
            y, y16 = y[0], y16[0]
        result.y, result.y16 = y.view(np.float32), y16.view(np.float16)
        return result

    async def gemm(self, mode, x, w, *, enc=None, fp16=False, table=True, heads=1):
        """``Y = X . W^T`` in one pass: load the tables (unless ``table`` is
        False), the weight images from word 0, the activations; run it.

        ``w`` is ``N x K`` float16; ``enc`` its `golden.speq16` encoding
        (made here when needed and not given). With ``heads`` (the board's
        head groups): a multi-head pass, ``x`` heads x T x K and ``w`` the
        heads' N x K stacked.
        """
        if mode != "baseline" and enc is None:
            enc = speq16.encode(w)
        if mode != "baseline" and table:
            await self.load_table(enc)
        addrs, at = [], 0
        for image in self.images(mode, w, enc, heads):
            await self.write_weights(at, image)
            addrs.append(at)
            at += len(image)
        return await self.run_pass(mode, x, w.shape[0] // heads, addrs, fp16=fp16, heads=heads)
