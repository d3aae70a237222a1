"""Benchmarks the overhead of libnaflops.so against the other ways of counting FLOPs
(torch.utils.flop_counter.FlopCounterMode, torch.profiler with_flops, fvcore) on the
CPU, with real torch and NATTEN 0.17.4 (CPU kernels), every configuration in its own
process.

    scripts/bench [--quick] [--out build/bench.json] [--lib build/libnaflops.so]
                  [--runs N] [--threads N] [--python PY017]      (or: make bench)

Workloads:
  model   a small NA transformer (blocks of LayerNorm, NeighborhoodAttention2D in its
          unfused mode, LayerNorm, MLP), forward + backward + SGD step; time per step.
  micro   natten.functional.na1d_qk on tiny tensors called many times, without and
          with requires_grad; time per call.
  flex    (NATTEN 0.21 interpreter, torch 2.8) a small, op-heavy training step: one
          block whose NeighborhoodAttention2D runs Flex attention's CPU eager path
          (thousands of aten ops a step); CPU time per step. FlopCounterMode cannot run
          Flex's higher-order op: its row says so.
  ops     (same processes) torch.add (not counted), torch.mm and F.linear (counted) on
          8x8 tensors: best of many short rounds per run, ns per call, and what each
          configuration adds to plain's best of the same round.
Configurations: plain; preload (LD_PRELOAD=libnaflops.so, NAFLOPS_SUMMARY=never,
NAFLOPS_WHOLE_MODEL=0: NATTEN ops only); observer (the same with the whole-model count
on: the libtorch observer sees every aten op); FlopCounterMode(display=False) around
the timed steps / calls; torch.profiler.profile(with_flops=True) around the timed
steps / calls; fvcore (natten.flops.get_flops) traces the model, so one analysis is
timed on its own. The observer run's dump must hold NATTEN's ops exactly and, per
model step, the same other FLOPs as FlopCounterMode reports (it cannot see NATTEN
0.17's ops, so it counts exactly the rest).

Measuring on a shared machine: processes run round-robin (A B C D E, B C D E A, ...),
the workers use one torch thread (--threads), the headline clock is the process's CPU
time (wall time is reported too), and every "x plain" / "added" figure is the median
over rounds of (run / plain run of the same round). Under the preload each process
also times the wrapper against its own __wrapped__ original in alternating rounds: the
paired, most precise per-call figure. Each preload run writes a dump, which is checked
against the calls the run made: a preload that did not count fails the bench (exit
status 1) instead of reporting a flattering number. The library is copied once at the
start, so a rebuild during the bench cannot mix two builds.

Start-up: CPU and wall time of `python -c "import torch, natten"` with and without the
preload (both interpreters of scripts/setup-test-env when present), paired by round.

Output: a table on stdout, progress on stderr, JSON at --out (default
build/bench.json). Standard library only; the workers run with the NATTEN 0.17
interpreter (scripts/setup-test-env --python-017). About 4 minutes on 2 cores;
--quick about 1 minute.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from naflops_bench.config import (CONFIGS, MICRO, MODEL, PRELOADED, PROFILES, ROOT, Failure,
                                  interpreter, log, median)
from naflops_bench.measure import git_state, qk_flops, run_startup, run_worker, sha256
from naflops_bench.programs import worker
from naflops_bench.report import summarize, summarize_flex, table


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a faster, smaller run")
    ap.add_argument("--out", default=str(ROOT / "build" / "bench.json"), help="JSON output")
    ap.add_argument("--lib", default=str(ROOT / "build" / "libnaflops.so"),
                    help="the library to preload (default build/libnaflops.so)")
    ap.add_argument("--python", help="interpreter with NATTEN 0.17 (default: "
                                     "scripts/setup-test-env --python-017)")
    ap.add_argument("--runs", type=int, help="process runs per configuration")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads in the workers (default 1: steadier on a "
                         "shared machine; the counter's cost does not depend on it)")
    args = ap.parse_args(argv)

    prof = dict(PROFILES["quick" if args.quick else "default"])
    if args.runs is not None:
        if args.runs < 1:
            ap.error("--runs must be at least 1")
        prof["runs"] = args.runs
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    prof["threads"] = args.threads
    src_lib = Path(args.lib).resolve()
    if not src_lib.exists():
        sys.exit(f"bench: {src_lib} is missing: run `make` first")
    py017 = args.python or interpreter("--python-017")
    if not py017 or not Path(py017).exists():
        sys.exit("bench: no NATTEN 0.17 interpreter: run scripts/setup-test-env")
    startup_pythons = {"torch 2.6 + NATTEN 0.17.4": py017}
    py021 = interpreter("--python")
    if not (py021 and Path(py021).exists()):
        py021 = ""
    if not args.python and py021 and Path(py021).exists():
        startup_pythons["torch 2.8 + NATTEN 0.21.7 (Flex)"] = py021

    start = time.perf_counter()
    configs = CONFIGS + ["fvcore"]
    results = {c: [] for c in configs}
    flex = {c: [] for c in CONFIGS}  # the NATTEN 0.21 interpreter's workloads
    startup = {name: {"plain": [], "preload": []} for name in startup_pythons}
    loads = []
    with tempfile.TemporaryDirectory(prefix="naflops-bench-") as tmpdir:
        tmp = Path(tmpdir)
        # Every run preloads this copy: a rebuild during the bench cannot mix libraries.
        lib = tmp / "libnaflops.so"
        shutil.copy2(src_lib, lib)
        for observer in src_lib.parent.glob("naflops-torch-*.so"):  # the whole-model count
            shutil.copy2(observer, tmp / observer.name)
        try:
            for i in range(prof["runs"]):
                for c in configs[i % len(configs):] + configs[:i % len(configs)]:  # rotated
                    log(f"run {i + 1}/{prof['runs']}: {c}")
                    results[c].append(run_worker(py017, lib, c, prof, tmp, f"{c}-{i}"))
                    loads.append(os.getloadavg()[0])
                    if c in flex and py021:
                        log(f"run {i + 1}/{prof['runs']}: {c} (Flex step, aten ops)")
                        flex[c].append(run_worker(py021, lib, c, prof, tmp, f"flex-{c}-{i}",
                                                  workload="flex"))
            n_start = prof["startup_runs"]
            for i in range(n_start):
                log(f"start-up {i + 1}/{n_start}")
                for name, py in startup_pythons.items():
                    for mode in (("plain", "preload") if i % 2 == 0 else ("preload", "plain")):
                        startup[name][mode].append(run_startup(py, lib, mode == "preload"))
                loads.append(os.getloadavg()[0])
        except (Failure, subprocess.TimeoutExpired) as e:
            sys.exit(f"bench: {e}")
        lib_sha = sha256(lib)

    checks = [r["check"] for c in PRELOADED for r in results[c] + flex[c]]
    bad = [p for c in checks for p in c["problems"]]
    # The observer's other FLOPs per step: FlopCounterMode's, which sees all but NATTEN's
    observer_other = sorted({r["check"]["other_flops_per_step"] for r in results["observer"]})
    fcm_seen = sorted({r["model"]["flops_seen"] / prof["steps"] for r in results["flopcountermode"]})
    if observer_other != fcm_seen:
        bad.append(f"observer: other FLOPs per step {observer_other}, FlopCounterMode {fcm_seen}")
    b, hgt, wid, dim = MODEL["input"]
    model_step = 2 * 3 * MODEL["blocks"] * qk_flops(b, MODEL["heads"], hgt * wid,
                                                    MODEL["kernel"] ** 2, dim // MODEL["heads"])
    first = results["plain"][0]
    shares = [r["model"]["total_cpu_s"] / r["model"]["total_s"]
              for c in CONFIGS for r in results[c]]
    report = {
        "schema": "naflops-bench/1",
        "mode": "quick" if args.quick else "default",
        "command": " ".join(["scripts/bench"] + argv),
        "out": args.out,
        "profile": prof,
        "model": MODEL,
        "micro": MICRO,
        "meta": {"torch": first["torch"], "natten": first["natten"],
                 "torch_threads": first["threads"], "cpus": os.cpu_count(),
                 "machine": platform.machine(), "python017": py017, "lib": str(src_lib),
                 "lib_sha256": lib_sha, "git": git_state(),
                 "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "loadavg_1min": {"median": median(loads), "max": max(loads), "samples": loads},
                 # CPU time / wall time of the model steps, per run: about the thread count
                 # on an idle machine, lower when other processes took the CPUs
                 "cpu_share": {"median": median(shares), "min": min(shares), "runs": shares}},
        "checks": {"ok": not bad, "dumps_checked": len(checks), "problems": bad,
                   "model_flops_per_step": model_step,
                   "observer_other_flops_per_step": observer_other[0] if observer_other else None,
                   "observer_matches_fcm": observer_other == fcm_seen,
                   "detail": "each run's dump has exactly the na2d_qk/na2d_av forward and "
                             "backward calls and the na1d_qk calls it made, with the expected "
                             "FLOPs; the observer's other FLOPs per step equal FlopCounterMode's"
                             if not bad else "; ".join(bad[:5])},
        "summary": summarize(results, prof),
        "flex": summarize_flex(flex) if py021 else None,
        "startup": {},
        "raw": {"workers": results, "flex_workers": flex, "startup": startup},
    }
    for name, st in startup.items():
        row = {}
        for clock, key in (("cpu", "cpu_s"), ("wall", "wall_s"), ("import_cpu", "import_cpu_s"),
                           ("import_wall", "import_wall_s")):
            a = [r[key] for r in st["plain"]]
            z = [r[key] for r in st["preload"]]
            # paired by round (each round ran both, in alternating order)
            row[clock] = {"plain_s": median(a), "preload_s": median(z),
                          "ratio": median([y / x for x, y in zip(a, z)]),
                          "added_ms": median([(y - x) * 1e3 for x, y in zip(a, z)])}
        row["runs"] = len(st["plain"])
        report["startup"][name] = row
    report["elapsed_s"] = time.perf_counter() - start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(report))
    if bad:
        print("bench: the preload did not count correctly; its timings are not valid:\n  "
              + "\n  ".join(bad), file=sys.stderr)
        return 1
    return 0


def entry():
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(worker(sys.argv[2]))
    sys.exit(main(sys.argv[1:]))
