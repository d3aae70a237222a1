"""The measurements, driver side: one worker process per configuration and round
(preloaded or not), its dump checked against the calls it made; the start-up runs;
the state of the checkout and the library measured."""
import json
import os
import subprocess
import time
from pathlib import Path

from naflops_bench.config import FLEX, MICRO, MODEL, PRELOADED, ROOT, SELF, Failure, clean_env


def check_flex_dump(dump, r, prof, whole_model):
    """The Flex step's NATTEN calls all counted, and the aten rows there exactly when the
    whole model is on (mm and addmm among them: the single-op loops count too)."""
    problems = []
    try:
        d = json.loads(Path(dump).read_text())
    except (OSError, ValueError) as e:
        return {"ok": False, "problems": [f"no readable dump: {e}"]}
    steps = prof["flex_warmup"] + prof["flex_steps"]
    natten = [o for o in d["ops"] if o["kind"] != "aten" and o["pass"] == "forward"]
    got = sum(o["calls"] for o in natten)
    if got != steps * FLEX["blocks"]:
        problems.append(f"Flex step: {got} NATTEN forward calls counted, {steps * FLEX['blocks']} made")
    aten = {o["op"]: o for o in d["ops"] if o["kind"] == "aten" and o["pass"] == "forward"
            and o["shape"] == [8, 8]}
    if whole_model:
        for op in ("aten::mm", "aten::addmm"):
            if op not in aten or aten[op]["calls"] < r["op_calls_total"]:
                problems.append(f"{op} 8x8: {aten.get(op, {}).get('calls', 0)} calls counted, "
                                f"at least {r['op_calls_total']} made")
    elif any(o["kind"] == "aten" for o in d["ops"]):
        problems.append("aten rows with NAFLOPS_WHOLE_MODEL=0")
    return {"ok": not problems, "problems": problems}


def run_worker(python, lib, config, prof, tmp, tag, workload="model"):
    spec = {"config": config, "model": MODEL, "micro": MICRO, "workload": workload,
            "result": str(tmp / f"{tag}.result.json"), **prof}
    spec_path = tmp / f"{tag}.spec.json"
    spec_path.write_text(json.dumps(spec))
    env = clean_env()
    dump = None
    if config in PRELOADED:
        dump = tmp / f"{tag}.dump.json"
        env.update(LD_PRELOAD=str(lib), NAFLOPS_SUMMARY="never", NAFLOPS_OUTPUT=str(dump),
                   NAFLOPS_WHOLE_MODEL="1" if config == "observer" else "0")
    p = subprocess.run([python, str(SELF), "--worker", str(spec_path)], env=env, cwd=tmp,
                       capture_output=True, text=True, timeout=900)
    if p.returncode != 0 or not Path(spec["result"]).exists():
        raise Failure(f"{config} worker failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    r = json.loads(Path(spec["result"]).read_text())
    r["loadavg_1min_after"] = os.getloadavg()[0]
    if config in PRELOADED:
        check = check_flex_dump if workload == "flex" else check_dump
        r["check"] = check(dump, r, prof, whole_model=config == "observer")
        if not r["check"]["ok"]:  # its timings would mean nothing: stop here
            raise Failure("the preloaded library did not count correctly, so its timings "
                          "are not valid:\n  " + "\n  ".join(r["check"]["problems"]))
    elif r.get("wrapped"):
        raise Failure(f"{config} run has NATTEN wrapped without the preload")
    return r


def qk_flops(b, h, tokens, window, d):
    return 2 * b * h * tokens * window * d


def check_dump(dump, r, prof, whole_model=False):
    """The counter must have counted exactly the calls this run made, with the right
    FLOPs: otherwise its timings mean nothing. With the whole model, the aten rows
    are checked against FlopCounterMode later (other_flops_per_step)."""
    problems = []
    if not r.get("wrapped"):
        problems.append("natten.functional.na1d_qk is not wrapped under the preload")
    try:
        d = json.loads(Path(dump).read_text())
    except (OSError, ValueError) as e:
        return {"ok": False, "problems": problems + [f"no readable dump: {e}"]}

    aten = [o for o in d["ops"] if o["kind"] == "aten"]
    d["ops"] = [o for o in d["ops"] if o["kind"] != "aten"]
    other = d["totals"].get("other_flops", 0)
    steps = prof["warmup"] + prof["steps"]
    if whole_model and (not aten or other % steps):
        problems.append(f"whole model: {len(aten)} aten rows, other FLOPs {other} "
                        f"not a multiple of the {steps} model steps")
    if not whole_model and aten:
        problems.append("aten rows with NAFLOPS_WHOLE_MODEL=0")

    def calls(op, pas):
        rows = [o for o in d["ops"] if o["op"] == op and o["pass"] == pas]
        return sum(o["calls"] for o in rows), rows

    b, hgt, wid, dim = MODEL["input"]
    head = dim // MODEL["heads"]
    model_calls = MODEL["blocks"] * (prof["warmup"] + prof["steps"])
    per_call = qk_flops(b, MODEL["heads"], hgt * wid, MODEL["kernel"] ** 2, head)
    expect = {("na2d_qk", "forward"): (model_calls, per_call),
              ("na2d_qk", "backward"): (model_calls, 2 * per_call),
              ("na2d_av", "forward"): (model_calls, per_call),
              ("na2d_av", "backward"): (model_calls, 2 * per_call)}
    mb, mh, ml, md = MICRO["shape"]
    micro_per_call = qk_flops(mb, mh, ml, MICRO["kernel"], md)
    expect[("na1d_qk", "forward")] = (r["micro"]["counted_calls"], micro_per_call)
    total = 0
    for (op, pas), (n, fpc) in expect.items():
        got, rows = calls(op, pas)
        if got != n:
            problems.append(f"{op} {pas}: {got} calls counted, {n} made")
        for o in rows:
            if o["flops_per_call"] != fpc:
                problems.append(f"{op} {pas}: {o['flops_per_call']} FLOPs per call, expected {fpc}")
        total += n * fpc
    extra = {(o["op"], o["pass"]) for o in d["ops"]} - set(expect)
    if extra:
        problems.append(f"unexpected rows: {sorted(extra)}")
    if d["totals"]["flops"] - other != total:
        problems.append(f"NATTEN total {d['totals']['flops'] - other} FLOPs, expected {total}")
    return {"ok": not problems, "problems": problems, "dump_calls": d["totals"]["calls"],
            "dump_flops": d["totals"]["flops"], "other_flops_per_step": other // steps}


STARTUP_CODE = ("import time; t, c = time.perf_counter(), time.process_time(); "
                "import torch, natten; "
                "t, c = time.perf_counter() - t, time.process_time() - c; "
                "import natten.functional as F; f = getattr(F, 'na1d_qk', None) or F.na2d; "
                "print(t, c, '_naflops_hot' in f.__globals__)")


def children_cpu():
    import resource
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def run_startup(python, lib, preload):
    """Wall and CPU time (user + system) of the whole process, and of the import
    statement alone, measured inside it."""
    env = clean_env()
    if preload:
        env.update(LD_PRELOAD=str(lib), NAFLOPS_SUMMARY="never")
    c, t = children_cpu(), time.perf_counter()
    p = subprocess.run([python, "-c", STARTUP_CODE], env=env, capture_output=True, text=True,
                       timeout=300)
    wall, cpu = time.perf_counter() - t, children_cpu() - c
    if p.returncode != 0:
        raise Failure(f"start-up run failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
    inner, inner_cpu, wrapped = p.stdout.split()[-3:]
    if (wrapped == "True") != preload:
        raise Failure(f"start-up run: NATTEN wrapped={wrapped} with preload={preload}")
    return {"wall_s": wall, "cpu_s": cpu, "import_wall_s": float(inner),
            "import_cpu_s": float(inner_cpu)}


def git_state():
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                "src", "hooks"], capture_output=True, text=True).stdout.strip()
        return head + (" + uncommitted changes in src/ or hooks/" if dirty else "")
    except OSError:
        return None


def sha256(path):
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
