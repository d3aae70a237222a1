"""The torch releases users run, oldest and newest of each NATTEN line: torch 2.6 with
NATTEN 0.17.4, torch 2.8 and torch 2.15 (the newest on PyPI) with NATTEN 0.21.7.

Dynamo sees nothing of the counter, by every measure it keeps: each program runs
plain and preloaded and prints what `torch._dynamo.explain` saw, Dynamo's `counters`
(graph breaks by reason, frames, unique graphs, recompiles) and digests of its
outputs; with `TORCH_LOGS=graph_breaks,recompiles` its log lines (frame ids
included) must be plain's too. One difference is allowed and pinned: where Dynamo
prints the user-code stack of a graph break inside NATTEN, each wrapped function on
that stack shows one more frame, at its `def` line (README, "torch.compile").

A compile that fails (a backend that raises, Inductor's error on the CPU, the
program's own exception inside the traced function) leaves no state behind: the
eager and compiled calls after it are all counted exactly.
"""
import json
import re

import pytest

from conftest import ops_by, run_program

B, S, HEADS, D = 2, 8, 2, 16

# Real NATTEN on the CPU, compiled: 0.21's Flex backend breaks the graph inside
# NATTEN (plain too); 0.17's unfused ops break at each libnatten call. Three calls
# with two batch sizes (a recompile, or with dynamic=True one graph), no grad.
DYNAMO = """\
import hashlib, json, sys, time, warnings
import torch
import natten
from torch._dynamo.utils import counters

torch.manual_seed(0)
torch.set_num_threads(1)
backend, dynamic = sys.argv[1], {{"0": False, "1": True, "auto": None}}[sys.argv[2]]
legacy = natten.__version__.startswith("0.17")


def step(x):
    if legacy:
        q = x.permute(0, 3, 1, 2, 4)
        a = natten.functional.na2d_qk(q, q, 3).softmax(-1)
        o = natten.functional.na2d_av(a, q, 3)
    else:
        o = natten.na2d(x, x, x, kernel_size=3)
    return o.square().mean()


def explain(f, x):
    ex = torch._dynamo.explain(f)(x)
    torch._dynamo.reset()
    return [ex.graph_count, ex.graph_break_count, ex.op_count,
            sorted(str(r.reason).splitlines()[0] for r in ex.break_reasons)]


out = {{"explain": explain(step, torch.randn({B}, {S}, {S}, {HEADS}, {D}))}}
counters.clear()
cs = torch.compile(step, backend=backend, dynamic=dynamic)
h = hashlib.sha256()
start = time.perf_counter()
with warnings.catch_warnings(record=True) as caught, torch.no_grad():
    warnings.simplefilter("always")
    for b in ({B}, {B} + 1, {B} + 1):
        h.update(cs(torch.randn(b, {S}, {S}, {HEADS}, {D})).numpy().tobytes())
out["seconds"] = round(time.perf_counter() - start, 3)
out["digest"] = h.hexdigest()[:16]
out["counters"] = {{k: dict(counters[k]) for k in ("graph_break", "frames", "stats", "recompiles")}}
out["warnings"] = sorted(set(str(w.message).splitlines()[0] for w in caught))
print(json.dumps(out))
"""

LOG_PREFIX = re.compile(r"^[VIWE]\d{4} [\d:.]+ \d+ ")


def dynamo_lines(stderr):
    """Dynamo's log lines without their time and thread id; the counter's own lines
    and anything else the program did not log through torch aside."""
    return [LOG_PREFIX.sub("", line).replace("/preloaded/program.py", "/plain/program.py")
            for line in stderr.splitlines() if LOG_PREFIX.match(line)]


def wrapper_frames(plain, preloaded):
    """preloaded's lines minus the wrapper frames it may add (a 'File ..., in F' line
    and the `def F(` source line under it), with the frames removed."""
    removed, kept, i = [], [], 0
    frame = re.compile(r'File "[^"]*/natten/[^"]*", line \d+, in (\w+)$')
    while i < len(preloaded):
        m = frame.search(preloaded[i])
        if (m and i + 1 < len(preloaded) and preloaded[i + 1].strip().endswith("def %s(" % m.group(1))
                and (len(kept) >= len(plain) or plain[len(kept)] != preloaded[i])):
            removed.append(m.group(1))
            i += 2
            continue
        kept.append(preloaded[i])
        i += 1
    return kept, removed


# 2.15-py3.12: the same torch on CPython 3.12, where NATTEN's functions are not
# replaced (counted through their vectorcall slots) and Dynamo traces their twins
ENVS = {"2.6": "py017", "2.8": "py021", "2.15": "pynew", "2.15-py3.12": "pynew312"}


def interpreter(request, release):
    return request.getfixturevalue(ENVS[release])


@pytest.mark.parametrize("release,backend,dynamic", [
    ("2.6", "aot_eager", "auto"), ("2.8", "aot_eager", "auto"), ("2.8", "eager", "1"),
    ("2.15", "aot_eager", "auto"), ("2.15", "aot_eager", "1"),
    ("2.15-py3.12", "aot_eager", "auto"), ("2.15-py3.12", "aot_eager", "1"),
])
def test_dynamo_sees_nothing(request, lib, tmp_path, release, backend, dynamic):
    py = interpreter(request, release)
    code = DYNAMO.format(B=B, S=S, HEADS=HEADS, D=D)
    env = {"TORCH_LOGS": "graph_breaks,recompiles"}
    runs = {}
    for name, preload in (("plain", None), ("preloaded", lib)):
        (tmp_path / name).mkdir()
        runs[name] = run_program(py, code, tmp_path / name, lib=preload, env=env,
                                 args=(backend, dynamic), timeout=900)
        assert runs[name].returncode == 0, runs[name].stderr[-3000:]
    plain = json.loads(runs["plain"].stdout.strip().splitlines()[-1])
    pre = json.loads(runs["preloaded"].stdout.strip().splitlines()[-1])
    print(release, backend, dynamic, "seconds plain", plain.pop("seconds"), "preloaded", pre.pop("seconds"),
          "frames", plain["counters"]["frames"], "breaks", sum(plain["counters"]["graph_break"].values()),
          "unique graphs", plain["counters"]["stats"].get("unique_graphs"))
    assert pre == plain
    assert sum(plain["counters"]["graph_break"].values()) > 0  # a break inside NATTEN, plain too
    plain_log, pre_log = dynamo_lines(runs["plain"].stderr), dynamo_lines(runs["preloaded"].stderr)
    kept, removed = wrapper_frames(plain_log, pre_log)
    assert kept == plain_log
    assert set(removed) <= {"na2d", "neighborhood_attention_generic", "flex_fna_generic",
                            "na2d_qk", "na2d_av"}
    # And the counts: every call once (0.21: na2d; 0.17: QK and AV).
    dump = runs["preloaded"].dump
    flops = sum(int(o["flops"]) for o in dump["ops"] if o["kind"] != "aten")
    per = 2 * HEADS * S * S * 9 * D  # one GEMM's FLOPs per batch item
    assert flops == 2 * per * (B + B + 2 * (B + 1))  # explain's run, then 3 calls
    assert [o for o in dump["ops"] if o["kind"] == "aten" and o["op"] == "aten::bmm"] == []


FAILED = """\
import sys, torch, natten
torch.manual_seed(0)
torch.set_num_threads(1)
how = sys.argv[1]
x2 = torch.randn(2, 8, 8, 2, 16)


def f(q):
    return natten.na2d(q, q, q, kernel_size=3) * 2


def raises(q):
    y = natten.na2d(q, q, q, kernel_size=3)
    if y.sum() > -1e30:  # a data-dependent branch: Dynamo breaks here, then runs on
        raise ValueError("the program's own error")
    return y


def refuse(gm, example_inputs):
    raise RuntimeError("this backend compiles nothing")


if how == "backend":
    compiled, arg = torch.compile(f, backend=refuse), x2
elif how == "inductor":  # Flex on the CPU: Inductor refuses a call that needs grad
    compiled, arg = torch.compile(f, backend="inductor"), x2.clone().requires_grad_()
else:
    compiled, arg = torch.compile(raises, backend="aot_eager"), x2
try:
    compiled(arg)
    print("compiled")
except Exception as e:
    print("raised", type(e).__name__)
with torch.no_grad():
    natten.na2d(x2, x2, x2, kernel_size=3)                 # the same shape, eager
    x3 = torch.randn(3, 8, 8, 2, 16)
    natten.na2d(x3, x3, x3, kernel_size=5)                 # another shape
    x1 = torch.randn(2, 16, 2, 16)
    natten.na1d(x1, x1, x1, kernel_size=3)                 # another op
    torch.compile(f, backend="aot_eager")(x3)              # compiled
"""


def fna_flops(batch, tokens, window):
    return 4 * batch * HEADS * tokens * window * D


@pytest.mark.parametrize("release,how", [
    ("2.8", "backend"), ("2.8", "inductor"), ("2.8", "user"), ("2.15", "backend"), ("2.15", "user"),
    ("2.15-py3.12", "backend"), ("2.15-py3.12", "user"),
])
def test_failed_compile_leaves_no_state(request, lib, tmp_path, release, how):
    py = interpreter(request, release)
    run = run_program(py, FAILED, tmp_path, lib=lib, args=(how,), timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("raised"), run.stdout
    dump = run.dump
    rows = {(o["op"], o["shape"][0], o["kernel_size"][0]): o["calls"] for o in ops_by(dump, kind="fused")}
    # The failed call itself: counted once where it ran (eagerly, after the break, or
    # the user's function up to its raise); never more.
    failed = rows.pop(("na2d", 2, 3), 0) - 1
    assert failed in (0, 1), rows
    assert rows == {("na2d", 3, 5): 1, ("na1d", 2, 3): 1, ("na2d", 3, 3): 1}
    assert dump["totals"]["uncounted_calls"] == 0
    assert [o for o in dump["ops"] if o["op"] == "aten::bmm"] == []
    natten = sum(int(o["flops"]) for o in ops_by(dump, kind="fused"))
    assert natten == ((1 + failed) * fna_flops(2, 64, 9) + fna_flops(3, 64, 25) + fna_flops(2, 16, 3)
                      + fna_flops(3, 64, 9))
