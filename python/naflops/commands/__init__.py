"""The subcommands, one module each: NAME, HELP, add_arguments(parser) and run(args)."""
from naflops.commands import diff, merge, report, run

COMMANDS = (run, report, merge, diff)
