"""naflops run: the program run with libnaflops.so preloaded and the options turned into
NAFLOPS_* variables; first, when the program's torch has no whole-model observer yet,
one is built for it (once, into the cache)."""
import argparse
import os
import re
import shutil
import subprocess
import sys

from naflops.errors import NaflopsError

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # naflops/
NAME = "run"
HELP = "run a program with libnaflops.so preloaded"


def find_library(home=None):
    """$NAFLOPS_LIB, else the library beside the naflops script that started this (home:
    HOME/../build after `make`, HOME/../lib after `make install`), else the one inside
    the package (`pip install .`)."""
    lib = os.environ.get("NAFLOPS_LIB")
    if lib:
        if not os.path.isfile(lib):
            raise NaflopsError(f"NAFLOPS_LIB={lib}: no such file")
        return os.path.abspath(lib)
    if home is not None:
        places = [os.path.join(home, "..", d, "libnaflops.so") for d in ("build", "lib")]
    else:
        places = [os.path.join(PACKAGE, "libnaflops.so")]
    for p in places:
        if os.path.isfile(p):
            return os.path.realpath(p)
    raise NaflopsError("cannot find libnaflops.so (looked for " +
                       " and ".join(os.path.normpath(p) for p in places) +
                       "): run `make`, or set NAFLOPS_LIB")


def flush_value(text):
    if not (text.isascii() and text.isdigit() and int(text) <= 100_000_000):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0 (off) to "
                                         "100000000")
    return text


def output_pattern(text):
    if not text or re.search(r"%(?![prh%])", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a path whose only escapes are "
                                         "%p, %r, %h and %%")
    return os.path.abspath(text)


TORCH_VERSION = """\
import importlib.util, os, re
spec = importlib.util.find_spec("torch")
with open(os.path.join(spec.submodule_search_locations[0], "version.py")) as f:
    print(re.search(r"^__version__ *= *['\\"]([^'\\"]+)", f.read(), re.M).group(1))
"""


def target_python(command, env):
    """The Python interpreter COMMAND runs: itself, or its script's #! line."""
    exe = shutil.which(command[0], path=env.get("PATH"))
    if exe is None:
        return None
    if re.fullmatch(r"python[0-9.]*", os.path.basename(exe)):
        return exe
    try:
        with open(exe, "rb") as f:
            line = f.readline(256).decode("utf-8", "replace")
    except OSError:
        return None
    words = line[2:].split() if line.startswith("#!") else []
    if words and os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-")]
        words[:1] = [shutil.which(words[0], path=env.get("PATH"))] if words else []
    if words and words[0] and re.fullmatch(r"python[0-9.]*", os.path.basename(words[0])):
        return words[0]
    return None


def observer_cache(env, version):
    base = env.get("XDG_CACHE_HOME", "")
    if not base.startswith("/"):
        base = os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "naflops", "observers", version)


def observer_builder(home):
    """scripts/build-observer: inside the package (`pip install .` ships it with the
    observer's sources), beside the naflops script (a checkout's scripts/), or in the
    checkout this package is in; None if none is there."""
    places = [os.path.join(PACKAGE, "observer", "scripts", "build-observer")]
    if home is not None:
        places.append(os.path.join(home, "build-observer"))
    places.append(os.path.join(PACKAGE, "..", "..", "scripts", "build-observer"))
    return next((p for p in places if os.access(p, os.X_OK)), None)


def ensure_observer(lib, command, env, home=None):
    """Builds the whole-model observer for the torch that COMMAND's Python imports,
    once, into the cache (where libnaflops.so also looks), when neither the library's
    folder nor the cache has one. Quiet when there is one or the program has no torch."""
    python = target_python(command, env)
    if python is None:
        return
    try:
        r = subprocess.run([python, "-c", TORCH_VERSION], env=env, capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return
    version = r.stdout.strip()
    if r.returncode != 0 or not re.fullmatch(r"[A-Za-z0-9.+_-]{1,64}", version):
        return
    name = f"naflops-torch-{version}.so"
    cache = observer_cache(env, version)
    if any(os.path.isfile(os.path.join(d, name)) for d in (os.path.dirname(lib), cache)):
        return
    build = observer_builder(home)
    if build is None:
        print(f"naflops: no whole-model observer for torch {version}, and no build-observer "
              "beside this script to build one; counting NATTEN ops only", file=sys.stderr)
        return
    print(f"naflops: building the whole-model observer for torch {version} (once: cached "
          f"in {cache})", file=sys.stderr, flush=True)
    r = subprocess.run([build, python, cache], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        tail = " ".join(r.stderr.strip().splitlines()[-3:])
        print(f"naflops: could not build the whole-model observer ({tail}); counting NATTEN "
              "ops only", file=sys.stderr)


def run(args):
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise NaflopsError("run: no command given (naflops run [options] -- COMMAND [ARG...])")
    lib = find_library(args.home)
    env = dict(os.environ)
    whole = env.get("NAFLOPS_WHOLE_MODEL", "1").strip().lower()
    if not args.no_whole_model and whole not in ("0", "false", "no", "off"):
        ensure_observer(lib, command, env, args.home)
    preload = env.get("LD_PRELOAD", "")
    # A libnaflops.so already preloaded (this one or another build) is the one that
    # counts: a second copy would only lie dormant.
    if not any(os.path.basename(p) == "libnaflops.so" for p in re.split(r"[: ]+", preload)):
        env["LD_PRELOAD"] = f"{preload}:{lib}" if preload.strip() else lib
    for value, var in ((args.output, "NAFLOPS_OUTPUT"), (args.format, "NAFLOPS_FORMAT"),
                       (args.summary, "NAFLOPS_SUMMARY"), (args.units, "NAFLOPS_UNITS"),
                       (args.flush_seconds, "NAFLOPS_FLUSH_SECONDS"),
                       (args.flush_ops, "NAFLOPS_FLUSH_OPS"),
                       (args.step, "NAFLOPS_STEP"), (args.peak, "NAFLOPS_PEAK"),
                       ("0" if args.no_backward else None, "NAFLOPS_BACKWARD"),
                       ("0" if args.no_whole_model else None, "NAFLOPS_WHOLE_MODEL")):
        if value is not None:
            env[var] = value
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        raise NaflopsError(f"{command[0]}: command not found", status=127) from None
    except OSError as e:
        raise NaflopsError(f"{command[0]}: cannot run: {e.strerror or e}", status=126) from None


def add_arguments(r):
    r.add_argument("--output", type=output_pattern, help="NAFLOPS_OUTPUT (%%p %%r %%h %%%%)")
    r.add_argument("--format", choices=("json", "csv"), help="NAFLOPS_FORMAT")
    r.add_argument("--summary", choices=("auto", "always", "never"), help="NAFLOPS_SUMMARY")
    r.add_argument("--units", choices=("si", "exact"), help="NAFLOPS_UNITS")
    r.add_argument("--no-backward", action="store_true", help="NAFLOPS_BACKWARD=0")
    r.add_argument("--no-whole-model", action="store_true", help="NAFLOPS_WHOLE_MODEL=0")
    r.add_argument("--flush-seconds", type=flush_value, metavar="N", help="NAFLOPS_FLUSH_SECONDS")
    r.add_argument("--flush-ops", type=flush_value, metavar="N", help="NAFLOPS_FLUSH_OPS")
    r.add_argument("--step", metavar="WHAT",
                   help="NAFLOPS_STEP: optimizer, backward, off or module:qualname (the library checks it)")
    r.add_argument("--peak", metavar="FLOPS", help="NAFLOPS_PEAK: the device's peak FLOP/s (989T, 9.89e14)")
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
