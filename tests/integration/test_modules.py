"""Module attribution: every row of the dump carries the nn.Module that ran it, named
as FlopCounterMode names it (the outermost module's class, then its named_modules()
path). Checked against FlopCounterMode's get_flop_counts() module by module (run in a
process of its own without the preload, same model, same seed), against NATTEN's
rule worked out by hand, and plain against preloaded.

Our rows hold each module's own work; a module's count is the sum over it and its
submodules, as FlopCounterMode reports it (inclusive)."""
import json
import math
import textwrap
from collections import defaultdict

import pytest

from conftest import run_program


def inclusive(dump, passes=None, natten=None):
    """{module name: {op: FLOPs}} summed over each module and its ancestors, FCM-style,
    plus "Global" for everything (outside modules included)."""
    out = defaultdict(lambda: defaultdict(int))
    for row in dump["ops"]:
        if passes is not None and row["pass"] not in passes:
            continue
        if natten is not None and (row["kind"] != "aten") != natten:
            continue
        op = row["op"].replace("::", ".")
        out["Global"][op] += row["flops"]
        name = row["module"]
        if name is None:
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            out[".".join(parts[:i])][op] += row["flops"]
    return {k: dict(v) for k, v in out.items()}


def fcm_counts(python, code, tmp_path):
    """Runs code (which leaves its FlopCounterMode in `fcm`) without the preload; the
    counts by module and op, op names as "aten.mm"."""
    code = code + textwrap.dedent("""
        import json
        print(json.dumps({m: {str(op).replace(".default", ""): n for op, n in ops.items()}
                          for m, ops in fcm.get_flop_counts().items()}))
    """)
    (tmp_path / "fcm").mkdir()
    run = run_program(python, code, tmp_path / "fcm")
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


# A model FlopCounterMode sees all of: convolution, LayerNorm, Linear layers, dense
# attention by matmuls, a ModuleList, a module used twice (shared), a functional
# matmul in a parent's own forward, and work outside any module.
DENSE = """
import torch
from torch import nn
torch.manual_seed(0)
torch.set_num_threads(1)

class Attention(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-1, -2)).softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, c))

class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = nn.LayerNorm(c)
        self.attn = Attention(c, 2)
        self.mlp = nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c))
    def forward(self, x):
        x = x + self.attn(self.norm(x))
        return x + self.mlp(x)

class Net(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 2, stride=2)
        self.blocks = nn.ModuleList([Block(c) for _ in range(2)])
        self.head = nn.Linear(c, 5)
        self.mix = torch.randn(c, c)
    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        for b in self.blocks:
            x = b(x)
        x = x @ self.mix          # the parent's own work
        x = self.head(x)          # head runs twice: a module called twice
        return self.head.weight.sum() + x.mean()

model = Net()
x = torch.randn(2, 3, 8, 8)
"""


def test_dense_model_matches_flopcountermode_per_module(py021, lib, tmp_path):
    step = DENSE + "loss = model(x)\nloss.backward()\nextra = torch.randn(3, 4) @ torch.randn(4, 5)\n"
    ref = fcm_counts(py021, DENSE + textwrap.dedent("""
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as fcm:
            model(x).backward()
            extra = torch.randn(3, 4) @ torch.randn(4, 5)
    """), tmp_path)
    run = run_program(py021, step, tmp_path, lib=lib, env={"NAFLOPS_SUMMARY": "never"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.dump["schema"] == "naflops/4"
    ours = inclusive(run.dump)
    assert set(ref) - {"Global"} == set(ours) - {"Global", "Net.blocks"}  # the ModuleList is never called
    assert ours["Global"] == ref["Global"]
    # Every module below the outermost one, forward and backward, op by op. The
    # outermost module's own entry in FlopCounterMode misses most of the backward
    # pass (its ModuleTracker leaves a module's backward by hooks on the module's
    # inputs and outputs, and the image needs no gradient): ours holds everything
    # under it, which is FlopCounterMode's Global less the work outside the model.
    for name, ops in ref.items():
        if name not in ("Global", "Net"):
            assert ours[name] == ops, name
    outside_mm = 2 * 3 * 4 * 5
    assert ours["Net"] == {**ref["Global"], "aten.mm": ref["Global"]["aten.mm"] - outside_mm}
    # by hand, two of them: the parent's own x @ mix (2x16x16 @ 16x16), forward and
    # the gradient for x (mix needs none); outside any module: the 3x4 @ 4x5 product
    own = [r for r in run.dump["ops"] if r["module"] == "Net"]
    assert sorted((r["pass"], r["flops"]) for r in own) == [("backward", 2 * 32 * 16 * 16),
                                                           ("forward", 2 * 32 * 16 * 16)]
    outside = [r for r in run.dump["ops"] if r["module"] is None]
    assert [(r["op"], r["flops"]) for r in outside] == [("aten::mm", 2 * 3 * 4 * 5)]


def test_summary_has_module_block(py021, lib, tmp_path):
    run = run_program(py021, DENSE + "model(x).backward()\n", tmp_path, lib=lib,
                      env={"NAFLOPS_UNITS": "exact"})
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [l for l in run.stderr.splitlines() if l.startswith("naflops: ")]
    at = next(i for i, l in enumerate(lines) if "module (submodules included)" in l)
    block = [l.split() for l in lines[at + 1:]]
    ours = inclusive(run.dump)
    total = sum(ours["Global"].values())
    assert block[0][1:4] == ["Net", str(total), "100.0%"]
    shown = {b[1]: int(b[2]) for b in block if len(b) >= 4 and b[1].startswith("Net")}
    for name, flops in shown.items():
        assert flops == sum(ours[name].values()), name
    assert "Net.blocks.0" in shown and "Net.blocks.1.attn" not in shown  # two levels below the root
    # the per-op table shows each signature once, whichever modules ran it
    table = lines[1:at]
    qkv = [l for l in table if l.split()[1:3] == ["aten::addmm", "forward"] and "32x16, 16x48" in l]
    assert len(qkv) == 1 and qkv[0].split()[-2:] == ["2", str(2 * 2 * 32 * 16 * 48)]  # two blocks' qkv


def test_modules_off_and_bad_value(py021, lib, tmp_path):
    (tmp_path / "off").mkdir()
    off = run_program(py021, DENSE + "model(x).backward()\n", tmp_path / "off", lib=lib,
                      env={"NAFLOPS_MODULES": "0", "NAFLOPS_SUMMARY": "never"})
    assert off.returncode == 0 and off.stderr == ""
    assert {r["module"] for r in off.dump["ops"]} == {None}
    (tmp_path / "bad").mkdir()
    bad = run_program(py021, "pass\n", tmp_path / "bad", lib=lib, env={"NAFLOPS_MODULES": "maybe"})
    assert bad.returncode == 0
    assert bad.stderr.count("NAFLOPS_MODULES") == 1 and "maybe" in bad.stderr


# ------------------------------------------------------------------ NATTEN 0.17

NA017 = """
import os
os.environ["NATTEN_LOG_LEVEL"] = "CRITICAL"
import natten, torch
from torch import nn
torch.manual_seed(0)

class Block(nn.Module):
    def __init__(self, c, experimental=False):
        super().__init__()
        self.norm = nn.LayerNorm(c)
        self.attn = natten.NeighborhoodAttention2D(dim=c, num_heads=2, kernel_size=3,
                                                   use_experimental_ops=experimental)
        self.mlp = nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c))
    def forward(self, x):
        x = x + self.attn(self.norm(x))
        return x + self.mlp(x)

class NAT(nn.Module):
    def __init__(self, c=32, experimental=False):
        super().__init__()
        self.levels = nn.Sequential(Block(c, experimental), Block(c, experimental))
        self.head = nn.Linear(c, 10)
    def forward(self, x):
        return self.head(self.levels(x))
"""


def test_natten017_per_module_matches_flopcountermode_and_rule(py017, lib, tmp_path):
    """FlopCounterMode counts NATTEN 0.17 through its experimental fused ops (no CPU
    kernels: under FakeTensorMode, shapes only); the preloaded program runs the same
    model for real on libnatten's unfused CPU kernels, forward only (FlopCounterMode
    has no backward rule for NATTEN's ops)."""
    ref = fcm_counts(py017, NA017 + textwrap.dedent("""
        from torch.utils.flop_counter import FlopCounterMode
        from torch._subclasses.fake_tensor import FakeTensorMode
        natten.use_fused_na(True)
        with FakeTensorMode():
            model = NAT(experimental=True)
            x = torch.randn(2, 6, 6, 32)
            with FlopCounterMode(display=False) as fcm:
                model(x)
    """), tmp_path)
    run = run_program(py017, NA017 + textwrap.dedent("""
        natten.use_fused_na(False)
        model = NAT()
        with torch.no_grad():
            print(float(model(torch.randn(2, 6, 6, 32)).sum()))
    """), tmp_path, lib=lib, env={"NAFLOPS_SUMMARY": "never"})
    assert run.returncode == 0, run.stderr[-3000:]
    ours = inclusive(run.dump)
    for name, ops in ref.items():
        mine = defaultdict(int)  # QK and AV (unfused) against the fused op's one count
        for op, n in ours[name].items():
            mine["natten.na2d_forward_op" if op.startswith("na2d") else op] += n
        assert mine == ops, name
    # NATTEN's rule by hand: QK and AV, 2 * tokens * heads * window * head_dim each
    rule = 2 * 2 * (2 * 36) * 2 * 9 * 16
    linear_attn = 2 * 72 * 32 * 96 + 2 * 72 * 32 * 32
    for i in range(2):
        attn = ours[f"NAT.levels.{i}.attn"]
        natten_flops = sum(n for op, n in attn.items() if not op.startswith("aten"))
        assert natten_flops == rule
        assert sum(attn.values()) == rule + linear_attn
        block = ours[f"NAT.levels.{i}"]
        mlp = 2 * (2 * 72 * 32 * 64)
        assert sum(block.values()) == rule + linear_attn + mlp
    rows = [r for r in run.dump["ops"] if r["kind"] != "aten"]
    assert {r["module"] for r in rows} == {"NAT.levels.0.attn", "NAT.levels.1.attn"}


# ------------------------------------------------------------------ NATTEN 0.21

NA021 = """
import natten, torch
from torch import nn
torch.manual_seed(0)
torch.set_num_threads(1)

class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = nn.LayerNorm(c)
        self.attn = natten.NeighborhoodAttention2D(embed_dim=c, num_heads=2, kernel_size=3)
        self.mlp = nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c))
    def forward(self, x):
        x = x + self.attn(self.norm(x))
        return x + self.mlp(x)

class NAT(nn.Module):
    def __init__(self, c=64):
        super().__init__()
        self.levels = nn.Sequential(Block(c), Block(c))
        self.head = nn.Linear(c, 10)
    def forward(self, x):
        return self.head(self.levels(x))

model = NAT()
x = torch.randn(1, 8, 8, 64)
"""
# NATTEN's rule for one call (2 * tokens * heads * window * head_dim, QK and AV)
RULE021 = 2 * 2 * 64 * 2 * 9 * 32


def natten_by_module(dump, passes):
    out = defaultdict(int)
    for r in dump["ops"]:
        if r["kind"] != "aten" and r["pass"] in passes:
            out[r["module"]] += r["flops"]
    return dict(out)


@pytest.mark.parametrize("mode", ["eager", "checkpoint", "checkpoint-reentrant"])
def test_natten021_training_per_module(mode, py021, lib, tmp_path):
    """Two training steps, eager and with each block checkpointed: NATTEN's rows in
    their attention modules, forward, backward (twice the forward) and recompute;
    the recomputed aten ops in the checkpointed blocks' own modules."""
    wrap = {"eager": "", "checkpoint": "use_reentrant=False", "checkpoint-reentrant": "use_reentrant=True"}[mode]
    code = NA021 + textwrap.dedent(f"""
        from torch.utils.checkpoint import checkpoint
        if {bool(wrap)!r}:
            for b in model.levels:
                b.forward = (lambda f: lambda x: checkpoint(f, x, {wrap}))(b.forward)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(2):
            model(x.requires_grad_()).sum().backward()
            opt.step()
            opt.zero_grad()
        print("ok")
    """)
    run = run_program(py021, code, tmp_path, lib=lib, env={"NAFLOPS_SUMMARY": "never"})
    assert run.returncode == 0 and run.stdout == "ok\n", run.stderr[-3000:]
    attn = {f"NAT.levels.{i}.attn" for i in range(2)}
    assert natten_by_module(run.dump, {"forward"}) == {a: 2 * RULE021 for a in attn}
    assert natten_by_module(run.dump, {"backward"}) == {a: 2 * 2 * RULE021 for a in attn}
    recompute = natten_by_module(run.dump, {"recompute"})
    assert recompute == ({a: 2 * RULE021 for a in attn} if wrap else {})
    # every aten row in a block's module tree; the recomputed ones too
    fwd = inclusive(run.dump, passes={"forward"}, natten=False)
    re = inclusive(run.dump, passes={"recompute"}, natten=False)
    bwd = inclusive(run.dump, passes={"backward"}, natten=False)
    linear = 2 * 64 * 64 * (3 * 64 + 64 + 2 * 128)  # qkv, proj, mlp (two Linear)
    # Non-reentrant checkpointing stops recomputing once the backward has every saved
    # tensor it needs: the block's last Linear (mlp.2), whose output nothing saved,
    # is not run again; reentrant checkpointing re-runs the whole block.
    last = 2 * 64 * 128 * 64
    again = {"": 0, "use_reentrant=True": linear, "use_reentrant=False": linear - last}[wrap]
    for i in range(2):
        assert sum(fwd[f"NAT.levels.{i}"].values()) == 2 * linear
        if wrap:
            assert sum(re[f"NAT.levels.{i}"].values()) == 2 * again
            assert {k for k in re if k.startswith(f"NAT.levels.{i}.")} == (
                {f"NAT.levels.{i}.{m}" for m in ("attn", "attn.qkv", "attn.proj", "mlp", "mlp.0")} |
                ({f"NAT.levels.{i}.mlp.2"} if again == linear else set()))
        # weights and inputs need gradients: two matmuls per forward one
        assert sum(bwd[f"NAT.levels.{i}"].values()) == 2 * 2 * linear
    assert sum(fwd["NAT.head"].values()) == 2 * 2 * 64 * 64 * 10


def test_dense_ops_of_natten021_model_match_flopcountermode(py021, lib, tmp_path):
    """FlopCounterMode cannot run Flex (no rule for its HOP): the reference replaces
    NATTEN's call with q + k + v, so every other op is the same, module by module.
    The forward pass: FlopCounterMode's backward attribution of this model is not one
    to match (it files the attention's backward matmuls under the Dropout module
    proj_drop, which has none); the backward per module is checked by hand in
    test_natten021_training_per_module."""
    ref = fcm_counts(py021, NA021 + textwrap.dedent("""
        from torch.utils.flop_counter import FlopCounterMode
        import natten.modules
        natten.modules.neighborhood_attention_generic = lambda q, k, v, **kw: q + k + v
        with FlopCounterMode(display=False) as fcm:
            model(x).sum()
    """), tmp_path)
    run = run_program(py021, NA021 + "model(x).sum().backward()\n", tmp_path, lib=lib,
                      env={"NAFLOPS_SUMMARY": "never"})
    assert run.returncode == 0, run.stderr[-3000:]
    ours = inclusive(run.dump, passes={"forward"}, natten=False)
    for name, ops in ref.items():
        assert ours.get(name, {}) == ops, name


# ------------------------------------------------------------------ torch.compile

@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("how", ["whole", "blocks"])
def test_compiled_natten021_per_module(backend, how, py021, lib, tmp_path):
    """NATTEN's rows in a compiled region carry the innermost module whose call runs
    as a frame: here, on torch 2.8, Dynamo breaks the graph inside NATTEN's Flex path
    and runs each attention module's call itself, so the attention modules' names,
    whether the whole model or each block was compiled (with no break, the compiled
    module's name: README, Modules). The other ops stay in the model's tree. Dynamo's
    frames, graphs, captured calls and graph breaks equal plain's (the bootstrap's
    backward-hook factory, called during the eager NATTEN call after Flex's graph
    break, was once one more frame). Inductor does not run here, plain or preloaded:
    its CPU lowering of Flex takes no `return_lse`, which NATTEN asks for."""
    code = NA021 + textwrap.dedent(f"""
        import torch._dynamo
        if {how!r} == "whole":
            run = torch.compile(model, backend={backend!r})
        else:
            for b in model.levels:
                b.compile(backend={backend!r})
            run = model
        for _ in range(2):
            run(x).sum().backward()
        from torch._dynamo.utils import counters
        print(sorted((k, sorted(v.items())) for k, v in counters.items() if k in ("stats", "frames", "graph_break")))
    """)
    (tmp_path / "plain").mkdir()
    plain = run_program(py021, code, tmp_path / "plain")
    run = run_program(py021, code, tmp_path, lib=lib, env={"NAFLOPS_SUMMARY": "never"})
    assert plain.returncode == run.returncode == 0, run.stderr[-3000:]
    assert run.stdout == plain.stdout
    where = {f"NAT.levels.{i}.attn": 2 * RULE021 for i in range(2)}
    assert natten_by_module(run.dump, {"forward"}) == where
    assert natten_by_module(run.dump, {"backward"}) == {k: 2 * v for k, v in where.items()}
    # the other ops: inside the compiled module's tree, never outside
    assert all(r["module"] is not None and r["module"].startswith("NAT") for r in run.dump["ops"])


# ------------------------------------------------------------------ threads, workers

def test_threads_and_dataloader_workers_keep_their_modules(py021, lib, tmp_path):
    code = """
        import threading, torch
        from torch import nn
        torch.set_num_threads(1)
        class Alpha(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 8)
            def forward(self, x):
                return self.fc(x)
        class Beta(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 16)
            def forward(self, x):
                return self.fc(x)
        def work(model, n):
            x = torch.randn(4, 8, requires_grad=True)
            for _ in range(n):
                model(x).sum().backward()
        ts = [threading.Thread(target=work, args=(m, 300)) for m in (Alpha(), Beta())]
        for t in ts: t.start()
        for t in ts: t.join()

        class Pre(nn.Module):
            def __init__(self):
                super().__init__()
                self.proj = nn.Linear(8, 4)
            def forward(self, x):
                return self.proj(x)
        class Data(torch.utils.data.Dataset):
            def __init__(self):
                self.pre = Pre()
            def __len__(self):
                return 4
            def __getitem__(self, i):
                with torch.no_grad():
                    return self.pre(torch.randn(2, 8))
        if __name__ == "__main__":
            for batch in torch.utils.data.DataLoader(Data(), batch_size=2, num_workers=1):
                pass
            print("ok")
    """
    run = run_program(py021, code, tmp_path, lib=lib,
                      env={"NAFLOPS_SUMMARY": "never", "NAFLOPS_OUTPUT": str(tmp_path / "d-%p.json"),
                           # the worker leaves by os._exit: its dump is the one flushed per op
                           "NAFLOPS_FLUSH_OPS": "1"})
    assert run.returncode == 0 and run.stdout == "ok\n", run.stderr[-3000:]
    dumps = [json.loads(p.read_text()) for p in tmp_path.glob("d-*.json")]
    main = next(d for d in dumps if any(r["module"] == "Alpha.fc" for r in d["ops"]))
    worker = next(d for d in dumps if d is not main)
    # each row's shapes are its own module's: Alpha's Linear is 8 -> 8, Beta's 8 -> 16
    for r in main["ops"]:
        dims = {tuple(r["shape"]), tuple(r["key_shape"] or ())}
        assert r["module"] in ("Alpha.fc", "Beta.fc"), r
        assert (16 in sum(map(list, dims), [])) == (r["module"] == "Beta.fc"), r
    per = defaultdict(int)
    for r in main["ops"]:
        per[(r["module"], r["pass"])] += r["flops"]
    assert per[("Alpha.fc", "forward")] == 300 * 2 * 4 * 8 * 8
    assert per[("Beta.fc", "forward")] == 300 * 2 * 4 * 8 * 16
    assert per[("Beta.fc", "backward")] == 300 * 2 * (2 * 4 * 8 * 16)
    assert {r["module"] for r in worker["ops"]} == {"Pre.proj"}
    assert sum(r["flops"] for r in worker["ops"]) == 4 * 2 * 2 * 8 * 4


STANDIN_NET = """
import sys, torch, natten
import natten.functional as nf
torch.manual_seed(0)
class Attn(torch.nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k = k
        self.qkv = torch.nn.Linear(32, 96)
    def forward(self, x):
        b, h, w, c = x.shape
        q, k, v = self.qkv(x).reshape(b, h, w, 3, 2, 16).unbind(3)
        return nf.na2d(q, k, v, kernel_size=self.k).reshape(b, h, w, c)
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Sequential(Attn(3)), torch.nn.Sequential(Attn(5))])
    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x
cm = torch.compile(Net(), backend="aot_eager", fullgraph=True)
x = torch.randn(2, 8, 8, 32)
for _ in range(2):
    cm(x).sum().backward()
print("ok")
"""


@pytest.mark.parametrize("whole_model", ["0", "1"])
def test_fullgraph_natten_calls_carry_dynamos_module(whole_model, py021, lib, tmp_path):
    """No graph break (the stand-in for NATTEN 0.20+'s GPU path, a custom op Dynamo
    captures whole): a NATTEN call the compiled path counts carries the module Dynamo
    traced it in (Net.blocks.1.0, from its nn_module_stack), forward and backward.
    Where the libtorch observer counts NATTEN's dispatcher ops (the whole-model count
    on), the op runs inside the compiled graph with no such record: its rows carry the
    compiled module (README, Modules)."""
    from test_compile import STANDIN
    run = run_program(py021, STANDIN_NET, tmp_path, lib=lib,
                      env={"PYTHONPATH": STANDIN, "NAFLOPS_SUMMARY": "never", "NAFLOPS_WHOLE_MODEL": whole_model})
    assert run.returncode == 0 and run.stdout == "ok\n", run.stderr[-3000:]
    rows = sorted((r["module"], r["pass"], r["kernel_size"][0], r["calls"]) for r in run.dump["ops"]
                  if r["kind"] != "aten")
    where = {3: "Net.blocks.0.0", 5: "Net.blocks.1.0"} if whole_model == "0" else {3: "Net", 5: "Net"}
    assert rows == sorted((where[k], p, k, 2) for k in (3, 5) for p in ("forward", "backward"))
