"""The SPEQ accelerator: pass controller, remap tables and PE array.

`SpeqAccel` is what a system instantiates: commands and activations come in,
weights are read through one memory port, results and one status per command
go out (``docs/array.md``).
"""

from amaranth.hdl import Module
from amaranth.lib import wiring

from .array import SpeqArray
from .config import SpeqConfig
from .controller import PassController


__all__ = ["SpeqAccel", "PORTS"]


#: The accelerator's ports: those of its controller that face the system.
PORTS = ("cmd", "act", "mem", "out", "status", "wmem")


class SpeqAccel(wiring.Component):
    """``rows x cols`` SpeqPEs with their pass controller.

    Parameters
    ----------
    config : SpeqConfig
        All of it: the PE (``draft_frac_bits``, ``pe_stages``), the array
        (``rows``, ``cols``, ``tmax``), the activation buffer (``kmax``) and
        the memory port (``mem_bits``).

    kv_write : bool, optional
        Build the KV write path (`hw.kv_writer`; default: where the memory
        port allows it, ``mem_bits`` a multiple of 32).
    round_results : bool, optional
        Round the results to FP16 for ``out.payload.half`` (default); see
        `hw.controller.PassController`.
    registered_tests : bool, optional
        The controller's counter tests in flip-flops (default) or worked out
        from the counters (fewer logic cells); see
        `hw.controller.PassController`.

    Members
    -------
    cmd, act, mem, out, status, wmem
        As `hw.controller.PassController`; ``wmem`` is the memory's write
        port (KV_WRITE; never valid without the write path).

    Raises
    ------
    TypeError
        If ``config`` is not a `SpeqConfig`.
    ValueError
        If ``mem_bits`` does not divide ``16 x rows x cols``, ``kv_write``
        is asked for and ``mem_bits`` is not a multiple of 32, or an option
        is not True or False (``kv_write`` may also be None).
    """

    def __init__(self, config=SpeqConfig(), *, kv_write=None, round_results=True,
                 registered_tests=True):
        # Before any part is built: a refused configuration leaves no
        # elaboratable behind (Amaranth's UnusedElaboratable warning).
        self.check(config, kv_write=kv_write, round_results=round_results,
                   registered_tests=registered_tests)
        self._config = config
        self._array = SpeqArray(config, tag_bits=PassController.tag_bits(config))
        self._controller = PassController(config, self._array, kv_write=kv_write,
                                          round_results=round_results,
                                          registered_tests=registered_tests)
        members = self._controller.signature.members
        super().__init__({name: members[name] for name in PORTS})

    @staticmethod
    def check(config, *, kv_write=None, round_results=True, registered_tests=True):
        """Raise what `SpeqAccel` would raise for ``config`` and its options,
        without building anything."""
        if not isinstance(config, SpeqConfig):
            raise TypeError(f"config must be a SpeqConfig, not {config!r}")
        PassController.check(config, kv_write=kv_write, round_results=round_results,
                             registered_tests=registered_tests)

    @property
    def config(self):
        return self._config

    @property
    def array(self):
        return self._array

    @property
    def controller(self):
        return self._controller

    def elaborate(self, platform):
        m = Module()
        controller, array = self._controller, self._array
        m.submodules.controller = controller
        # The array has no enable: the controller sends it bubbles while its
        # engines wait, and buffers the results that come out meanwhile.
        m.submodules.array = array
        wiring.connect(m, controller.step, array.i)
        wiring.connect(m, controller.table, array.table)
        wiring.connect(m, array.o, controller.result)
        for name in PORTS:
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(controller, name))
        return m
