"""What the bench runs, and its small shared helpers: the workloads' sizes, the
profiles (default, --quick), the configurations, the interpreters of
scripts/setup-test-env, logging and medians."""
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SELF = ROOT / "scripts" / "bench"  # the workers run `python scripts/bench --worker SPEC`

# The model: blocks of (LayerNorm, NeighborhoodAttention2D, LayerNorm, MLP).
MODEL = {"dim": 64, "heads": 4, "kernel": 7, "blocks": 2, "input": [2, 16, 16, 64]}
# The micro-benchmark: na1d_qk(q, k, kernel) with q, k of this shape ([B, H, L, D]).
MICRO = {"shape": [1, 2, 16, 8], "kernel": 3}

PROFILES = {
    # runs: process runs per configuration; steps: timed model steps per run (after
    # warmup); calls: micro calls per round (FlopCounterMode and the profiler make
    # rounds // 4); rounds: micro rounds per grad mode per run.
    "default": {"runs": 5, "warmup": 1, "steps": 4, "calls": 1000, "rounds": 20,
                "micro_warmup": 1000, "startup_runs": 10,
                "flex_warmup": 2, "flex_steps": 10, "op_calls": 2000, "op_rounds": 30},
    "quick": {"runs": 2, "warmup": 1, "steps": 2, "calls": 500, "rounds": 8,
              "micro_warmup": 200, "startup_runs": 3,
              "flex_warmup": 1, "flex_steps": 5, "op_calls": 1000, "op_rounds": 10},
}

CONFIGS = ["plain", "preload", "observer", "flopcountermode", "profiler"]
PRELOADED = ("preload", "observer")
LABELS = {
    "plain": "plain",
    "preload": "naflops, NATTEN only",
    "observer": "naflops, whole model",
    "flopcountermode": "FlopCounterMode",
    "profiler": "torch.profiler with_flops",
    "fvcore": "fvcore (natten.flops.get_flops)",
}


# ==================================================================== worker side
# Runs with the NATTEN 0.17 interpreter: `python scripts/bench --worker SPEC.json`.


FLEX = {"dim": 32, "heads": 2, "kernel": 3, "blocks": 1, "input": [1, 8, 8, 32]}
# aten ops timed alone: (name, counted by the whole model, what it runs)
ATEN_OPS = [("torch.add 8x8", False), ("torch.mm 8x8", True), ("F.linear 8x8", True)]


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith("NAFLOPS_") and k != "LD_PRELOAD"}


def interpreter(flag):
    try:
        return subprocess.run([str(ROOT / "scripts" / "setup-test-env"), flag], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def median(xs):
    return statistics.median(xs) if xs else None


class Failure(Exception):
    pass
