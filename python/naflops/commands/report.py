"""naflops report: a dump's table (or CSV, Markdown), or with --html the page of one
dump or of the ranks of one run."""
from naflops.commands.common import FORMATS, UNITS, write_out
from naflops.dumps import read_dump, read_run
from naflops.errors import NaflopsError
from naflops.reporters import html, render

NAME = "report"
HELP = "print a dump's table"


def run(args):
    if args.html:
        write_out(html.report(read_run(args.dumps)), args.html)
    elif len(args.dumps) > 1:
        raise NaflopsError("report: one dump (several ranks only with --html; or naflops merge)")
    else:
        write_out(render(read_dump(args.dumps[0]), args.format, args.units), None)


def add_arguments(r):
    r.add_argument("--format", **FORMATS)
    r.add_argument("--units", **UNITS)
    r.add_argument("--html", metavar="OUT.html", help="write an HTML page (bars) instead")
    r.add_argument("dumps", nargs="+", metavar="DUMP")
