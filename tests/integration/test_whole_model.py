"""The whole-model count (the libtorch observer, NAFLOPS_WHOLE_MODEL) against PyTorch's
FlopCounterMode, fvcore (through NATTEN 0.17's natten.flops.get_flops) and numbers
worked out by hand, on real programs run with and without the preload.

References run in a process of their own without the preload, on the same model
(same seed) and input shape. Where a reference cannot run the real NATTEN op on a
CPU, it says how it stands in:
  * NATTEN 0.17's own tests/test_flops.py counts with FlopCounterMode through NATTEN's
    experimental fused ops, which have no CPU kernels: the reference runs them under
    FakeTensorMode (shapes only), as the issue allows; the preloaded program runs the
    same module for real on libnatten's unfused CPU kernels.
  * FlopCounterMode cannot run NATTEN 0.21's Flex backend at all ("no rule registered
    for HOP flex_attention and mode FlopCounterMode"), so for 0.21 the reference
    replaces the neighborhood-attention call with q + k + v: same shapes, gradients
    still reach q, k and v, so every other op of the step, backward included, is the
    same; only NATTEN's share, which the rules give, is left out.
"""
import json
import math
import re
import shutil
import textwrap

import pytest

from conftest import ops_by, run_program

# ------------------------------------------------------------------ NATTEN 0.17 modules

# NATTEN 0.17.4 tests/test_flops.py's three cases, each also with the other qkv_bias,
# and three more kernel sizes, dilations and causal settings.
# (batch, spatial, heads, dim_per_head, kernel, dilation, causal, qkv_bias)
TEST_FLOPS_CASES = [
    (4, (128,), 4, 64, (5,), (2,), (False,), False),
    (1, (16, 10), 2, 32, (5, 3), (2, 1), (False, False), True),
    (1, (6, 5, 8), 2, 32, (5, 3, 7), (1, 1, 1), (True, False, False), True),
]
CASES_017 = TEST_FLOPS_CASES + [c[:7] + (not c[7],) for c in TEST_FLOPS_CASES] + [
    (2, (24,), 2, 16, (7,), (3,), (True,), True),
    (2, (9, 9), 3, 16, (3, 3), (3, 2), (False, True), False),
    (1, (5, 6, 7), 2, 16, (3, 3, 3), (1, 2, 1), (False, False, True), False),
]

MODULE_017 = """
import natten, torch
def build(spatial, heads, dim, kernel, dilation, causal, bias, experimental=False):
    cls = {1: natten.NeighborhoodAttention1D, 2: natten.NeighborhoodAttention2D,
           3: natten.NeighborhoodAttention3D}[len(spatial)]
    return cls(dim=dim * heads, num_heads=heads, kernel_size=kernel, dilation=dilation,
               is_causal=causal, qkv_bias=bias, use_experimental_ops=experimental)
"""


def rule_fused(batch, spatial, heads, dim, kernel):
    """NATTEN's rule, written out: QK and AV GEMMs, 2 * M * N * K each."""
    return 2 * 2 * batch * heads * math.prod(spatial) * math.prod(kernel) * dim


@pytest.fixture(scope="module")
def references_017(py017, tmp_path_factory):
    """FlopCounterMode (fake tensors, experimental fused ops) and fvcore (real run,
    unfused) for every case, from one process without the preload."""
    code = MODULE_017 + textwrap.dedent(f"""
        import json, os
        os.environ["NATTEN_LOG_LEVEL"] = "CRITICAL"
        from torch.utils.flop_counter import FlopCounterMode
        from torch._subclasses.fake_tensor import FakeTensorMode
        from natten.flops import get_flops
        out = []
        for (b, spatial, heads, dim, kernel, dilation, causal, bias) in {CASES_017!r}:
            natten.use_fused_na(True)
            with FakeTensorMode():
                m = build(spatial, heads, dim, kernel, dilation, causal, bias, experimental=True)
                x = torch.randn(b, *spatial, heads * dim)
                with FlopCounterMode(display=False) as fcm:
                    m(x)
            natten.use_fused_na(False)
            m = build(spatial, heads, dim, kernel, dilation, causal, bias)
            fv = get_flops(m, torch.randn(b, *spatial, heads * dim), disable_warnings=True)
            counts = {{str(k): v for k, v in fcm.get_flop_counts()["Global"].items()}}
            out.append({{"fcm": fcm.get_total_flops(), "fcm_ops": counts, "fvcore": fv}})
        print(json.dumps(out))
    """)
    run = run_program(py017, code, tmp_path_factory.mktemp("ref017"))
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("index", range(len(CASES_017)),
                         ids=[f"{len(c[1])}d-k{'x'.join(map(str, c[4]))}-bias{int(c[7])}"
                              for c in CASES_017])
def test_natten017_modules_match_flopcountermode_and_fvcore(index, references_017, py017, lib,
                                                           tmp_path):
    b, spatial, heads, dim, kernel, dilation, causal, bias = CASES_017[index]
    ref = references_017[index]
    code = MODULE_017 + textwrap.dedent(f"""
        natten.use_fused_na(False)
        torch.manual_seed(0)
        m = build({spatial!r}, {heads}, {dim}, {kernel!r}, {dilation!r}, {causal!r}, {bias})
        with torch.no_grad():
            y = m(torch.randn({b}, *{spatial!r}, {heads * dim}))
        print(float(y.double().sum()))
    """)
    plain = run_program(py017, code, tmp_path)
    run = run_program(py017, code, tmp_path, lib=lib)
    assert run.returncode == 0 and plain.returncode == 0, run.stderr[-3000:]
    assert run.stdout == plain.stdout  # the program's own results are untouched
    totals = run.dump["totals"]
    c = heads * dim
    n = b * math.prod(spatial)
    # by hand: qkv and proj Linear layers (bias not counted), then NATTEN's rule
    linear = 2 * n * c * 3 * c + 2 * n * c * c
    natten_rule = rule_fused(b, spatial, heads, dim, kernel)
    assert totals["other_flops"] == linear
    assert totals["natten_flops"] == natten_rule
    assert totals["flops"] == totals["forward_flops"] == linear + natten_rule
    # FlopCounterMode: the whole total, and NATTEN's share through its experimental op
    assert totals["flops"] == ref["fcm"]
    natten_op = f"natten.na{len(spatial)}d_forward_op"
    assert totals["natten_flops"] == ref["fcm_ops"][natten_op]
    # op by op: a Linear with a bias is addmm (proj always has one), one without is mm
    aten = ops_by(run.dump, kind="aten")
    by_op = {}
    for op in aten:
        by_op[op["op"].replace("::", ".")] = by_op.get(op["op"].replace("::", "."), 0) + op["flops"]
    assert by_op == {k: v for k, v in ref["fcm_ops"].items() if k != natten_op}
    assert set(by_op) == ({"aten.addmm"} if bias else {"aten.addmm", "aten.mm"})
    # fvcore counts MACs
    assert totals["macs"] == ref["fvcore"]
    assert sorted(op["key_shape"] for op in aten) == sorted([[c, c], [c, 3 * c]])
    assert all(op["shape"] == [n, c] and op["natten_version"] is None for op in aten)


# ------------------------------------------------------------------ an NA transformer block

BLOCK = """
import torch, torch.nn as nn
# one thread: a multi-threaded reduction may sum in another order from run to run, and
# the plain and preloaded runs print a gradient checksum to compare
torch.set_num_threads(1)
class Block(nn.Module):
    def __init__(self, attn, c):
        super().__init__()
        self.norm1, self.attn, self.norm2 = nn.LayerNorm(c), attn, nn.LayerNorm(c)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c))
    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
def step(block, x):
    loss = block(x).square().mean()
    loss.backward()
    grads = sum(float(p.grad.double().abs().sum()) for p in block.parameters())
    return float(loss), grads
"""
B2, SPATIAL2, HEADS2, DIM2, KERNEL2 = 2, (8, 9), 2, 16, (3, 5)


def block_by_hand(batch, spatial, c):
    """The step's non-NATTEN FLOPs: qkv, proj, fc1, fc2 as 2*M*N*K each forward; in
    backward each Linear computes its input's and its weight's gradient, two GEMMs of
    the same size (every Linear's input needs a gradient: LayerNorm comes first)."""
    n = batch * math.prod(spatial)
    forward = 2 * n * c * (3 * c + c + 4 * c + 4 * c)
    return forward, 2 * forward


def test_block_natten017_forward_backward(py017, lib, tmp_path):
    c = HEADS2 * DIM2
    natten_part = """
import natten
natten.use_fused_na(False)
torch.manual_seed(0)
block = Block(natten.NeighborhoodAttention2D(dim=%d, num_heads=%d, kernel_size=%r), %d)
x = torch.randn(%d, *%r, %d)
""" % (c, HEADS2, KERNEL2, c, B2, SPATIAL2, c)
    program = BLOCK + natten_part + "print(step(block, x))\n"
    # FlopCounterMode over the same step: libnatten's pybind kernels are invisible to a
    # dispatch mode, so it counts exactly the step's other ops.
    reference = BLOCK + natten_part + textwrap.dedent("""
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as fcm:
            result = step(block, x)
        print(result)
        print(fcm.get_total_flops())
    """)
    plain = run_program(py017, reference, tmp_path)
    run = run_program(py017, program, tmp_path, lib=lib)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert run.returncode == 0, run.stderr[-3000:]
    result, fcm_total = plain.stdout.strip().splitlines()
    assert run.stdout.strip() == result  # same loss and gradients with the preload
    totals = run.dump["totals"]
    fwd, bwd = block_by_hand(B2, SPATIAL2, c)
    assert totals["other_flops"] == int(fcm_total) == fwd + bwd
    assert sum(op["flops"] for op in ops_by(run.dump, kind="aten", **{"pass": "forward"})) == fwd
    assert sum(op["flops"] for op in ops_by(run.dump, kind="aten", **{"pass": "backward"})) == bwd
    # NATTEN's rows: the rules (qk + av forward; backward twice the forward)
    rule = rule_fused(B2, SPATIAL2, HEADS2, DIM2, KERNEL2)
    natten_rows = [op for op in run.dump["ops"] if op["kind"] != "aten"]
    assert {op["kind"] for op in natten_rows} == {"qk", "av"}
    assert sum(op["flops"] for op in natten_rows if op["pass"] == "forward") == rule
    assert sum(op["flops"] for op in natten_rows if op["pass"] == "backward") == 2 * rule
    assert totals["natten_flops"] == 3 * rule
    assert totals["flops"] == fwd + bwd + 3 * rule


def test_block_natten021_forward_backward(py021, lib, tmp_path):
    c = HEADS2 * DIM2
    natten_part = """
import natten
torch.manual_seed(0)
block = Block(natten.NeighborhoodAttention2D(embed_dim=%d, num_heads=%d, kernel_size=%r), %d)
x = torch.randn(%d, *%r, %d)
""" % (c, HEADS2, KERNEL2, c, B2, SPATIAL2, c)
    program = BLOCK + natten_part + "print(step(block, x))\n"
    reference = BLOCK + natten_part + textwrap.dedent("""
        import natten.modules
        natten.modules.neighborhood_attention_generic = lambda q, k, v, **kw: q + k + v
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as fcm:
            step(block, x)
        print(fcm.get_total_flops())
    """)
    plain = run_program(py021, program, tmp_path)
    ref = run_program(py021, reference, tmp_path)
    run = run_program(py021, program, tmp_path, lib=lib)
    for r in (plain, ref, run):
        assert r.returncode == 0, r.stderr[-3000:]
    assert run.stdout == plain.stdout
    totals = run.dump["totals"]
    fwd, bwd = block_by_hand(B2, SPATIAL2, c)
    assert totals["other_flops"] == int(ref.stdout.strip()) == fwd + bwd
    rule = rule_fused(B2, SPATIAL2, HEADS2, DIM2, KERNEL2)
    natten_rows = [op for op in run.dump["ops"] if op["kind"] != "aten"]
    # Flex runs NATTEN's attention as eager aten ops on the CPU (bmm inside the forward
    # and inside its backward node): none of them may appear as aten rows.
    assert {(op["pass"], op["flops"]) for op in natten_rows} == {("forward", rule),
                                                                  ("backward", 2 * rule)}
    assert {op["op"] for op in ops_by(run.dump, kind="aten")} <= {"aten::addmm", "aten::mm"}
    assert totals["flops"] == fwd + bwd + 3 * rule


# ------------------------------------------------------------------ every formula

OPS_PROGRAM = """
import torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
def work():
    a, b = torch.randn(7, 5, requires_grad=True), torch.randn(5, 3, requires_grad=True)
    out = [a @ b, torch.addmm(torch.randn(3), a, b)]
    x, y = torch.randn(4, 6, 5, requires_grad=True), torch.randn(4, 5, 2)
    out += [torch.bmm(x, y), torch.baddbmm(torch.randn(4, 6, 2), x, y),
            torch.einsum("bij,bjk->bik", x, y), torch.matmul(x, y[0])]
    for conv, shape in ((nn.Conv1d(3, 4, 3, stride=2, padding=1), (2, 3, 11)),
                        (nn.Conv2d(4, 6, (3, 2), stride=(2, 1), dilation=(1, 2), groups=2),
                         (2, 4, 9, 8)),
                        (nn.Conv3d(2, 3, 2, padding=1, bias=False), (1, 2, 4, 5, 3)),
                        (nn.ConvTranspose2d(3, 5, 3, stride=2, padding=1, output_padding=1),
                         (2, 3, 5, 4))):
        out.append(conv(torch.randn(*shape)))
    q = torch.randn(2, 3, 6, 8, requires_grad=True)
    out.append(F.scaled_dot_product_attention(q, q, q))  # CPU flash: counted by neither
    lin = nn.Linear(5, 9)
    out.append(lin(torch.randn(3, 4, 5)))
    sum(o.float().square().sum() for o in out).backward()
    return sum(float(o.double().sum()) for o in out)
"""


def test_every_formula_matches_flopcountermode(py021, lib, tmp_path):
    """Op by op, the whole-model rows add up to FlopCounterMode's per-op totals on the
    same work, forward and backward (mm, addmm, bmm, baddbmm, convolution of 1, 2 and 3
    spatial dims, strided, dilated, grouped and transposed, convolution_backward)."""
    reference = OPS_PROGRAM + textwrap.dedent("""
        import json
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as fcm:
            work()
        print(json.dumps({str(k): v for k, v in fcm.get_flop_counts()["Global"].items()}))
    """)
    ref = run_program(py021, reference, tmp_path)
    assert ref.returncode == 0, ref.stderr[-3000:]
    expected = {k.replace("aten.", "aten::"): v for k, v in json.loads(ref.stdout).items()}
    run = run_program(py021, OPS_PROGRAM + "print(work())\n", tmp_path, lib=lib)
    assert run.returncode == 0, run.stderr[-3000:]
    got = {}
    for op in run.dump["ops"]:
        got[op["op"]] = got.get(op["op"], 0) + op["flops"]
    assert got == expected
    assert set(expected) >= {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm",
                             "aten::convolution", "aten::convolution_backward"}
    assert run.dump["totals"]["natten_flops"] == 0
    assert run.dump["totals"]["other_flops"] == run.dump["totals"]["flops"] == sum(expected.values())


# ------------------------------------------------------------------ switching it off

NA_PROGRAM = """
import torch, natten
torch.manual_seed(0)
m = natten.NeighborhoodAttention1D(embed_dim=16, num_heads=2, kernel_size=3)
y = m(torch.randn(2, 10, 16))
y.sum().backward()
print(float(y.sum()))
"""


def test_whole_model_off_counts_natten_only(py021, lib, tmp_path):
    run = run_program(py021, NA_PROGRAM, tmp_path, lib=lib, env={"NAFLOPS_WHOLE_MODEL": "0"})
    assert run.returncode == 0, run.stderr
    assert not ops_by(run.dump, kind="aten")
    t = run.dump["totals"]
    rule = rule_fused(2, (10,), 2, 8, (3,))
    assert t["flops"] == t["natten_flops"] == 3 * rule and t["other_flops"] == 0
    assert run.naflops_lines()[0].startswith("naflops: NATTEN FLOPs of pid")


def test_bad_whole_model_value_says_so_and_keeps_default(py021, lib, tmp_path):
    run = run_program(py021, NA_PROGRAM, tmp_path, lib=lib, env={"NAFLOPS_WHOLE_MODEL": "maybe"})
    assert run.returncode == 0
    assert ("naflops: NAFLOPS_WHOLE_MODEL='maybe' is not valid (allowed: 1, 0, true, false, "
            "yes, no, on, off); using 1") in run.stderr
    assert ops_by(run.dump, kind="aten")


def test_no_observer_for_this_torch_says_why_and_counts_natten(py021, lib, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(lib, alone / "libnaflops.so")  # no naflops-torch-*.so beside it
    cache = tmp_path / "cache"  # an empty observer cache
    run = run_program(py021, NA_PROGRAM, tmp_path, lib=str(alone / "libnaflops.so"),
                      env={"XDG_CACHE_HOME": str(cache)})
    plain = run_program(py021, NA_PROGRAM, tmp_path)
    assert run.returncode == 0 and run.stdout == plain.stdout
    lines = [l for l in run.naflops_lines() if "whole-model" in l]
    assert len(lines) == 1 and "no observer for torch 2.8.0" in lines[0]
    assert "(built there for: none)" in lines[0] and "counting NATTEN ops only" in lines[0]
    # the exact command that builds one where the library looks: this Python, the cache
    version = re.search(r"no observer for torch (\S+)", lines[0]).group(1)
    where = cache / "naflops" / "observers" / version
    assert f"build one with: scripts/build-observer {py021} {where} in a naflops checkout" in lines[0]
    assert not ops_by(run.dump, kind="aten")
    assert run.dump["totals"]["natten_flops"] == 3 * rule_fused(2, (10,), 2, 8, (3,))


def test_torch_program_without_natten_is_counted_and_unchanged(py021, lib, tmp_path):
    code = """
    import torch
    a = torch.ones(8, 4)
    print(float((a @ a.T).sum()))
    """
    plain = run_program(py021, code, tmp_path)
    run = run_program(py021, code, tmp_path, lib=lib)
    assert run.returncode == 0 and run.stdout == plain.stdout
    (op,) = run.dump["ops"]
    assert (op["op"], op["shape"], op["key_shape"], op["flops"]) == ("aten::mm", [8, 4], [4, 8],
                                                                    2 * 8 * 8 * 4)
    assert run.dump["natten_version"] is None


def test_torch_compile_counts_each_run_not_the_tracing(py021, lib, tmp_path):
    """Dynamo and Inductor trace with fake tensors (not counted); the compiled code runs
    its matmuls as aten::mm (extern kernels), counted once per call."""
    code = """
    import torch
    torch.manual_seed(0)
    @torch.compile
    def f(a, b, w):
        return torch.relu(a @ b) @ w
    a, b, w = torch.randn(64, 32), torch.randn(32, 48), torch.randn(48, 16)
    for _ in range(3):
        y = f(a, b, w)
    print(round(float(y.sum()), 3))
    """
    plain = run_program(py021, code, tmp_path)
    run = run_program(py021, code, tmp_path, lib=lib)
    assert run.returncode == 0 and run.stdout == plain.stdout, run.stderr[-3000:]
    rows = {(tuple(op["shape"]), tuple(op["key_shape"])): (op["calls"], op["flops_per_call"])
            for op in ops_by(run.dump, op="aten::mm")}
    assert rows == {((64, 32), (32, 48)): (3, 2 * 64 * 48 * 32),
                    ((64, 48), (48, 16)): (3, 2 * 64 * 16 * 48)}
    assert len(run.dump["ops"]) == 2
