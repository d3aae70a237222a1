"""What Python's own tools see of a counted NATTEN call, plain against preloaded.

On CPython 3.12 and later the counter changes no NATTEN function: it counts through
the function's vectorcall slot (hooks/python/py_call_hook.c), with no frame of its
own, so tracebacks, pdb, sys.settrace, sys.setprofile, cProfile, TorchScript and the
program's audit hooks see exactly what they see without the preload. On 3.10 and
3.11 (no way to reach a Python-to-Python call without a frame) the generated wrapper
stays, and what it shows is pinned here as README says: one more frame per counted
entry point, at its definition line.

Every view is taken with NATTEN 0.21.7 (Flex on the CPU), forward calls of na1d, na2d,
na3d, neighborhood_attention_generic and attention, and a NeighborhoodAttention2D
module; each program runs plain and preloaded, and its exit status, stdout, stderr
(but the counter's "naflops:" lines) and files are compared (test_devmode_signals'
both())."""
import re
import subprocess
import textwrap

import pytest

from conftest import clean_env, run_program

ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def both(py, lib, code, tmp_path, args=(), stdin=None):
    """The program plain, then preloaded, in the same folder (Dynamo's file rules
    walk their lists further or less far for another path): the same exit status,
    stdout and stderr (but the counter's "naflops:" lines), object addresses aside."""
    (tmp_path / "program.py").write_text(textwrap.dedent(code))
    results = []
    for extra in ({}, {"LD_PRELOAD": lib}):
        r = subprocess.run([py, *args], cwd=tmp_path, input=stdin, capture_output=True, text=True,
                           timeout=300, env=clean_env(NAFLOPS_WHOLE_MODEL="0", PYTHONHASHSEED="0",
                                                      NAFLOPS_OUTPUT=str(tmp_path / "dump.json"), **extra))
        results.append(r)
    plain, pre = results

    def seen(r):
        err = [l for l in r.stderr.splitlines() if not l.startswith("naflops: ")]
        return r.returncode, ADDRESS.sub(" at 0x?", r.stdout), ADDRESS.sub(" at 0x?", chr(10).join(err))
    assert seen(pre) == seen(plain), pre.stderr[-3000:]
    return plain, pre


SETUP = """\
import os, sys, torch, natten
import natten.functional as F
torch.manual_seed(0)
q1 = torch.randn(1, 16, 2, 32)
q2 = torch.randn(1, 8, 8, 2, 32)
q3 = torch.randn(1, 4, 4, 4, 2, 32)
block = natten.NeighborhoodAttention2D(embed_dim=64, num_heads=2, kernel_size=3)
x = torch.randn(1, 8, 8, 64)
"""

# Each entry point once, good arguments (what the views trace).
CALLS = """\
def calls():
    with torch.no_grad():
        natten.na1d(q1, q1, q1, kernel_size=3)
        natten.na2d(q2, q2, q2, kernel_size=3, dilation=2)
        natten.na3d(q3, q3, q3, kernel_size=3)
        F.neighborhood_attention_generic(q2, q2, q2, kernel_size=(3, 3))
        F.attention(q1, q1, q1)
        block(x)
"""

# Each entry point with arguments NATTEN rejects from inside its own code.
BAD_CALLS = {
    "na1d": "natten.na1d(q1, q1[:, :8], q1, kernel_size=3)",
    "na2d": "natten.na2d(q2, q2[:, :4], q2, kernel_size=3)",
    "na3d": "natten.na3d(q3, q3[:, :2], q3, kernel_size=3)",
    "generic": "F.neighborhood_attention_generic(q2, q2, q2, kernel_size=(3, 3, 3))",
    "attention": "F.attention(q1, q1[..., :16], q1)",
    "module": "block(x[..., :32])",
    "bad-keyword": "natten.na2d(q2, q2, q2, kernel_size=3, no_such=1)",
}


def test_counts_with_no_wrapper(pyhook, lib, tmp_path):
    """The hook counts what the wrapper counted: each call by NATTEN's rule, eager and
    compiled (Dynamo traces the wrapper's twin), and the functions are NATTEN's own."""
    code = SETUP + CALLS + """
import inspect
calls()
f = torch.compile(lambda q: natten.na2d(q, q, q, kernel_size=3, dilation=2), backend="aot_eager")
with torch.no_grad():
    f(q2); f(q2)
print(natten.na2d.__code__.co_filename.endswith("natten/functional.py"),
      inspect.signature(natten.na2d) == inspect.signature(natten.na2d.__code__.co_name and natten.na2d),
      hasattr(natten.na2d, "__wrapped__"), natten.na2d is natten.functional.na2d)
"""
    pre = run_program(pyhook, code, tmp_path, lib, env={"NAFLOPS_WHOLE_MODEL": "0", "NAFLOPS_SUMMARY": "never"})
    assert pre.returncode == 0, pre.stderr[-3000:]
    assert pre.stdout.split() == ["True", "True", "False", "True"]
    rows = {(op["op"], "x".join(map(str, op["shape"])), op["pass"], op["module"]): op for op in pre.dump["ops"]}

    def fused(tokens, heads, window, dim):  # QK and AV, 2 FLOPs per MAC
        return 2 * 2 * tokens * heads * window * dim

    na2d = rows[("na2d", "1x8x8x2x32", "forward", None)]
    assert na2d["calls"] == 3  # eager once, compiled twice
    assert na2d["flops"] == 3 * fused(64, 2, 9, 32)
    assert rows[("na1d", "1x16x2x32", "forward", None)]["flops"] == fused(16, 2, 3, 32)
    assert rows[("na3d", "1x4x4x4x2x32", "forward", None)]["flops"] == fused(64, 2, 27, 32)
    for module in (None, "NeighborhoodAttention2D"):  # called alone, and by the module
        generic = rows[("neighborhood_attention_generic", "1x8x8x2x32", "forward", module)]
        assert (generic["calls"], generic["flops"]) == (1, fused(64, 2, 9, 32))
    assert rows[("attention", "1x16x2x32", "forward", None)]["flops"] == fused(16, 2, 16, 32)
    assert len(rows) == 6  # nothing else: no row from inside na2d (its generic call)


def test_program_changes_to_the_function_hold(pyhook, lib, tmp_path):
    """What a program sets on a counted function takes effect as it does plain: new
    defaults, keyword defaults and even a new __code__ (the twin that runs the code
    follows the function)."""
    code = SETUP + """
f = natten.functional.na2d
f.__kwdefaults__ = dict(f.__kwdefaults__ or {})
print(f(q2, q2, q2, kernel_size=3).sum().item())
old = f.__code__
def probe(query, key, value, kernel_size, stride=1, dilation=1, is_causal=False, scale=None,
          additional_keys=None, additional_values=None, attention_kwargs=None, backend=None,
          q_tile_shape=None, kv_tile_shape=None, backward_q_tile_shape=None, backward_kv_tile_shape=None,
          backward_kv_splits=None, backward_use_pt_reduction=False, run_persistent_kernel=True,
          kernel_schedule=None, torch_compile=False, return_lse=False):
    return "probe", kernel_size, dilation
f.__code__ = probe.__code__
print(natten.na2d(q2, q2, q2, 5))
f.__code__ = old
f.__defaults__ = (1, 2) + f.__defaults__[2:]
print(f(q2, q2, q2, kernel_size=3).sum().item())
"""
    plain, pre = both(pyhook, lib, code, tmp_path, ["program.py"])
    assert "('probe', 5, 1)" in plain.stdout
    import json
    rows = json.loads((tmp_path / "dump.json").read_text())["ops"]
    # the new default dilation is what the count reads; the replaced code's call is
    # still a call of na2d (counted by its arguments, no backend ran), as on 3.11
    assert [(op["kernel_size"], op["dilation"], op["backend"], op["calls"]) for op in rows] == [
        ([3, 3], [1, 1], "flex-fna", 1), ([5, 5], [1, 1], None, 1), ([3, 3], [2, 2], "flex-fna", 1)]


@pytest.mark.parametrize("entry", BAD_CALLS)
def test_traceback_is_plain(pyhook, lib, tmp_path, entry):
    code = SETUP + """
import traceback
try:
    %s
except Exception:
    print(traceback.format_exc())
""" % BAD_CALLS[entry]
    plain, _ = both(pyhook, lib, code, tmp_path, ["program.py"])
    assert "Traceback" in plain.stdout


def test_traceback_on_311_has_one_frame_at_the_definition(py021, lib, tmp_path):
    """3.11 keeps the wrapper: one more frame per counted entry point the exception
    passed through, at that function's def line, and nothing else differs."""
    code = SETUP + """
import traceback, inspect
try:
    %s
except Exception:
    print(traceback.format_exc())
print("def", inspect.getsourcelines(natten.functional.na2d)[1],
      inspect.getsourcelines(F.neighborhood_attention_generic)[1])
""" % BAD_CALLS["na2d"]
    (tmp_path / "program.py").write_text(code)
    plain, pre = (subprocess.run([py021, "program.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                                 env=clean_env(NAFLOPS_WHOLE_MODEL="0", NAFLOPS_SUMMARY="never", **extra))
                  for extra in ({}, {"LD_PRELOAD": lib}))
    na2d_line, generic_line = (int(x) for x in plain.stdout.split()[-2:])
    a, b = plain.stdout.splitlines(), pre.stdout.splitlines()
    extra = [l for l in b if l not in a]
    assert len(b) == len(a) + 4 and [l for l in b if l in a] == a
    assert [re.sub(r'.*/natten/', "natten/", l).strip() for l in extra] == [
        'natten/functional.py", line %d, in na2d' % na2d_line, "def na2d(",
        'natten/functional.py", line %d, in neighborhood_attention_generic' % generic_line,
        "def neighborhood_attention_generic("]


def test_pdb_steps_into_na2d_as_plain(pyhook, lib, tmp_path):
    """pdb driven by stdin: break at the call, step in, step over, step into the next
    call, print where it stands."""
    code = SETUP + """
out = natten.na2d(q2, q2, q2, kernel_size=3)
print("done", tuple(out.shape))
"""
    line = len(SETUP.splitlines()) + 2  # (the program's blank line, then the call)
    steps = "b %d\nc\ns\nn\nn\nn\ns\nwhere\nn\nc\nq\n" % line
    plain, _ = both(pyhook, lib, code, tmp_path, ["-m", "pdb", "program.py"], stdin=steps)
    plain = plain.stdout
    assert "na2d()" in plain and "--Call--" in plain


def test_pdb_on_311_steps_over_natten(py021, lib, tmp_path):
    """3.11 keeps the wrapper: `s` lands on its def line, `n` steps over the whole call."""
    code = SETUP + """
out = natten.na2d(q2, q2, q2, kernel_size=3)
print("done", tuple(out.shape))
"""
    (tmp_path / "program.py").write_text(code)
    steps = "b %d\nc\ns\nn\nn\nq\n" % (len(SETUP.splitlines()) + 2)
    plain, pre = (subprocess.run([py021, "-m", "pdb", "program.py"], cwd=tmp_path, input=steps,
                                 capture_output=True, text=True, timeout=300,
                                 env=clean_env(NAFLOPS_WHOLE_MODEL="0", NAFLOPS_SUMMARY="never", **extra)).stdout
                  for extra in ({}, {"LD_PRELOAD": lib}))
    line = re.search(r"functional.py\((\d+)\)na2d\(\)\n-> def na2d\(", plain).group(1)
    body = re.findall(r"functional.py\((\d+)\)na2d\(\)", plain)
    assert len(set(body)) > 1  # plain: the def line, then NATTEN's own lines
    assert set(re.findall(r"functional.py\((\d+)\)na2d\(\)", pre)) == {line}  # its call and return only
    assert "--Return--" in pre


TRACE = SETUP + CALLS + """
calls()  # warm: first-call imports and caches
events = []

def tracer(frame, event, arg):
    c = frame.f_code
    events.append("%s %s:%s %d" % (event, os.path.basename(c.co_filename), c.co_name, frame.f_lineno))
    return tracer

sys.settrace(tracer)
calls()
sys.settrace(None)
print(len(events))
print(chr(10).join(events))
"""

PROFILE = SETUP + CALLS + """
calls()
events = []

def profiler(frame, event, arg):
    c = frame.f_code
    what = getattr(arg, "__qualname__", "") if event.startswith("c_") else ""
    events.append("%s %s:%s %s" % (event, os.path.basename(c.co_filename), c.co_name, what))

sys.setprofile(profiler)
calls()
sys.setprofile(None)
print(len(events))
print(chr(10).join(events))
"""

CPROFILE = SETUP + CALLS + """
import cProfile, pstats
calls()
profile = cProfile.Profile()
profile.enable()
calls()
profile.disable()
stats = pstats.Stats(profile).stats
for (filename, line, name), (cc, nc, *_) in sorted(stats.items()):
    print(os.path.basename(filename), line, name, cc, nc)
"""


@pytest.mark.parametrize("view", ["settrace", "setprofile", "cProfile"])
def test_tracers_and_profilers_see_plain(pyhook, lib, tmp_path, view):
    code = {"settrace": TRACE, "setprofile": PROFILE, "cProfile": CPROFILE}[view]
    plain, _ = both(pyhook, lib, code, tmp_path, ["program.py"])
    assert "neighborhood_attention_generic" in plain.stdout and len(plain.stdout.splitlines()) > 50
    assert "naflops" not in plain.stdout


def test_importtime_order_is_plain(pyhook, lib):
    code = "import torch, natten\nimport natten.functional as F\n"

    def imported(env):
        r = subprocess.run([pyhook, "-X", "importtime", "-c", code], capture_output=True, text=True,
                           timeout=300, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        return [l.split("|")[-1].strip() for l in r.stderr.splitlines() if l.startswith("import time:")]

    plain = imported(clean_env())
    assert len(plain) > 100 and imported(clean_env(LD_PRELOAD=lib, NAFLOPS_SUMMARY="never")) == plain


def test_torchscript_says_what_it_says_plain(pyhook, lib, tmp_path):
    code = SETUP + """
def f(q):
    return natten.na2d(q, q, q, kernel_size=3)

try:
    torch.jit.script(f)
    print("scripted")
except Exception as e:
    print(type(e).__name__)
    print(str(e))
"""
    plain, _ = both(pyhook, lib, code, tmp_path, ["program.py"])
    assert plain.stdout.strip()


AUDIT = """\
import collections, sys
seen = collections.Counter()
sys.addaudithook(lambda event, args: seen.update([event]))
""" + SETUP + CALLS + """
for _ in range(50):
    calls()
for event, n in sorted(seen.items()):
    print(event, n)
"""


def test_audit_hooks_see_plain(pyhook, lib, tmp_path):
    """The program's audit hook, added before torch and natten are imported, sees the
    same events, as many times, over the imports and 50 rounds of calls, but for
    what cannot be avoided (README): the bootstrap's two `compile` events, and one
    `builtins.id` for each of the counter's four builtins each time torch deep-copies
    Dynamo's config (they are in its reorderable_logging_functions)."""
    (tmp_path / "program.py").write_text(AUDIT)
    counts = []
    for extra in ({}, {"LD_PRELOAD": lib, "NAFLOPS_SUMMARY": "never"}):
        r = subprocess.run([pyhook, "program.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env=clean_env(NAFLOPS_WHOLE_MODEL="0", PYTHONHASHSEED="0", **extra))
        assert r.returncode == 0, r.stderr[-3000:]
        counts.append({l.rsplit(" ", 1)[0]: int(l.rsplit(" ", 1)[1]) for l in r.stdout.splitlines()})
    plain, pre = counts
    assert plain["import"] > 1000 and plain["builtins.id"] > 1000
    assert pre["compile"] == plain["compile"] + 2
    extra_ids = pre["builtins.id"] - plain["builtins.id"]
    assert extra_ids >= 0 and extra_ids % 4 == 0, extra_ids
    assert {k: v for k, v in pre.items() if k not in ("compile", "builtins.id")} == \
        {k: v for k, v in plain.items() if k not in ("compile", "builtins.id")}


GRAD_TRACE = """\
import os, sys, torch, natten
torch.manual_seed(0)
q = torch.randn(1, 8, 8, 2, 32, requires_grad=True)

def step():
    natten.na2d(q, q, q, kernel_size=3).sum().backward()

step()
events = []

def tracer(frame, event, arg):
    c = frame.f_code
    events.append("%s %s:%s %d" % (event, c.co_filename, c.co_name, frame.f_lineno))
    return tracer

sys.settrace(tracer)
step()
sys.settrace(None)
print(len(events) > 1000)
print(chr(10).join(e for e in events if "site-packages/natten/" in e or "<naflops" in e or "after_exec" in e))
"""


def test_training_step_traces_only_the_backward_hook(pyhook, lib, tmp_path):
    """Forward and backward with gradients: Flex's backward (traced by torch itself)
    gives a different number of events from run to run even plain, so what is
    compared is NATTEN's own events and the counter's. The only one of ours is the
    backward hook, a Python function (compiled autograd traces it: README), which
    3.13's tracer sees once per NATTEN op in each backward; 3.12's does not."""
    (tmp_path / "program.py").write_text(GRAD_TRACE)
    plain, pre = (subprocess.run([pyhook, "program.py"], cwd=tmp_path, capture_output=True, text=True,
                                 timeout=300, env=clean_env(NAFLOPS_WHOLE_MODEL="0", NAFLOPS_SUMMARY="never",
                                                            PYTHONHASHSEED="0", **extra))
                  for extra in ({}, {"LD_PRELOAD": lib}))
    assert plain.returncode == pre.returncode == 0, pre.stderr[-3000:]
    assert plain.stdout.startswith("True") and "functional.py:na2d" in plain.stdout
    a, b = plain.stdout.splitlines(), pre.stdout.splitlines()
    ours = [l for l in b if "<naflops" in l]
    assert [l for l in b if "<naflops" not in l] == a
    # one NATTEN op in the traced step: its hook's call, line and return (3.13), or none (3.12)
    assert [re.sub(r" [0-9]+$", "", l) for l in ours] in (
        [], ["call <naflops bootstrap>:naflops_backward", "line <naflops bootstrap>:naflops_backward",
             "return <naflops bootstrap>:naflops_backward"])


@pytest.mark.parametrize("mode", ["X-dev", "PYTHONMALLOC=debug", "PYTHONDEVMODE=1"])
def test_dev_mode_with_the_hook(pyhook, lib, tmp_path, mode):
    """Python's debug allocators and dev mode, where the counter runs through the
    vectorcall slot: the same exit status, output and warnings, every call counted."""
    from test_devmode_signals import MODES, both as both_dirs

    flags, env = MODES[mode]
    code = SETUP + CALLS + """
calls()
q = torch.randn(1, 8, 8, 2, 32, requires_grad=True)
natten.na2d(q, q, q, kernel_size=3).sum().backward()
print("done", sys.flags.dev_mode)
"""
    plain, pre = both_dirs(pyhook, lib, code, tmp_path, flags, {"NAFLOPS_OUTPUT": "dump.json", **env})
    assert plain.returncode == 0 and plain.stdout.startswith("done"), plain.stderr
    import json
    d = json.loads((tmp_path / "pre" / "dump.json").read_text())
    assert sum(o["calls"] for o in d["ops"] if o["pass"] == "forward") == 7
    assert [o["calls"] for o in d["ops"] if o["pass"] == "backward"] == [1]


def test_whole_model_counted_with_another_pythons_observer(pyhook, lib, tmp_path):
    """The environments' observer for torch 2.8 is built with the 3.11 interpreter's
    headers; it loads into 3.12 and 3.13 alike (3.13 renamed a function its inline
    code calls: the observer forwards the old name), so the whole model is counted."""
    code = """\
import torch, natten
torch.manual_seed(0)
lin = torch.nn.Linear(64, 64)
q = torch.randn(1, 8, 8, 2, 32, requires_grad=True)
natten.na2d(q, q, q, kernel_size=3).sum().backward()
lin(torch.randn(4, 64)).sum().backward()
print("ok")
"""
    pre = run_program(pyhook, code, tmp_path, lib)
    assert pre.returncode == 0 and pre.stdout == "ok\n", pre.stderr[-3000:]
    assert "whole-model count is off" not in pre.stderr
    rows = {(op["op"], op["pass"]): op["flops"] for op in pre.dump["ops"]}
    assert rows[("aten::addmm", "forward")] == 2 * 4 * 64 * 64  # Linear: 4x64 @ 64x64
    assert rows[("aten::mm", "backward")] == 2 * 64 * 4 * 64    # its weight's gradient
    assert rows[("na2d", "forward")] == 2 * 2 * 64 * 2 * 9 * 32
