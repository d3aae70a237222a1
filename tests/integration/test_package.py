"""`pip install .` (pyproject.toml, setup.py): a wheel with the naflops command,
libnaflops.so built inside the package and the observer's build script and sources.
Installed into a fresh virtual environment that sees the test environment's torch and
NATTEN (a .pth file: no download), its `naflops run -- python scripts/demo.py`, run from
another folder with an empty cache (so the observer is built from the package's own
sources, once), counts exactly what `LD_PRELOAD=build/libnaflops.so python
scripts/demo.py` counts: the same dump rows and totals. About 2 minutes (the library
and the observer compiled)."""
import json
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

from conftest import ROOT, clean_env

COUNTS = ("calls", "flops_per_call", "flops", "macs")


def rows(dump):
    return sorted(json.dumps(op, sort_keys=True) for op in dump["ops"])


def test_pip_install_then_naflops_run(py021, lib, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([py021, "-m", "venv", venv], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = lambda p: subprocess.run(  # noqa: E731
        [p, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip()
    # torch, NATTEN, setuptools and wheel of the test environment, seen by the new one
    Path(purelib(py), "naflops-test-env.pth").write_text(purelib(py021) + "\n")
    wheels = tmp_path / "wheels"
    r = subprocess.run([py, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", wheels, ROOT], capture_output=True, text=True, timeout=300,
                       env=clean_env(PIP_NO_INDEX="1"))
    assert r.returncode == 0, r.stdout + r.stderr
    [wheel] = wheels.glob("naflops-*.whl")
    assert wheel.name.endswith("-py3-none-" + sysconfig.get_platform().replace("-", "_") + ".whl")
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", wheel],
                       capture_output=True, text=True, timeout=120, env=clean_env(PIP_NO_INDEX="1"))
    assert r.returncode == 0, r.stdout + r.stderr
    package = Path(purelib(py), "naflops")
    assert os.access(package / "libnaflops.so", os.R_OK)
    assert os.access(package / "observer" / "scripts" / "build-observer", os.X_OK)

    # The installed command, from another folder, with nothing but the venv on PATH.
    elsewhere, cache, home = tmp_path / "elsewhere", tmp_path / "cache", tmp_path / "home"
    elsewhere.mkdir()
    home.mkdir()
    env = clean_env(PATH=f"{venv / 'bin'}:/usr/bin:/bin", XDG_CACHE_HOME=cache, HOME=home)
    r = subprocess.run([venv / "bin" / "naflops", "run", "--output", "pkg.json", "--",
                        "python", ROOT / "scripts" / "demo.py"], cwd=elsewhere,
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    assert "naflops: building the whole-model observer for torch" in r.stderr
    assert list((cache / "naflops" / "observers").glob("*/naflops-torch-*.so")), r.stderr

    # The reference: the checkout's library preloaded by hand, with the observer just
    # built (a copy of the library alone in a folder: an observer left in build/ by an
    # older build of the sources would not be loaded, and the demo would count NATTEN
    # alone).
    alone = tmp_path / "lib"
    alone.mkdir()
    shutil.copy(lib, alone / "libnaflops.so")
    ref = tmp_path / "ref.json"
    r = subprocess.run([py021, ROOT / "scripts" / "demo.py"], capture_output=True, text=True,
                       timeout=300, env=clean_env(LD_PRELOAD=alone / "libnaflops.so",
                                                  NAFLOPS_OUTPUT=ref, XDG_CACHE_HOME=cache))
    assert r.returncode == 0, r.stderr
    got, want = json.loads((elsewhere / "pkg.json").read_text()), json.loads(ref.read_text())
    assert any(op["kind"] == "aten" for op in got["ops"])  # the whole model, not NATTEN alone
    assert rows(got) == rows(want)
    assert got["totals"] == want["totals"]


def test_sdist_builds_a_wheel(py021, tmp_path):
    """An sdist (MANIFEST.in) holds what setup.py's make needs: a wheel built from the
    unpacked sdist alone has the library and the observer's script and sources."""
    dist = tmp_path / "dist"
    r = subprocess.run([py021, "setup.py", "-q", "sdist", "-d", dist], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    [sdist] = dist.glob("naflops-*.tar.gz")
    import tarfile

    with tarfile.open(sdist) as t:
        names = t.getnames()
        t.extractall(tmp_path / "unpacked", filter="data")
    assert any(n.endswith("/Makefile") for n in names)
    assert any(n.endswith("/hooks/python/py_bootstrap_step.py") for n in names)
    [tree] = (tmp_path / "unpacked").iterdir()
    r = subprocess.run([py021, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", tmp_path / "wheels", "."], cwd=tree, capture_output=True,
                       text=True, timeout=300, env=clean_env(PIP_NO_INDEX="1"))
    assert r.returncode == 0, r.stdout + r.stderr
    import zipfile

    [wheel] = (tmp_path / "wheels").glob("naflops-*.whl")
    inside = zipfile.ZipFile(wheel).namelist()
    for path in ("naflops/libnaflops.so", "naflops/observer/scripts/build-observer",
                 "naflops/observer/hooks/torch/torch_observer.cpp"):
        assert any(n.endswith(path) for n in inside), path
