"""The whole model compiled: each op counted once, in its own pass (torch 2.8, NATTEN
0.21.7's Flex backend on the CPU).

An NA transformer (two blocks: qkv, na2d, proj, a two-layer MLP), two training steps,
with and without activation checkpointing (non-reentrant), run eagerly and compiled
(`aot_eager` and `eager` backends, static and `dynamic=True`). Flex breaks the graph
inside NATTEN on the CPU, so the NATTEN call runs as eager code between compiled
graphs; the dense attention Flex computes inside it (`aten::bmm`) belongs to that
call, never to the other ops. Every compiled dump must hold the same rows as the
eager one (op, pass, shapes, calls), and the totals must equal the hand-worked ones.
"""
import pytest

from conftest import run_both, run_program

B, S, C, HEADS = 2, 8, 32, 2
D = C // HEADS
STEPS = 2

PROGRAM = """\
import sys, torch, natten
from torch.utils.checkpoint import checkpoint

torch.manual_seed(0)
torch.set_num_threads(1)
backend, dynamic, ckpt = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
B, S, C, H = {B}, {S}, {C}, {HEADS}


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Linear(C, 3 * C)
        self.proj = torch.nn.Linear(C, C)
        self.fc1 = torch.nn.Linear(C, 2 * C)
        self.fc2 = torch.nn.Linear(2 * C, C)

    def inner(self, x):
        b, h, w, c = x.shape
        q, k, v = self.qkv(x).reshape(b, h, w, 3, H, c // H).unbind(3)
        x = x + self.proj(natten.na2d(q, k, v, kernel_size=3).reshape(b, h, w, c))
        return x + self.fc2(torch.relu(self.fc1(x)))

    def forward(self, x):
        return checkpoint(self.inner, x, use_reentrant=False) if ckpt else self.inner(x)


net = torch.nn.Sequential(Block(), Block())
model = net if backend == "none" else torch.compile(net, backend=backend, dynamic=dynamic)
for _ in range({STEPS}):
    model(torch.randn(B, S, S, C)).square().mean().backward()
print(round(sum(p.grad.double().sum().item() for p in net.parameters()), 6))
"""


def linear(m, k, n):
    return 2 * m * k * n


def hand_counts(ckpt):
    """Forward, backward and recompute FLOPs of the whole run, worked out by hand."""
    m = B * S * S
    layers = [(C, 3 * C), (C, C), (C, 2 * C), (2 * C, C)]  # qkv, proj, fc1, fc2
    na = 4 * B * HEADS * S * S * 9 * D
    block = sum(linear(m, k, n) for k, n in layers) + na
    forward = 2 * block
    # Backward: grad of weight and of input for every Linear, except the input grad of
    # the first block's qkv (the model's input needs none); NATTEN's 2x forward.
    backward = 2 * (2 * sum(linear(m, k, n) for k, n in layers) + 2 * na) - linear(m, C, 3 * C)
    # Non-reentrant checkpointing stops recomputing once every saved tensor the
    # backward needs is back: fc2's own output is not one, so fc2 is not recomputed.
    recompute = 2 * (block - linear(m, 2 * C, C)) if ckpt else 0
    return STEPS * forward, STEPS * backward, STEPS * recompute


def rows(dump):
    return sorted((o["op"], o["pass"], str(o["shape"]), str(o.get("key_shape")), o["calls"])
                  for o in dump["ops"])


@pytest.mark.parametrize("ckpt", [False, True])
def test_compiled_equals_eager(py021, lib, tmp_path, ckpt):
    code = PROGRAM.format(B=B, S=S, C=C, HEADS=HEADS, STEPS=STEPS)
    runs = {}
    modes = [("none", "0"), ("aot_eager", "0"), ("eager", "0")] + ([("aot_eager", "1")] if not ckpt else [])
    for backend, dynamic in modes:
        d = tmp_path / ("%s-%s" % (backend, dynamic))
        d.mkdir()
        run = run_program(py021, code, d, lib=lib, args=(backend, dynamic, "1" if ckpt else "0"))
        assert run.returncode == 0, run.stderr[-3000:]
        runs[(backend, dynamic)] = run
    eager = runs[("none", "0")].dump
    forward, backward, recompute = hand_counts(ckpt)
    for mode, run in runs.items():
        dump = run.dump
        t = dump["totals"]
        assert (int(t["forward_flops"]), int(t["backward_flops"]), int(t["recompute_flops"])) == \
            (forward, backward, recompute), mode
        assert int(t["model_flops"]) == forward + backward
        assert not [o for o in dump["ops"] if o["op"] == "aten::bmm"], mode
        assert rows(dump) == rows(eager), mode
        assert run.stdout == runs[("none", "0")].stdout  # the same gradients


STANDIN = str(__import__("pathlib").Path(__file__).resolve().parent / "natten_standin")

CHECKPOINTED = """\
import sys, torch, natten
import natten.functional as nf
from torch.utils.checkpoint import checkpoint
torch.manual_seed(0)
lin = torch.nn.Linear(32, 96)


def inner(x):
    b, h, w, c = x.shape
    q, k, v = lin(x).reshape(b, h, w, 3, 2, 16).unbind(3)
    return nf.na2d(q, k, v, kernel_size=3)


def f(x):
    return checkpoint(inner, x, use_reentrant=False).sum()


cf = torch.compile(f, backend="aot_eager", fullgraph=True, dynamic=sys.argv[1] == "1")
for _ in range(2):
    cf(torch.randn(2, 8, 8, 32)).backward()
print(round(lin.weight.grad.double().sum().item(), 4))
"""


@pytest.mark.parametrize("dynamic", ["0", "1"])
def test_checkpointed_natten_op_compiled(py021, lib, tmp_path, dynamic):
    """Activation checkpointing inside a fullgraph compile around NATTEN's dispatcher
    op (the stand-in's natten::na2d_forward): the counter's calls inside the
    checkpoint's subgraph never reach the root graph with the subgraph's values (the
    compile fails plain's way or not at all), and NATTEN's forward, recompute and
    backward are counted exactly at the dispatcher."""
    code = CHECKPOINTED.replace('sys.argv[1] == "1"', repr(dynamic == "1"))
    pre = run_both(py021, code, tmp_path, lib, PYTHONPATH=STANDIN, NAFLOPS_WHOLE_MODEL="1")
    na = 4 * 2 * 2 * 64 * 9 * 16
    natten = {(o["pass"], o["calls"], int(o["flops"])) for o in pre.dump["ops"] if o["op"] == "na2d"}
    assert natten == {("forward", 2, 2 * na), ("recompute", 2, 2 * na), ("backward", 2, 4 * na)}
