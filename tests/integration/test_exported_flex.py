"""NATTEN's Flex backend inside an exported program (torch 2.15, NATTEN 0.21.7, CPU).

torch.export keeps no NATTEN call: the program holds torch's flex_attention op with
NATTEN's mask as a graph, and on the CPU it runs as a dense computation (aten::bmm).
The counter recognises NATTEN's mask by what it computes (checked against NATTEN's own
rule) and counts the op as the NATTEN call it came from: the rows of an exported and
run program equal the eager program's (the same op, shapes, kernel size, stride,
dilation, causal, backend and FLOPs), and no bmm of it counts as other ops. A mask of
the program's own is never taken for NATTEN's.

Backward through the exported op cannot run here on 2.15 (CPU Flex has no backward
there) and export of NATTEN's Flex fails plain on 2.8; the backward test runs on 2.8
the op exactly as an exported graph calls it, with NATTEN's mask traced to a graph.
"""
import pytest

from conftest import run_both, run_program

# (function, shape (batch, *spatial, heads, dim), arguments): 1-D, 2-D and 3-D with
# stride, dilation and causal masking, and one with fewer key/value heads (GQA).
CALLS = [
    ("na1d", (2, 40, 2, 8), 2, dict(kernel_size=7, stride=2, dilation=3, is_causal=True)),
    ("na2d", (2, 12, 16, 2, 8), 2, dict(kernel_size=(3, 5), dilation=(1, 2), is_causal=(False, True))),
    ("na2d", (2, 8, 8, 4, 16), 1, dict(kernel_size=3)),
    ("na3d", (1, 6, 8, 10, 2, 8), 2, dict(kernel_size=(3, 3, 5), stride=(1, 2, 1), dilation=(1, 1, 2))),
]

PROGRAM = """\
import sys, torch, natten
torch.manual_seed(0)
torch.set_num_threads(1)
mode = {mode!r}
CALLS = {calls!r}


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, *inputs):
        outs = []
        for (fn, shape, kv_heads, kw), x in zip(CALLS, inputs):
            k = v = x[..., :kv_heads, :]
            outs.append(getattr(natten, fn)(x, k, v, **kw).sum())
        return torch.stack(outs) + self.proj(inputs[0][0, 0, 0]).sum()


inputs = tuple(torch.randn(*shape) for _, shape, _, _ in CALLS)
net = Net()
if mode == "eager":
    f = net
elif mode.startswith("export"):
    f = torch.export.export(net, inputs, strict=False).module()
else:
    f = torch.compile(net, backend="aot_eager")
for _ in range(2):
    y = f(*inputs)
print([round(t, 4) for t in y.tolist()])
"""


def rows(dump):
    """Each row without its module (an exported program's root is a GraphModule)."""
    return sorted(tuple(sorted((k, str(v)) for k, v in o.items() if k != "module")) for o in dump["ops"])


def hand_flops(shape, kw):
    """NATTEN's rule worked by hand: QK and AV, 2*B*H*N*W*D each."""
    b, *spatial, heads, dim = shape
    kernel = kw["kernel_size"]
    kernel = kernel if isinstance(kernel, tuple) else (kernel,) * len(spatial)
    tokens = window = 1
    for s in spatial:
        tokens *= s
    for k in kernel:
        window *= k
    return 2 * (2 * b * heads * tokens * window * dim)


def check_rows_equal_eager(py, lib, tmp_path, modes):
    runs = {}
    for mode in modes:
        (tmp_path / mode).mkdir()
        runs[mode] = run_both(py, PROGRAM.format(mode=mode, calls=CALLS), tmp_path / mode, lib,
                              NAFLOPS_WHOLE_MODEL="1")
    eager = runs["eager"].dump
    natten = [o for o in eager["ops"] if o["kind"] == "fused"]
    assert len(natten) == len(CALLS)
    for fn, shape, kv_heads, kw in CALLS:
        (o,) = [o for o in natten if o["op"] == fn and o["shape"] == list(shape)]
        assert o["key_shape"] == list(shape[:-2]) + [kv_heads, shape[-1]]
        assert (o["backend"], o["pass"], o["calls"]) == ("flex-fna", "forward", 2)
        assert int(o["flops_per_call"]) == hand_flops(shape, kw), fn
    for mode, run in runs.items():
        assert not [o for o in run.dump["ops"] if o["op"] == "aten::bmm"], mode
        assert rows(run.dump) == rows(eager), mode
        assert run.dump["totals"] == eager["totals"], mode
        assert run.stdout == runs["eager"].stdout, mode


def test_exported_rows_equal_eager(pynew, lib, tmp_path):
    check_rows_equal_eager(pynew, lib, tmp_path, ("eager", "export", "compiled"))


def test_exported_rows_equal_eager_py312(pynew312, lib, tmp_path):
    """CPython 3.12: the op's kernels are hooked through their vectorcall slots."""
    check_rows_equal_eager(pynew312, lib, tmp_path, ("eager", "export"))


VIEWED = """\
import os, sys, torch, natten
torch.manual_seed(0)
torch.set_num_threads(1)


class Net(torch.nn.Module):
    def forward(self, x):
        return natten.na2d(x, x, x, kernel_size=3)


x = torch.randn(1, 8, 8, 2, 16)
f = torch.export.export(Net(), (x,), strict=False).module()
f(x)  # warm: first-call imports and caches (and the counter's look at the mask)
events = []


def tracer(frame, event, arg):
    c = frame.f_code
    events.append("%s %s:%s %d" % (event, os.path.basename(c.co_filename), c.co_name, frame.f_lineno))
    return tracer


def profiler(frame, event, arg):
    c = frame.f_code
    what = getattr(arg, "__qualname__", "") if event.startswith("c_") else ""
    events.append("%s %s:%s %s" % (event, os.path.basename(c.co_filename), c.co_name, what))


view = {"settrace": sys.settrace, "setprofile": sys.setprofile}[sys.argv[1]]
view(tracer if sys.argv[1] == "settrace" else profiler)
f(x)
view(None)
print(len(events))
print(chr(10).join(events))
"""


@pytest.mark.parametrize("view", ["settrace", "setprofile"])
def test_exported_run_traced_and_profiled_as_plain(pynew312, lib, tmp_path, view):
    """CPython 3.12: an exported NATTEN Flex call under sys.settrace / sys.setprofile
    shows the same events preloaded as plain (the op's kernels are hooked through their
    vectorcall slots, their code runs in its own frames), and is counted."""
    (tmp_path / "plain").mkdir()
    plain = run_program(pynew312, VIEWED, tmp_path / "plain", None, args=(view,))
    (tmp_path / "pre").mkdir()
    pre = run_program(pynew312, VIEWED, tmp_path / "pre", lib, args=(view,),
                      env={"NAFLOPS_SUMMARY": "never"})
    assert plain.returncode == pre.returncode == 0, pre.stderr[-3000:]
    assert pre.stdout == plain.stdout
    assert "flex_attention" in plain.stdout and len(plain.stdout.splitlines()) > 50
    assert pre.stderr == plain.stderr
    (na,) = [o for o in pre.dump["ops"] if o["kind"] == "fused"]
    assert (na["op"], na["backend"], na["calls"]) == ("na2d", "flex-fna", 2)
    assert int(na["flops_per_call"]) == hand_flops((1, 8, 8, 2, 16), dict(kernel_size=3))
    assert not [o for o in pre.dump["ops"] if o["op"] == "aten::bmm"]


OWN_MASK = """\
import sys, torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention
torch.manual_seed(0)
torch.set_num_threads(1)


def window(b, h, q, kv):  # a sliding window: near NATTEN's, but cut at the edges
    return (q - kv).abs() <= 2


class Net(torch.nn.Module):
    def forward(self, q):
        mask = create_block_mask(window, None, None, 64, 64, device="cpu")
        return flex_attention(q, q, q, block_mask=mask)


q = torch.randn(2, 2, 64, 16)
f = Net() if sys.argv[1] == "eager" else torch.export.export(Net(), (q,), strict=False).module()
print(round(f(q).sum().item(), 4))
"""


def test_own_mask_is_not_natten(pynew, lib, tmp_path):
    """The program's own Flex mask, exported: other ops (the dense bmm), as eager."""
    runs = {}
    for mode in ("eager", "export"):
        (tmp_path / mode).mkdir()
        runs[mode] = run_program(pynew, OWN_MASK, tmp_path / mode, lib, args=(mode,),
                                 env={"NAFLOPS_SUMMARY": "never"})
        assert runs[mode].returncode == 0, runs[mode].stderr[-3000:]
    for run in runs.values():
        assert {o["op"] for o in run.dump["ops"]} == {"aten::bmm"}
    assert rows(runs["export"].dump) == rows(runs["eager"].dump)
    assert runs["export"].stdout == runs["eager"].stdout


TRAINED = """\
import sys, torch, natten
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils.checkpoint import checkpoint
from natten.backends.flex import get_na_flex_mask
torch.manual_seed(0)
torch.set_num_threads(1)
B, X, Y, H, D = 2, 8, 8, 2, 16
mode, ckpt = sys.argv[1], sys.argv[2] == "1"

# NATTEN's mask and an identity score as graphs, as torch.export traces them.
bm = get_na_flex_mask("cpu", 2, (X, Y), (3, 5), (1, 2), (2, 1), (False, True))


def scalars():
    return [torch.zeros((), dtype=torch.int) for _ in range(4)]


mask = make_fx(bm.mask_mod)(*scalars())
score = make_fx(lambda s, b, h, q, kv: s)(torch.zeros(()), *scalars())
block = bm.as_tuple()[:-1] + (mask,)
lin = torch.nn.Linear(D, 3 * H * D)


def flat(x):
    return x.reshape(B, X * Y, H, D).transpose(1, 2)


def attend(x):
    q, k, v = lin(x).reshape(B, X, Y, H, 3, D).unbind(4)
    if mode == "eager":
        return natten.na2d(q, k, v, kernel_size=(3, 5), stride=(1, 2), dilation=(2, 1), is_causal=(False, True))
    # What an exported program's graph runs for that call.
    out = torch.ops.higher_order.flex_attention(flat(q), flat(k), flat(v), score, block, D ** -0.5,
                                                {"OUTPUT_LOGSUMEXP": True})[0]
    return out.transpose(1, 2).reshape(B, X, Y, H, D)


x = torch.randn(B, X, Y, D)
for _ in range(2):
    y = checkpoint(attend, x, use_reentrant=False) if ckpt else attend(x)
    y.square().sum().backward()
print(round(lin.weight.grad.double().sum().item(), 4))
"""


@pytest.mark.parametrize("ckpt", ["0", "1"])
def test_exported_op_backward(py021, lib, tmp_path, ckpt):
    """torch 2.8: the op as an exported graph calls it, trained (with and without
    activation checkpointing): NATTEN's forward, recompute and backward rows equal the
    eager call's, and nothing of it counts as other ops."""
    runs = {}
    for mode in ("eager", "graph"):
        (tmp_path / mode).mkdir()
        runs[mode] = run_program(py021, TRAINED, tmp_path / mode, lib,
                                 args=(mode, ckpt), env={"NAFLOPS_SUMMARY": "never"})
        assert runs[mode].returncode == 0, runs[mode].stderr[-3000:]
    eager, graph = runs["eager"].dump, runs["graph"].dump
    natten = {o["pass"]: o for o in eager["ops"] if o["op"] == "na2d"}
    na = 2 * 2 * 2 * 2 * 64 * 15 * 16
    want = {"forward": 2 * na, "backward": 4 * na}
    if ckpt == "1":
        want["recompute"] = 2 * na
    assert {p: int(o["flops"]) for p, o in natten.items()} == want
    assert not [o for o in graph["ops"] if o["op"] == "aten::bmm"]
    assert rows(graph) == rows(eager)
    assert runs["graph"].stdout == runs["eager"].stdout
