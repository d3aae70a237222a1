"""GPU checks of kernel attribution, CUDA-graph replays and the CUPTI cross-check, for
a CUDA machine (scripts/gpu-check runs them: `pytest --noconftest tests/gpu`).
Everywhere else each test is skipped with the reason (collected, then skipped, so that
even `pytest tests/gpu` alone exits 0 on a CPU machine).

Each test runs a small program as its own process under LD_PRELOAD and reads the
dump's "gpu" object (written by nf_gpu_report_json)."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

try:
    import torch
except ImportError:  # the tests are still collected, and skipped: never exit status 5
    torch = None

pytestmark = pytest.mark.skipif(
    torch is None or not torch.cuda.is_available(),
    reason="no CUDA device (torch.cuda.is_available() is False): GPU checks skipped")

ROOT = Path(__file__).resolve().parents[2]
LIB = Path(os.environ.get("NAFLOPS_LIB", ROOT / "build" / "libnaflops.so")).resolve()


def run(tmp_path, program, preload=True, **env):
    """Runs program (Python source) and returns (stdout, stderr, dump or None)."""
    src = tmp_path / "prog.py"
    src.write_text(textwrap.dedent(program))
    dump = tmp_path / "dump.json"
    e = {k: v for k, v in os.environ.items() if not k.startswith("NAFLOPS_")}
    e.pop("LD_PRELOAD", None)
    e.pop("CUDA_INJECTION64_PATH", None)
    if preload:
        e.update(LD_PRELOAD=str(LIB), NAFLOPS_OUTPUT=str(dump), NAFLOPS_UNITS="exact")
    e["NAFLOPS_GPU"] = "1"  # off by default until verified on a GPU
    e.update(env)
    p = subprocess.run([sys.executable, str(src)], env=e, capture_output=True, text=True,
                       timeout=240, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    data = json.loads(dump.read_text()) if preload and dump.exists() else None
    return p.stdout, p.stderr, data


def gpu(data):
    assert data is not None and "gpu" in data, "the dump has no \"gpu\" object"
    return data["gpu"]


NA2D = """
import torch, natten
torch.manual_seed(0)
q, k, v = (torch.randn(2, 32, 32, 4, 64, device="cuda", dtype=torch.{dtype}, requires_grad=True)
           for _ in range(3))
out = natten.na2d(q, k, v, kernel_size=7)
out.sum().backward()
torch.cuda.synchronize()
print(round(float(out.float().sum()), 2))
"""
# 4 * B * H * N * W * D
NA2D_FWD = 4 * 2 * 4 * 32 * 32 * 49 * 64


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dense_gemm_sets_the_math_op_unit(tmp_path, dtype):
    """A dense GEMM of known 2*M*N*K FLOPs, measured by the hardware (it runs outside
    NATTEN, so it is "other"): establishes what one math_op is."""
    m, n, k, reps = 4096, 4096, 4096, 3
    _, err, data = run(tmp_path, f"""
        import torch
        a = torch.randn({m}, {k}, device="cuda", dtype=torch.{dtype})
        b = torch.randn({k}, {n}, device="cuda", dtype=torch.{dtype})
        for _ in range({reps}): c = a @ b
        torch.cuda.synchronize()
        """, NAFLOPS_CROSSCHECK="on", NAFLOPS_SUMMARY="always", NAFLOPS_WHOLE_MODEL="off")
    g = gpu(data)
    assert g["crosscheck"]["ran"], g["crosscheck"]["note"] + err
    measured = g["other"]["measured_flops"]
    want = 2 * m * n * k * reps
    print(f"{dtype}: measured {measured:.6g}, 2*M*N*K*reps {want}, ratio {measured / want:.4f}")
    assert abs(measured / want - 1) < 0.01, (measured, want, g["crosscheck"]["note"])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_natten_counts_and_kernels_attributed(tmp_path, dtype):
    _, _, data = run(tmp_path, NA2D.format(dtype=dtype))
    ops = [o for o in data["ops"] if o["op"] == "na2d"]
    fwd = [o for o in ops if o["pass"] == "forward"]
    bwd = [o for o in ops if o["pass"] == "backward"]
    assert sum(o["flops"] for o in fwd) == NA2D_FWD
    assert sum(o["flops"] for o in bwd) == 2 * NA2D_FWD
    g = [o for o in gpu(data)["ops"] if o["op"] == "na2d" and o["pass"] == "forward"]
    assert g and g[0]["kernels"] >= 1 and g[0]["gpu_ns"] > 0, gpu(data)
    assert g[0]["flops"] == NA2D_FWD and g[0]["tflops"] > 0
    assert g[0]["peak_tflops"] and 0 < g[0]["utilization"] < 1
    names = " ".join(n["name"] for n in g[0]["kernel_names"]).lower()
    assert "fna" in names or "natten" in names or "attention" in names, names


def test_crosscheck_ratio_reported(tmp_path):
    _, err, data = run(tmp_path, NA2D.format(dtype="float16"), NAFLOPS_CROSSCHECK="on")
    g = gpu(data)
    assert g["crosscheck"]["ran"], g["crosscheck"]["note"]
    fwd = [o for o in g["ops"] if o["op"] == "na2d" and o["pass"] == "forward"]
    assert fwd[0]["ratio"] is not None and fwd[0]["ratio"] >= 0.9, fwd
    assert "ratio above 1" in err and "cross-check" in err


def test_cuda_graph_counted_once_per_replay(tmp_path):
    warmup, replays = 3, 5
    _, _, data = run(tmp_path, f"""
        import torch, natten
        q, k, v = (torch.randn(2, 32, 32, 4, 64, device="cuda", dtype=torch.float16) for _ in range(3))
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range({warmup}): out = natten.na2d(q, k, v, kernel_size=7)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = natten.na2d(q, k, v, kernel_size=7)
        for _ in range({replays}): g.replay()
        torch.cuda.synchronize()
        """)
    fwd = [o for o in data["ops"] if o["op"] == "na2d" and o["pass"] == "forward"]
    assert sum(o["calls"] for o in fwd) == warmup + replays
    graphs = gpu(data)["graphs"]
    assert len(graphs) == 1 and graphs[0]["replays"] == replays, graphs
    assert graphs[0]["calls_per_replay"] == 1 and graphs[0]["kernels"] >= replays


def test_program_output_unchanged(tmp_path):
    plain, _, _ = run(tmp_path, NA2D.format(dtype="float16"), preload=False)
    pre, _, _ = run(tmp_path, NA2D.format(dtype="float16"), NAFLOPS_CROSSCHECK="on")
    assert plain == pre


def test_training_steps_gpu_busy_and_mfu(tmp_path):
    """A bf16 training loop on the GPU: 4 optimizer steps, each with its FLOPs, a GPU
    busy time no longer than the step, and MFU against the chip's dense bf16 peak."""
    _, err, data = run(tmp_path, """
        import torch, natten
        torch.manual_seed(0)
        lin = torch.nn.Linear(256, 768, device="cuda", dtype=torch.bfloat16)
        opt = torch.optim.SGD(lin.parameters(), lr=1e-3)
        x = torch.randn(2, 32, 32, 256, device="cuda", dtype=torch.bfloat16)
        for _ in range(4):
            q, k, v = lin(x).chunk(3, dim=-1)
            q, k, v = (t.reshape(2, 32, 32, 4, 64) for t in (q, k, v))
            natten.na2d(q, k, v, kernel_size=7).float().square().mean().backward()
            opt.step(); opt.zero_grad()
        torch.cuda.synchronize()
        """)
    s = data["steps"]
    assert s["count"] == 4 and s["warmup"] >= 1, s
    per = {r["model_flops"] for r in s["records"]}
    assert len(per) == 1 and per.pop() > 3 * NA2D_FWD
    for r in s["records"]:
        assert r["gpu_busy_seconds"] is not None and 0 < r["gpu_busy_seconds"] <= r["seconds"] * 1.01, r
    assert s["peak_source"] and "bfloat16 dense" in s["peak_source"], s
    st = s["steady"]
    assert st and 0 < st["mfu_median"] < 1 and st["hfu_median"] >= st["mfu_median"], st
    assert "naflops: MFU       " in err
