"""Shared fixtures: the library under test, the two NATTEN interpreters, and a
helper that runs a real program under LD_PRELOAD as a separate process."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIB = Path(os.environ.get("NAFLOPS_LIB", ROOT / "build" / "libnaflops.so")).resolve()


def _interpreter(flag):
    out = subprocess.run([str(ROOT / "scripts" / "setup-test-env"), flag],
                         check=True, capture_output=True, text=True).stdout.strip()
    return out


# NAFLOPS_TEST_PY021: another interpreter with torch 2.8 and NATTEN 0.21 (the 3.12
# or 3.13 one from `scripts/setup-test-env --python-312`) to run the suite with.
PY021 = os.environ.get("NAFLOPS_TEST_PY021") or _interpreter("--python")
PY312 = _interpreter("--python-312")
PY313 = _interpreter("--python-313")
PYNEW312 = _interpreter("--python-newest-312")
PY017 = _interpreter("--python-017")
PYNEW = os.environ.get("NAFLOPS_TEST_PYNEW") or _interpreter("--python-newest")


@pytest.fixture(scope="session")
def lib():
    if not LIB.exists():
        pytest.fail(f"{LIB} is missing: run `make` first")
    return str(LIB)


@pytest.fixture(scope="session")
def py021():
    if not Path(PY021).exists():
        pytest.fail("NATTEN 0.21 environment missing: run scripts/setup-test-env")
    return PY021


@pytest.fixture(scope="session")
def py017():
    if not Path(PY017).exists():
        pytest.fail("NATTEN 0.17 environment missing: run scripts/setup-test-env")
    return PY017


@pytest.fixture(scope="session")
def pynew():
    """The newest torch on PyPI (2.15) with NATTEN 0.21: forward, compile, export."""
    if not Path(PYNEW).exists():
        pytest.fail("newest-torch environment missing: run scripts/setup-test-env")
    return PYNEW


@pytest.fixture(scope="session")
def pynew312():
    """The newest torch (2.15) with NATTEN 0.21 on CPython 3.12, where the counter
    counts through the functions' vectorcall slots (no wrapper)."""
    if not Path(PYNEW312).exists():
        if os.environ.get("CI"):
            pytest.fail("torch 2.15 on CPython 3.12 environment missing: run scripts/setup-test-env")
        pytest.skip("no CPython 3.12 here (scripts/setup-test-env makes the environment where pyenv "
                    "or python3.12 is found)")
    return PYNEW312


@pytest.fixture(params=["3.12", "3.13"])
def pyhook(request):
    """torch 2.8 with NATTEN 0.21.7 on CPython 3.12 and 3.13: no wrapper at all."""
    py = {"3.12": PY312, "3.13": PY313}[request.param]
    if not Path(py).exists():
        if os.environ.get("CI"):
            pytest.fail(f"CPython {request.param} environment missing: run scripts/setup-test-env")
        pytest.skip(f"no CPython {request.param} environment here (scripts/setup-test-env makes it "
                    "where pyenv or python%s is found)" % request.param)
    return py


def clean_env(**extra):
    """The environment of the test process minus any NAFLOPS_* and preload."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NAFLOPS_") and k != "LD_PRELOAD"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Run:
    def __init__(self, proc, dump_path):
        self.proc = proc
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.dump_path = dump_path

    @property
    def dump(self):
        with open(self.dump_path) as f:
            return json.load(f)

    def naflops_lines(self):
        return [l for l in self.stderr.splitlines() if l.startswith("naflops:")]


def run_program(python, code, tmp_path, lib=None, env=None, args=(), timeout=600):
    """Runs `code` (a Python program) with `python`, preloading `lib` when given.
    With a lib, the JSON dump goes to tmp_path/dump.json."""
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(code))
    dump = tmp_path / "dump.json"
    e = clean_env(**(env or {}))
    if lib is not None:
        e["LD_PRELOAD"] = lib
        e.setdefault("NAFLOPS_OUTPUT", str(dump))
    proc = subprocess.run([python, str(script), *args], env=e, capture_output=True,
                          text=True, timeout=timeout, cwd=tmp_path)
    return Run(proc, dump)


def run_torchrun(python, code, tmp_path, lib, nproc=2, **env):
    """`code` as a torchrun job of nproc ranks (gloo, CPU) under the preload, each rank
    dumping to tmp_path/rank-<RANK>.json, no summary; the launcher's CompletedProcess."""
    script = tmp_path / "job.py"
    script.write_text(code)
    e = clean_env(LD_PRELOAD=lib, NAFLOPS_OUTPUT=str(tmp_path / "rank-%r.json"),
                  NAFLOPS_SUMMARY="never", OMP_NUM_THREADS="1", **env)
    r = subprocess.run([python, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node", str(nproc), str(script)], env=e, capture_output=True,
                       text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def run_both(py, code, tmp_path, lib, **env):
    """The program under the preload, and without: output and status must match, and
    the plain run says nothing of naflops. The whole-model count is off unless env
    turns it on (these callers check NATTEN's rows and totals exactly)."""
    env = {"NAFLOPS_WHOLE_MODEL": "0", **env}
    plain_env = {k: v for k, v in env.items() if not k.startswith("NAFLOPS_")}
    (tmp_path / "plain").mkdir()
    plain = run_program(py, code, tmp_path / "plain", None, env=plain_env)
    (tmp_path / "pre").mkdir()
    pre = run_program(py, code, tmp_path / "pre", lib, env=env)
    assert plain.returncode == pre.returncode == 0, pre.stderr[-3000:]
    assert plain.stdout == pre.stdout
    assert not [l for l in plain.stderr.splitlines() if l.startswith("naflops:")]
    return pre


def ops_by(dump, **match):
    """The dump's ops whose fields equal match (pass_ for "pass", a Python keyword)."""
    match = {("pass" if k == "pass_" else k): v for k, v in match.items()}
    return [op for op in dump["ops"] if all(op.get(k) == v for k, v in match.items())]
