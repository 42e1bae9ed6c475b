"""Writing result tables into the Markdown notes of ``docs/``."""

__all__ = ["replace_section"]


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
