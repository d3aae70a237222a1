"""What the reading subcommands share: their --units, --format and --by options, and
writing the result (stdout, or a file replaced at once)."""
import os
import sys

from naflops.errors import NaflopsError

UNITS = dict(choices=("si", "exact"), default="si", help="table figures (default si)")
FORMATS = dict(choices=("table", "csv", "md"), default="table", help="default table")
BY = dict(choices=("op", "step"), default="op",
          help="one row per op signature (default) or per step (a naflops/3 dump's steps)")


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
