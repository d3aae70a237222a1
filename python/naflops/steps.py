"""A dump's "steps" object (schema naflops/3): each record's per-step figures, the
steady state as the library computes it, and the steps of a run's ranks lined up into
one (what `merge` writes). Checking a steps object is naflops.stepcheck's job.

A record covers steps step .. step + steps - 1 and its figures are their sums; a merged
record's seconds (and start_s, gpu_busy_seconds) are its slowest rank's, its FLOPs the
sum over the ranks."""
import json
from fractions import Fraction

from naflops.errors import NaflopsError

FLOPS = ("model_flops", "hardware_flops", "natten_flops")


def _quantile(pairs, weight, q):
    """The value below which a fraction q of the weight lies: pairs (value, weight)
    sorted by value (the library's rule, so its medians come out the same)."""
    target, seen = q * weight, 0
    for v, w in pairs:
        seen += w
        if seen >= target:
            return v
    return pairs[-1][0] if pairs else 0


def is_steady(record):
    return not record["warmup"] and record["compiled"] == 0 and record["steps"] > 0


def steady_of(records, peak):
    """The "steady" object for these records (None when every step is warm-up or
    compiled): medians weighted by each record's steps, of its per-step means."""
    rs = [r for r in records if is_steady(r)]
    if not rs:
        return None
    n = sum(r["steps"] for r in rs)
    secs = sorted((r["seconds"] / r["steps"], r["steps"]) for r in rs)
    rate = sorted((r["model_flops"] / r["seconds"] if r["seconds"] > 0 else 0.0, r["steps"])
                  for r in rs)
    hrate = sorted((r["hardware_flops"] / r["seconds"] if r["seconds"] > 0 else 0.0,
                    r["steps"]) for r in rs)
    median = _quantile(rate, n, 0.5)
    hmedian = _quantile(hrate, n, 0.5)
    return {"steps": n, "seconds_median": _quantile(secs, n, 0.5),
            "seconds_p10": _quantile(secs, n, 0.1), "seconds_p90": _quantile(secs, n, 0.9),
            "model_flops_per_step": sum(r["model_flops"] for r in rs) / n,
            "hardware_flops_per_step": sum(r["hardware_flops"] for r in rs) / n,
            "flops_per_s_median": median,
            "mfu_median": median / peak if peak else None,
            "hfu_median": hmedian / peak if peak else None}


def steady_sums(steps):
    """{model_flops, hardware_flops, natten_flops}: exact sums over the steady records."""
    rs = [r for r in steps["records"] if is_steady(r)]
    return {k: sum(r[k] for r in rs) for k in FLOPS}


def record_figures(record, peak):
    """A record's per-step figures: FLOPs per step as exact Fractions; FLOP/s, MFU,
    HFU and the GPU's busy share as floats (None where there is no figure)."""
    n, s = record["steps"], record["seconds"]
    rate = record["model_flops"] / s if s > 0 else None
    hrate = record["hardware_flops"] / s if s > 0 else None
    gpu = record["gpu_busy_seconds"]
    return {"first": record["step"], "last": record["step"] + n - 1, "steps": n,
            "seconds": s, "seconds_per_step": s / n,
            "model": Fraction(record["model_flops"], n),
            "hardware": Fraction(record["hardware_flops"], n),
            "natten": record["natten_flops"], "model_flops": record["model_flops"],
            "flops_per_s": rate, "hardware_per_s": hrate,
            "mfu": rate / peak if peak and rate is not None else None,
            "hfu": hrate / peak if peak and hrate is not None else None,
            "gpu_busy": gpu / s if gpu is not None and s > 0 else None,
            "warmup": record["warmup"], "compiled": record["compiled"],
            "slowest_rank": record.get("slowest_rank")}


def slowest_counts(steps):
    """{rank: steps during which it was the slowest} of a merged steps object."""
    out = {}
    for r in steps["records"]:
        if isinstance(r.get("slowest_rank"), str):
            out[r["slowest_rank"]] = out.get(r["slowest_rank"], 0) + r["steps"]
    return out


def slowest_rank(ranks):
    """The rank {rank: steps} of the longest steady median step (ties: the longer p90,
    then the first); None when no rank has a steady state."""
    steady = {k: (s["steady"]["seconds_median"], s["steady"]["seconds_p90"])
              for k, s in ranks.items() if s["steady"]}
    return max(steady, key=lambda k: steady[k]) if steady else None


# ------------------------------------------------------------------ merging ranks

def rank_key(doc):
    """The key of a dump's steps in steps_by_rank: its rank, else "pid N", else "norank"."""
    if doc["rank"] is not None:
        return doc["rank"]
    return f"pid {doc['pid']}" if doc["pid"] is not None else "norank"


def who(key):
    return key if key.startswith("pid ") or key == "norank" else f"rank {key}"


def by_rank(doc):
    """{rank: steps object} of one dump: a merged dump's steps_by_rank, else its own
    steps under its rank key; {} without steps."""
    if "steps_by_rank" in doc:
        return dict(doc["steps_by_rank"])
    return {rank_key(doc): doc["steps"]} if "steps" in doc else {}


def layout(steps):
    return [(r["step"], r["steps"]) for r in steps["records"]]


def align_problem(ranks):
    """Why the steps {rank: steps} cannot be lined up record by record, or None."""
    (k0, s0), *rest = ranks.items()
    for k, s in rest:
        if s["boundary"] != s0["boundary"]:
            return (f"{who(k)} ends its steps at {json.dumps(s['boundary'])}, {who(k0)} at "
                    f"{json.dumps(s0['boundary'])}")
        if s["count"] != s0["count"]:
            return f"{who(k)} has {s['count']} steps, {who(k0)} {s0['count']}"
        if layout(s) != layout(s0):
            return (f"{who(k)}'s {len(s['records'])} records do not cover the steps "
                    f"{who(k0)}'s {len(s0['records'])} do")
    return None


def _peak(ranks):
    peaks = [s["peak_flops_per_s"] for s in ranks.values()]
    if any(p is None for p in peaks):
        return None, None
    if len(ranks) == 1:
        return peaks[0], next(iter(ranks.values()))["peak_source"]
    sources = {s["peak_source"] for s in ranks.values()}
    same = len(set(peaks)) == 1 and len(sources) == 1
    source = f"{len(ranks)} ranks x {sources.pop()}" if same else f"sum of {len(ranks)} ranks' peaks"
    return sum(peaks), source


def lined_up(ranks):
    """The steps of the ranks {rank: steps} (in rank order, one layout) as one: per
    record the slowest rank's seconds, start_s and GPU busy time, the FLOPs of all."""
    items = list(ranks.items())
    gpu = all(s["total"]["gpu_busy_seconds"] is not None for _, s in items)
    records = []
    for i, first in enumerate(items[0][1]["records"]):
        rows = [(k, s["records"][i]) for k, s in items]
        slow_key, slow = max(rows, key=lambda kr: kr[1]["seconds"])  # ties: the first rank
        rec = {"step": first["step"], "steps": first["steps"], "start_s": slow["start_s"],
               "seconds": slow["seconds"]}
        rec.update({k: sum(r[k] for _, r in rows) for k in FLOPS})
        rec.update(gpu_busy_seconds=slow["gpu_busy_seconds"] if gpu else None,
                   warmup=any(r["warmup"] for _, r in rows),
                   compiled=max(r["compiled"] for _, r in rows), slowest_rank=slow_key)
        records.append(rec)
    count = items[0][1]["count"]
    warmup = max(s["warmup"] for _, s in items)
    recompiled = min(sum(r["compiled"] for r in records if not r["warmup"]), count - warmup)
    peak, source = _peak(ranks)
    total = {"seconds": sum(r["seconds"] for r in records)}
    total.update({k: sum(r[k] for r in records) for k in FLOPS})
    total["gpu_busy_seconds"] = sum(r["gpu_busy_seconds"] for r in records) if gpu else None
    return {"boundary": items[0][1]["boundary"], "count": count, "warmup": warmup,
            "recompiled": recompiled, "bucket": max(s["bucket"] for _, s in items),
            "peak_flops_per_s": peak, "peak_source": source, "total": total,
            "steady": steady_of(records, peak), "records": records}


def merge_steps(named, order):
    """(steps, steps_by_rank, note) of the merged dump of [(name, doc)]: steps None
    when no dump has steps or they cannot be lined up (note: why, one line); ranks
    sorted by order (a sort key of a rank)."""
    ranks, where, without = {}, {}, []
    for name, doc in named:
        own = by_rank(doc)
        if not own:
            without.append(name if "ranks" in doc else who(rank_key(doc)))
        for k, s in own.items():
            if k in ranks:
                raise NaflopsError(f"{name}: the steps of {who(k)} are also in {where[k]}: "
                                   "cannot keep both")
            ranks[k], where[k] = s, name
    if not ranks:
        return None, None, None
    ranks = dict(sorted(ranks.items(), key=lambda kv: order(kv[0])))
    problem = f"{without[0]} has none" if without else align_problem(ranks)
    if problem:
        return None, ranks, (f"merge: steps cannot be lined up across ranks ({problem}); "
                             "each rank's are kept in steps_by_rank")
    return lined_up(ranks), ranks, None


def steps_json(steps, pad="  "):
    """A steps object laid out like the library's: one line per record."""
    head = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in steps.items() if k != "records"]
    recs = ",\n".join(f"{pad}    {json.dumps(r)}" for r in steps["records"])
    return ("{" + f",\n{pad}  ".join(head + [f'"records": [\n{recs}\n{pad}  ]']) + "}")
