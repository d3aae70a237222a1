"""What really ran under autograd's patterns, counted per pass, real torch and NATTEN:
activation checkpointing (reentrant, non-reentrant with early stop on and off) with
the recomputed forward in its own pass, backward through the log-sum-exp only, fake
and meta tensors (nothing ran), and a program that counts nothing.

Hand-worked numbers, with B=2, S=8 (N = 64 tokens), heads=2, D=16, C = heads * D:

    qkv Linear (C -> 3C):   2 * B*N * C * 3C = 786432 FLOPs forward
    proj Linear (C -> C):   2 * B*N * C * C  = 262144
    na2d, kernel 3x3:       4 * B * heads * N * 9 * D = 147456
    MLP Linears (C -> 4C, 4C -> C): 2 * B*N * C * 4C = 1048576 each
    backward = 2 x forward for each (two GEMMs per GEMM; the input needs a gradient)

Checkpointing re-runs the block's forward inside the backward: that is the recompute
pass, hardware work that the model FLOPs (forward + backward) leave out. With early
stop (non-reentrant's default), torch stops the recomputation as soon as the last
tensor the backward needs is saved again: an op after that point does not run and is
not counted (PyTorch's FlopCounterMode agrees: it sees no second proj matmul).
"""
import json

import pytest

from conftest import ops_by, run_program

QKV, PROJ, NA, FC = 786432, 262144, 147456, 1048576

CHECKPOINT = """\
import sys, torch, natten
import natten.functional as nf
from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop
torch.manual_seed(0)
HEADS, D, S, B = 2, 16, 8, 2
C = HEADS * D
qkv, proj = torch.nn.Linear(C, 3 * C), torch.nn.Linear(C, C)
MODE, LAYOUT = sys.argv[1], sys.argv[2]


def block(x):
    b, h, w, c = x.shape
    q, k, v = qkv(x).reshape(b, h, w, 3, HEADS, D).unbind(3)
    o = nf.na2d(q, k, v, kernel_size=3)
    return proj(o.reshape(b, h, w, c)) if LAYOUT == "linear-na-linear" else o


class Layer(torch.nn.Module):
    # An NA transformer layer (as in k-diffusion's HDiT): attention, then an MLP.

    def __init__(self):
        super().__init__()
        self.qkv, self.proj = torch.nn.Linear(C, 3 * C), torch.nn.Linear(C, C)
        self.fc1, self.fc2 = torch.nn.Linear(C, 4 * C), torch.nn.Linear(4 * C, C)

    def forward(self, x):
        b, h, w, c = x.shape
        q, k, v = self.qkv(x).reshape(b, h, w, 3, HEADS, D).unbind(3)
        x = x + self.proj(nf.na2d(q, k, v, kernel_size=3).reshape(b, h, w, c))
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(x)))


layers = [Layer(), Layer()]


def run(fn, x):
    if MODE == "reentrant":
        return checkpoint(fn, x, use_reentrant=True)
    with set_checkpoint_early_stop(MODE == "early-stop"):
        return checkpoint(fn, x, use_reentrant=False)


for step in range(2):
    x = torch.randn(B, S, S, C, requires_grad=True)
    if LAYOUT == "transformer":
        y = x
        for layer in layers:
            y = run(layer, y)
    else:
        y = run(block, x)
    if MODE == "reentrant":
        y.sum().backward()
    else:
        with set_checkpoint_early_stop(MODE == "early-stop"):
            y.sum().backward()
    print(f"{x.grad.double().sum().item():.6f}")
"""


@pytest.mark.parametrize("layout", ["linear-na-linear", "linear-na", "transformer"])
@pytest.mark.parametrize("mode", ["reentrant", "early-stop", "no-early-stop"])
def test_checkpoint(py021, lib, tmp_path, mode, layout):
    plain = run_program(py021, CHECKPOINT, tmp_path, args=(mode, layout))
    counted = run_program(py021, CHECKPOINT, tmp_path, lib=lib, args=(mode, layout))
    assert plain.returncode == counted.returncode == 0, counted.stderr
    assert counted.stdout == plain.stdout
    d = counted.dump
    steps, early = 2, mode == "early-stop"
    if layout == "transformer":  # two layers, each checkpointed
        forward = 2 * (QKV + NA + PROJ + 2 * FC)
        # early stop: fc2 saves the last tensor the backward needs, then stops
        recompute = 2 * (QKV + NA + PROJ + FC + (0 if early else FC))
    else:
        forward = QKV + NA + (PROJ if layout == "linear-na-linear" else 0)
        # early stop: proj, after the last saved tensor, is not run again
        recompute = QKV + NA + (PROJ if layout == "linear-na-linear" and not early else 0)
    layers = 2 if layout == "transformer" else 1
    t = d["totals"]
    assert int(t["forward_flops"]) == steps * forward
    assert int(t["backward_flops"]) == steps * 2 * forward
    assert int(t["recompute_flops"]) == steps * recompute
    assert int(t["model_flops"]) == steps * 3 * forward
    assert int(t["flops"]) == steps * (3 * forward + recompute)
    na = {o["pass"]: o["calls"] for o in ops_by(d, op="na2d")}
    assert na == {"forward": steps * layers, "backward": steps * layers,
                  "recompute": steps * layers}
    assert "recompute" in counted.stderr and "model" in counted.stderr


LSE = """\
import torch, natten
import natten.functional as nf
torch.manual_seed(0)
q, k, v = (torch.randn(2, 8, 8, 2, 16, requires_grad=True) for _ in range(3))
ak, av = (torch.randn(2, 5, 2, 16, requires_grad=True) for _ in range(2))
o, lse = nf.na2d(q, k, v, kernel_size=3, return_lse=True)
lse.sum().backward()                                   # only the LSE
o, lse = nf.na2d(q, k, v, kernel_size=3, return_lse=True)
(o.sum() + lse.sum()).backward()                       # both: one backward pass
o, lse = nf.na2d(q, k, v, kernel_size=3, additional_keys=ak, additional_values=av,
                 return_lse=True)
lse.sum().backward()                                   # LSE only, with extra KV
print(f"{q.grad.double().sum().item():.6f}")
"""


def test_backward_through_lse_only(py021, lib, tmp_path):
    plain = run_program(py021, LSE, tmp_path)
    counted = run_program(py021, LSE, tmp_path, lib=lib, env={"NAFLOPS_WHOLE_MODEL": "0"})
    assert counted.stdout == plain.stdout and counted.returncode == 0, counted.stderr
    rows = {(o["pass"], o["additional_kv"]): o["calls"] for o in counted.dump["ops"]}
    assert rows == {("forward", 0): 2, ("backward", 0): 2, ("forward", 5): 1, ("backward", 5): 1}
    extra = [o for o in counted.dump["ops"] if o["additional_kv"] == 5 and o["pass"] == "backward"]
    assert int(extra[0]["flops"]) == 2 * 4 * 2 * 2 * 64 * (9 + 5) * 16


FAKE017 = """\
import torch, natten
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode
# NATTEN 0.17's own FLOP-counting recipe: its experimental ops under FakeTensorMode
with FakeTensorMode():
    q = torch.randn(2, 8, 8, 2, 16)
    with FlopCounterMode(display=False) as fc:
        natten.experimental.na2d(q, q, q, kernel_size=3)
m = torch.randn(2, 8, 8, 2, 16, device="meta")
natten.experimental.na2d(m, m, m, kernel_size=3)
print(fc.get_total_flops())
"""


def test_fake_and_meta_tensors_count_nothing(py017, lib, tmp_path):
    plain = run_program(py017, FAKE017, tmp_path)
    counted = run_program(py017, FAKE017, tmp_path, lib=lib)
    assert plain.returncode == counted.returncode == 0, counted.stderr
    assert counted.stdout == plain.stdout
    assert counted.dump["ops"] == []
    assert counted.dump["natten_version"] == "0.17.4"


NOTHING = """\
import torch, natten, natten.functional
print(torch.ones(2).sum().item())
"""


@pytest.mark.parametrize("whole_model", ["0", "1"])
def test_a_program_that_counts_nothing_leaves_a_dump(py021, lib, tmp_path, whole_model):
    """Every rank of a job leaves its file (naflops merge needs them all), with the
    NATTEN version it imported; no summary on stderr (nothing to show)."""
    r = run_program(py021, NOTHING, tmp_path, lib=lib, env={"NAFLOPS_WHOLE_MODEL": whole_model})
    assert r.returncode == 0 and r.naflops_lines() == [], r.stderr
    d = r.dump
    assert d["schema"] == "naflops/4" and d["ops"] == [] and d["natten_version"] == "0.21.7"
    assert int(d["totals"]["flops"]) == 0 and d["totals"]["uncounted_calls"] == 0


PATTERNS017 = """\
import torch, natten, warnings
import torch.autograd.forward_ad as fwAD
import natten.functional as F
warnings.simplefilter("ignore")
torch.manual_seed(0)
H, D = 2, 8
# nested: three batches of their own shapes in one call, with nested extra KV
shapes = [(6, 5), (8, 7), (5, 5)]
nt = lambda make: torch.nested.nested_tensor([make(s) for s in shapes])
q = nt(lambda s: torch.randn(1, H, *s, D))
k = nt(lambda s: torch.randn(1, H, *s, D))
ak = nt(lambda s: torch.randn(1, H, 4, D))
av = nt(lambda s: torch.randn(1, H, 4, D))
a = F.na2d_qk(q, k, 3, additional_keys=ak)
a = torch.nested.nested_tensor([x.softmax(-1) for x in a])
o = F.na2d_av(a, k, 3, additional_values=av)
print([round(x.double().sum().item(), 4) for x in o])
# forward-mode AD: NATTEN's jvp runs the QK GEMM twice (tangent x primal, primal x tangent)
q2, k2 = torch.randn(2, H, 8, 8, D), torch.randn(2, H, 8, 8, D)
with fwAD.dual_level():
    t = fwAD.unpack_dual(F.na2d_qk(fwAD.make_dual(q2, torch.randn_like(q2)), k2, 3)).tangent
print(round(t.double().sum().item(), 4))
# deprecated names, counted as called; the 3-D ones take (kernel_size_d, kernel_size)
q3 = torch.randn(2, H, 6, 5, 6, D)
a3 = F.natten3dqkrpb(q3, q3, None, 3, 5, 1, 1)
o3 = F.natten3dav(a3.softmax(-1), q3, 3, 5, 1, 1)
a2 = F.natten2dqkrpb(q2, k2, None, 3, 1)
print(round(o3.double().sum().item(), 4), round(a2.double().sum().item(), 4))
"""


def test_nested_jvp_and_deprecated_names(py017, lib, tmp_path):
    plain = run_program(py017, PATTERNS017, tmp_path)
    counted = run_program(py017, PATTERNS017, tmp_path, lib=lib, env={"NAFLOPS_WHOLE_MODEL": "0"})
    assert plain.returncode == counted.returncode == 0, counted.stderr
    assert counted.stdout == plain.stdout
    rows = {(o["op"], o["pass"], tuple(o["shape"])): (o["calls"], int(o["flops"]))
            for o in counted.dump["ops"]}
    nested = {}
    for s in [(6, 5), (8, 7), (5, 5)]:
        f = 2 * 1 * 2 * s[0] * s[1] * (9 + 4) * 8  # 3x3 window plus 4 extra tokens
        nested[("na2d_qk", "forward", (1, 2, *s, 8))] = (1, f)
        nested[("na2d_av", "forward", (1, 2, *s, 13))] = (1, f)
    qk = 2 * 2 * 2 * 64 * 9 * 8
    vol3 = 2 * 2 * 2 * 180 * (3 * 5 * 5) * 8
    expected = {**nested,
                ("na2d_qk", "forward", (2, 2, 8, 8, 8)): (1, qk),
                ("na2d_qk", "jvp", (2, 2, 8, 8, 8)): (1, 2 * qk),
                ("natten3dqkrpb", "forward", (2, 2, 6, 5, 6, 8)): (1, vol3),
                ("natten3dav", "forward", (2, 2, 6, 5, 6, 75)): (1, vol3),
                ("natten2dqkrpb", "forward", (2, 2, 8, 8, 8)): (1, qk)}
    assert rows == expected
    assert counted.dump["totals"]["jvp_flops"] == 2 * qk
    k3 = [o["kernel_size"] for o in counted.dump["ops"] if o["op"] == "natten3dqkrpb"]
    assert k3 == [[3, 5, 5]]
