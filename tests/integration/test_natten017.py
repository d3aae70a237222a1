"""Real NATTEN 0.17.4 programs under LD_PRELOAD=libnaflops.so (CPU, libnatten).

Every program runs twice, without and with the preload: its stdout (checksums of
its outputs and gradients) and exit status must be identical, and the JSON dump of
the preloaded run must hold the numbers worked out here from the shapes, with
NATTEN's rule written out:

    N = prod(spatial extent), W = prod(kernel size)
    fused    = 4 * B * H * N * W * D     (QK and AV GEMMs)
    qk = av  = 2 * B * H * N * W * D
    backward = 2 * forward,  MACs = FLOPs / 2

Dilation and causal masking do not change the count.

Fused NA on CPU: NATTEN 0.17.4 has no CPU kernels for it. natten.functional.na*d
calls libnatten.na*d_forward, whose CPU version is only
`TORCH_CHECK(false, "Fused kernels are not available on CPU yet.")`
(csrc/src/pytorch/cpu/na1d.cpp etc., "TODO: implement CPU reference"), and the Flex
backend (natten/flex.py) only arrived in 0.17.5. So a plain fused call on CPU raises
(test_rejected_calls checks that it is not counted), and the fused tests install
FNA_ON_CPU below: it replaces the module-global `libnatten` that natten/functional.py
calls with a stand-in whose na*d_forward/backward compute the same attention with
libnatten's unfused CPU kernels (through NATTEN's own unfused autograd Functions,
which the library does not wrap). Everything above libnatten - natten.functional.na*d,
autotune_fna, FusedNeighborhoodAttention*D, the NeighborhoodAttention*D modules under
natten.use_fused_na() - is NATTEN 0.17.4's real code.
"""
import math
import textwrap

import pytest

from conftest import ops_by, run_program

B, H, D = 2, 3, 8
SPATIAL = {1: (12,), 2: (6, 7), 3: (6, 5, 6)}
KERNEL = {1: 5, 2: (3, 5), 3: (3, 3, 5)}       # an int, and tuples with unequal sides
DILATION = {1: 2, 2: (2, 1), 3: (2, 1, 1)}     # kernel * dilation <= extent
CAUSAL = {1: True, 2: (True, False), 3: (False, True, True)}
NA_DIMS = (1, 2, 3)

PRELUDE = """\
import torch
import natten
import natten.functional as F

torch.manual_seed(0)
torch.set_num_threads(1)


def show(label, *tensors):
    print(label, *(f"{t.double().sum().item():.4f}" for t in tensors))


def loss(t):
    # Not t.sum(): NATTEN 0.17.4's CPU backward kernels misread an expanded
    # (stride-0) output gradient, giving garbage that differs run to run.
    return (t * torch.randn_like(t)).sum()
"""

FNA_ON_CPU = """\
from natten import libnatten as _libnatten

_QK = {1: F.NeighborhoodAttention1DQKAutogradFunction,
       2: F.NeighborhoodAttention2DQKAutogradFunction,
       3: F.NeighborhoodAttention3DQKAutogradFunction}
_AV = {1: F.NeighborhoodAttention1DAVAutogradFunction,
       2: F.NeighborhoodAttention2DAVAutogradFunction,
       3: F.NeighborhoodAttention3DAVAutogradFunction}


def _fna_reference(q, k, v, kernel_size, dilation, is_causal, scale):
    # Heads-last [B, *spatial, H, D] -> heads-first for the unfused kernels and back.
    n = q.dim() - 3
    qh, kh, vh = (t.movedim(-2, 1) for t in (q, k, v))
    attn = _QK[n].apply(qh * scale, kh, None, None, kernel_size, dilation, is_causal)
    out = _AV[n].apply(attn.softmax(-1), vh, None, kernel_size, dilation, is_causal)
    return out.movedim(1, -2), attn.logsumexp(-1).movedim(1, -1)


def _fna_forward(output, query, key, value, bias, logsumexp, kernel_size, dilation,
                 is_causal, scale, *tiling):
    out, lse = _fna_reference(query, key, value, kernel_size, dilation, is_causal, scale)
    output.copy_(out)
    logsumexp.copy_(lse)


def _fna_backward(d_query, d_key, d_value, query, key, value, output, d_output, logsumexp,
                  kernel_size, dilation, is_causal, scale, *tiling):
    with torch.enable_grad():
        q, k, v = (t.detach().requires_grad_() for t in (query, key, value))
        out, _ = _fna_reference(q, k, v, kernel_size, dilation, is_causal, scale)
        grads = torch.autograd.grad(out, (q, k, v), d_output)
    for dst, g in zip((d_query, d_key, d_value), grads):
        dst.copy_(g)


class _FusedOnCpu:
    def __getattr__(self, name):
        return getattr(_libnatten, name)


_shim = _FusedOnCpu()
for _n in (1, 2, 3):
    setattr(_shim, f"na{_n}d_forward", _fna_forward)
    setattr(_shim, f"na{_n}d_backward", _fna_backward)
F.libnatten = _shim
"""


# ------------------------------------------------------------------ helpers

def kernel_tuple(kernel, na_dim):
    return (kernel,) * na_dim if isinstance(kernel, int) else tuple(kernel)


def expected_flops(kind, spatial, kernel, b=B, h=H, d=D):
    """NATTEN's rule, per forward call."""
    n_tokens = math.prod(spatial)
    window = math.prod(kernel_tuple(kernel, len(spatial)))
    return (4 if kind == "fused" else 2) * b * h * n_tokens * window * d


def program(*parts, **constants):
    """A program: PRELUDE, the given constants, then the parts."""
    head = "".join(f"{k} = {v!r}\n" for k, v in constants.items())
    return PRELUDE + head + "".join(textwrap.dedent(p) for p in parts)


def run_twice(py017, lib, code, tmp_path):
    """Runs code without and with the preload; same stdout and exit status. Returns
    the preloaded run. These tests check NATTEN's rows and totals exactly, so the
    whole-model count is off here; test_whole_model.py checks it with NATTEN 0.17."""
    (tmp_path / "plain").mkdir()
    (tmp_path / "counted").mkdir()
    plain = run_program(py017, code, tmp_path / "plain")
    counted = run_program(py017, code, tmp_path / "counted", lib=lib,
                          env={"NAFLOPS_WHOLE_MODEL": "0"})
    assert plain.returncode == 0, plain.stderr
    assert counted.returncode == plain.returncode, counted.stderr
    assert counted.stdout == plain.stdout
    assert plain.stdout.strip(), "the program printed no checksums"
    return counted


def the_op(dump, op, pass_, **match):
    found = ops_by(dump, op=op, **{"pass": pass_}, **match)
    assert len(found) == 1, (op, pass_, match, dump["ops"])
    return found[0]


def check_entry(e, kind, calls, flops_per_call):
    assert e["kind"] == kind
    assert e["calls"] == calls
    assert e["flops_per_call"] == flops_per_call
    assert e["flops"] == calls * flops_per_call
    assert e["macs"] == e["flops"] // 2


def check_dump(dump):
    """Fields every 0.17 CPU op shares, and totals that add up."""
    assert dump["natten_version"] == "0.17.4"
    for e in dump["ops"]:
        assert e["natten_version"] == "0.17.4"
        assert e["backend"] == "libnatten"
        assert e["pass"] in ("forward", "backward")
        assert e["kind"] in ("fused", "qk", "av")
        assert e["device"] == "cpu"
        assert e["flops"] == e["calls"] * e["flops_per_call"]
        assert e["macs"] == e["flops"] // 2
    t = dump["totals"]
    fwd = sum(e["flops"] for e in dump["ops"] if e["pass"] == "forward")
    bwd = sum(e["flops"] for e in dump["ops"] if e["pass"] == "backward")
    assert (t["forward_flops"], t["backward_flops"]) == (fwd, bwd)
    assert t["flops"] == fwd + bwd
    assert t["macs"] == t["flops"] // 2
    assert (t["forward_macs"], t["backward_macs"]) == (fwd // 2, bwd // 2)
    assert t["calls"] == sum(e["calls"] for e in dump["ops"])


# ------------------------------------------------------------------ unfused ops

UNFUSED = """\
qk, av = getattr(F, f"na{NA_DIM}d_qk"), getattr(F, f"na{NA_DIM}d_av")
q, k, v = (torch.randn(B, H, *SPATIAL, D, requires_grad=True) for _ in range(3))
attn = qk(q, k, KERNEL)                                          # positional kernel
out = av(attn.softmax(-1), v, kernel_size=KERNEL, dilation=1)    # keywords
loss(out).backward()
show("attn", attn)
show("out", out)
show("grads", q.grad, k.grad, v.grad)
"""


@pytest.mark.parametrize("na_dim", NA_DIMS)
def test_unfused_forward_backward(py017, lib, tmp_path, na_dim):
    spatial, kernel = SPATIAL[na_dim], KERNEL[na_dim]
    code = program(UNFUSED, NA_DIM=na_dim, B=B, H=H, D=D, SPATIAL=spatial, KERNEL=kernel)
    dump = run_twice(py017, lib, code, tmp_path).dump
    check_dump(dump)
    assert len(dump["ops"]) == 4
    ks = list(kernel_tuple(kernel, na_dim))
    window = math.prod(ks)
    heads_first = [B, H, *spatial, D]
    flops = expected_flops("qk", spatial, kernel)
    assert flops == expected_flops("av", spatial, kernel)
    for pass_, per_call in (("forward", flops), ("backward", 2 * flops)):
        qk = the_op(dump, f"na{na_dim}d_qk", pass_)
        check_entry(qk, "qk", 1, per_call)
        assert qk["shape"] == qk["key_shape"] == heads_first
        assert qk["value_shape"] is None
        av = the_op(dump, f"na{na_dim}d_av", pass_)
        check_entry(av, "av", 1, per_call)
        assert av["shape"] == [B, H, *spatial, window]  # the attention weights
        assert av["value_shape"] == heads_first
        for e in (qk, av):
            assert e["kernel_size"] == ks
            assert e["dilation"] == [1] * na_dim
            assert e["is_causal"] == [False] * na_dim
            assert e["dtype"] == "float32"
    assert dump["totals"]["forward_flops"] == 2 * flops
    assert dump["totals"]["backward_flops"] == 4 * flops


# ------------------------------------------------------------------ fused ops

FUSED = """\
na = getattr(F, f"na{NA_DIM}d")
q, k, v = (torch.randn(B, *SPATIAL, H, D, requires_grad=True) for _ in range(3))
out = na(q, k, v, kernel_size=KERNEL)
loss(out).backward()
show("out", out)
show("grads", q.grad, k.grad, v.grad)
"""


@pytest.mark.parametrize("na_dim", NA_DIMS)
def test_fused_forward_backward(py017, lib, tmp_path, na_dim):
    spatial, kernel = SPATIAL[na_dim], KERNEL[na_dim]
    code = program(FNA_ON_CPU, FUSED, NA_DIM=na_dim, B=B, H=H, D=D, SPATIAL=spatial,
                   KERNEL=kernel)
    dump = run_twice(py017, lib, code, tmp_path).dump
    check_dump(dump)
    # Only na*d is counted: not the unfused kernels the CPU stand-in runs underneath.
    assert len(dump["ops"]) == 2
    flops = expected_flops("fused", spatial, kernel)
    heads_last = [B, *spatial, H, D]
    for pass_, per_call in (("forward", flops), ("backward", 2 * flops)):
        e = the_op(dump, f"na{na_dim}d", pass_)
        check_entry(e, "fused", 1, per_call)
        assert e["shape"] == e["key_shape"] == e["value_shape"] == heads_last
        assert e["kernel_size"] == list(kernel_tuple(kernel, na_dim))
    assert dump["totals"]["flops"] == 3 * flops
    assert dump["totals"]["macs"] == 3 * flops // 2


# ------------------------------------------------------------------ modules

MODULE = """\
module = getattr(natten, f"NeighborhoodAttention{NA_DIM}D")(
    dim=H * D, num_heads=H, kernel_size=KERNEL, dilation=DILATION, rel_pos_bias=RPB)
optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
x = torch.randn(B, *SPATIAL, H * D)
for step in range(STEPS):
    optimizer.zero_grad()
    y = module(x)
    y.square().mean().backward()
    optimizer.step()
    show(f"step {step}", y, *(p.grad for p in module.parameters()))
"""


@pytest.mark.parametrize("na_dim,fused,rpb,dilation", [
    (1, False, False, 1),
    (2, False, True, 1),       # relative positional bias: not counted, same FLOPs
    (3, False, False, 1),
    (1, False, False, 2),
    (2, True, False, 1),       # natten.use_fused_na(): the module calls na2d
    (3, True, False, (2, 1, 1)),
])
def test_module_forward_backward(py017, lib, tmp_path, na_dim, fused, rpb, dilation):
    spatial, kernel, steps = SPATIAL[na_dim], KERNEL[na_dim], 2
    parts = (FNA_ON_CPU, "natten.use_fused_na(True)\n", MODULE) if fused else (MODULE,)
    code = program(*parts, NA_DIM=na_dim, B=B, H=H, D=D, SPATIAL=spatial, KERNEL=kernel,
                   DILATION=dilation, RPB=rpb, STEPS=steps)
    dump = run_twice(py017, lib, code, tmp_path).dump
    check_dump(dump)
    # The qkv and proj Linear layers are not NATTEN ops: only NA is counted.
    kinds = ["fused"] if fused else ["qk", "av"]
    ops = [f"na{na_dim}d"] if fused else [f"na{na_dim}d_qk", f"na{na_dim}d_av"]
    assert len(dump["ops"]) == 2 * len(ops)
    for op, kind in zip(ops, kinds):
        flops = expected_flops(kind, spatial, kernel)
        for pass_, per_call in (("forward", flops), ("backward", 2 * flops)):
            e = the_op(dump, op, pass_)
            check_entry(e, kind, steps, per_call)
            assert e["dilation"] == list(kernel_tuple(dilation, na_dim))
    total_fwd = steps * sum(expected_flops(k, spatial, kernel) for k in kinds)
    assert dump["totals"]["forward_flops"] == total_fwd
    assert dump["totals"]["backward_flops"] == 2 * total_fwd


# ------------------------------------------------------------------ dilation, causal

VARIANTS = """\
for n in (1, 2, 3):
    qk, av, na = (getattr(F, f"na{n}d{s}") for s in ("_qk", "_av", ""))
    for dilation, is_causal in ((1, False), (DILATION[n], False), (1, CAUSAL[n]),
                                (DILATION[n], CAUSAL[n])):
        q, k, v = (torch.randn(B, H, *SPATIAL[n], D, requires_grad=True) for _ in range(3))
        attn = qk(q, k, KERNEL[n], dilation=dilation, is_causal=is_causal)
        out = av(attn.softmax(-1), v, KERNEL[n], dilation, is_causal=is_causal)
        loss(out).backward()
        show(f"unfused {n}d {dilation} {is_causal}", out, q.grad, k.grad, v.grad)
        q, k, v = (torch.randn(B, *SPATIAL[n], H, D, requires_grad=True) for _ in range(3))
        out = na(q, k, v, KERNEL[n], dilation, is_causal)
        loss(out).backward()
        show(f"fused {n}d {dilation} {is_causal}", out, q.grad, k.grad, v.grad)
"""


def test_dilation_and_causal_do_not_change_counts(py017, lib, tmp_path):
    code = program(FNA_ON_CPU, VARIANTS, B=B, H=H, D=D, SPATIAL=SPATIAL, KERNEL=KERNEL,
                   DILATION=DILATION, CAUSAL=CAUSAL)
    dump = run_twice(py017, lib, code, tmp_path).dump
    check_dump(dump)
    # 3 dims x 4 variants x 3 ops (qk, av, fused) x 2 passes: each its own row.
    assert len(dump["ops"]) == 3 * 4 * 3 * 2
    for n in NA_DIMS:
        for dil in (1, DILATION[n]):
            for causal in (False, CAUSAL[n]):
                for op, kind in ((f"na{n}d_qk", "qk"), (f"na{n}d_av", "av"),
                                 (f"na{n}d", "fused")):
                    flops = expected_flops(kind, SPATIAL[n], KERNEL[n])
                    for pass_, per_call in (("forward", flops), ("backward", 2 * flops)):
                        e = the_op(dump, op, pass_,
                                   dilation=list(kernel_tuple(dil, n)),
                                   is_causal=list(kernel_tuple(causal, n)))
                        check_entry(e, kind, 1, per_call)


# ------------------------------------------------------------------ call counting

CALLS = """\
q, k = torch.randn(B, H, 12, D), torch.randn(B, H, 12, D)
with torch.no_grad():
    show("no grad", F.na1d_qk(q, k, 5), F.na1d_qk(q, k, kernel_size=5),
         F.na1d_qk(query=q, key=k, kernel_size=5))          # 3 calls, no backward

q, k = (torch.randn(B, H, 6, 7, D, requires_grad=True) for _ in range(2))
attn = F.na2d_qk(q, k, 3)
loss(attn).backward(retain_graph=True)                    # 1 forward, 2 backward
attn.square().sum().backward()
show("twice", attn, q.grad, k.grad)

q, k, v = (torch.randn(B, 6, 5, 6, H, D, requires_grad=True) for _ in range(3))
for i in range(3):                                         # 3 forward, 3 backward
    out = F.na3d(q, k, v, (3, 3, 5))
    grads = torch.autograd.grad(loss(out), (q, k, v))
    show(f"fused {i}", out, *grads)

q64, k64 = torch.randn(B, H, 12, D, dtype=torch.float64), torch.randn(B, H, 12, D, dtype=torch.float64)
show("float64", F.na1d_qk(q64, k64, 5))                    # another dtype: another row
"""


def test_calls_counted_exactly(py017, lib, tmp_path):
    code = program(FNA_ON_CPU, CALLS, B=B, H=H, D=D)
    dump = run_twice(py017, lib, code, tmp_path).dump
    check_dump(dump)
    f1 = expected_flops("qk", (12,), 5)
    e = the_op(dump, "na1d_qk", "forward", dtype="float32")
    check_entry(e, "qk", 3, f1)
    assert not ops_by(dump, op="na1d_qk", **{"pass": "backward"})
    check_entry(the_op(dump, "na1d_qk", "forward", dtype="float64"), "qk", 1, f1)

    f2 = expected_flops("qk", (6, 7), 3)
    check_entry(the_op(dump, "na2d_qk", "forward"), "qk", 1, f2)
    check_entry(the_op(dump, "na2d_qk", "backward"), "qk", 2, 2 * f2)

    f3 = expected_flops("fused", (6, 5, 6), (3, 3, 5))
    check_entry(the_op(dump, "na3d", "forward"), "fused", 3, f3)
    check_entry(the_op(dump, "na3d", "backward"), "fused", 3, 2 * f3)

    assert len(dump["ops"]) == 6
    t = dump["totals"]
    assert t["calls"] == 3 + 1 + 1 + 2 + 3 + 3
    assert t["forward_flops"] == 4 * f1 + f2 + 3 * f3
    assert t["backward_flops"] == 2 * (2 * f2 + 3 * f3)


# ------------------------------------------------------------------ rejected calls

REJECTED = """\
import traceback


def attempt(label, fn):
    try:
        fn()
        print(label, "succeeded")
    except Exception as e:
        # A libnatten error carries a C++ backtrace (addresses differ run to run).
        message = str(e).split("\\nException raised from")[0]
        # The wrapper is a real Python function (so that inspect, weakref and Dynamo
        # see a function): it adds one frame, with the function's own name, file and
        # line. Consecutive repeats are folded so the rest must match exactly.
        frames = [f.name for f in traceback.extract_tb(e.__traceback__)]
        frames = [n for i, n in enumerate(frames) if i == 0 or n != frames[i - 1]]
        print(label, type(e).__name__, repr(message), frames)


q, k = torch.randn(B, H, 12, D), torch.randn(B, H, 12, D)
q2 = torch.randn(B, H, 6, 7, D)
attempt("kernel larger than input", lambda: F.na1d_qk(q, k, 13))
attempt("kernel times dilation", lambda: F.na1d_qk(q, k, 5, dilation=3))
attempt("even kernel", lambda: F.na1d_qk(q, k, 4))
attempt("q/k shape mismatch", lambda: F.na1d_qk(q, torch.randn(B, H, 10, D), 5))
attempt("kernel tuple length", lambda: F.na2d_qk(q2, q2, (3, 3, 3)))
attempt("attention width", lambda: F.na1d_av(torch.randn(B, H, 12, 7), k, 5))
attempt("rank", lambda: F.na1d_qk(q[0], k[0], 5))
ql = torch.randn(B, 12, H, D)
attempt("fused on CPU", lambda: F.na1d(ql, ql, ql, 5))     # no CPU kernels in 0.17.4
module = natten.NeighborhoodAttention1D(dim=H * D, num_heads=H, kernel_size=13)
attempt("module kernel larger than input", lambda: module(torch.randn(B, 12, H * D)))
attempt("valid call", lambda: F.na1d_qk(q, k, 5))
"""


def test_rejected_calls(py017, lib, tmp_path):
    run = run_twice(py017, lib, program(REJECTED, B=B, H=H, D=D), tmp_path)
    lines = run.stdout.splitlines()
    assert len(lines) == 10
    assert all(" succeeded" not in l for l in lines[:-1])
    assert lines[-1] == "valid call succeeded"
    assert "Fused kernels are not available on CPU yet." in lines[7]
    assert "ValueError" in lines[4] and "RuntimeError" in lines[0]
    dump = run.dump
    check_dump(dump)
    # Only the valid call is counted.
    assert len(dump["ops"]) == 1
    check_entry(the_op(dump, "na1d_qk", "forward"), "qk", 1, expected_flops("qk", (12,), 5))
    assert dump["totals"]["calls"] == 1


# ------------------------------------------------------------------ deprecated aliases

DEPRECATED = """\
q, k, v = (torch.randn(B, H, 6, 7, D, requires_grad=True) for _ in range(3))
attn = F.natten2dqk(q, k, 3, 1)          # calls natten.functional.na2d_qk
out = F.natten2dav(attn.softmax(-1), v, 3, 1)
loss(out).backward()
show("deprecated", out, q.grad, k.grad, v.grad)
"""


def test_deprecated_aliases_counted_once_under_the_name_called(py017, lib, tmp_path):
    """natten2dqk calls na2d_qk: one call, counted under the name the program called
    (Hugging Face's DiNAT still calls these)."""
    dump = run_twice(py017, lib, program(DEPRECATED, B=B, H=H, D=D), tmp_path).dump
    check_dump(dump)
    assert len(dump["ops"]) == 4
    flops = expected_flops("qk", (6, 7), 3)
    for op, kind in (("natten2dqk", "qk"), ("natten2dav", "av")):
        check_entry(the_op(dump, op, "forward"), kind, 1, flops)
        check_entry(the_op(dump, op, "backward"), kind, 1, 2 * flops)


# ------------------------------------------------------------------ transparency

IDENTITY = """\
import inspect
import pickle

for name in ("na1d", "na2d_qk", "na3d_av"):
    fn = getattr(F, name)
    print(name, type(fn).__name__, fn.__name__, fn.__qualname__, fn.__module__)
    print("  doc", repr((fn.__doc__ or "")[:30]))
    try:
        params = inspect.signature(fn).parameters
        print("  signature", list(params), "is_causal" in params)
    except (TypeError, ValueError) as e:
        print("  signature", type(e).__name__)
    try:
        print("  pickles by reference", pickle.loads(pickle.dumps(fn)) is fn)
    except Exception as e:
        print("  pickle", type(e).__name__, e)
"""


def test_wrapped_functions_look_like_the_originals(py017, lib, tmp_path):
    # A program may introspect NATTEN's functions (feature detection with
    # inspect.signature, logging fn.__name__, torch.save of a module that keeps a
    # reference to one): it must see the same thing with the preload.
    run_twice(py017, lib, program(IDENTITY), tmp_path)
