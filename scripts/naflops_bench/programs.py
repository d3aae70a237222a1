"""The programs the bench times, run in worker processes (`scripts/bench --worker
SPEC.json`): the NA transformer step and na1d_qk calls (NATTEN 0.17 interpreter), and
the Flex step and single aten ops (NATTEN 0.21 interpreter). Each writes its timings
to the spec's result file. torch and natten are imported inside the workers only."""
import json
import time

from naflops_bench.config import FLEX


# ==================================================================== worker side
# Runs with the NATTEN 0.17 interpreter: `python scripts/bench --worker SPEC.json`.

def timed_steps(step, n, ctx):
    """n calls of step inside ctx (None: none): each one's wall and CPU seconds."""
    steps, steps_cpu = [], []
    if ctx is not None:
        ctx.__enter__()
    for _ in range(n):
        t, c = time.perf_counter(), time.process_time()
        step()
        steps.append(time.perf_counter() - t)
        steps_cpu.append(time.process_time() - c)
    if ctx is not None:
        ctx.__exit__(None, None, None)
    return steps, steps_cpu


def worker(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    if spec.get("workload") == "flex":
        return flex_worker(spec)
    import torch
    import natten
    from torch import nn

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    out = {"torch": torch.__version__, "natten": natten.__version__,
           "threads": torch.get_num_threads(), "config": spec["config"]}
    qk = natten.functional.na1d_qk
    # The wrapper is a function with the original's name and signature whose globals
    # are the counter's own (no module's): what tells it apart, for the bench only.
    out["wrapped"] = hasattr(qk, "__wrapped__") and "_naflops_hot" in qk.__globals__

    class Block(nn.Module):
        def __init__(self, dim, heads, kernel):
            super().__init__()
            self.norm1 = nn.LayerNorm(dim)
            self.attn = natten.NeighborhoodAttention2D(dim, heads, kernel_size=kernel)
            self.norm2 = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

        def forward(self, x):
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    m = spec["model"]
    model = nn.Sequential(*[Block(m["dim"], m["heads"], m["kernel"]) for _ in range(m["blocks"])])
    x = torch.randn(*m["input"])
    config = spec["config"]

    if config == "fvcore":
        # fvcore traces the model (torch.jit) and runs its handles on the graph: one
        # analysis is its cost. The first one in a process is what a user pays.
        from natten.flops import get_flops
        times, macs = [], None
        try:
            for _ in range(2):
                t = time.perf_counter()
                macs = get_flops(model, x, disable_warnings=True)
                times.append(time.perf_counter() - t)
            out.update(ok=True, analysis_s=times, macs=int(macs))
        except Exception as e:  # report why, do not hide it
            out.update(ok=False, error=f"{type(e).__name__}: {e}"[:500])
        return finish(spec, out)

    def context():
        if config == "flopcountermode":
            from torch.utils.flop_counter import FlopCounterMode
            return FlopCounterMode(display=False)
        if config == "profiler":
            from torch.profiler import ProfilerActivity, profile
            return profile(activities=[ProfilerActivity.CPU], with_flops=True)
        return None

    def flops_seen(ctx):
        if config == "flopcountermode":
            return int(ctx.get_total_flops())
        if config == "profiler":
            return int(sum(e.flops or 0 for e in ctx.events()))
        return None

    # ---- workload 1: model steps
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step():
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    # Wall time and CPU time (all threads of the process): on a shared machine the
    # CPU time is the steadier of the two.
    for _ in range(spec["warmup"]):
        step()
    ctx = context()
    t0, c0 = time.perf_counter(), time.process_time()
    steps, steps_cpu = timed_steps(step, spec["steps"], ctx)
    total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    out["model"] = {"step_s": steps, "total_s": total, "step_cpu_s": steps_cpu,
                    "total_cpu_s": total_cpu, "flops_seen": flops_seen(ctx)}

    # ---- workload 2: micro-benchmark of one NATTEN call
    shape, kernel = spec["micro"]["shape"], spec["micro"]["kernel"]
    calls = spec["calls"]
    # FlopCounterMode and the profiler cost tens of microseconds a call: fewer rounds do
    rounds = spec["rounds"] if config in ("plain", "preload", "observer") else max(1, spec["rounds"] // 4)
    fns = [("call", qk)]
    if out["wrapped"]:
        # Paired estimate in the same process: the wrapper against the function it wraps.
        fns.append(("unwrapped", qk.__wrapped__))
    counted = 0  # calls that went through natten.functional.na1d_qk (the wrapper)
    micro = {"calls_per_round": calls, "rounds": rounds}
    tensors = {}
    for grad in (False, True):
        q = torch.randn(*shape, requires_grad=grad)
        k = torch.randn(*shape, requires_grad=grad)
        tensors[grad] = (q, k)
        for name, fn in fns:
            for _ in range(spec["micro_warmup"]):
                fn(q, k, kernel)
            if name == "call":
                counted += spec["micro_warmup"]
    loop = range(calls)
    # Many short rounds, the grad modes and (under the preload) wrapped / unwrapped
    # alternating in ABBA order, so that drift cancels in the paired differences.
    for i in range(rounds):
        for grad in ((False, True) if i % 2 == 0 else (True, False)):
            q, k = tensors[grad]
            for name, fn in (fns if i % 2 == 0 else fns[::-1]):
                ctx = context()
                if ctx is not None:
                    ctx.__enter__()
                # CPU time of the process (all its threads) and wall time
                t, c = time.perf_counter_ns(), time.process_time_ns()
                for _ in loop:
                    fn(q, k, kernel)
                dc, dt = time.process_time_ns() - c, time.perf_counter_ns() - t
                if ctx is not None:
                    ctx.__exit__(None, None, None)
                tag = f"{name}_{'grad' if grad else 'nograd'}"
                micro.setdefault(f"{tag}_ns", []).append(dc / calls)
                micro.setdefault(f"{tag}_wall_ns", []).append(dt / calls)
                if name == "call":
                    counted += calls
    micro["counted_calls"] = counted
    out["micro"] = micro
    return finish(spec, out)


def finish(spec, out):
    with open(spec["result"], "w") as f:
        json.dump(out, f)
    return 0


# ==================================================================== flex worker
# Runs with the NATTEN 0.21 interpreter (torch 2.8): a small, op-heavy training step
# through Flex's CPU eager path, and single aten ops on 8x8 tensors.

def flex_worker(spec):
    import torch
    import natten
    from torch import nn
    import torch.nn.functional as F

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    config = spec["config"]
    out = {"torch": torch.__version__, "natten": natten.__version__, "config": config}
    f = FLEX

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1 = nn.LayerNorm(f["dim"])
            self.attn = natten.NeighborhoodAttention2D(embed_dim=f["dim"], num_heads=f["heads"],
                                                       kernel_size=f["kernel"])
            self.norm2 = nn.LayerNorm(f["dim"])
            self.mlp = nn.Sequential(nn.Linear(f["dim"], 4 * f["dim"]), nn.GELU(),
                                     nn.Linear(4 * f["dim"], f["dim"]))

        def forward(self, x):
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    model = nn.Sequential(*[Block() for _ in range(f["blocks"])])
    x = torch.randn(*f["input"])
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step():
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def context():
        if config == "flopcountermode":
            from torch.utils.flop_counter import FlopCounterMode
            return FlopCounterMode(display=False)
        if config == "profiler":
            from torch.profiler import ProfilerActivity, profile
            return profile(activities=[ProfilerActivity.CPU], with_flops=True)
        return None

    for _ in range(spec["flex_warmup"]):
        step()
    try:
        steps, steps_cpu = timed_steps(step, spec["flex_steps"], context())
        out["flex"] = {"step_s": steps, "step_cpu_s": steps_cpu}
    except Exception as e:  # FlopCounterMode has no rule for Flex's HOP: say so
        out["flex"] = {"error": f"{type(e).__name__}: {e}"[:300]}

    # Single aten ops: best of many short rounds (a quiet moment of a shared machine),
    # ns per call; FlopCounterMode and the profiler cost microseconds: fewer calls.
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    w, bias = torch.randn(8, 8), torch.randn(8)
    fns = {"torch.add 8x8": lambda: torch.add(a, b), "torch.mm 8x8": lambda: torch.mm(a, b),
           "F.linear 8x8": lambda: F.linear(a, w, bias)}
    calls = spec["op_calls"] if config in ("plain", "preload", "observer") else spec["op_calls"] // 10
    ops = {}
    for name, fn in fns.items():
        for _ in range(calls):
            fn()
    loop = range(calls)
    for i in range(spec["op_rounds"]):
        for name, fn in (fns.items() if i % 2 == 0 else list(fns.items())[::-1]):
            ctx = context()
            if ctx is not None:
                ctx.__enter__()
            t = time.perf_counter_ns()
            for _ in loop:
                fn()
            dt = time.perf_counter_ns() - t
            if ctx is not None:
                ctx.__exit__(None, None, None)
            ops[name] = min(ops.get(name, float("inf")), dt / calls)
    out["ops"] = ops
    out["op_calls_total"] = calls * (spec["op_rounds"] + 1)
    return finish(spec, out)
