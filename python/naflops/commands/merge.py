"""naflops merge: the dumps of one run's ranks summed into one dump (or its table)."""
from naflops.combine import merge, to_json
from naflops.commands.common import FORMATS, UNITS, write_out
from naflops.dumps import read_run
from naflops.reporters import render

NAME = "merge"
HELP = "sum the dumps of one run's ranks"


def run(args):
    merged = merge(read_run(args.dumps))
    if args.output:
        write_out(to_json(merged), args.output)
    else:
        write_out(render(merged, args.format, args.units), None)


def add_arguments(r):
    r.add_argument("-o", "--output", metavar="FILE", help="write the merged dump here (- stdout)")
    r.add_argument("--format", **FORMATS)
    r.add_argument("--units", **UNITS)
    r.add_argument("dumps", nargs="+")
