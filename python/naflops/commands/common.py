"""What the reading subcommands share: their --units, --format, --by and --depth
options, and writing the result (stdout, or a file replaced at once)."""
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


DEFAULT_DEPTH = 3  # HDiT.encoder.levels.1: deep enough to tell the blocks apart
DEPTH = dict(type=depth, default=None, metavar="N",
             help=f"with --by module: levels below each outermost module, deeper ones folded "
                  f"into their ancestor (default {DEFAULT_DEPTH})")


def module_depth(args, command):
    """The --depth of a --by module table; a --depth with another --by is refused (it
    would change nothing, and silently)."""
    if args.depth is not None and args.by != "module":
        raise NaflopsError(f"{command}: --depth goes with --by module")
    return DEFAULT_DEPTH if args.depth is None else args.depth


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
