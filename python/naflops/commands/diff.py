"""naflops diff: per-op changes between two runs, as a table or an HTML page."""
from naflops.commands.common import UNITS, write_out
from naflops.dumps import read_dump
from naflops.reporters import html
from naflops.reporters.table import diff

NAME = "diff"
HELP = "per-op changes between two runs"


def run(args):
    a, b = read_dump(args.a), read_dump(args.b)
    if args.html:
        write_out(html.diff(a, b, args.a, args.b), args.html)
    else:
        write_out(diff(a, b, args.a, args.b, args.units), None)


def add_arguments(r):
    r.add_argument("--units", **UNITS)
    r.add_argument("--html", metavar="OUT.html", help="write an HTML page, side by side")
    r.add_argument("a")
    r.add_argument("b")
