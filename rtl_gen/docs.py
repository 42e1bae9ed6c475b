"""Writing result tables into the Markdown notes of ``docs/``."""

import shlex
import sys
from pathlib import Path


__all__ = ["replace_section", "bench_command", "write_section"]


def replace_section(text, heading, body):
    """Replace (or append) the ``heading`` section of a Markdown document.

    The section runs from its heading line to the next heading of the same or
    a higher level (outside fenced code), or to the end of the document.
    """
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    new = [heading, ""] + body.rstrip("\n").splitlines() + [""]
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        return "\n".join(lines + [""] + new)
    end, in_code = start + 1, False
    while end < len(lines):
        line = lines[end]
        in_code ^= line.startswith("```")
        hashes = len(line) - len(line.lstrip("#"))
        if not in_code and 0 < hashes <= level and line[hashes:hashes + 1] == " ":
            break
        end += 1
    return "\n".join(lines[:start] + new + lines[end:]).rstrip("\n") + "\n"


def bench_command(script, argv=None):
    """The command line that ran ``script`` with ``argv`` (default: this
    process' arguments), as results.md quotes it: ``python bench/x.py --a 1``."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", script] + [shlex.quote(str(a)) for a in args])


def write_section(path, heading, body):
    """Replace (or append) the ``heading`` section of the Markdown file
    ``path`` with ``body`` and say so on stderr."""
    path = Path(path)
    path.write_text(replace_section(path.read_text(), heading, body))
    print(f"wrote the '{heading}' section of {path}", file=sys.stderr)
