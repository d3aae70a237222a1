"""The preload must change nothing where there is nothing to count: processes that
are not Python, Python without torch, torch without NATTEN, with LD_BIND_NOW=1 too.
Same output, same exit status, no message, no dump (a rank of a job, RANK set, does
leave an empty one: test_jobs.py)."""
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import clean_env

BASE_PYTHON = getattr(sys, "_base_executable", None) or "python3"

CASES = {
    "true": ["/bin/true"],
    "false": ["/bin/false"],
    "sh": ["sh", "-c", "echo out; echo err >&2; exit 3"],
    "python-no-torch": [BASE_PYTHON, "-c", "import json, sys; print(json.dumps([1, 2])); sys.exit(4)"],
    "torch-no-natten": [sys.executable, "-c",
                        "import torch; x = torch.ones(3, 4) @ torch.ones(4, 2); print(x.sum().item())"],
    "python-import-error": [sys.executable, "-c", "import natten_missing_module"],
}


def run(cmd, tmp_path, **env):
    # The whole-model count is off: a torch program without NATTEN would otherwise
    # (rightly) get a summary of its matmuls; test_whole_model.py checks that case.
    return subprocess.run(cmd, env=clean_env(NAFLOPS_WHOLE_MODEL="0", **env),
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)


@pytest.mark.parametrize("bind_now", [False, True], ids=["lazy", "bind-now"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_unchanged(lib, tmp_path, name, bind_now):
    cmd = CASES[name]
    extra = {"LD_BIND_NOW": "1"} if bind_now else {}
    plain = run(cmd, tmp_path, **extra)
    dump = tmp_path / "dump.json"
    pre = run(cmd, tmp_path, LD_PRELOAD=lib, NAFLOPS_OUTPUT=str(dump), **extra)
    assert (pre.returncode, pre.stdout) == (plain.returncode, plain.stdout)
    # the only stderr difference allowed is none at all (tracebacks contain no pid)
    assert pre.stderr == plain.stderr
    assert "naflops" not in pre.stderr
    assert not dump.exists()


def test_library_needs_nothing_but_libc(lib):
    """-z defs at link time; here: no libpython, no CUDA among the dependencies."""
    out = subprocess.run(["ldd", lib], capture_output=True, text=True).stdout
    assert "python" not in out and "cuda" not in out and "libc.so" in out


def test_summary_always_prints_even_without_natten(lib, tmp_path):
    r = run([sys.executable, "-c", "import torch; print('x')"], tmp_path, LD_PRELOAD=lib,
            NAFLOPS_SUMMARY="always")
    assert r.returncode == 0 and r.stdout == "x\n"
    assert "naflops: total" in r.stderr and "0 FLOP" in r.stderr


def test_disable_means_silent(lib, py021, tmp_path):
    code = ("import torch, natten\n"
            "q = torch.randn(1, 8, 2, 8)\n"
            "print(natten.na1d(q, q, q, kernel_size=3).shape)\n")
    dump = tmp_path / "d.json"
    r = run([py021, "-c", code], tmp_path, LD_PRELOAD=lib, NAFLOPS_DISABLE="1",
            NAFLOPS_OUTPUT=str(dump))
    assert r.returncode == 0 and "naflops" not in r.stderr and not dump.exists()
