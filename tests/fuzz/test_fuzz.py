"""Both fuzz targets, run through the Makefile for a bounded time each (`make fuzz`
runs them longer). A missing fuzzer is a failure, not a skip: .ci/run installs clang
and libclang-rt-14-dev, and scripts/setup-test-env installs atheris."""
import subprocess
import sys

import pytest

from conftest import ROOT, clean_env

SECONDS = 15


def make(target, build, **variables):
    args = ["make", "-s", target, f"BUILD={build}", f"FUZZ_TIME={SECONDS}"]
    args += [f"{k}={v}" for k, v in variables.items()]
    return subprocess.run(args, cwd=ROOT, env=clean_env(), capture_output=True, text=True,
                          timeout=SECONDS + 120)


def check(r, what):
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"{what} failed:\n{out[-4000:]}"
    assert "Done " in out and " runs in " in out, out[-4000:]  # libFuzzer's closing line


def test_fuzz_config(tmp_path):
    built = make(f"{tmp_path}/fuzz/fuzz_config", tmp_path)
    if built.returncode != 0:
        pytest.fail("cannot build the libFuzzer target (clang -fsanitize=fuzzer needs clang and "
                    f"libclang-rt-14-dev, which .ci/run installs):\n{built.stderr[-2000:]}")
    check(make("fuzz-config", tmp_path), "fuzz_config")


def test_fuzz_dump(tmp_path):
    probe = subprocess.run([sys.executable, "-c", "import atheris"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail(f"atheris is missing from {sys.executable}: run scripts/setup-test-env")
    check(make("fuzz-dump", tmp_path, PYTHON=sys.executable), "fuzz_dump.py")
