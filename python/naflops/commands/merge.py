"""naflops merge: the dumps of one run's ranks summed into one dump (or its table),
their steps lined up, their rows kept per module (naflops/4)."""
import sys

from naflops.combine import merge, to_json
from naflops.commands.common import BY, DEPTH, FORMATS, UNITS, module_depth, write_out
from naflops.dumps import read_run
from naflops.reporters import modules, render, steps

NAME = "merge"
HELP = "sum the dumps of one run's ranks"


def run(args):
    depth = module_depth(args, "merge")
    notes = []
    merged = merge(read_run(args.dumps), notes)
    for note in notes:  # the merge goes on: each rank's steps are kept
        print(f"naflops: {note}", file=sys.stderr, flush=True)
    if args.output:
        write_out(to_json(merged), args.output)
    elif args.by == "step":
        write_out(steps.render(merged, "merge", args.format, args.units), None)
    elif args.by == "module":
        write_out(modules.render(merged, "merge", args.format, args.units, depth), None)
    else:
        write_out(render(merged, args.format, args.units), None)


def add_arguments(r):
    r.add_argument("-o", "--output", metavar="FILE", help="write the merged dump here (- stdout)")
    r.add_argument("--format", **FORMATS)
    r.add_argument("--units", **UNITS)
    r.add_argument("--by", **BY)
    r.add_argument("--depth", **DEPTH)
    r.add_argument("dumps", nargs="+")
