"""Print what every cocotb bench of this run checked, also under pytest-xdist.

Each bench leaves a ``summary.json`` in its build directory; the workers of
``pytest -n`` do not show their output, so the controller reads the files
written during this run and prints one line per bench and simulator.
"""

import json
import time

from tb import runner


_START = time.time()


def pytest_terminal_summary(terminalreporter):
    lines = []
    for path in sorted(runner.BUILD_ROOT.glob("*/*/summary*.json")):
        if path.stat().st_mtime < _START:
            continue
        bench, sim = path.parent.parent.name + path.stem[len("summary"):], path.parent.name
        summary = json.loads(path.read_text())
        lines.append(f"{bench} [{sim}]: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    if lines:
        terminalreporter.section("cocotb bench summaries")
        for line in lines:
            terminalreporter.write_line(line)
