"""An 8N1 UART: a receiver and a transmitter with a fixed bit time.

No library on PyPI provides one for Amaranth 0.5 (``amaranth-stdio`` there
is an empty placeholder), so the board top uses these two small blocks.
Both count ``divisor`` clock cycles per bit; ``divisor`` is
``round(clock frequency / baud rate)``.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


__all__ = ["UartRx", "UartTx", "MIN_DIVISOR", "divisor_for"]


#: Fewest clock cycles per bit: the receiver samples mid-bit, after the two
#: synchronizer flip-flops, so a bit must last at least 4 cycles.
MIN_DIVISOR = 4


def divisor_for(clock_hz, baud):
    """``round(clock_hz / baud)``, checked for the 2% a UART tolerates.

    Raises
    ------
    ValueError
        If the divisor is below `MIN_DIVISOR`, or the baud rate it gives is
        more than 2% off ``baud``.
    """
    if clock_hz <= 0 or baud <= 0:
        raise ValueError(f"clock and baud rate must be positive, not {clock_hz} Hz and {baud} Bd")
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"{baud} Bd needs {clock_hz / baud:.2f} cycles per bit at "
                         f"{clock_hz} Hz; the UART needs at least {MIN_DIVISOR}")
    error = abs(clock_hz / divisor - baud) / baud
    if error > 0.02:
        raise ValueError(f"{baud} Bd is {100 * error:.1f}% off at {clock_hz} Hz "
                         f"(divisor {divisor}); a UART tolerates 2%")
    return divisor


def _check_divisor(divisor):
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be an integer of at least {MIN_DIVISOR}, not {divisor!r}")


class UartRx(wiring.Component):
    """Receives 8N1 bytes from ``rx``.

    Members
    -------
    rx : In(1, init=1)
        The serial line (idle high); synchronized here.
    data : Out(stream.Signature(8, always_ready=True))
        One cycle of ``valid`` per received byte.
    framing_error : Out(1)
        Pulses when a byte's stop bit is low (the byte is dropped).
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "data": Out(stream.Signature(8, always_ready=True)),
            "framing_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(divisor))
        bit = Signal(range(10))
        shift = Signal(8)
        m.d.sync += [self.data.valid.eq(0), self.framing_error.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    # Sample the start bit mid-way, then every bit time.
                    m.d.sync += [timer.eq(divisor // 2 - 1), bit.eq(0)]
                    m.next = "BITS"
            with m.State("BITS"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(divisor - 1), bit.eq(bit + 1)]
                    with m.If(bit == 0):
                        with m.If(rx):          # a glitch, not a start bit
                            m.next = "IDLE"
                    with m.Elif(bit <= 8):
                        m.d.sync += shift.eq(Cat(shift[1:], rx))
                    with m.Else():
                        with m.If(rx):
                            m.d.sync += [self.data.valid.eq(1), self.data.payload.eq(shift)]
                        with m.Else():
                            m.d.sync += self.framing_error.eq(1)
                        m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """Sends 8N1 bytes on ``tx``.

    Members
    -------
    data : In(stream.Signature(8))
        Taken when the previous byte's stop bit is done.
    tx : Out(1, init=1)
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({
            "data": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor
        timer = Signal(range(divisor))
        bits = Signal(range(11))        # bits left to send, stop bit included
        frame = Signal(10, init=~0)
        m.d.comb += [
            self.data.ready.eq(bits == 0),
            self.tx.eq(frame[0]),
        ]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [
                frame.eq(Cat(Const(0, 1), self.data.payload, Const(1, 1))),
                bits.eq(10),
                timer.eq(divisor - 1),
            ]
        with m.Elif(bits != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [timer.eq(divisor - 1), bits.eq(bits - 1),
                             frame.eq(Cat(frame[1:], Const(1, 1)))]
        return m
