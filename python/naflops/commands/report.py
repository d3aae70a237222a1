"""naflops report: a dump's table (or CSV, Markdown), with --by step its steps, with
--by module its module tree, or with --html the page of one dump or of the ranks of
one run."""
from naflops.commands.common import BY, DEPTH, FORMATS, UNITS, module_depth, write_out
from naflops.dumps import read_dump, read_run
from naflops.errors import NaflopsError
from naflops.reporters import html, modules, render, steps

NAME = "report"
HELP = "print a dump's table"


# where the --html page has what a --by table shows
HTML_SECTION = {"step": "its steps in its Steps section",
                "module": "its module tree in its \"by module\" section"}


def run(args):
    depth = module_depth(args, "report")
    if args.html:
        if args.by != "op":
            raise NaflopsError(f"report: --by {args.by} prints a table; the --html page has "
                               f"{HTML_SECTION[args.by]}")
        write_out(html.report(read_run(args.dumps)), args.html)
    elif len(args.dumps) > 1:
        raise NaflopsError("report: one dump (several ranks only with --html; or naflops merge)")
    elif args.by == "step":
        name = args.dumps[0]
        write_out(steps.render(read_dump(name), name, args.format, args.units), None)
    elif args.by == "module":
        name = args.dumps[0]
        write_out(modules.render(read_dump(name), name, args.format, args.units, depth), None)
    else:
        write_out(render(read_dump(args.dumps[0]), args.format, args.units), None)


def add_arguments(r):
    r.add_argument("--format", **FORMATS)
    r.add_argument("--units", **UNITS)
    r.add_argument("--by", **BY)
    r.add_argument("--depth", **DEPTH)
    r.add_argument("--html", metavar="OUT.html", help="write an HTML page (bars) instead")
    r.add_argument("dumps", nargs="+", metavar="DUMP")
