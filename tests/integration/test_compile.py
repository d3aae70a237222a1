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


# What torch._dynamo.explain saw, as the programs print it (plain and preloaded alike).
EXPLAIN = """\
def explain(m, x):
    ex = torch._dynamo.explain(m)(x)
    torch._dynamo.reset()
    return [ex.graph_count, ex.graph_break_count, ex.op_count,
            sorted(str(r.reason).splitlines()[0] for r in ex.break_reasons)]
"""


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


{EXPLAIN}

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
            with torch.set_grad_enabled(TRAIN):
                out["explain"] = explain(m, x)
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
        fwd = [o for o in ops_by(dump, op=op, pass_="forward") if o["kernel_size"] == [k, k]]
        assert len(fwd) == 1, dump["ops"]
        assert fwd[0]["calls"] == calls
        assert int(fwd[0]["flops"]) == calls * na_flops(k)
        bwd = [o for o in ops_by(dump, op=op, pass_="backward") if o["kernel_size"] == [k, k]]
        if train:
            assert len(bwd) == 1 and bwd[0]["calls"] == n
            assert int(bwd[0]["flops"]) == n * 2 * na_flops(k)
        else:
            assert bwd == []
    assert {o["op"] for o in dump["ops"]} == {op}


def newest_or(request, newest, py021):
    """torch 2.15 (the newest on PyPI) where the case asks for it, else 2.8."""
    return request.getfixturevalue("pynew") if newest else py021


@pytest.mark.parametrize("backend,newest", [("eager", False), ("aot_eager", False), ("inductor", False),
                                            ("aot_eager", True), ("inductor", True)])
def test_standin_fullgraph(request, py021, lib, tmp_path, backend, newest):
    """The GPU path's shape: no graph break plain, none preloaded, fullgraph=True
    holds, and every compiled run is counted, forward and backward (torch 2.8 and
    2.15)."""
    py021 = newest_or(request, newest, py021)
    code = PROGRAM.format(B=B, S=S, HEADS=HEADS, D=D, RUNS=RUNS, EXPLAIN=EXPLAIN)
    record, pre = run_both(py021, code, tmp_path, lib, args=(backend, "1", "1"),
                           env={"PYTHONPATH": STANDIN})
    assert record["explain"][:2] == [1, 0]
    assert record["warnings"] == []
    check_counts(pre.dump, train=True)


@pytest.mark.parametrize("backend,train,newest", [("eager", True, False), ("aot_eager", True, False),
                                                  ("aot_eager", False, True)])
def test_flex(request, py021, lib, tmp_path, backend, train, newest):
    """NATTEN 0.21's Flex backend on the CPU: Dynamo breaks the graph inside NATTEN
    (plain as preloaded, with the same reasons); every run is still counted once.
    Not inductor: it lowers Flex on the CPU for inference without the log-sum-exp
    only, and NATTEN asks for it, so it fails plain ("torch.compile on CPU only
    supports inference and `return_lse` is not supported yet"). On torch 2.15
    without grad: its CPU Flex has no backward at all."""
    py021 = newest_or(request, newest, py021)
    code = PROGRAM.format(B=B, S=S, HEADS=HEADS, D=D, RUNS=RUNS, EXPLAIN=EXPLAIN)
    record, pre = run_both(py021, code, tmp_path, lib, args=(backend, "1" if train else "0", "0"))
    assert record["explain"][1] > 0  # Flex breaks on the CPU, plain too
    check_counts(pre.dump, train=train)
    assert {o["backend"] for o in pre.dump["ops"]} == {"flex-fna"}


DYNAMIC = """\
import json, torch, natten
import natten.functional as nf
torch.manual_seed(0)
HEADS, D = {HEADS}, {D}
lin = torch.nn.Linear(HEADS * D, 3 * HEADS * D)


def f(x):
    b, h, w, c = x.shape
    q, k, v = lin(x).reshape(b, h, w, 3, HEADS, D).unbind(3)
    return nf.na2d(q, k, v, kernel_size=3).sum()


cf = torch.compile(f, backend="aot_eager", fullgraph=True, dynamic=True)
sums = []
for b in (2, 3, 3):
    x = torch.randn(b, {S}, {S}, HEADS * D)
    y = cf(x)
    y.backward()
    sums.append(round(y.item(), 3))
print(json.dumps(sums))
"""


@pytest.mark.parametrize("newest", [False, True])
def test_dynamic_shapes(request, py021, lib, tmp_path, newest):
    """Symbolic shapes: the sizes reach the counter formatted after the graph; the
    batch size of each run is counted as it was; fullgraph=True holds on 2.8 and
    2.15."""
    py021 = newest_or(request, newest, py021)
    code = DYNAMIC.format(HEADS=HEADS, D=D, S=S)
    _, pre = run_both(py021, code, tmp_path, lib, env={"PYTHONPATH": STANDIN})
    rows = {(o["pass"], o["shape"][0]): o["calls"] for o in pre.dump["ops"]}
    assert rows == {("forward", 2): 1, ("forward", 3): 2, ("backward", 2): 1, ("backward", 3): 2}
    total = sum(int(o["flops"]) for o in pre.dump["ops"])
    assert total == 3 * (na_flops(3, 2) + 2 * na_flops(3, 3))


EXPORT = """\
import json, torch, natten
import natten.functional as nf
from torch._subclasses.fake_tensor import FakeTensorMode


class Block(torch.nn.Module):
    def forward(self, q, k, v):
        return nf.na2d(q, k, v, kernel_size=3) * 2


q = torch.randn(2, {S}, {S}, {HEADS}, {D})
ep = torch.export.export(Block(), (q, q, q), strict=True)
ep2 = torch.export.export(Block(), (q, q, q), strict=False)
with FakeTensorMode():
    fq = torch.randn(2, {S}, {S}, {HEADS}, {D})
    nf.na2d(fq, fq, fq, kernel_size=3)
mq = torch.randn(2, {S}, {S}, {HEADS}, {D}, device="meta")
nf.na2d(mq, mq, mq, kernel_size=5)
print(json.dumps([str(ep.graph), str(ep2.graph)]))
"""


@pytest.mark.parametrize("newest", [False, True])
def test_export_and_fake_tensors(request, py021, lib, tmp_path, newest):
    """torch.export, strict (Dynamo) and not (fake tensors through the eager path),
    FakeTensorMode and meta tensors: the same graphs, and nothing counted, since
    nothing ran."""
    py021 = newest_or(request, newest, py021)
    code = EXPORT.format(HEADS=HEADS, D=D, S=S)
    graphs, pre = run_both(py021, code, tmp_path, lib,
                           env={"PYTHONPATH": STANDIN, "NAFLOPS_SUMMARY": "never"})
    assert "torch.ops.natten.na2d_forward.default" in graphs[0]
    assert pre.dump["ops"] == []


AUTOGRAD = """\
import json, warnings, torch, natten
import natten.functional as nf
from torch._dynamo.utils import counters
torch.manual_seed(0)
torch._dynamo.config.compiled_autograd = True
lin = torch.nn.Linear({HEADS} * {D}, 3 * {HEADS} * {D})


def f(x):
    b, h, w, c = x.shape
    q, k, v = lin(x).reshape(b, h, w, 3, {HEADS}, {D}).unbind(3)
    return nf.na2d(q, k, v, kernel_size=3).sum()


cf = torch.compile(f, backend="aot_eager")
x = torch.randn(2, {S}, {S}, {HEADS} * {D})
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for _ in range(3):
        cf(x).backward()
print(json.dumps([dict(counters["graph_break"]), sorted(set(str(w.message) for w in caught)),
                  lin.weight.grad.sum().item()]))
"""


@pytest.mark.parametrize("newest", [False, True])
def test_compiled_autograd(request, py021, lib, tmp_path, newest):
    """Compiled autograd traces the counter's backward hook without a graph break or
    a warning, and the backward is counted at run time."""
    py021 = newest_or(request, newest, py021)
    code = AUTOGRAD.format(HEADS=HEADS, D=D, S=S)
    record, pre = run_both(py021, code, tmp_path, lib, env={"PYTHONPATH": STANDIN})
    assert record[0] == {} and record[1] == []
    calls = {o["pass"]: o["calls"] for o in pre.dump["ops"]}
    assert calls == {"forward": 3, "backward": 3}


VISIBLE = """\
import inspect, json, pickle, weakref, functools
from unittest import mock
import torch
import natten
import natten.functional as nf
from torch.overrides import TorchFunctionMode

f = nf.{fn}
r = {{}}
r["isfunction"] = inspect.isfunction(f)
r["ismethod_descriptor"] = inspect.ismethoddescriptor(f)
r["type"] = type(f).__name__
for name, probe in [("weakref", lambda: weakref.ref(f)() is f),
                    ("setattr", lambda: (setattr(f, "naflops_probe", 1), f.naflops_probe)[1]),
                    ("allow_in_graph", lambda: torch.compiler.allow_in_graph(f) is not None),
                    ("jit_ignore", lambda: torch.jit.ignore(f) is not None),
                    ("jit_unused", lambda: torch.jit.unused(f) is not None),
                    ("assume_constant", lambda: torch.compiler.assume_constant_result(f) is not None),
                    ("pickle", lambda: pickle.loads(pickle.dumps(f)) is f),
                    ("getfile", lambda: inspect.getfile(f)),
                    ("getsourcelines", lambda: inspect.getsourcelines(f)[1]),
                    ("wraps", lambda: functools.wraps(f)(lambda *a: 0).__name__)]:
    try:
        r[name] = probe()
    except Exception as e:
        r[name] = type(e).__name__
spec = mock.create_autospec(f)
try:
    spec(1)
    r["autospec_bad_call"] = "accepted"
except TypeError:
    r["autospec_bad_call"] = "TypeError"
r["signature"] = str(inspect.signature(f))
r["names"] = [f.__name__, f.__qualname__, f.__module__, f.__doc__]


class Count(TorchFunctionMode):
    n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        Count.n += 1
        return func(*args, **(kwargs or {{}}))


torch.manual_seed(0)
args = {args}
if {mode}:
    with Count():
        nf.{fn}(*args)
else:
    nf.{fn}(*args)
r["torch_function_calls"] = Count.n
print(json.dumps(r))
"""


@pytest.mark.parametrize("version", ["0.21", "standin", "0.17"])
def test_python_sees_the_original(py021, py017, lib, tmp_path, version):
    """What Python and PyTorch can ask of a wrapped function answers as for the
    original, and a TorchFunctionMode sees no read by the counter (not with 0.21's
    Flex on the CPU: Flex compiles itself and cannot trace a mode, plain too)."""
    env = {"PYTHONPATH": STANDIN} if version == "standin" else None
    if version == "0.17":
        py, fn = py017, "na2d_qk"
        args = "[torch.randn(2, 2, 6, 6, 8, requires_grad=True) for _ in range(2)] + [3]"
    else:
        py, fn = py021, "na2d"
        args = "[torch.randn(2, 6, 6, 2, 8, requires_grad=True) for _ in range(3)] + [3]"
    mode = version != "0.21"
    record, pre = run_both(py, VISIBLE.format(fn=fn, args=args, mode=mode), tmp_path, lib, env=env)
    assert record["isfunction"] is True and record["weakref"] is True
    assert record["autospec_bad_call"] == "TypeError"
    assert (record["torch_function_calls"] > 0) == mode
    assert [o["calls"] for o in pre.dump["ops"]] == [1]


UNFUSED017 = """\
import json, sys, torch, natten, warnings
import natten.functional as F
warnings.simplefilter("ignore")
torch.manual_seed(0)
torch.set_num_threads(1)
""" + EXPLAIN + """


class Block(torch.nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k = k
        self.qkv = torch.nn.Linear(16, 48)
        self.proj = torch.nn.Linear(16, 16)

    def forward(self, x):
        b, h, w, c = x.shape
        q, k, v = self.qkv(x).reshape(b, h, w, 3, 2, 8).permute(3, 0, 4, 1, 2, 5)
        a = F.na2d_qk(q, k, self.k).softmax(-1)
        o = F.na2d_av(a, v, self.k)
        return self.proj(o.permute(0, 2, 3, 1, 4).reshape(b, h, w, c))


out = {}
x = torch.randn(2, 8, 8, 16)
for k, n in ((3, 1), (5, 3)):
    m = Block(k)
    if k == 3:
        out["explain"] = explain(m, x)
    cm = torch.compile(m, backend=sys.argv[1])
    for i in range(n):
        y = cm(x)
        # not y.sum(): 0.17.4's CPU backward misreads a stride-0 gradient
        (y * torch.randn_like(y)).sum().backward()
    out[k] = [round(p.grad.double().sum().item(), 6) for p in m.parameters()]
print(json.dumps(out))
"""


@pytest.mark.parametrize("backend", ["eager", "aot_eager", "inductor"])
def test_natten017_unfused(py017, lib, tmp_path, backend):
    """NATTEN 0.17's unfused ops (autograd Functions over libnatten's CPU kernels):
    Dynamo breaks at each libnatten call, plain and preloaded alike; every run is
    counted once, forward and backward, through AOTAutograd's compiled backward."""
    record, pre = run_both(py017, UNFUSED017, tmp_path, lib, args=(backend,))
    assert record["explain"][1] > 0
    rows = {(o["op"], o["pass"], o["kernel_size"][0]): o["calls"] for o in pre.dump["ops"]}
    assert rows == {(op, p, k): (n + (1 if k == 3 and p == "forward" else 0))
                    for op in ("na2d_qk", "na2d_av") for p in ("forward", "backward")
                    for k, n in ((3, 1), (5, 3))}
    for o in pre.dump["ops"]:
        k = o["kernel_size"][0]
        assert int(o["flops_per_call"]) == (1 if o["pass"] == "forward" else 2) * 2 * 2 * 2 * 64 * k * k * 8


EXPERIMENTAL017 = """\
import json, torch, natten


class Block(torch.nn.Module):
    def forward(self, q, k, v):
        return natten.experimental.na2d(q, k, v, kernel_size=3) * 2


q = torch.randn(2, 8, 8, 2, 16, device="meta")
out = torch.compile(Block(), backend="eager", fullgraph=True)(q, q, q)
ep = torch.export.export(Block(), (q, q, q), strict=True)
print(json.dumps([list(out.shape), str(ep.graph)]))
"""


def test_natten017_experimental_fullgraph_and_export(py017, lib, tmp_path):
    """0.17's torch.library ops on meta tensors: fullgraph=True and
    torch.export(strict=True) hold preloaded and give the same graph; nothing is
    counted (meta tensors do no work)."""
    record, pre = run_both(py017, EXPERIMENTAL017, tmp_path, lib)
    assert "natten" in record[1]
    assert pre.dump["ops"] == []
