"""Checking a naflops/3 dump's "steps" object and a merged dump's "steps_by_rank":
every field's type, then what the library's steps always keep (records in step order
from 1, their steps summing to count and their FLOPs to the total, at most `bucket`
steps a record, warm-up records first, model <= hardware and NATTEN <= model FLOPs,
the steady state over the steps neither warm-up nor compiled). A merged dump's steps
must be its ranks' lined up (naflops.steps). Each problem is one line through fail."""
import math

from naflops import dumps
from naflops.steps import FLOPS, is_steady, layout


def _number(v):
    return (type(v) is float and math.isfinite(v) and v >= 0) or dumps._count(v)


def _positive(v):
    return v is None or (_number(v) and v > 0)


_NUM = (_number, "a number >= 0")
_OPT_NUM = (lambda v: v is None or _number(v), "a number >= 0 or null")
_PEAK = (_positive, "a number > 0 or null")
_BOOL = (lambda v: type(v) is bool, "true or false")
_OPT_OBJECT = (lambda v: v is None or type(v) is dict, "an object or null")

STEPS_FIELDS = {"boundary": dumps._STR, "count": dumps._COUNT, "warmup": dumps._COUNT,
                "recompiled": dumps._COUNT, "bucket": dumps._COUNT, "peak_flops_per_s": _PEAK,
                "peak_source": dumps._OPT_STR, "total": dumps._OBJECT,
                "steady": _OPT_OBJECT, "records": dumps._LIST}
FIGURE_FIELDS = {"seconds": _NUM, **{k: dumps._COUNT for k in FLOPS},
                 "gpu_busy_seconds": _OPT_NUM}
RECORD_FIELDS = {"step": dumps._COUNT, "steps": dumps._COUNT, "start_s": _NUM,
                 **FIGURE_FIELDS, "warmup": _BOOL, "compiled": dumps._COUNT}
MERGED_RECORD_FIELDS = {**RECORD_FIELDS, "slowest_rank": dumps._STR}
STEADY_FIELDS = {"steps": dumps._COUNT, **{k: _NUM for k in (
    "seconds_median", "seconds_p10", "seconds_p90", "model_flops_per_step",
    "hardware_flops_per_step", "flops_per_s_median")}, "mfu_median": _OPT_NUM,
    "hfu_median": _OPT_NUM}


def _close(total, parts):
    """Seconds that are the sum of parts, but for float rounding."""
    return abs(total - sum(parts)) <= 1e-6 * max(1.0, total)


def check(doc, fail):
    """doc's "steps" and "steps_by_rank" (both optional in naflops/3)."""
    by_rank = doc.get("steps_by_rank")
    if "steps_by_rank" in doc:
        if type(by_rank) is not dict or not by_rank:
            fail(f"steps_by_rank: expected an object of the ranks' steps, got "
                 f"{dumps.show(by_rank)}")
        for k, s in by_rank.items():
            check_steps(s, f"steps_by_rank[{dumps.show(k)}]", fail)
    if "steps" in doc:
        check_steps(doc["steps"], "steps", fail, merged=by_rank is not None)
        if by_rank is not None:
            check_lined_up(doc["steps"], by_rank, fail)


def _check_records(s, where, fail, fields):
    records, bucket, gpu = s["records"], s["bucket"], s["total"]["gpu_busy_seconds"] is not None
    at, flagged, steady, start = 1, 0, False, 0
    for i, r in enumerate(records):
        w = f"{where}.records[{i}]"
        if type(r) is not dict:
            fail(f"{w}: expected an object, got {dumps.show(r)}")
        dumps._check_fields(r, fields, w + ".", fail)
        if r["step"] != at:
            fail(f"{w}.step: {r['step']}, expected {at} (records cover steps 1, 2, ... in order)")
        if not 1 <= r["steps"] <= bucket:
            fail(f"{w}.steps: expected 1 to bucket ({bucket}), got {r['steps']}")
        if r["compiled"] > r["steps"]:
            fail(f"{w}.compiled: {r['compiled']} is more than its steps ({r['steps']})")
        if r["model_flops"] > r["hardware_flops"]:
            fail(f"{w}.model_flops: {r['model_flops']} is more than hardware_flops "
                 f"({r['hardware_flops']})")
        if r["natten_flops"] > r["model_flops"]:
            fail(f"{w}.natten_flops: {r['natten_flops']} is more than model_flops "
                 f"({r['model_flops']})")
        if (r["gpu_busy_seconds"] is not None) != gpu:
            fail(f"{w}.gpu_busy_seconds: {dumps.show(r['gpu_busy_seconds'])}, but the "
                 f"total's is {dumps.show(s['total']['gpu_busy_seconds'])} (null in all or none)")
        if r["warmup"] and steady:
            fail(f"{w}.warmup: a warm-up record after a steady one (warm-up records come first)")
        if "slowest_rank" not in fields and r["start_s"] < start:
            fail(f"{w}.start_s: {r['start_s']} is before the record before's ({start})")
        flagged += r["steps"] if r["warmup"] else 0
        steady = steady or not r["warmup"]
        start = r["start_s"]
        at += r["steps"]
    return at - 1, flagged


def check_steps(s, where, fail, merged=False):
    """One steps object (a dump's, a rank's in steps_by_rank, or a merged one whose
    records name their slowest rank)."""
    if type(s) is not dict:
        fail(f"{where}: expected an object, got {dumps.show(s)}")
    dumps._check_fields(s, STEPS_FIELDS, where + ".", fail)
    b = s["boundary"]
    if b not in ("optimizer", "backward") and not (b.startswith("function ") and b[9:]):
        fail(f"{where}.boundary: expected optimizer, backward or function <module>:<qualname>, "
             f"got {dumps.show(b)}")
    count, warmup, recompiled, bucket = (s[k] for k in ("count", "warmup", "recompiled", "bucket"))
    if count == 0:
        fail(f"{where}.count: 0 (a dump with no steps has no steps object)")
    if bucket == 0 or bucket & (bucket - 1):
        fail(f"{where}.bucket: expected a power of two, got {bucket}")
    if warmup > count:
        fail(f"{where}.warmup: {warmup} is more than count ({count})")
    if warmup + recompiled > count:
        fail(f"{where}.recompiled: warmup + recompiled ({warmup} + {recompiled}) is more than "
             f"count ({count})")
    if (s["peak_flops_per_s"] is None) != (s["peak_source"] is None):
        fail(f"{where}.peak_source: {dumps.show(s['peak_source'])} with peak_flops_per_s "
             f"{dumps.show(s['peak_flops_per_s'])} (both set or both null)")
    total = s["total"]
    dumps._check_fields(total, FIGURE_FIELDS, where + ".total.", fail)
    if not s["records"]:
        fail(f"{where}.records: empty (a steps object has a record per step or range of steps)")
    ended, flagged = _check_records(s, where, fail,
                                    MERGED_RECORD_FIELDS if merged else RECORD_FIELDS)
    if ended != count:
        fail(f"{where}.count: {count} is not the sum of the records' steps ({ended})")
    if flagged > warmup:
        fail(f"{where}.warmup: {warmup}, but the warm-up records hold {flagged} steps")
    compiled = sum(r["compiled"] for r in s["records"])
    if not recompiled <= compiled <= warmup + recompiled:
        fail(f"{where}.recompiled: {recompiled} does not fit the records' {compiled} compiled "
             f"steps (recompiled + at most warmup ({warmup}))")
    for key in FLOPS:
        parts = [r[key] for r in s["records"]]
        if not dumps._sums_to(total[key], parts):
            fail(f"{where}.total.{key}: {total[key]} is not the sum of the records' ({sum(parts)})")
    for key in ("seconds", "gpu_busy_seconds"):
        parts = [r[key] for r in s["records"]]
        if total[key] is not None and not _close(total[key], parts):
            fail(f"{where}.total.{key}: {total[key]} is not the sum of the records' "
                 f"({sum(parts):.9g})")
    _check_steady(s, where, fail)


def _check_steady(s, where, fail):
    steady = s["steady"]
    want = sum(r["steps"] for r in s["records"] if is_steady(r))
    if steady is None:
        if want:
            fail(f"{where}.steady: null, but {want} steps are neither warm-up nor compiled")
        return
    dumps._check_fields(steady, STEADY_FIELDS, where + ".steady.", fail)
    if steady["steps"] != want:
        fail(f"{where}.steady.steps: {steady['steps']} is not the number of steps neither "
             f"warm-up nor compiled ({want})")
    if not steady["seconds_p10"] <= steady["seconds_median"] <= steady["seconds_p90"]:
        fail(f"{where}.steady: expected seconds_p10 <= seconds_median <= seconds_p90, got "
             f"{steady['seconds_p10']}, {steady['seconds_median']}, {steady['seconds_p90']}")
    for key in ("mfu_median", "hfu_median"):
        if (steady[key] is None) != (s["peak_flops_per_s"] is None):
            fail(f"{where}.steady.{key}: {dumps.show(steady[key])} with peak_flops_per_s "
                 f"{dumps.show(s['peak_flops_per_s'])} (a number exactly when there is a peak)")


def check_lined_up(steps, by_rank, fail):
    """A merged dump's steps: its ranks' (steps_by_rank) record by record, the FLOPs
    summed and the seconds the slowest rank's."""
    for k, s in by_rank.items():
        if layout(s) != layout(steps) or s["boundary"] != steps["boundary"]:
            fail(f"steps: not lined up with steps_by_rank[{dumps.show(k)}] (other steps in "
                 "its records, or another boundary)")
    for i, r in enumerate(steps["records"]):
        where = f"steps.records[{i}]"
        if r["slowest_rank"] not in by_rank:
            fail(f"{where}.slowest_rank: {dumps.show(r['slowest_rank'])} is not a rank of "
                 "steps_by_rank")
        own = [s["records"][i] for s in by_rank.values()]
        for key in FLOPS:
            if r[key] != sum(o[key] for o in own):
                fail(f"{where}.{key}: {r[key]} is not the sum over the ranks "
                     f"({sum(o[key] for o in own)})")
        slowest = max(o["seconds"] for o in own)
        if r["seconds"] != slowest:
            fail(f"{where}.seconds: {r['seconds']} is not the slowest rank's ({slowest})")
        named = by_rank[r["slowest_rank"]]["records"][i]["seconds"]
        if named != slowest:
            fail(f"{where}.slowest_rank: {dumps.show(r['slowest_rank'])} took {named} s, not "
                 f"the slowest {slowest} s")
