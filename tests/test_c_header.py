"""The AXI top's C header (`hw.regmap.c_header`), compiled and run.

A small C program includes the generated header, builds a command word, a
CONTROL word and a table entry from the header's macros, and prints them
with every register offset; the test compares each with the register map
(`hw.regmap.register_map`) and the Python driver's packing
(`host.axi_driver._word`).
"""

import shutil
import subprocess

import pytest

from hw import regmap
from hw.controller import Error, Op
from host.axi_driver import _word


PROGRAM = r"""
#include <stdio.h>
#include <stdint.h>
#include "speq_axi_regs.h"

#define FIELD(reg, field, value) \
    (((uint32_t)(value) << SPEQ_AXI_##reg##_##field##_SHIFT) & SPEQ_AXI_##reg##_##field##_MASK)

int main(void) {
    /* A kv_draft command with FP16 results, START, and table entry 5. */
    uint32_t op = FIELD(OP, OP, SPEQ_AXI_OP_KV_DRAFT) | FIELD(OP, FP16, 1);
    uint32_t control = FIELD(CONTROL, START, 1);
    uint32_t abort = FIELD(CONTROL, ABORT, 1);
    uint32_t table = FIELD(TABLE, BASE, 100) | FIELD(TABLE, EXP, -5) | FIELD(TABLE, HALF, 1);
    printf("op %u\ncontrol %u\nabort %u\ntable %u\n", op, control, abort, table);
    printf("table5_offset %u\n", SPEQ_AXI_TABLE_OFFSET(5));
    printf("irq_enable_offset %u\nstatus_offset %u\nop_offset %u\n",
           SPEQ_AXI_IRQ_ENABLE_OFFSET, SPEQ_AXI_STATUS_OFFSET, SPEQ_AXI_OP_OFFSET);
    printf("aborted %u\n", SPEQ_AXI_ERROR_ABORTED);
    /* PeakRDL's struct agrees with the offsets. */
    printf("struct_table %u\n", (unsigned)offsetof(speq_axi_t, TABLE));
    printf("struct_wbase1 %u\n", (unsigned)offsetof(speq_axi_t, WBASE1));
    return 0;
}
"""


# Session scope: conftest.py orders the tests across modules, and pytest tears a
# module fixture down whenever the next test is another module's.
@pytest.fixture(scope="session")
def program(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:                                  # pragma: no cover - gcc is on the machine
        pytest.fail("no C compiler (cc or gcc) on PATH")
    out = tmp_path_factory.mktemp("c_header")
    regmap.c_header(out / "speq_axi_regs.h")
    (out / "main.c").write_text("#include <stddef.h>\n" + PROGRAM)
    build = subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-o", str(out / "main"),
                            str(out / "main.c"), f"-I{out}"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(out / "main")], capture_output=True, text=True, check=True)
    return dict(line.split() for line in run.stdout.splitlines())


def test_c_macros_build_the_words_the_python_map_does(program):
    regs = regmap.register_map()
    got = {name: int(value) for name, value in program.items()}
    assert got["op"] == _word(regs["OP"], OP=Op.KV_DRAFT.value, FP16=1)
    assert got["control"] == _word(regs["CONTROL"], START=1)
    assert got["abort"] == _word(regs["CONTROL"], ABORT=1) == 0b1000
    assert got["table"] == _word(regs["TABLE5"], BASE=100, EXP=-5 & 0x3F, HALF=1)
    assert got["table5_offset"] == regs["TABLE5"].offset
    assert got["irq_enable_offset"] == regs["IRQ_ENABLE"].offset == 0x50
    assert got["status_offset"] == regs["STATUS"].offset
    assert got["op_offset"] == regs["OP"].offset
    assert got["aborted"] == Error.ABORTED.value == 7
    assert got["struct_table"] == regs["TABLE0"].offset
    assert got["struct_wbase1"] == regs["WBASE1"].offset


def test_every_register_and_field_has_its_macros(tmp_path):
    regmap.c_header(tmp_path / "h.h")
    text = (tmp_path / "h.h").read_text()
    regs = regmap.register_map()
    for register in regs:
        name = "TABLE" if register.name[:5] == "TABLE" and register.name[5:].isdigit() \
            else register.name
        if name != "TABLE":
            assert f"#define SPEQ_AXI_{name}_OFFSET 0x{register.offset:03X}u" in text
        for field in register.fields:
            mask = ((1 << field.width) - 1) << field.lsb
            assert f"#define SPEQ_AXI_{name}_{field.name}_MASK 0x{mask:08X}u" in text
    # Inside the include guard.
    assert text.index("SPEQ_AXI_OP_OFFSET") < text.rindex("#endif")
