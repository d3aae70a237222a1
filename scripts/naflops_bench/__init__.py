"""scripts/bench as a package, one job per module:

  config     what runs: workload sizes, profiles, configurations, interpreters, helpers
  programs   the timed programs, in worker processes (torch and NATTEN imported there)
  measure    the driver's runs: workers, dump checks, start-up, checkout state
  report     summaries and the table
  cli        the command line (the docstring: what the bench does) and main()
"""
