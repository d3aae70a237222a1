"""The CUPTI each user's torch brings, loaded into a real torch + NATTEN program under
the preload with NAFLOPS_GPU=1, on a machine without a GPU or CUDA driver:

    torch 2.6 (NATTEN 0.17.4)  nvidia-cuda-cupti-cu12 12.4.127  CUPTI 12.4 (API 22)
    torch 2.8 (NATTEN 0.21.7)  nvidia-cuda-cupti-cu12 12.8.90   CUPTI 12.8 (API 26)
    torch 2.15 (NATTEN 0.21.7) nvidia-cuda-cupti 13.2.86        CUPTI 13.2 (API 130202)

torch's libtorch_cpu.so needs libcupti, so importing torch loads the wheel's copy; the
test checks that the copy mapped is byte for byte the library of that wheel which
scripts/fetch-cupti-headers caches and `make cupti-versions` (test_cupti_layout)
checks the adapter against (version, layout row, entry points, cross-check plan).

No driver ever calls InitializeInjection here, so the program does what the CUDA
driver would do at cuInit: it calls the exported InitializeInjection when the process
has one (only under the preload; the plain run skips it, so the program's own
behaviour is the same). Each run, plain and preloaded, must give the same stdout,
exit status and stderr (the counter's "naflops:" lines aside); the counter says one
line for the GPU part, and the NATTEN counts are those of the same program with
NAFLOPS_GPU=0 and of NATTEN's rule worked out here.

 - No driver at all: the adapter does not touch CUPTI (CUPTI 13.2's cuptiGetVersion
   recurses until the stack overflows without libcuda.so.1; the adapter asks it only
   once the driver is loaded) and says so.
 - 12.4 and 12.8 with the CUDA toolkit's stub libcuda.so loaded by the program (what
   makes the adapter go on): it finds torch's CUPTI already loaded, asks its version,
   takes its layout row, resolves its entry points, and stops where CUPTI does
   (cuptiSubscribe: CUPTI_ERROR_NOT_INITIALIZED, the stub has no device); with
   NAFLOPS_CROSSCHECK=1, CUPTI 12.4 also says in one line that it cannot cross-check.
   Not 13.2: its cuptiGetVersion recurses with the stub too.
"""
import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import PY017, PY021, ROOT, ops_by, run_program

STUB_DRIVER = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "lib64" / "stubs" / "libcuda.so"
NO_DRIVER = ("GPU part off: InitializeInjection ran without the CUDA driver (libcuda.so.1) "
             "loaded; CUPTI was not asked; NATTEN ops are still counted")
NOT_INITIALIZED = ("GPU part off: CUPTI refused a subscriber: CUPTI_ERROR_NOT_INITIALIZED; "
                   "NATTEN ops are still counted")


def newest_python():
    """torch 2.15's interpreter: setup-test-env --python-newest where it has that
    option, else the environment it makes."""
    r = subprocess.run([str(ROOT / "scripts" / "setup-test-env"), "--python-newest"],
                       capture_output=True, text=True)
    if r.returncode == 0 and r.stdout.strip():
        return r.stdout.strip()
    return str(Path.home() / ".cache" / "naflops" / "venv-215" / "bin" / "python")


B, H, X, Y, D, K = 1, 2, 8, 8, 16, 3
N, W = X * Y, K * K

# NATTEN 0.17.4 on the CPU: the unfused QK and AV ops (its fused ops have no CPU kernel).
PROGRAM_017 = f"""
import torch, natten
from natten.functional import na2d_qk, na2d_av
torch.manual_seed(0)
q, k, v = (torch.randn({B}, {H}, {X}, {Y}, {D}, requires_grad=True) for _ in range(3))
a = na2d_qk(q, k, {K}).softmax(-1)
o = na2d_av(a, v, {K})
o.sum().backward()
"""
# NATTEN 0.21.7: fused na2d (the Flex backend on the CPU). torch 2.15's FlexAttention
# has no backward on the CPU: forward only there.
PROGRAM_021 = f"""
import torch, natten
torch.manual_seed(0)
q, k, v = (torch.randn({B}, {X}, {Y}, {H}, {D}, requires_grad=True) for _ in range(3))
o = natten.na2d(q, k, v, kernel_size={K})
o.sum().backward()
"""
PROGRAM_021_FORWARD = PROGRAM_021.replace("requires_grad=True", "requires_grad=False").replace(
    "o.sum().backward()", "q.grad = torch.zeros_like(q)")
TAIL = """
print("natten", natten.__version__, "torch", torch.__version__)
print("out", round(o.detach().sum().item(), 4), "grad", round(q.grad.sum().item(), 4))
print("libcupti", sorted({l.split()[-1] for l in open("/proc/self/maps") if "/libcupti.so" in l}))
import ctypes, os
if os.environ.get("STUB_DRIVER"):
    ctypes.CDLL(os.environ["STUB_DRIVER"], mode=ctypes.RTLD_GLOBAL)
init = getattr(ctypes.CDLL(None), "InitializeInjection", None)
if init is not None:  # only under the preload: what the CUDA driver calls at cuInit
    init()
print("done")
"""

CASES = {
    "12.4": (lambda: PY017, PROGRAM_017, "0.17.4"),
    "12.8": (lambda: PY021, PROGRAM_021, "0.21.7"),
    "13.2": (newest_python, PROGRAM_021_FORWARD, "0.21.7"),
}


def expected_ops(natten, backward=True):
    """(op, pass) -> FLOPs by NATTEN's rule."""
    if not backward:
        return {("na2d", "forward"): 4 * B * H * N * W * D}
    if natten == "0.17.4":
        one = 2 * B * H * N * W * D  # qk and av each
        return {("na2d_qk", "forward"): one, ("na2d_av", "forward"): one,
                ("na2d_qk", "backward"): 2 * one, ("na2d_av", "backward"): 2 * one}
    fused = 4 * B * H * N * W * D
    return {("na2d", "forward"): fused, ("na2d", "backward"): 2 * fused}


def interpreter(release):
    py = CASES[release][0]()
    if not Path(py).exists():
        pytest.skip(f"no interpreter with the torch that brings CUPTI {release} ({py})")
    return py


def wheel_library(release):
    """The libcupti of the wheel scripts/fetch-cupti-headers caches for release."""
    r = subprocess.run([str(ROOT / "scripts" / "fetch-cupti-headers"), "--dir", release],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    libs = sorted((Path(r.stdout.strip()) / "lib").glob("libcupti.so.*"))
    assert len(libs) == 1, libs
    return libs[0]


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def counts(run):
    return {(op["op"], op["pass"]): op["flops"] for op in run.dump["ops"]}


def three_runs(py, code, tmp_path, lib, **env):
    """Plain, preloaded with NAFLOPS_GPU=1, and preloaded with NAFLOPS_GPU=0."""
    runs = {}
    for name, extra in (("plain", None), ("gpu", {"NAFLOPS_GPU": "1"}), ("nogpu", {"NAFLOPS_GPU": "0"})):
        d = tmp_path / name
        d.mkdir()
        base = dict(env)
        if extra is not None:
            base.update({"NAFLOPS_WHOLE_MODEL": "0", "NAFLOPS_UNITS": "exact", **extra})
        runs[name] = run_program(py, code, d, lib=None if extra is None else lib, env=base)
    return runs


def others(stderr):
    return [l for l in stderr.splitlines() if not l.startswith("naflops:")]


def check_unchanged(runs, release, natten):
    plain, gpu, nogpu = runs["plain"], runs["gpu"], runs["nogpu"]
    for name, r in runs.items():
        assert r.returncode == 0, (name, r.stderr[-3000:])
    assert gpu.stdout == plain.stdout == nogpu.stdout
    assert f"natten {natten} " in plain.stdout and plain.stdout.endswith("done\n")
    assert others(gpu.stderr) == others(plain.stderr) == others(nogpu.stderr)
    assert plain.naflops_lines() == []
    # The NATTEN counts: NATTEN's rule, and the same with the GPU part off.
    assert counts(gpu) == counts(nogpu) == expected_ops(natten, backward=release != "13.2")
    assert gpu.dump["totals"] == nogpu.dump["totals"]
    assert gpu.dump["natten_version"] == natten


def logged(run):
    """The counter's own lines said during the run (not the exit summary): those that
    end in the GPU/cross-check explanation."""
    return [l for l in run.naflops_lines()
            if l.endswith("NATTEN ops are still counted") or
            l.endswith("kernel attribution and counting go on")]


@pytest.mark.parametrize("release", list(CASES))
def test_cupti_loaded_no_driver(release, lib, tmp_path):
    py = interpreter(release)
    code, natten = CASES[release][1:]
    runs = three_runs(py, code + TAIL, tmp_path, lib)
    check_unchanged(runs, release, natten)
    # torch's libcupti is the wheel's, byte for byte the one make cupti-versions checks.
    mapped = re.search(r"libcupti \[(.*)\]", runs["plain"].stdout).group(1)
    paths = [p.strip(" '") for p in mapped.split(",")]
    assert len(paths) == 1, paths
    assert sha256(paths[0]) == sha256(wheel_library(release)), (paths[0], release)
    assert logged(runs["gpu"]) == ["naflops: " + NO_DRIVER]
    assert logged(runs["nogpu"]) == []


@pytest.mark.parametrize("release", ["12.4", "12.8"])
@pytest.mark.parametrize("crosscheck", [False, True])
def test_cupti_adopted_with_stub_driver(release, crosscheck, lib, tmp_path):
    if not STUB_DRIVER.exists():
        pytest.skip(f"no stub libcuda.so at {STUB_DRIVER}")
    py = interpreter(release)
    code, natten = CASES[release][1:]
    env = {"STUB_DRIVER": str(STUB_DRIVER)}
    if crosscheck:
        env["NAFLOPS_CROSSCHECK"] = "1"
    runs = three_runs(py, code + TAIL, tmp_path, lib, **env)
    check_unchanged(runs, release, natten)
    expect = []
    if crosscheck and release == "12.4":
        expect.append("naflops: cross-check off: libcupti.so.12 (already loaded) (CUPTI 12.4) lacks "
                      "cuptiRangeProfilerEnable: the range profiler came with CUDA 12.6, and naflops "
                      "does not implement the older Profiler API (cuptiProfilerBeginSession); kernel "
                      "attribution and counting go on")
    expect.append("naflops: " + NOT_INITIALIZED)
    assert logged(runs["gpu"]) == expect
    assert logged(runs["nogpu"]) == []
