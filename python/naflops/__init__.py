"""naflops: the command that runs programs under libnaflops.so and reads its dumps.

  cli          the argument parser and main()
  commands/    one module per subcommand: run, report, merge, diff
  dumps        reading and validating dumps (naflops/1, /2 and /3)
  stepcheck    validating a /3 dump's steps (and a merged dump's steps_by_rank)
  steps        step figures: per record, the steady state, the ranks' steps lined up
  combine      merging the ranks of a run, lining up two runs, writing a dump
  figures      what the reporters share: SI figures, shares, an op's cells, the title
  reporters/   table (and the text diff), csv, markdown, html; steps (--by step) and
               html_steps (the page's Steps section)

The names below are the old scripts/naflops module's, for the tests and the fuzzer."""
from naflops.combine import diff_sides, merge, signature, to_json, totals_of
from naflops.dumps import (COUNTED, MODEL, PASSES, SCHEMA, parse_dump, read_dump, read_run,
                           show, validate)
from naflops.errors import NaflopsError
from naflops.reporters import render
from naflops.reporters.csv import csv_text
from naflops.figures import (DESCRIBE, amount, describe, dims, has_aten, ratio, share,
                                       si, signed, title)
from naflops.reporters.markdown import markdown
from naflops.reporters.table import diff, table

__version__ = "0.1.0"

__all__ = ["COUNTED", "DESCRIBE", "MODEL", "NaflopsError", "PASSES", "SCHEMA", "amount",
           "csv_text", "describe", "diff", "diff_sides", "dims", "has_aten", "markdown", "merge",
           "parse_dump", "ratio", "read_dump", "read_run", "render", "share", "show", "si",
           "signature", "signed", "table", "title", "to_json", "totals_of", "validate"]
