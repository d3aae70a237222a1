"""Steps (issue 25): each optimizer step (or NAFLOPS_STEP's boundary) ends a step; each
step's FLOPs are exact, its time real, warm-up and compiling steps apart. Real
programs, torch 2.8 with NATTEN 0.21.7 on the CPU (its Flex backend, with backward).

The model: x [2, 8, 8, 16] (no grad) -> Linear(16, 48) -> q, k, v [2, 8, 8, 2, 8] ->
na2d (kernel 3) -> Linear(16, 16). Hand-worked FLOPs of one micro-batch:
  forward:  qkv 2*128*16*48 = 196608, na2d 2 * (2*64*2*8*9) * 2 = 73728 (QK and AV),
            out 2*128*16*16 = 65536                               -> 335872
  backward: qkv weight only (x needs no grad) 196608, na2d 2 x 73728 = 147456,
            out input and weight 2 x 65536 = 131072                -> 475136
so one forward and backward is 811008 model FLOPs, NATTEN 221184 of them."""
import json
import subprocess
import sys

from conftest import ROOT, run_both, run_program, run_torchrun

FWD, BWD, NATTEN = 335872, 475136, 73728 + 147456
MICRO = FWD + BWD

MODEL = """
import time, threading, torch, natten
torch.manual_seed(0)
class M(torch.nn.Module):
    def __init__(s):
        super().__init__(); s.a = torch.nn.Linear(16, 48); s.o = torch.nn.Linear(16, 16)
    def forward(s, x):
        q, k, v = s.a(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(2, 8, 8, 2, 8) for t in (q, k, v))
        return s.o(natten.na2d(q, k, v, kernel_size=3).reshape(2, 8, 8, 16))
m = M()
x = torch.randn(2, 8, 8, 16)
def micro(model=m):
    model(x).square().mean().backward()
"""


def steps_of(run):
    return run.dump["steps"]


def check_records(s):
    """The invariants every steps object keeps."""
    assert sum(r["steps"] for r in s["records"]) == s["count"]
    for key in ("model_flops", "hardware_flops", "natten_flops"):
        assert sum(r[key] for r in s["records"]) == s["total"][key]
    first = 1
    for r in s["records"]:
        assert r["step"] == first and r["seconds"] > 0
        first += r["steps"]


def test_gradient_accumulation(py021, lib, tmp_path):
    """6 steps of 2 micro-batches: 6 steps, each exactly two micro-batches' FLOPs;
    the step times sum to at most the loop's wall time."""
    r = run_both(py021, MODEL + """
opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
t = time.perf_counter()
for step in range(6):
    micro(); micro()
    opt.step(); opt.zero_grad()
open("loop.txt", "w").write(repr(time.perf_counter() - t))
""", tmp_path, lib, NAFLOPS_WHOLE_MODEL="1")
    s = steps_of(r)
    check_records(s)
    assert (s["boundary"], s["count"], s["warmup"], s["bucket"]) == ("optimizer", 6, 1, 1)
    assert [(x["model_flops"], x["hardware_flops"], x["natten_flops"]) for x in s["records"]] == \
        [(2 * MICRO, 2 * MICRO, 2 * NATTEN)] * 6
    assert r.dump["totals"]["model_flops"] == s["total"]["model_flops"] == 12 * MICRO
    loop = float((tmp_path / "pre" / "loop.txt").read_text())
    assert 0 < s["total"]["seconds"] <= loop
    st = s["steady"]
    assert st["steps"] == 5 and st["model_flops_per_step"] == 2 * MICRO
    assert st["seconds_p10"] <= st["seconds_median"] <= st["seconds_p90"]
    assert abs(st["flops_per_s_median"] * st["seconds_median"] - 2 * MICRO) / (2 * MICRO) < 0.5
    assert st["mfu_median"] is None and s["peak_flops_per_s"] is None
    lines = r.naflops_lines()
    assert "naflops: steps     6 optimizer steps (boundary: optimizer); 1 warm-up" in lines
    assert any(l.startswith("naflops: per step  model 1.62 MFLOP  hardware 1.62 MFLOP  NATTEN 27.3%")
               for l in lines), lines


def test_peak_gives_mfu(py021, lib, tmp_path):
    r = run_both(py021, MODEL + """
opt = torch.optim.SGD(m.parameters(), lr=0.1)
for step in range(4):
    micro(); opt.step(); opt.zero_grad()
""", tmp_path, lib, NAFLOPS_WHOLE_MODEL="1", NAFLOPS_PEAK="2G")
    s = steps_of(r)
    assert (s["peak_flops_per_s"], s["peak_source"]) == (2e9, "NAFLOPS_PEAK")
    st = s["steady"]
    assert abs(st["mfu_median"] - st["flops_per_s_median"] / 2e9) < 1e-12
    assert any(l.startswith("naflops: MFU       ") and "(peak 2.00 GFLOP/s, NAFLOPS_PEAK)" in l
               for l in r.naflops_lines())


def test_checkpointing_model_and_hardware(py021, lib, tmp_path):
    """Recompute is in hardware FLOPs, per step, not in model FLOPs."""
    r = run_both(py021, MODEL + """
from torch.utils.checkpoint import checkpoint
opt = torch.optim.SGD(m.parameters(), lr=0.1)
for step in range(4):
    checkpoint(m, x, use_reentrant=False).square().mean().backward()
    opt.step(); opt.zero_grad()
""", tmp_path, lib, NAFLOPS_WHOLE_MODEL="1")
    s = steps_of(r)
    check_records(s)
    recompute = r.dump["totals"]["recompute_flops"]
    assert recompute > 0 and recompute % 4 == 0
    assert [(x["model_flops"], x["hardware_flops"]) for x in s["records"]] == \
        [(MICRO, MICRO + recompute // 4)] * 4


def test_compiled_model_warmup(py021, lib, tmp_path):
    """torch.compile: the first step compiles (warm-up); the steady steps' FLOPs are
    eager's."""
    r = run_both(py021, MODEL + """
opt = torch.optim.SGD(m.parameters(), lr=0.1)
cm = torch.compile(m, backend="aot_eager")
for step in range(4):
    micro(cm); micro(cm)
    opt.step(); opt.zero_grad()
""", tmp_path, lib, NAFLOPS_WHOLE_MODEL="1")
    s = steps_of(r)
    check_records(s)
    first = s["records"][0]
    assert first["warmup"] and first["compiled"] == 1
    assert s["warmup"] == 1 and s["recompiled"] == 0
    assert [x["model_flops"] for x in s["records"]] == [2 * MICRO] * 4
    assert s["steady"]["model_flops_per_step"] == 2 * MICRO


def test_step_function(py021, lib, tmp_path):
    """No optimizer: NAFLOPS_STEP names a sampling function (and a method); one step
    per outermost call. The wrapper is the function as the program sees it."""
    pkg = tmp_path / "sampling.py"
    pkg.write_text("""
import torch
def sample(model, x, *extra, steps=3, **kw):
    with torch.no_grad():
        for _ in range(steps):
            x = model(x)
    return x
class Sampler:
    def __init__(self, m):
        self.m = m
    def run(self, x, steps=2):
        return sample(self.m, x, steps=steps)
""")
    code = MODEL + f"""
import sys, inspect
sys.path.insert(0, {str(tmp_path)!r})
import sampling
for i in range(4):
    sampling.sample(m, x, steps=2)
sampling.Sampler(m).run(x)
print(inspect.signature(sampling.sample), sampling.sample.__name__, sampling.sample.__qualname__,
      inspect.signature(sampling.Sampler.run), sampling.Sampler.run.__qualname__)
"""
    one = 2 * FWD  # two forwards of the model, no backward
    r = run_both(py021, code, tmp_path, lib, NAFLOPS_WHOLE_MODEL="1",
                 NAFLOPS_STEP="sampling:sample")
    s = steps_of(r)
    assert (s["boundary"], s["count"]) == ("function sampling:sample", 5)
    assert [x["model_flops"] for x in s["records"]] == [one] * 5
    assert "naflops: steps     5 calls (boundary: function sampling:sample); 1 warm-up" in r.naflops_lines()

    (tmp_path / "m").mkdir()
    r = run_program(py021, code, tmp_path / "m", lib, env={"NAFLOPS_STEP": "sampling:Sampler.run"})
    assert r.returncode == 0, r.stderr
    s = steps_of(r)
    assert (s["boundary"], s["count"]) == ("function sampling:Sampler.run", 1)


def test_no_steps_says_nothing(py021, lib, tmp_path):
    """No optimizer and NAFLOPS_STEP unset: no steps object, no step line."""
    r = run_both(py021, MODEL + """
for i in range(3):
    micro()
""", tmp_path, lib)
    assert "steps" not in r.dump
    assert not [l for l in r.naflops_lines() if "step" in l]


def test_step_function_never_imported(py021, lib, tmp_path):
    r = run_both(py021, MODEL + "micro()\n", tmp_path, lib, NAFLOPS_STEP="nosuch.mod:f")
    assert "steps" not in r.dump
    assert "naflops: NAFLOPS_STEP=nosuch.mod:f: the program never imported nosuch.mod; no steps were counted" \
        in r.naflops_lines()


def test_backward_boundary_and_natten_only(py021, lib, tmp_path):
    """NAFLOPS_STEP=backward: one step per loss.backward(); with the whole-model count
    off, NATTEN's FLOPs only."""
    r = run_both(py021, MODEL + """
for i in range(3):
    micro()
""", tmp_path, lib, NAFLOPS_STEP="backward")
    s = steps_of(r)
    assert (s["boundary"], s["count"]) == ("backward", 3)
    assert [x["model_flops"] for x in s["records"]] == [NATTEN] * 3


def test_optimizer_steps_natten_only(py021, lib, tmp_path):
    """The whole-model count off (NAFLOPS_WHOLE_MODEL=0): optimizer steps still found."""
    r = run_both(py021, MODEL + """
opt = torch.optim.SGD(m.parameters(), lr=0.1)
for i in range(3):
    micro(); opt.step()
""", tmp_path, lib)
    s = steps_of(r)
    assert s["count"] == 3 and [x["model_flops"] for x in s["records"]] == [NATTEN] * 3


def test_several_optimizers(py021, lib, tmp_path):
    """Parameters split over two optimizers stepped back to back: one step. A GAN-like
    loop, each optimizer after its own forward and backward: one step each."""
    r = run_both(py021, MODEL + """
o1 = torch.optim.SGD(m.a.parameters(), lr=0.1)
o2 = torch.optim.Adam(m.o.parameters(), lr=0.1)
for i in range(3):
    micro(); o1.step(); o2.step()
for i in range(2):
    micro(); o1.step()
    micro(); o2.step()
""", tmp_path, lib, NAFLOPS_WHOLE_MODEL="1")
    s = steps_of(r)
    check_records(s)
    assert s["count"] == 3 + 4
    assert [x["model_flops"] for x in s["records"]] == [MICRO] * 7


def test_optimizer_stepped_from_threads(py021, lib, tmp_path):
    """Two threads, each training its own model and stepping its own optimizer: every
    step ends, and every FLOP is in exactly one step. Linear layers only: NATTEN's Flex
    on the CPU builds its autograd graphs with make_fx on every call, which torch cannot
    do from two threads at once (one thread fails, plain or preloaded). Per micro-batch,
    hand-worked: forward 2*64*16*32 + 2*64*32*8 = 98304, backward 65536 + 2 * 32768."""
    r = run_both(py021, """
import threading, torch
def train():
    m = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Linear(32, 8))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = torch.randn(64, 16)
    for i in range(4):
        m(x).square().mean().backward(); opt.step()
ts = [threading.Thread(target=train) for _ in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]
""", tmp_path, lib, NAFLOPS_WHOLE_MODEL="1", NAFLOPS_SUMMARY="always")
    s = steps_of(r)
    check_records(s)
    assert 1 <= s["count"] <= 8
    assert s["total"]["model_flops"] == r.dump["totals"]["model_flops"] == 8 * (98304 + 131072)


def test_invisible_to_the_program(py021, lib, tmp_path):
    """The program sees no hook: torch.optim's global hook dicts stay empty, the
    optimizer's step is torch's own, and a profiler the program runs sees what it
    sees plain."""
    r = run_both(py021, MODEL + """
import torch.optim.optimizer as oo
opt = torch.optim.SGD(m.parameters(), lr=0.1)
micro(); opt.step()
print(len(oo._global_optimizer_pre_hooks), len(oo._global_optimizer_post_hooks),
      type(opt).step.__qualname__, getattr(type(opt).step, "hooked", None))
with torch.profiler.profile() as prof:
    micro(); opt.step()
names = sorted({e.name for e in prof.events() if e.name.startswith("Optimizer.")})
print(names)
""", tmp_path, lib, NAFLOPS_WHOLE_MODEL="1")
    assert steps_of(r)["count"] == 2


def test_flush_carries_steps(py021, lib, tmp_path):
    """A periodic flush (here after every counted op) writes the steps so far: a dump
    read while the program runs has them."""
    r = run_both(py021, MODEL + """
import json, os
opt = torch.optim.SGD(m.parameters(), lr=0.1)
for i in range(3):
    micro(); opt.step()
micro()  # the next counted op flushes the three steps
d = json.load(open(os.environ["NAFLOPS_OUTPUT"])) if "NAFLOPS_OUTPUT" in os.environ else None
open("mid.json", "w").write(json.dumps(d and d.get("steps", {}).get("count")))
""", tmp_path, lib, NAFLOPS_WHOLE_MODEL="1", NAFLOPS_FLUSH_OPS="1")
    assert json.loads((tmp_path / "pre" / "mid.json").read_text()) == 3
    assert steps_of(r)["count"] == 3


def test_torchrun_ranks(py021, lib, tmp_path):
    """torchrun, 2 ranks of DDP: each rank's dump has its own 3 steps, exact."""
    code = MODEL + """
import torch.distributed as dist
dist.init_process_group("gloo")
ddp = torch.nn.parallel.DistributedDataParallel(m)
opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
for i in range(3):
    micro(ddp); opt.step(); opt.zero_grad()
dist.destroy_process_group()
"""
    run_torchrun(py021, code, tmp_path, lib)
    ranks = {}
    for p in sorted(tmp_path.glob("rank-*.json")):
        d = json.loads(p.read_text())
        ranks[d["rank"]] = d
    assert set(ranks) == {"0", "1"}
    for d in ranks.values():
        s = d["steps"]
        check_records(s)
        assert s["count"] == 3
        assert [x["model_flops"] for x in s["records"]] == [MICRO] * 3
    merged = subprocess.run([sys.executable, str(ROOT / "scripts" / "naflops"), "merge", "-o",
                             str(tmp_path / "merged.json"),
                             *map(str, sorted(tmp_path.glob("rank-*.json")))],
                            capture_output=True, text=True)
    assert merged.returncode == 0, merged.stderr
    m = json.loads((tmp_path / "merged.json").read_text())
    assert m["steps"]["count"] == 3
    assert [x["model_flops"] for x in m["steps"]["records"]] == [2 * MICRO] * 3
    for x in m["steps"]["records"]:
        slowest = x["slowest_rank"]
        own = ranks[slowest]["steps"]["records"][x["step"] - 1]
        assert x["seconds"] == own["seconds"] == max(
            d["steps"]["records"][x["step"] - 1]["seconds"] for d in ranks.values())
    assert set(m["steps_by_rank"]) == {"0", "1"}


def test_other_torch_releases(py017, pynew, lib, tmp_path):
    """torch 2.6 (NATTEN 0.17's) and 2.15 (the newest): optimizer steps found the same
    way. Two Linear layers, 2 micro-batches a step, hand-worked: forward 2*64*16*32 +
    2*64*32*8 = 98304, backward 65536 (first weight) + 2 * 32768 = 131072."""
    code = """
import torch
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Linear(32, 8))
opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
x = torch.randn(64, 16)
for step in range(4):
    m(x).square().mean().backward(); m(x).square().mean().backward()
    opt.step(); opt.zero_grad()
print(float(m(x).sum()))
"""
    for name, py in (("2.6", py017), ("2.15", pynew)):
        (tmp_path / name).mkdir()
        r = run_both(py, code, tmp_path / name, lib, NAFLOPS_WHOLE_MODEL="1", NAFLOPS_SUMMARY="always")
        s = steps_of(r)
        check_records(s)
        assert s["count"] == 4, name
        assert [x["model_flops"] for x in s["records"]] == [2 * (98304 + 131072)] * 4, name
