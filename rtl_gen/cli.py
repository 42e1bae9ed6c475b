"""Checks of command-line input shared by the project's command lines.

A bad option stops a command the way argparse does: its usage, then one line
``<prog>: error: argument --option: <problem>``, exit status 2, no traceback.
The argument types below raise `argparse.ArgumentTypeError`, which argparse
turns into that line. The path checks raise `ValueError` naming the problem,
for the caller's ``parser.error(f"argument {option}: {error}")``; they run
before any long work, so that a path that cannot be written fails in a
second, not after a synthesis run.

This module imports nothing of the project, so that the bench scripts can use
it without loading Amaranth.
"""

import argparse
import math
import os
from pathlib import Path
import tempfile


__all__ = ["integer", "real", "output_dir", "output_file", "check_path"]


def integer(lo=None, hi=None, choices=None):
    """An argparse type: an integer from ``lo`` to ``hi`` (either may be None),
    and one of ``choices`` if given.

    The message names the text given and the range, e.g. ``invalid value
    '0': must be an integer from 1 to 16`` (``must be one of 1, 2, 4`` with
    ``choices``).
    """
    if choices is not None:
        want = f"one of {', '.join(map(str, choices))}"
    elif lo is not None and hi is not None:
        want = f"an integer from {lo} to {hi}"
    elif lo == 1:
        want = "a positive integer"
    elif lo == 0:
        want = "a non-negative integer"
    elif lo is not None:
        want = f"an integer of at least {lo}"
    elif hi is not None:
        want = f"an integer of at most {hi}"
    else:
        want = "an integer"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or (lo is not None and value < lo) or (hi is not None and value > hi) \
                or (choices is not None and value not in choices):
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be {want}")
        return value
    return parse


def real(lo=None, hi=None, *, lo_open=False):
    """An argparse type: a finite number from ``lo`` to ``hi``.

    ``lo_open`` excludes ``lo`` itself (``real(0, lo_open=True)``: a positive
    number). NaN and infinities are refused: Python's ``float()`` takes
    ``nan`` and ``inf``, and they would only fail deep in the arithmetic.
    """
    if lo == 0 and lo_open and hi is None:
        want = "a positive finite number"
    else:
        parts = []
        if lo is not None:
            parts.append(f"{'above' if lo_open else 'at least'} {lo:g}")
        if hi is not None:
            parts.append(f"at most {hi:g}")
        want = "a finite number" + (" " + " and ".join(parts) if parts else "")

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if (not math.isfinite(value)
                or (lo is not None and (value <= lo if lo_open else value < lo))
                or (hi is not None and value > hi)):
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be {want}")
        return value
    return parse


def _existing_ancestor(path):
    """The nearest of ``path``'s ancestors that exists."""
    for parent in Path(os.path.abspath(path)).parents:
        if parent.exists():
            return parent
    return Path("/")        # pragma: no cover - the root always exists


def _can_create_in(path, directory):
    """Raise `ValueError` unless ``path``, which does not exist, can be created:
    its nearest existing ancestor ``directory`` must be a directory that takes
    new entries. Tried with a temporary directory, removed at once, so that
    nothing is left behind when a later check or the run fails."""
    if not directory.is_dir():
        raise ValueError(f"cannot create {path}: {directory} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".speq-check-", dir=directory))
    except OSError as error:
        raise ValueError(f"cannot create {path}: {directory} takes no new entries "
                         f"({error.strerror or error})") from None


def output_dir(path):
    """Check that directory ``path`` can be created (if missing) and written.

    Creates nothing that stays: the run creates the directory when it writes.

    Raises
    ------
    ValueError
        If ``path`` is an existing file, lies under a file, or cannot be
        created or written (the message names the path and the reason).
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{path} exists and is not a directory")
        try:
            with tempfile.TemporaryFile(prefix=".speq-check-", dir=path):
                pass
        except OSError as error:
            raise ValueError(f"cannot write files into {path} ({error.strerror or error})") from None
    else:
        _can_create_in(path, _existing_ancestor(path))


def output_file(path, *, must_exist=False):
    """Check that file ``path`` can be written (a document updated in place).

    Parameters
    ----------
    path : path
    must_exist : bool
        Whether the command reads the file before writing it and cannot start
        a new one; otherwise a missing file is fine when it can be created.

    Raises
    ------
    ValueError
        If ``path`` is a directory, missing (with ``must_exist``), cannot be
        read and written, or cannot be created.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a file")
    if path.exists():
        try:
            # Read and write access without changing the file.
            with open(path, "r+b"):
                pass
        except OSError as error:
            raise ValueError(f"cannot write {path} ({error.strerror or error})") from None
    elif must_exist:
        raise ValueError(f"{path} does not exist")
    else:
        _can_create_in(path, _existing_ancestor(path))


def check_path(parser, option, check, path, **kwargs):
    """Run the path check ``check(path, **kwargs)`` (`output_dir` or
    `output_file`); if it finds a problem, stop as argparse does, with one
    error line naming ``option``."""
    try:
        check(path, **kwargs)
    except ValueError as error:
        parser.error(f"argument {option}: {error}")


def docs_arguments(parser, section, plots=None):
    """Add a bench's ``--write-docs [PATH]`` (the ``section`` of
    docs/results.md by default) and, with ``plots`` (what it draws),
    ``--plots DIR`` (default docs/)."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    if plots:
        parser.add_argument("--plots", default=str(docs), metavar="DIR",
                            help=f"where to write {plots} (default: docs/)")
    parser.add_argument("--write-docs", nargs="?", const=str(docs / "results.md"),
                        metavar="PATH", help=f"write the tables into the '{section}' "
                                             f"section of PATH (default: docs/results.md)")


def check_docs_arguments(parser, args):
    """Check the paths of `docs_arguments` before a long run: a writable
    ``--plots`` directory, an existing ``--write-docs`` document."""
    if getattr(args, "plots", None) is not None:
        check_path(parser, "--plots", output_dir, args.plots)
    if args.write_docs:
        # It replaces a section of an existing document.
        check_path(parser, "--write-docs", output_file, args.write_docs, must_exist=True)


def check_out_and_docs(parser, args):
    """Fail with ``parser``'s one-line error, before a long run, on an
    ``args.out`` directory that cannot be made or an ``args.write_docs``
    document that does not exist or cannot be written."""
    check_path(parser, "--out", output_dir, args.out)
    if args.write_docs:
        check_path(parser, "--write-docs", output_file, args.write_docs, must_exist=True)
