"""The AXI top's register map, read from its SystemRDL description.

``hw/speq_axi.rdl`` is the one description of the registers: this module
compiles it (with ``systemrdl-compiler``) into plain Python objects that the
hardware (`hw.axi`), the host driver (`host.axi_driver`) and the generators
of the C header and of the stand-alone Python map (`rtl_gen.build --top axi`)
read. Arrays of registers (``TABLE[8]``) become one register per element,
named ``TABLE0`` .. ``TABLE7``.
"""

from dataclasses import dataclass
import functools
from pathlib import Path


__all__ = ["RDL_PATH", "Field", "Register", "RegisterMap", "register_map", "python_source",
           "c_header"]


#: The SystemRDL source of the register map.
RDL_PATH = Path(__file__).with_name("speq_axi.rdl")


@dataclass(frozen=True)
class Field:
    """One field: bits ``lsb .. lsb + width - 1`` of its register.

    ``sw`` is the software access (``"r"``, ``"w"``, ``"rw"``); ``woclr``:
    writing 1 clears it; ``singlepulse``: a written 1 lasts one cycle.
    """

    name: str
    lsb: int
    width: int
    sw: str
    reset: int
    woclr: bool
    singlepulse: bool
    desc: str

    @property
    def mask(self):
        return ((1 << self.width) - 1) << self.lsb


@dataclass(frozen=True)
class Register:
    """One 32-bit register at byte ``offset``."""

    name: str
    offset: int
    fields: tuple
    desc: str

    @property
    def writable(self):
        return any("w" in field.sw for field in self.fields)

    def field(self, name):
        return next(field for field in self.fields if field.name == name)


@dataclass(frozen=True)
class RegisterMap:
    """Every register of the map, in address order."""

    name: str
    registers: tuple
    width: int = 32

    def __getitem__(self, name):
        for register in self.registers:
            if register.name == name:
                return register
        raise KeyError(name)

    def __iter__(self):
        return iter(self.registers)

    @property
    def size(self):
        """Bytes of address space the map decodes (a power of two)."""
        end = max(register.offset for register in self.registers) + self.width // 8
        return 1 << (end - 1).bit_length()

    def to_dict(self):
        """The map as JSON-ready data (the manifest's ``registers``)."""
        return {register.name: {
            "offset": register.offset, "desc": register.desc,
            "fields": {field.name: {"lsb": field.lsb, "width": field.width, "sw": field.sw,
                                    "reset": field.reset, "woclr": field.woclr,
                                    "singlepulse": field.singlepulse, "desc": field.desc}
                       for field in register.fields}}
            for register in self.registers}


def _text(node, prop):
    value = node.get_property(prop)
    return " ".join(value.split()) if value else ""


def _compile():
    # Imported here: only what reads the map needs the compiler.
    from systemrdl import RDLCompiler

    compiler = RDLCompiler()
    compiler.compile_file(str(RDL_PATH))
    return compiler.elaborate()


@functools.cache
def register_map():
    """The `RegisterMap` of ``hw/speq_axi.rdl`` (compiled once per process)."""
    return _register_map(_compile().top)


def _register_map(top):
    from systemrdl.node import RegNode
    from systemrdl.rdltypes import OnWriteType

    registers = []
    for node in top.descendants(unroll=True):
        if not isinstance(node, RegNode):
            continue
        name = node.inst_name + ("".join(map(str, node.current_idx)) if node.is_array else "")
        fields = []
        for field in node.fields():
            sw = ("r" if field.is_sw_readable else "") + ("w" if field.is_sw_writable else "")
            fields.append(Field(
                name=field.inst_name, lsb=field.lsb, width=field.width, sw=sw,
                reset=field.get_property("reset") or 0,
                woclr=field.get_property("onwrite") == OnWriteType.woclr,
                singlepulse=bool(field.get_property("singlepulse")),
                desc=_text(field, "desc")))
        registers.append(Register(name=name, offset=node.absolute_address, fields=tuple(fields),
                                  desc=_text(node, "desc") or _text(node, "name")))
    registers.sort(key=lambda register: register.offset)
    return RegisterMap(name=top.inst_name, registers=tuple(registers))


def python_source(regmap=None):
    """A stand-alone Python module of the map (offsets, field masks and
    shifts), for software outside this repository."""
    regmap = regmap or register_map()
    lines = [f'"""Register map of {regmap.name}, generated from hw/speq_axi.rdl by '
             f'python -m rtl_gen.build --top axi."""', "",
             "#: {name: byte offset}", "OFFSETS = {"]
    lines += [f"    {register.name!r}: 0x{register.offset:03X}," for register in regmap]
    lines += ["}", "", "#: {register: {field: (lsb, width, sw access)}}", "FIELDS = {"]
    for register in regmap:
        lines.append(f"    {register.name!r}: {{")
        lines += [f"        {field.name!r}: ({field.lsb}, {field.width}, {field.sw!r}),"
                  for field in register.fields]
        lines.append("    },")
    lines += ["}", ""]
    for register in regmap:
        lines.append(f"{register.name} = 0x{register.offset:03X}")
    return "\n".join(lines) + "\n"


def ipxact(path):
    """Write the map as an IP-XACT (IEEE 1685-2014) component to ``path``
    with PeakRDL's IP-XACT exporter."""
    from peakrdl_ipxact import IPXACTExporter
    IPXACTExporter(vendor="speq", library="speq", version=_version()).export(
        _compile().top, str(path), component_name="speq_axi")


def read_ipxact(path):
    """The `RegisterMap` of an IP-XACT file (PeakRDL's IP-XACT importer into
    the SystemRDL compiler): to check an exported file against the source."""
    from systemrdl import RDLCompiler
    from peakrdl_ipxact import IPXACTImporter
    compiler = RDLCompiler()
    IPXACTImporter(compiler).import_file(str(path))
    return _register_map(compiler.elaborate().top)


def _version():
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("speq")
    except PackageNotFoundError:        # pragma: no cover - an uninstalled checkout
        return "0"


def c_header(path):
    """Write the C header of the map to ``path``: PeakRDL's C header exporter
    (a packed struct, and ``_bm``/``_bp``/``_bw`` macros of every field),
    then, inside its include guard, `c_macros`: the offset of every
    register, the shift, mask and width of every field (one set for the
    eight TABLE entries), and the op and error codes."""
    from peakrdl_cheader.exporter import CHeaderExporter
    CHeaderExporter().export(_compile().top, str(path))
    path = Path(path)
    text = path.read_text()
    end = text.rindex("#ifdef __cplusplus")
    path.write_text(text[:end] + c_macros() + "\n" + text[end:])


def c_macros(regmap=None):
    """``#define`` lines of the map for C: ``SPEQ_AXI_<REG>_OFFSET``,
    ``SPEQ_AXI_TABLE_OFFSET(n)``, ``SPEQ_AXI_<REG>_<FIELD>_SHIFT/_MASK/_WIDTH``
    (the mask in place), ``SPEQ_AXI_OP_<OP>`` and ``SPEQ_AXI_ERROR_<ERROR>``."""
    from .controller import Error, Op
    regmap = regmap or register_map()
    prefix = regmap.name.upper()
    lines = ["// Offsets, fields, ops and errors as plain macros (hw/regmap.py, from",
             "// hw/speq_axi.rdl): SPEQ_AXI_<REG>_OFFSET, SPEQ_AXI_<REG>_<FIELD>_SHIFT,",
             "// _MASK (in place) and _WIDTH; the TABLE entries share one set of fields."]
    tables = [r for r in regmap if r.name.startswith("TABLE") and r.name[5:].isdigit()]
    for register in regmap:
        if register in tables:
            continue
        lines.append(f"#define {prefix}_{register.name}_OFFSET 0x{register.offset:03X}u")
    if tables:
        step = tables[1].offset - tables[0].offset if len(tables) > 1 else 4
        lines.append(f"#define {prefix}_TABLE_OFFSET(n) (0x{tables[0].offset:03X}u + "
                     f"{step}u * (unsigned)(n))")
        lines.append(f"#define {prefix}_TABLE_COUNT {len(tables)}u")
    seen = set()
    for register in regmap:
        name = "TABLE" if register in tables else register.name
        if name in seen:
            continue
        seen.add(name)
        for field in register.fields:
            stem = f"{prefix}_{name}_{field.name}"
            mask = ((1 << field.width) - 1) << field.lsb
            lines += [f"#define {stem}_SHIFT {field.lsb}u",
                      f"#define {stem}_MASK 0x{mask:08X}u",
                      f"#define {stem}_WIDTH {field.width}u"]
    lines += [f"#define {prefix}_OP_{op.name} {op.value}u" for op in Op]
    lines += [f"#define {prefix}_ERROR_{error.name} {error.value}u" for error in Error]
    return "\n".join(lines) + "\n"
