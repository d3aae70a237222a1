"""Dumps combined: the ranks of one run merged into one dump (exactly), the rows of two
runs lined up for a diff, and a dump written back as JSON."""
import json

from naflops.dumps import (COUNTED, LIMIT, OP_FIELDS, PASSES, SCHEMA, SCHEMA_MODULES, SCHEMA_STEPS,
                           STEP_KEYS, has_modules, show)
from naflops.figures import describe
from naflops.errors import NaflopsError
from naflops.steps import merge_steps, steps_json


SIGNATURE_FIELDS = tuple(OP_FIELDS) + ("module",)  # rows are per signature and module


def signature(op, leave_out=COUNTED):
    return tuple((k, tuple(v) if isinstance(v, list) else v)
                 for k, v in ((k, op.get(k)) for k in SIGNATURE_FIELDS) if k not in leave_out)


def _rank_key(r):
    if r is None:
        return (2, 0, "")
    return (0, len(r), r) if r.isascii() and r.isdigit() else (1, 0, r)


def totals_of(ops, uncounted=0):
    f = {p: sum(op["flops"] for op in ops if op["pass"] == p) for p in PASSES}
    every = sum(f.values())
    model = f["forward"] + f["backward"]
    natten = sum(op["flops"] for op in ops if op["kind"] != "aten")
    return {"flops": every, "macs": every // 2, "forward_flops": f["forward"],
            "backward_flops": f["backward"], "forward_macs": f["forward"] // 2,
            "backward_macs": f["backward"] // 2, "recompute_flops": f["recompute"],
            "recompute_macs": f["recompute"] // 2, "jvp_flops": f["jvp"], "jvp_macs": f["jvp"] // 2,
            "model_flops": model, "model_macs": model // 2,
            "natten_flops": natten, "other_flops": every - natten,
            "calls": sum(op["calls"] for op in ops), "uncounted_calls": uncounted}


def check_same_run(named):
    """Refuses dumps [(name, doc)] that are not the ranks of one run."""
    first_name, first = named[0]
    version, ranks, processes = None, {}, {}  # version: (NATTEN version, file)
    for name, doc in named:
        if doc["world_size"] != first["world_size"]:
            raise NaflopsError(f"{name}: world_size {show(doc['world_size'])}, but {first_name} "
                               f"has {show(first['world_size'])}: not the same run")
        for v in [doc["natten_version"]] + [op["natten_version"] for op in doc["ops"]]:
            if v is not None and version is None:
                version = (v, name)
            elif v is not None and v != version[0]:
                raise NaflopsError(f"{name}: NATTEN {v}, but {version[1]} has NATTEN "
                                   f"{version[0]}: not the same run")
        for r in doc.get("ranks", [doc["rank"]]):
            if r is not None and r in ranks:
                raise NaflopsError(f"{name}: rank {r} is also in {ranks[r]}: the dumps of a "
                                   "run have distinct ranks")
            ranks.setdefault(r, name)
        if doc["pid"] is not None:
            process = (doc["host"], doc["pid"])
            if process in processes:
                raise NaflopsError(f"{name}: pid {doc['pid']} on host {show(doc['host'])} is "
                                   f"also in {processes[process]}: the same process twice")
            processes[process] = name
    return version and version[0]


def merge(named, notes=None):
    """One dump summing the dumps [(name, doc)] of one run's ranks; with steps, their
    steps lined up (naflops.steps) and each rank's in steps_by_rank. Steps that cannot
    be lined up add a line saying why to notes (a list)."""
    version = check_same_run(named)
    merged = {}
    for _, doc in named:
        for op in doc["ops"]:
            key = signature(op)
            if key in merged:
                merged[key]["calls"] += op["calls"]
            else:
                merged[key] = dict(op)
    for op in merged.values():  # exact, where a rank's own count may have saturated
        op["flops"] = op["calls"] * op["flops_per_call"]
        op["macs"] = op["flops"] // 2
    ops = list(merged.values())
    totals = totals_of(ops, sum(doc["totals"]["uncounted_calls"] for _, doc in named))
    if max(totals.values()) >= LIMIT:
        raise NaflopsError("merge: the merged counts reach 2^256, more than a dump holds")
    hosts = {doc["host"] for _, doc in named}
    ranks = [r for _, doc in named for r in doc.get("ranks", [doc["rank"]])]
    steps, by_rank, note = merge_steps(named, _rank_key)
    if note and notes is not None:
        notes.append(note)
    schema = SCHEMA_MODULES if has_modules(named[0][1]) else SCHEMA_STEPS if by_rank else SCHEMA
    merged = {"schema": schema, "pid": None,
              "host": hosts.pop() if len(hosts) == 1 else None, "rank": None,
              "local_rank": None, "world_size": named[0][1]["world_size"],
              "natten_version": version, "ranks": sorted(ranks, key=_rank_key), "ops": ops,
              "totals": totals}
    if steps:
        merged["steps"] = steps
    if by_rank:
        merged["steps_by_rank"] = by_rank
    return merged


def to_json(doc):
    """A dump laid out like the library's: one line per op, then the steps (one line
    per record) and each rank's."""
    head = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items()
            if k not in ("ops", "totals") + STEP_KEYS]
    fields = list(OP_FIELDS)
    if has_modules(doc):  # where the library puts it
        fields.insert(fields.index("pass") + 1, "module")
    ops = ",\n".join("    " + json.dumps({k: op[k] for k in fields}) for op in doc["ops"])
    body = head + [f'  "ops": [\n{ops}\n  ]' if ops else '  "ops": []',
                   f'  "totals": {json.dumps(doc["totals"])}']
    if "steps" in doc:
        body.append(f'  "steps": {steps_json(doc["steps"])}')
    if "steps_by_rank" in doc:
        ranks = ",\n".join(f"    {json.dumps(k)}: {steps_json(s, '    ')}"
                           for k, s in doc["steps_by_rank"].items())
        body.append(f'  "steps_by_rank": {{\n{ranks}\n  }}')
    return "{\n" + ",\n".join(body) + "\n}\n"


DIFF_KEY_LEAVES_OUT = COUNTED + ("natten_version", "flops_per_call", "module")  # per op; modules apart


def diff_sides(a, b):
    """key -> {"desc": cells, "a": [calls, flops] or None, "b": ...}: the diff's rows."""
    sides = {}
    for side, doc in (("a", a), ("b", b)):
        for op in doc["ops"]:
            entry = sides.setdefault(signature(op, DIFF_KEY_LEAVES_OUT),
                                     {"desc": describe(op), "a": None, "b": None})
            old = entry[side] or [0, 0]
            entry[side] = [old[0] + op["calls"], old[1] + op["flops"]]
    return sides
