"""What the reading subcommands share: their --units, --format and --by options, and
writing the result (stdout, or a file replaced at once)."""
import os
import sys

from naflops.errors import NaflopsError

UNITS = dict(choices=("si", "exact"), default="si", help="table figures (default si)")
FORMATS = dict(choices=("table", "csv", "md"), default="table", help="default table")
BY = dict(choices=("op", "step", "module"), default="op",
          help="one row per op signature (default), per step (a naflops/3+ dump's steps) or "
               "per module (a naflops/4 dump's module tree)")


def depth(text):
    """--depth: levels of the module tree below each outermost module (0: those only)."""
    import argparse

    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 0 <= v <= 1000:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 1000, got {text!r}")
    return v


DEPTH = dict(type=depth, default=3, metavar="N",
             help="with --by module: levels below each outermost module (default 3)")


def write_out(text, path):
    if path is None or path == "-":
        sys.stdout.write(text)
        return
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise NaflopsError(f"{path}: cannot write: {e.strerror or e}") from None
