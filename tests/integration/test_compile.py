"""The preload under PyTorch's compiler stack: torch.compile (eager, aot_eager and
inductor backends), torch.export, compiled autograd, and what Python can see.

Every program runs twice, plain and preloaded, and prints a JSON record: what
torch._dynamo.explain saw (graphs, breaks, captured ops, break reasons), digests of
outputs and gradients, and whatever the test checks. The two records must be equal,
and the dump of the preloaded run must hold the counts worked out here:

    na2d forward = 4 * B * heads * N * W * D   (N = S * S tokens, W = k * k)
    backward     = 2 * forward

Three blocks with kernels 3, 5 and 7 are compiled and run 1, 3 and 7 times, so each
dump row shows that every run of a compiled function is counted once (explain runs
the first block once more).

natten_standin/ stands in for NATTEN 0.20+'s GPU path (see its __init__): a
torch.library custom op behind natten.functional.na2d that Dynamo captures whole, so
fullgraph=True and torch.export(strict=True) hold plain and must hold preloaded.
"""
import json
import textwrap
from pathlib import Path

import pytest

from conftest import ops_by, run_program

STANDIN = str(Path(__file__).resolve().parent / "natten_standin")
B, S, HEADS, D = 2, 8, 2, 16
RUNS = ((3, 1), (5, 3), (7, 7))  # (kernel, compiled invocations)


def na_flops(k, batch=B):
    return 4 * batch * HEADS * S * S * k * k * D


PROGRAM = """\
import hashlib, json, sys, warnings
import torch
import natten
import natten.functional as nf

torch.manual_seed(0)
torch.set_num_threads(1)
BACKEND, TRAIN, FULLGRAPH = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
B, S, HEADS, D = {B}, {S}, {HEADS}, {D}


class Block(torch.nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k = k
        self.qkv = torch.nn.Linear(HEADS * D, 3 * HEADS * D)
        self.proj = torch.nn.Linear(HEADS * D, HEADS * D)

    def forward(self, x):
        b, h, w, c = x.shape
        q, k, v = self.qkv(x).reshape(b, h, w, 3, HEADS, D).unbind(3)
        o = nf.na2d(q, k, v, kernel_size=self.k)
        return self.proj(o.reshape(b, h, w, c))


def digest(*tensors):
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


out = {{}}
x = torch.randn(B, S, S, HEADS * D)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for k, n in {RUNS}:
        m = Block(k)
        if k == 3:
            ex = torch._dynamo.explain(m)(x)
            out["explain"] = [ex.graph_count, ex.graph_break_count, ex.op_count,
                              sorted(str(r.reason).splitlines()[0] for r in ex.break_reasons)]
            torch._dynamo.reset()
        cm = torch.compile(m, backend=BACKEND, fullgraph=FULLGRAPH)
        for i in range(n):
            if TRAIN:
                y = cm(x)
                y.sum().backward()
            else:
                with torch.no_grad():
                    y = cm(x)
        out[str(k)] = digest(y, *(p.grad for p in m.parameters() if p.grad is not None))
out["warnings"] = sorted(set(str(w.message).splitlines()[0] for w in caught))
print(json.dumps(out))
"""


def run_both(py, code, tmp_path, lib, args=(), env=None, timeout=900):
    plain_dir, pre_dir = tmp_path / "plain", tmp_path / "preloaded"
    plain_dir.mkdir()
    pre_dir.mkdir()
    plain = run_program(py, code, plain_dir, env=env, args=args, timeout=timeout)
    pre = run_program(py, code, pre_dir, lib=lib, args=args, timeout=timeout,
                      env={"NAFLOPS_WHOLE_MODEL": "0", **(env or {})})
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert pre.returncode == 0, pre.stderr[-3000:]
    record = json.loads(plain.stdout.strip().splitlines()[-1])
    assert json.loads(pre.stdout.strip().splitlines()[-1]) == record
    return record, pre


def check_counts(dump, train, op="na2d", explain_runs=1):
    for k, n in RUNS:
        calls = n + (explain_runs if k == 3 else 0)
        fwd = [o for o in ops_by(dump, op=op, pass_="forward") if o["kernel_size"] == [k, k]] \
            if False else [o for o in dump["ops"] if o["op"] == op and o["pass"] == "forward"
                           and o["kernel_size"] == [k, k]]
        assert len(fwd) == 1, dump["ops"]
        assert fwd[0]["calls"] == calls
        assert int(fwd[0]["flops"]) == calls * na_flops(k)
        bwd = [o for o in dump["ops"] if o["op"] == op and o["pass"] == "backward"
               and o["kernel_size"] == [k, k]]
        if train:
            assert len(bwd) == 1 and bwd[0]["calls"] == n
            assert int(bwd[0]["flops"]) == n * 2 * na_flops(k)
        else:
            assert bwd == []
    assert {o["op"] for o in dump["ops"]} == {op}


@pytest.mark.parametrize("backend", ["eager", "aot_eager", "inductor"])
def test_standin_fullgraph(py021, lib, tmp_path, backend):
    """The GPU path's shape: no graph break plain, none preloaded, fullgraph=True
    holds, and every compiled run is counted, forward and backward."""
    code = PROGRAM.format(B=B, S=S, HEADS=HEADS, D=D, RUNS=RUNS)
    record, pre = run_both(py021, code, tmp_path, lib, args=(backend, "1", "1"),
                           env={"PYTHONPATH": STANDIN})
    assert record["explain"][:2] == [1, 0]
    assert record["warnings"] == []
    check_counts(pre.dump, train=True)
