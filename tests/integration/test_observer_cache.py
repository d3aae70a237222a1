"""The whole model out of the box: `naflops run` builds the observer for the program's
torch when there is none beside libnaflops.so or in the cache, once, into
$XDG_CACHE_HOME/naflops/observers/<torch version>/, and the next run uses that one
without building. One real build (tens of seconds with g++)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, clean_env

PROGRAM = """
import torch
a, b = torch.ones(8, 4), torch.ones(4, 6)
print(float((a @ b).sum()))
"""


def naflops_run(py, lib, cache, home, tmp_path, name):
    dump = tmp_path / f"{name}.json"
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    env = clean_env(NAFLOPS_LIB=str(lib), XDG_CACHE_HOME=str(cache), HOME=str(home))
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "naflops"), "run",
                           "--output", str(dump), "--summary", "never", "--", py, str(script)],
                          env=env, capture_output=True, text=True, timeout=900), dump


def test_run_builds_the_observer_once_and_the_next_run_uses_it(py021, lib, tmp_path):
    import json
    alone = tmp_path / "lib"
    alone.mkdir()
    shutil.copy(lib, alone / "libnaflops.so")  # no naflops-torch-*.so beside it
    cache, home = tmp_path / "cache", tmp_path / "home"
    home.mkdir()

    first, dump = naflops_run(py021, alone / "libnaflops.so", cache, home, tmp_path, "first")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "192.0\n"
    building = [l for l in first.stderr.splitlines() if "building the whole-model observer" in l]
    assert len(building) == 1, first.stderr
    built = list((cache / "naflops" / "observers").glob("*/naflops-torch-*.so"))
    assert len(built) == 1 and built[0].parent.name == built[0].name[len("naflops-torch-"):-3]
    assert built[0].parent.name.startswith("2.8.0")
    assert not list(home.iterdir())  # XDG_CACHE_HOME, not ~/.cache
    # ... and this very run counted the whole model with it
    ops = json.loads(dump.read_text())["ops"]
    assert [(o["kind"], o["op"], o["flops"]) for o in ops] == [("aten", "aten::mm", 2 * 8 * 6 * 4)]
    assert "whole-model count is off" not in first.stderr

    mtime = built[0].stat().st_mtime_ns
    second, dump = naflops_run(py021, alone / "libnaflops.so", cache, home, tmp_path, "second")
    assert second.returncode == 0, second.stderr
    assert "building" not in second.stderr and "whole-model" not in second.stderr
    assert built[0].stat().st_mtime_ns == mtime
    assert list((cache / "naflops" / "observers").glob("*/*")) == built
    ops = json.loads(dump.read_text())["ops"]
    assert [(o["op"], o["calls"]) for o in ops] == [("aten::mm", 1)]


def test_run_builds_nothing_when_whole_model_is_off(py021, lib, tmp_path):
    alone = tmp_path / "lib"
    alone.mkdir()
    shutil.copy(lib, alone / "libnaflops.so")
    cache, home = tmp_path / "cache", tmp_path / "home"
    home.mkdir()
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    env = clean_env(NAFLOPS_LIB=str(alone / "libnaflops.so"), XDG_CACHE_HOME=str(cache),
                    HOME=str(home), NAFLOPS_SUMMARY="never")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "naflops"), "run",
                        "--no-whole-model", "--", py021, str(script)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout == "192.0\n", r.stderr
    assert not cache.exists() and "building" not in r.stderr
    assert os.listdir(home) == []
