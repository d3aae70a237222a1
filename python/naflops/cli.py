"""naflops: count the NATTEN FLOPs of a PyTorch program, and read the dumps it writes.

  naflops run [options] -- COMMAND [ARG...]
      Runs COMMAND with libnaflops.so preloaded (appended to any LD_PRELOAD, unless a
      libnaflops.so is there already) and the
      options below turned into NAFLOPS_* variables; options not given leave the
      variables as they are. The command replaces naflops (exec), so its exit status
      and signals are its own; a command that cannot be found exits 127, one that
      cannot be run 126. The library is the first of $NAFLOPS_LIB,
      <this script's dir>/../build/libnaflops.so (a checkout after `make`) and
      <this script's dir>/../lib/libnaflops.so (after `make install`); installed with
      `pip install .`, the one inside the package.
        --output PATH        NAFLOPS_OUTPUT: dump here at exit (%p pid, %r RANK or
                             norank, %h host, %% a %); relative to the current dir
        --format json|csv    NAFLOPS_FORMAT      --summary auto|always|never  NAFLOPS_SUMMARY
        --units si|exact     NAFLOPS_UNITS       --no-backward                NAFLOPS_BACKWARD=0
        --flush-seconds N    NAFLOPS_FLUSH_SECONDS   --flush-ops N            NAFLOPS_FLUSH_OPS
        --no-whole-model     NAFLOPS_WHOLE_MODEL=0: NATTEN's ops only
      With the whole model on, when the program's Python (COMMAND, or its script's #!
      line) has a torch for which there is no observer beside the library or in
      $XDG_CACHE_HOME/naflops/observers/<torch version> (default ~/.cache), run first
      builds one there with scripts/build-observer (once; the next runs use it;
      `pip install .` ships it and the observer's sources in the package).

  naflops report [--format table|csv|md] [--units si|exact] DUMP.json
      The table the library prints (one row per op signature: NATTEN's, then the other
      aten ops of the whole-model count, largest first, all of them; then forward,
      backward (recompute, model and hardware with checkpointing) and total FLOPs and
      MACs, and NATTEN's and the other ops' shares when
      the dump has aten rows), without its "naflops:" prefixes; csv gives the
      library's CSV dump columns (always exact); md a Markdown table.

  naflops report --html OUT.html DUMP.json...
      One self-contained HTML page (inline SVG and CSS, no script, nothing fetched):
      totals, NATTEN's share, per-op bars with their passes stacked (largest first, the
      first 30 then the rest as one row; exact figures in tooltips and tables), one bar
      per rank when several rank dumps of one run are given, and GPU time and achieved
      TFLOP/s against the chip's peak when a dump has a "gpu" object.

  naflops merge [-o MERGED.json] [--format ...] [--units ...] DUMP.json...
      Sums the dumps of one run's ranks: ops whose signature (every field but calls,
      flops and macs) is the same are added up, exactly. All dumps must have one schema,
      one NATTEN version and one world_size, and come from distinct ranks (dumps without
      a rank: distinct processes). Prints the table, or with -o writes a merged dump
      (schema naflops/2; pid, rank and local_rank null; "ranks" lists the ranks merged;
      `-o -` writes it to stdout). A merged dump can be reported, diffed and merged.

  naflops diff [--units si|exact] A.json B.json
      One row per op signature (NATTEN version and flops_per_call aside, so runs of two
      NATTEN versions line up): calls and FLOPs in A and B, delta (B - A) and ratio
      (B / A); an op only in one run says so. Then forward, backward and total rows.
      --html OUT.html: the two runs side by side as an HTML page, changes highlighted.

Dumps of schema naflops/2 (the library's now: pass "recompute" for activation
checkpointing, totals model_flops = forward + backward, recompute_flops, flops = all
three, uncounted_calls) and naflops/1 (read as /2 without recompute) are read.
A dump that cannot be read or is not a valid naflops dump (not JSON, another
schema, a missing field, a wrong type, a negative number, flops != calls *
flops_per_call, macs != flops // 2, totals that are not the sum of the ops, natten_flops
or other_flops that are not the sums of the NATTEN and the aten ops) gets one
line on stderr, `naflops: FILE: what is wrong`, and exit status 2; so does a refused
merge. Fields a dump has beyond its schema's are ignored. Numbers must be below 2^256.
"""
import argparse
import os
import sys

from naflops.commands import COMMANDS
from naflops.errors import NaflopsError


def parser():
    p = argparse.ArgumentParser(prog="naflops", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{run,report,merge,diff}")
    for command in COMMANDS:
        command.add_arguments(sub.add_parser(command.NAME, help=command.HELP))
        sub.choices[command.NAME].set_defaults(func=command.run)
    return p


def main(argv=None, home=None):
    """The naflops command; home: the folder of the naflops script that started it
    (scripts/ in a checkout, bin/ after `make install`), where `run` looks for the
    library (home/../build, home/../lib) and build-observer; None for the console
    script of `pip install .`, whose library is inside the package."""
    sys.stdout.reconfigure(errors="backslashreplace")  # odd strings in a dump still print
    try:
        args = parser().parse_args(argv)
        args.home = home
        args.func(args)
        sys.stdout.flush()
        return 0
    except NaflopsError as e:
        message, status = str(e), e.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `naflops report d.json | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:  # a bug: still one line, never a traceback
        message, status = f"internal error: {type(e).__name__}: {e}", 2
    print("naflops: " + " ".join(message.splitlines()), file=sys.stderr)
    return status


def console():
    """The console script of `pip install .`."""
    sys.exit(main())
