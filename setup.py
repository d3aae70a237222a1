"""The build steps of `pip install .` (metadata: pyproject.toml).

build_py adds to the pure-Python package python/naflops:
  naflops/libnaflops.so              `make BUILD=<build dir> <build dir>/libnaflops.so`
  naflops/observer/scripts/build-observer and the observer's sources (the files of
  build-observer's src=(...) line and the headers they include), laid out as in the
  checkout, so that build-observer (which cds to its ../) finds them after installation.
The wheel is tagged py3-none-<platform>: the library is native, the Python is not
tied to one interpreter. setuptools' own build files go to build/py/ (git-ignored;
make clean removes them).
"""
import os
import re
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

ROOT = os.path.dirname(os.path.abspath(__file__))
BUILD_BASE = os.path.join("build", "py")


def observer_files():
    """scripts/build-observer and what it compiles, relative to the checkout."""
    with open(os.path.join(ROOT, "scripts", "build-observer")) as f:
        sources = re.search(r"^src=\(([^)]*)\)", f.read(), re.M).group(1).split()
    todo, seen = list(sources), set()
    while todo:
        path = os.path.normpath(todo.pop())
        if path in seen:
            continue
        seen.add(path)
        with open(os.path.join(ROOT, path), errors="replace") as f:
            for inc in re.findall(r'^\s*#\s*include\s+"([^"]+)"', f.read(), re.M):
                found = os.path.normpath(os.path.join(os.path.dirname(path), inc))
                if os.path.isfile(os.path.join(ROOT, found)):
                    todo.append(found)
    return ["scripts/build-observer"] + sorted(seen)


class BuildPy(build_py):
    def run(self):
        super().run()
        package = os.path.join(self.build_lib, "naflops")
        make_build = os.path.abspath(os.path.join(self.get_finalized_command("build").build_temp,
                                                  "make"))
        lib = os.path.join(make_build, "libnaflops.so")
        subprocess.run(["make", "-C", ROOT, f"BUILD={make_build}", lib], check=True)
        shutil.copy2(lib, os.path.join(package, "libnaflops.so"))
        for rel in observer_files():
            target = os.path.join(package, "observer", rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, rel), target)  # keeps build-observer's x bit


class BdistWheel(bdist_wheel):
    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        return ("py3", "none") + tuple(super().get_tag()[2:])


os.makedirs(os.path.join(ROOT, BUILD_BASE), exist_ok=True)
setup(cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel},
      options={"build": {"build_base": BUILD_BASE}, "egg_info": {"egg_base": BUILD_BASE}})
