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
        --step WHAT          NAFLOPS_STEP: what ends a step (optimizer, backward, off,
                             module:qualname)
        --peak FLOPS         NAFLOPS_PEAK: the device's peak FLOP/s, for MFU and HFU
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

  naflops report --by step [--format table|csv|md] [--units si|exact] DUMP.json
      The dump's steps: one row per record (a step, or a range of steps once a long
      job's records were merged), with its step time, model and hardware FLOPs per step
      (exact decimals with --units exact), NATTEN's share, achieved FLOP/s (model FLOPs /
      step time), MFU and HFU when the dump has a peak, GPU busy time when it has one,
      the slowest rank of a merged dump, and warm-up / compiled marks; then the steady
      state (median step time, p10, p90, FLOPs per step, median FLOP/s, MFU, HFU) and
      the totals, and for a merged dump one row per rank (its steady state, how many
      steps it was the slowest in; the slowest rank marked). csv gives the records'
      fields and per-step figures, exact; md Markdown tables. A dump with no steps gets
      one line, `naflops: FILE: no steps in this dump ...`, and exit status 3.
      `--by op` (the default) is the table above.

  naflops report --by module [--depth N] [--format table|csv|md] [--units si|exact] DUMP.json
      A naflops/4 dump's module tree: one line per module down to N levels below each
      outermost module (default 3; 0: the outermost modules only; deeper modules folded
      into their ancestor), depth first, children in the order the program first ran
      them, each with its forward, backward, recompute, model (forward + backward) and
      hardware (every pass) FLOPs and NATTEN's FLOPs and their share of the hardware
      FLOPs, its submodules included (FlopCounterMode's way); then the work outside any
      module and the total. csv gives full names, depth and exact figures; md a Markdown
      table. A dump older than naflops/4 gets one line and exit status 3. --depth goes
      with --by module only.

  naflops report --html OUT.html DUMP.json...
      One self-contained HTML page (inline SVG and CSS, no script, nothing fetched):
      totals, NATTEN's share, per-op bars with their passes stacked (largest first, the
      first 30 then the rest as one row; exact figures in tooltips and tables), one bar
      per rank when several rank dumps of one run are given, and GPU time and achieved
      TFLOP/s against the chip's peak when a dump has a "gpu" object. A dump with steps
      gets a Steps section: the steady state, a step timeline (step time and achieved
      FLOP/s per record, warm-up and compiled steps marked, exact figures in tooltips),
      every record in a table and, for several ranks, each rank's median step time and
      FLOP/s with the slowest rank marked. A naflops/4 dump gets a module view: an icicle
      of the module tree (widths in proportion to FLOPs, NATTEN's part as a band) and
      the tree as a table.

  naflops merge [-o MERGED.json] [--format ...] [--units ...] [--by op|step|module] [--depth N] DUMP.json...
      Sums the dumps of one run's ranks: ops whose signature (every field but calls,
      flops and macs; the module included) is the same are added up, exactly. All dumps
      must have one schema (naflops/2 and /3 go together; /4 only with /4: an older
      dump's rows have no module to merge by), one NATTEN version and one world_size,
      and come
      from distinct ranks (dumps without a rank: distinct processes). Prints the table
      (--by step: the merged steps'), or with -o writes a merged dump (pid, rank and
      local_rank null; "ranks" lists the ranks merged; `-o -` writes it to stdout):
      schema naflops/2, or naflops/3 when a dump has steps, naflops/4 for /4 dumps. Then "steps_by_rank" keeps
      each rank's steps object ({"<rank>": steps}; a dump without a rank is "pid N"),
      and "steps" lines them up record by record when every rank has the same records
      (boundary, count, each record's first step and steps): a record's seconds,
      start_s and gpu_busy_seconds are its slowest rank's (a synchronous step lasts as
      long as its slowest rank), its FLOPs the sum over the ranks, warmup true if any
      rank's is, compiled the most of any rank's, plus "slowest_rank"; warmup is the
      ranks' largest, the peak the sum of the ranks' peaks, the steady state recomputed.
      Ranks whose records differ get one line on stderr saying why, and only
      steps_by_rank. A merged dump can be reported, diffed and merged (merging merged
      dumps lines up all of their ranks' steps again).

  naflops diff [--units si|exact] A.json B.json
      One row per op signature (NATTEN version, flops_per_call and module aside, so runs
      of two NATTEN versions line up): calls and FLOPs in A and B, delta (B - A) and
      ratio (B / A); an op only in one run says so. Then forward, backward and total rows.
      With steps in both, their steady median step time, FLOP/s and model FLOPs per
      step, a and b side by side. With modules in both (naflops/4), the modules whose
      model FLOPs (submodules included) changed, in A and B, delta and ratio, the
      largest change first, modules only in one run marked; the others are counted.
      --html OUT.html: the two runs side by side as an HTML page, changes highlighted
      (and the module table, the unchanged modules folded away).

Dumps of schema naflops/4 (the library's now: naflops/3 with each op's "module"),
naflops/3, naflops/2 and naflops/1 are read.
naflops/2: pass "recompute" for activation checkpointing, totals model_flops =
forward + backward, recompute_flops, flops = all three, uncounted_calls; naflops/1 is
read as /2 without recompute. naflops/3 is /2 plus, when the program ended steps, a
"steps" object: boundary ("optimizer", "backward" or "function module:qualname"),
count (steps ended), warmup (the first steps: the first and the compiling ones after
it), recompiled (later steps that compiled), bucket (steps a record holds at most: 1,
or a power of two once past 1024 records), peak_flops_per_s and peak_source (or null),
total (seconds, model_flops, hardware_flops, natten_flops, gpu_busy_seconds or null:
sums over the steps), steady (null, or the steps neither warm-up nor compiled: steps,
seconds_median/_p10/_p90, model_ and hardware_flops_per_step, flops_per_s_median,
mfu_median and hfu_median or null) and records (step, steps, start_s, the total's
fields, warmup, compiled: a record covers steps step .. step + steps - 1 and holds
their sums). FLOPs are exact integers, times seconds.
A dump that cannot be read or is not a valid naflops dump (not JSON, another
schema, a missing field, a wrong type, a negative number, flops != calls *
flops_per_call, macs != flops // 2, totals that are not the sum of the ops, natten_flops
or other_flops that are not the sums of the NATTEN and the aten ops; steps whose
records do not cover steps 1 .. count in order, whose FLOPs do not sum to the total,
warmup > count, model > hardware FLOPs, a steady state over other steps, a merged
dump's steps that are not its ranks' lined up) gets one line on stderr,
`naflops: FILE: what is wrong`, and exit status 2; so does a refused merge. Fields a
dump has beyond its schema's are ignored (a /1 or /2 dump's "steps" too). Numbers must
be below 2^256.
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
