"""Recomputed forward work inside a compiled backward is `recompute` (issue 21).

With activation checkpointing inside a region AOTAutograd compiles whole, the
partitioner puts the checkpointed forward ops into the compiled backward graph, where
they run like the backward's own ops. The counter reads each compiled backward's graph
once (its partitioner tags; where they were cleared, what does not depend on the
incoming gradients) and counts those ops as recompute, so forward, backward, recompute
and model FLOPs equal eager checkpointing's and the hand-worked figures, on torch 2.6,
2.8 and 2.15, with `aot_eager` and `inductor`, static and dynamic shapes.
"""
import pytest

from conftest import run_program
from test_compiled_whole_model import PROGRAM as NA_PROGRAM, hand_counts, B, S, C, HEADS, STEPS

STANDIN = str(__import__("pathlib").Path(__file__).resolve().parent / "natten_standin")

# Two blocks (a Linear "attention" with two bmm, a ReLU MLP), each checkpointed
# (non-reentrant), two training steps; no NATTEN, so it runs on every torch here.
MLP = """\
import sys, torch
from torch.utils.checkpoint import checkpoint
torch.manual_seed(0)
torch.set_num_threads(1)
backend, dynamic, ckpt = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
C = 32


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = torch.nn.Linear(C, C)
        self.fc1 = torch.nn.Linear(C, 2 * C)
        self.fc2 = torch.nn.Linear(2 * C, C)

    def inner(self, x):
        a = torch.softmax(self.attn(x) @ x.transpose(-1, -2), -1) @ x
        return x + self.fc2(torch.relu(self.fc1(a)))

    def forward(self, x):
        return checkpoint(self.inner, x, use_reentrant=False) if ckpt else self.inner(x)


net = torch.nn.Sequential(Block(), Block())
model = net if backend == "none" else torch.compile(net, backend=backend, dynamic=dynamic, fullgraph=True)
for _ in range(2):
    model(torch.randn(2, 16, C)).square().mean().backward()
print(round(sum(p.grad.double().sum().item() for p in net.parameters()), 4))
"""


def mlp_hand_counts():
    """Forward, backward, recompute FLOPs of MLP's two checkpointed steps, by hand.
    Per block (x: 2 x 16 x 32): attn 2*32*32*32, x@x^T-like bmm 2*2*16*32*16 twice,
    fc1 and fc2 2*32*32*64 each. Backward: twice each op, except what only the model's
    input would need (the first block's attn input grad, both bmm's grads for x).
    Non-reentrant checkpointing, eager or compiled, does not re-run fc2 (nothing
    saved its output)."""
    attn, bmm, fc = 2 * 32 * 32 * 32, 2 * 2 * 16 * 32 * 16, 2 * 32 * 32 * 64
    block = attn + 2 * bmm + 2 * fc
    forward = 2 * block
    first = attn + 2 * bmm + 2 * 2 * fc  # attn: weight grad only; each bmm: one grad
    backward = first + 2 * block
    recompute = 2 * (attn + 2 * bmm + fc)
    return STEPS * forward, STEPS * backward, STEPS * recompute


def passes(dump):
    t = dump["totals"]
    return int(t["forward_flops"]), int(t["backward_flops"]), int(t["recompute_flops"])


def rows(dump):
    """Per op, pass and shapes: calls (modules apart: a compiled region's backward
    rows carry the region's module)."""
    out = {}
    for o in dump["ops"]:
        k = (o["op"], o["pass"], str(o["shape"]), str(o.get("key_shape")))
        out[k] = out.get(k, 0) + o["calls"]
    return out


def run_mode(py, code, tmp_path, lib, mode, env=None):
    backend, dynamic, ckpt = mode
    d = tmp_path / ("%s-%s-%s" % mode)
    d.mkdir()
    e = {"NAFLOPS_SUMMARY": "never", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor-cache")}
    e.update(env or {})
    run = run_program(py, code, d, lib=lib, env=e, args=(backend, dynamic, ckpt))
    assert run.returncode == 0, run.stderr[-3000:]
    return run


MLP_MODES = [("aot_eager", "0", "1"), ("aot_eager", "1", "1"), ("inductor", "0", "1")]


@pytest.mark.parametrize("torch_env", ["py017", "py021", "pynew"])
def test_mlp_checkpointed_compiled(torch_env, request, lib, tmp_path):
    """torch 2.6, 2.8, 2.15: compiled checkpointed blocks count as eager's do."""
    py = request.getfixturevalue(torch_env)
    eager = run_mode(py, MLP, tmp_path, lib, ("none", "0", "1"))
    forward, backward, recompute = mlp_hand_counts()
    assert passes(eager.dump) == (forward, backward, recompute)
    for mode in MLP_MODES:
        run = run_mode(py, MLP, tmp_path, lib, mode)
        assert passes(run.dump) == (forward, backward, recompute), mode
        assert int(run.dump["totals"]["model_flops"]) == forward + backward
        assert rows(run.dump) == rows(eager.dump), mode
        assert run.stdout == eager.stdout  # the same gradients


def test_mlp_checkpointed_compiled_new_pythons(pyhook, lib, tmp_path):
    """CPython 3.12 (the frame's locals as a dict) and 3.13 (as a FrameLocalsProxy):
    the compiled backward's graph is reached the same way."""
    forward, backward, recompute = mlp_hand_counts()
    run = run_mode(pyhook, MLP, tmp_path, lib, ("aot_eager", "0", "1"))
    assert passes(run.dump) == (forward, backward, recompute)


def test_mlp_not_checkpointed_has_no_recompute(py021, lib, tmp_path):
    """Without checkpointing the partitioner recomputes no matmul: nothing moves."""
    forward, backward, _ = mlp_hand_counts()
    for mode in [("none", "0", "0"), ("aot_eager", "0", "0"), ("inductor", "0", "0")]:
        run = run_mode(py021, MLP, tmp_path, lib, mode)
        assert passes(run.dump) == (forward, backward, 0), mode


def test_inductor_cache_hit(pynew, lib, tmp_path):
    """The same program run again with Inductor on torch 2.15: AOTAutograd loads the
    compiled backward from its cache, with its graph only as generated code (node
    metadata cleared); read as text, it gives the same plan."""
    counts = mlp_hand_counts()
    cold = run_mode(pynew, MLP, tmp_path, lib, ("inductor", "0", "1"))
    (tmp_path / "again").mkdir()
    warm = run_mode(pynew, MLP, tmp_path / "again", lib, ("inductor", "0", "1"),
                    env={"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor-cache")})
    assert "AOTAutogradCache" not in warm.stderr
    assert passes(cold.dump) == counts
    assert passes(warm.dump) == counts
    assert rows(warm.dump) == rows(cold.dump)


@pytest.mark.parametrize("dynamic", ["0", "1"])
def test_na_transformer_checkpointed_fullgraph(py021, lib, tmp_path, dynamic):
    """An NA transformer whose checkpointed blocks compile whole (the stand-in's
    natten:: dispatcher ops, as on a GPU; fullgraph), two training steps: forward,
    backward, recompute and model FLOPs equal the hand-worked ones and eager
    checkpointing's, row for row."""
    code = NA_PROGRAM.format(B=B, S=S, C=C, HEADS=HEADS, STEPS=STEPS).replace(
        "import sys, torch, natten", "import sys, torch\nimport natten.functional as natten").replace(
        "backend=backend, dynamic=dynamic)", "backend=backend, dynamic=dynamic, fullgraph=True)")
    env = {"PYTHONPATH": STANDIN}
    eager = run_mode(py021, code, tmp_path, lib, ("none", "0", "1"), env)
    run = run_mode(py021, code, tmp_path, lib, ("aot_eager", dynamic, "1"), env)
    forward, backward, recompute = hand_counts(True)
    for dump in (eager.dump, run.dump):
        assert passes(dump) == (forward, backward, recompute)
        assert int(dump["totals"]["model_flops"]) == forward + backward
    assert rows(run.dump) == rows(eager.dump)
    assert run.stdout == eager.stdout
