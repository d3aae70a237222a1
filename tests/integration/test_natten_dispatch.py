"""NATTEN counted at the dispatcher, where NATTEN is a dispatcher op.

The stand-in (natten_standin/, NATTEN 0.21.7's op names, schemas and call path on the
CPU: natten.functional.na2d -> neighborhood_attention_generic -> cutlass_fna_generic
-> natten::na2d_forward, whose autograd calls natten::na2d_backward) runs one small
model eagerly, compiled (backends eager, aot_eager and inductor, fullgraph=True, static and
dynamic=True) and exported (torch.export.export(strict=False), then
ExportedProgram.module()). Whoever counts it (the Python wrapper in eager code, the
observer's kernel on natten::na2d_forward/backward in compiled and exported code),
each NATTEN call is counted exactly once, forward and backward:

    na2d forward  = 4 * B * heads * N * W * D   (N = S * S tokens, W = k * k)
    na2d backward = 2 * forward

and with the whole-model count on, the dumps of the modes hold the same rows, with no
aten::bmm from inside NATTEN (the stand-in's own matrix products are bmm calls inside
the op).
"""
import json
from pathlib import Path

import pytest

from conftest import ops_by, run_program

STANDIN = str(Path(__file__).resolve().parent / "natten_standin")
S, HEADS, D, K = 8, 2, 16, 3
MODES = ("eager", "compile-eager", "compile-aot_eager", "compile-aot_eager-dynamic", "compile-inductor",
         "compile-inductor-dynamic", "export")


def na_flops(batch):
    return 4 * batch * HEADS * S * S * K * K * D


PROGRAM = """\
import json, sys
import torch
import natten
import natten.functional as nf

torch.manual_seed(0)
torch.set_num_threads(1)
MODE, TRAIN = sys.argv[1], sys.argv[2] == "1"
BATCHES = [int(b) for b in sys.argv[3].split(",")]
S, HEADS, D, K = {S}, {HEADS}, {D}, {K}


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Linear(HEADS * D, 3 * HEADS * D)
        self.proj = torch.nn.Linear(HEADS * D, HEADS * D)

    def forward(self, x):
        b, h, w, c = x.shape
        q, k, v = self.qkv(x).reshape(b, h, w, 3, HEADS, D).unbind(3)
        o = nf.na2d(q, k, v, kernel_size=K)
        return self.proj(o.reshape(b, h, w, c))


m = Block()
if MODE == "eager":
    f = m
elif MODE == "export":
    x0 = torch.randn(BATCHES[0], S, S, HEADS * D)
    f = torch.export.export(m, (x0,), strict=False).module()
else:
    backend = MODE.split("-")[1]
    f = torch.compile(m, backend=backend, fullgraph=True, dynamic=MODE.endswith("dynamic"))
sums = []
for b in BATCHES:
    x = torch.randn(b, S, S, HEADS * D)
    with torch.set_grad_enabled(TRAIN):
        y = f(x)
        if TRAIN:
            y.sum().backward()
    sums.append(round(float(y.sum()), 3))
print(json.dumps(sums))
"""


def run(py, tmp_path, lib, mode, train, batches="2", whole_model="1"):
    d = tmp_path / f"{mode}-{whole_model}"
    d.mkdir()
    code = PROGRAM.format(S=S, HEADS=HEADS, D=D, K=K)
    r = run_program(py, code, d, lib=lib, args=(mode, "1" if train else "0", batches),
                    env={"PYTHONPATH": STANDIN, "NAFLOPS_WHOLE_MODEL": whole_model,
                         "NAFLOPS_SUMMARY": "never"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert not r.naflops_lines(), r.naflops_lines()
    return r


def natten_rows(dump):
    return [o for o in dump["ops"] if o["kind"] != "aten"]


def check_natten(dump, train, batches=(2,)):
    """One na2d row per pass and batch, each call counted once, by the rule."""
    expected = {}
    for b in batches:
        expected[("forward", b)] = expected.get(("forward", b), 0) + 1
        if train:
            expected[("backward", b)] = expected.get(("backward", b), 0) + 1
    rows = natten_rows(dump)
    assert {(o["pass"], o["shape"][0]): o["calls"] for o in rows} == expected, rows
    for o in rows:
        assert o["op"] == "na2d" and o["kind"] == "fused" and o["backend"] == "cutlass-fna"
        assert o["kernel_size"] == [K, K] and o["shape"] == [o["shape"][0], S, S, HEADS, D]
        per = na_flops(o["shape"][0]) * (2 if o["pass"] == "backward" else 1)
        assert int(o["flops_per_call"]) == per
        assert int(o["flops"]) == per * o["calls"]


def rows(dump):
    keys = ("op", "pass", "kind", "backend", "natten_version", "shape", "key_shape", "value_shape",
            "kernel_size", "stride", "dilation", "is_causal", "additional_kv", "dtype", "device",
            "calls", "flops")
    return sorted(json.dumps([o.get(k) for k in keys]) for o in dump["ops"])


def check_modes(py, tmp_path, lib, train):
    dumps, outputs = {}, {}
    for mode in MODES:
        r = run(py, tmp_path, lib, mode, train)
        dumps[mode] = r.dump
        outputs[mode] = r.stdout
        check_natten(r.dump, train)
        ops = {o["op"] for o in r.dump["ops"]}
        assert "aten::bmm" not in ops, mode  # the stand-in's insides are NATTEN's
        assert ops & {"aten::addmm", "aten::mm"}, mode  # the whole model is counted
    for mode in MODES[1:]:
        assert rows(dumps[mode]) == rows(dumps["eager"]), mode
    # NATTEN's share: its rows over the totals, the same everywhere
    natten = sum(int(o["flops"]) for o in natten_rows(dumps["eager"]))
    assert natten == na_flops(2) * (3 if train else 1)
    return dumps


def test_counted_once_train(py021, lib, tmp_path):
    """torch 2.8, forward and backward: eager (the Python wrapper counts), compiled
    with eager and aot_eager, static and dynamic (the observer's kernel counts
    natten::na2d_forward and natten::na2d_backward; the compiled path leaves them to
    it), exported (no Python NATTEN call at all): once each, the same rows."""
    check_modes(py021, tmp_path, lib, train=True)


def test_counted_once_forward_newest(pynew, lib, tmp_path):
    """torch 2.15, forward: the same."""
    check_modes(pynew, tmp_path, lib, train=False)


def test_dynamic_batches(py021, lib, tmp_path):
    """dynamic=True: one graph, run with batches 2, 3 and 3; each run counted at its
    batch size, forward and backward."""
    r = run(py021, tmp_path, lib, "compile-aot_eager-dynamic", True, batches="2,3,3")
    check_natten(r.dump, True, batches=(2, 3, 3))


@pytest.mark.parametrize("mode", ["compile-aot_eager", "compile-eager"])
def test_whole_model_off(py021, lib, tmp_path, mode):
    """With the whole-model count off the observer puts no kernel on NATTEN's ops: the
    compiled path counts the compiled call then, still once, forward and backward."""
    r = run(py021, tmp_path, lib, mode, True, whole_model="0")
    check_natten(r.dump, True)
    assert not [o for o in r.dump["ops"] if o["kind"] == "aten"]


def test_export_whole_model_off(py021, lib, tmp_path):
    """An exported program makes no Python NATTEN call: only the dispatcher sees it,
    so with the whole-model count (and so the observer's kernels) off it is not
    counted."""
    r = run(py021, tmp_path, lib, "export", True, whole_model="0")
    assert r.dump["ops"] == []


ARGS = """\
import sys, torch, natten
import natten.functional as nf


class M(torch.nn.Module):
    def forward(self, q, k, v):
        return nf.na2d(q, k, v, kernel_size=(3, 5), stride=(2, 1), dilation=(1, 2),
                       is_causal=(True, False))


q = torch.randn(2, 8, 10, 2, 16)
f = M() if sys.argv[1] == "eager" else torch.export.export(M(), (q, q, q), strict=False).module()
f(q, q, q)
"""


def test_arguments_read_as_python_reads_them(py021, lib, tmp_path):
    """Kernel size, stride, dilation and causal per dim, read off natten::na2d_forward's
    own arguments (exported: the dispatcher counts) give the row the Python wrapper
    gives (eager): the same key, the same FLOPs."""
    dumps = {}
    for mode in ("eager", "export"):
        d = tmp_path / mode
        d.mkdir()
        r = run_program(py021, ARGS, d, lib=lib, args=(mode,),
                        env={"PYTHONPATH": STANDIN, "NAFLOPS_SUMMARY": "never"})
        assert r.returncode == 0, r.stderr[-3000:]
        dumps[mode] = r.dump
    assert rows(dumps["export"]) == rows(dumps["eager"])
    (o,) = dumps["export"]["ops"]
    assert (o["kernel_size"], o["stride"], o["dilation"], o["is_causal"]) == ([3, 5], [2, 1], [1, 2], [True, False])
    assert int(o["flops"]) == 4 * 2 * 2 * 80 * 15 * 16
