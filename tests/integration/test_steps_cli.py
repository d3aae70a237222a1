"""scripts/naflops on naflops/3 dumps with steps, written here by hand (their sums and
medians worked out below): report --by step (table, exact and SI, csv, md), a dump
without steps, every kind of bad steps object refused in one line, merge of two ranks
with different step times (the slowest rank's seconds, FLOPs summed, steps_by_rank),
merged dumps merged again, ranks that cannot be lined up, diff, and the HTML page's
Steps section (the page text, then rendered in headless Chromium when it is there).
Nothing here needs torch or the library."""
import copy
import json
import os
import subprocess
import sys

import pytest

import cdp
from cdp import browser  # noqa: F401  (a fixture)
from conftest import ROOT, clean_env

NAFLOPS = ROOT / "scripts" / "naflops"
NO_STEPS = 3  # report --by step's exit status for a valid dump without steps

# One NATTEN op: na2d forward, 4 calls of 147456 FLOPs (the README's example).
OP = {"op": "na2d", "pass": "forward", "kind": "fused", "natten_version": "0.21.7",
      "backend": "flex-fna", "shape": [2, 8, 8, 2, 16], "key_shape": [2, 8, 8, 2, 16],
      "value_shape": [2, 8, 8, 2, 16], "kernel_size": [3, 3], "stride": [1, 1],
      "dilation": [1, 1], "is_causal": [False, False], "additional_kv": 0, "varlen_pairs": None,
      "dtype": "float32", "device": "cpu", "calls": 4, "flops_per_call": 147456,
      "flops": 589824, "macs": 294912}
TOTALS = {"flops": 589824, "macs": 294912, "forward_flops": 589824, "backward_flops": 0,
          "forward_macs": 294912, "backward_macs": 0, "jvp_flops": 0, "jvp_macs": 0,
          "recompute_flops": 0, "recompute_macs": 0, "model_flops": 589824,
          "model_macs": 294912, "natten_flops": 589824, "other_flops": 0, "calls": 4,
          "uncounted_calls": 0}

# Six optimizer steps, the first warm-up (it compiled), on two ranks that do the same
# FLOPs at different speeds. Per step: model, hardware, NATTEN FLOPs.
FLOPS = [(200, 220, 80), (240, 260, 80), (240, 260, 80), (250, 260, 100), (240, 260, 80),
         (250, 270, 100)]
SECONDS = {"0": [0.5, 0.1, 0.1, 0.125, 0.08, 0.1],
           "1": [0.6, 0.12, 0.09, 0.1, 0.11, 0.105]}
PEAK = 10000  # FLOP/s, NAFLOPS_PEAK
# Steady steps 2-6. Rank 0's step times sorted: 0.08 0.1 0.1 0.1 0.125 (median 0.1, p10
# 0.08, p90 0.125); model FLOP/s 2000 2400 2400 2500 3000 (median 2400), hardware FLOP/s
# 2080 2600 2600 2700 3250 (2600). Rank 1's: 0.09 0.1 0.105 0.11 0.12 (median 0.105),
# FLOP/s 240/0.12 250/0.105 ... (median 250/0.105). Model per step (240+240+250+240+250)/5
# = 244, hardware 1310/5 = 262. Totals: model 1420, hardware 1530, NATTEN 520.
STEADY = {"0": (0.1, 0.08, 0.125, 2400.0, 2600.0),
          "1": (0.105, 0.09, 0.12, 250 / 0.105, 260 / 0.105)}


def record(step, seconds, flops, start, warmup=False, compiled=0, steps=1, gpu=None):
    model, hardware, natten = flops
    return {"step": step, "steps": steps, "start_s": start, "seconds": seconds,
            "model_flops": model, "hardware_flops": hardware, "natten_flops": natten,
            "gpu_busy_seconds": gpu, "warmup": warmup, "compiled": compiled}


def steps_object(records, steady, warmup=1, recompiled=0, bucket=1, peak=PEAK,
                 source="NAFLOPS_PEAK"):
    """A steps object over these records; steady: (median, p10, p90, model FLOP/s median,
    hardware FLOP/s median, steps, model per step, hardware per step) or None."""
    total = {"seconds": sum(r["seconds"] for r in records)}
    for k in ("model_flops", "hardware_flops", "natten_flops"):
        total[k] = sum(r[k] for r in records)
    gpu = [r["gpu_busy_seconds"] for r in records]
    total["gpu_busy_seconds"] = None if gpu[0] is None else sum(gpu)
    if steady is not None:
        median, p10, p90, rate, hrate, n, model, hardware = steady
        steady = {"steps": n, "seconds_median": median, "seconds_p10": p10, "seconds_p90": p90,
                  "model_flops_per_step": model, "hardware_flops_per_step": hardware,
                  "flops_per_s_median": rate, "mfu_median": rate / peak if peak else None,
                  "hfu_median": hrate / peak if peak else None}
    return {"boundary": "optimizer", "count": sum(r["steps"] for r in records),
            "warmup": warmup, "recompiled": recompiled, "bucket": bucket,
            "peak_flops_per_s": peak, "peak_source": source if peak else None, "total": total,
            "steady": steady, "records": records}


def rank_steps(rank, seconds=None):
    seconds = seconds or SECONDS[rank]
    records, start = [], 1.25
    for i, (t, f) in enumerate(zip(seconds, FLOPS)):
        records.append(record(i + 1, t, f, start, warmup=i == 0, compiled=1 if i == 0 else 0))
        start += t
    return steps_object(records, STEADY[rank] + (5, 244, 262))


def dump(steps=None, rank="0", pid=None, world_size="2", schema="naflops/3"):
    doc = {"schema": schema, "pid": 4000 + int(rank) if pid is None else pid, "host": "node0",
           "rank": rank, "local_rank": rank, "world_size": world_size,
           "natten_version": "0.21.7", "ops": [dict(OP)], "totals": dict(TOTALS)}
    if steps is not None:
        doc["steps"] = steps
    return doc


def naflops(*args, cwd=None):
    return subprocess.run([sys.executable, str(NAFLOPS), *map(str, args)], capture_output=True,
                          text=True, env=clean_env(), cwd=cwd, timeout=120)


def write(path, doc):
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


# ------------------------------------------------------------------ report --by step

def test_report_by_step_exact(tmp_path):
    d = write(tmp_path / "r0.json", dump(rank_steps("0")))
    r = naflops("report", "--by", "step", "--units", "exact", d)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == ("Steps of pid 4000, rank 0: 6 optimizer steps (boundary: optimizer); "
                        "1 warm-up, 0 recompiled")
    assert lines[1].split() == ["step", "time/step", "model/step", "hardware/step", "NATTEN",
                                "FLOP/s", "MFU", "HFU"]
    rows = [l.split() for l in lines[2:8]]
    # step, time, ms, model, hardware, NATTEN share, FLOP/s (model / time), MFU, HFU, mark
    assert rows[0] == ["1", "500.00", "ms", "200", "220", "40.0%", "400", "4.00%", "4.40%",
                       "warm-up,", "compiled"]
    assert rows[3] == ["4", "125.00", "ms", "250", "260", "40.0%", "2000", "20.00%", "20.80%"]
    assert [x[3] for x in rows] == [str(f[0]) for f in FLOPS]  # model FLOPs per step
    assert [x[4] for x in rows] == [str(f[1]) for f in FLOPS]
    assert lines[8:] == [
        "steady    5 steps: time median 100.00 ms (p10 80.00 ms, p90 125.00 ms)",
        "per step  model 244 FLOP  hardware 262 FLOP  NATTEN 36.1%",  # 440 / 1220
        "achieved  2400 FLOP/s (median)",
        "MFU       24.00%  HFU 26.00%  (peak 10.0 KFLOP/s, NAFLOPS_PEAK)",
        "total     6 steps in 1.005 s: model 1420 FLOP  hardware 1530 FLOP  NATTEN 520 FLOP"]


def test_report_by_step_si_csv_md(tmp_path):
    d = write(tmp_path / "r0.json", dump(rank_steps("0")))
    r = naflops("report", "--by", "step", d)
    assert r.returncode == 0
    row2 = r.stdout.splitlines()[3].split()
    assert row2 == ["2", "100.00", "ms", "240", "FLOP", "260", "FLOP", "33.3%", "2.4",
                    "KFLOP/s", "24.00%", "26.00%"]
    assert "achieved  2.4 KFLOP/s (median)" in r.stdout
    r = naflops("report", "--by", "step", "--format", "csv", d)
    assert r.returncode == 0
    head, *rows = [l.split(",") for l in r.stdout.splitlines()]
    assert head[:10] == ["step", "steps", "start_s", "seconds", "model_flops", "hardware_flops",
                         "natten_flops", "gpu_busy_seconds", "warmup", "compiled"]
    assert len(rows) == 6
    col = {k: i for i, k in enumerate(head)}
    assert [int(x[col["model_flops"]]) for x in rows] == [f[0] for f in FLOPS]
    assert [float(x[col["seconds"]]) for x in rows] == SECONDS["0"]
    assert [x[col["warmup"]] for x in rows] == ["true"] + ["false"] * 5
    assert rows[0][col["gpu_busy_seconds"]] == ""
    assert float(rows[0][col["mfu"]]) == pytest.approx(0.04)
    r = naflops("report", "--by", "step", "--format", "md", d)
    assert r.returncode == 0
    assert "| 1 | 500.00 ms | 200 FLOP | 220 FLOP | 40.0% | 400 FLOP/s | 4.00% | 4.40% | warm-up, compiled |" \
        in r.stdout
    assert "- MFU       24.00%  HFU 26.00%  (peak 10.0 KFLOP/s, NAFLOPS_PEAK)" in r.stdout


def test_bucketed_records(tmp_path):
    """Records of several steps (a long job past 1024 records): per-step figures are the
    record's divided by its steps, exact decimals; a recompiled step is not steady."""
    records = [record(1, 0.5, (200, 200, 0), 0.0, warmup=True),
               record(2, 0.4, (1000, 1100, 400), 0.5, steps=4),
               record(6, 0.3, (700, 700, 0), 0.9, steps=3, compiled=1)]
    # steady: the 4 steps of record 2 only, 0.1 s and 250 FLOP each, 2500 FLOP/s
    s = steps_object(records, (0.1, 0.1, 0.1, 2500.0, 2750.0, 4, 250, 275), recompiled=1,
                     bucket=4, peak=None)
    d = write(tmp_path / "b.json", dump(s))
    r = naflops("report", "--by", "step", "--units", "exact", d)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].endswith("1 warm-up, 1 recompiled; 4 steps a record past the first")
    assert [l.split() for l in lines[2:5]] == [
        ["1", "500.00", "ms", "200", "200", "0.0%", "400", "warm-up"],
        ["2-5", "100.00", "ms", "250", "275", "40.0%", "2500"],
        ["6-8", "100.00", "ms", "~233.333333", "~233.333333", "0.0%", "2333", "1", "compiled"]]
    assert "steady    4 steps: time median 100.00 ms (p10 100.00 ms, p90 100.00 ms)" in lines
    assert "MFU       unknown (no peak in the dump: NAFLOPS_PEAK sets one)" in lines
    r = naflops("report", "--by", "step", "--format", "csv", d)
    per_step = [x.split(",")[11] for x in r.stdout.splitlines()[1:]]
    assert per_step == ["200", "250", "233.333333"]


def test_no_steps(tmp_path):
    for name, doc in (("v3.json", dump()), ("v2.json", dump(schema="naflops/2"))):
        d = write(tmp_path / name, doc)
        r = naflops("report", "--by", "step", d)
        assert (r.returncode, r.stdout) == (NO_STEPS, "")
        assert r.stderr == f"naflops: {d}: no steps in this dump (the program ended no step; " \
                           "see NAFLOPS_STEP)\n"
    # a /2 dump's "steps" are beyond its schema: ignored, not read
    d = write(tmp_path / "v2s.json", dump(rank_steps("0"), schema="naflops/2"))
    assert naflops("report", "--by", "step", d).returncode == NO_STEPS


def test_report_without_by_is_unchanged(tmp_path):
    """The op table of a dump with steps is the table of the same dump without them."""
    with_steps = write(tmp_path / "a.json", dump(rank_steps("0")))
    without = write(tmp_path / "b.json", dump(schema="naflops/2"))
    for args in ((), ("--units", "exact"), ("--format", "csv"), ("--format", "md"),
                 ("--by", "op")):
        a, b = naflops("report", *args, with_steps), naflops("report", *args, without)
        assert (a.returncode, a.stderr) == (0, "")
        assert a.stdout == b.stdout
    assert "step" not in naflops("report", with_steps).stdout


# ------------------------------------------------------------------ bad steps

def bad(change):
    doc = dump(rank_steps("0"))
    change(doc["steps"])
    return doc


def _set(path, value):
    def change(s):
        *keys, last = path.split(".")
        node = s
        for k in keys:
            node = node[int(k)] if k.isdigit() else node[k]
        if value is KeyError:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return change


BAD = {
    "not-object": (lambda s: s.clear(), "steps.boundary: missing"),
    "count-sum": (_set("count", 7), "steps.count: 7 is not the sum of the records' steps (6)"),
    "count-zero": (_set("count", 0), "steps.count: 0 (a dump with no steps has no steps object)"),
    "total-model": (_set("total.model_flops", 1421),
                    "steps.total.model_flops: 1421 is not the sum of the records' (1420)"),
    "total-seconds": (_set("total.seconds", 2.0),
                      "steps.total.seconds: 2.0 is not the sum of the records' (1.005)"),
    "step-gap": (_set("records.2.step", 4),
                 "steps.records[2].step: 4, expected 3 (records cover steps 1, 2, ... in order)"),
    "warmup-count": (_set("warmup", 7), "steps.warmup: 7 is more than count (6)"),
    "negative-seconds": (_set("records.1.seconds", -0.1),
                         "steps.records[1].seconds: expected a number >= 0, got -0.1"),
    "string-flops": (_set("records.0.model_flops", "200"),
                     'steps.records[0].model_flops: expected a whole number >= 0, got "200"'),
    "float-flops": (_set("records.0.model_flops", 200.0),
                    "steps.records[0].model_flops: expected a whole number >= 0, got 200.0"),
    "bool-warmup": (_set("records.0.warmup", 1), "steps.records[0].warmup: expected true or false, got 1"),
    "model-over-hardware": (_set("records.1.model_flops", 300),
                            "steps.records[1].model_flops: 300 is more than hardware_flops (260)"),
    "warmup-late": (_set("records.3.warmup", True),
                    "steps.records[3].warmup: a warm-up record after a steady one"),
    "steps-over-bucket": (_set("records.1.steps", 2), "steps.records[1].steps: expected 1 to bucket (1), got 2"),
    "bucket": (_set("bucket", 3), "steps.bucket: expected a power of two, got 3"),
    "boundary": (_set("boundary", "sometimes"),
                 'steps.boundary: expected optimizer, backward or function <module>:<qualname>, '
                 'got "sometimes"'),
    "peak-source": (_set("peak_source", None),
                    "steps.peak_source: null with peak_flops_per_s 10000 (both set or both null)"),
    "zero-peak": (_set("peak_flops_per_s", 0), "steps.peak_flops_per_s: expected a number > 0 or null, got 0"),
    "no-records": (_set("records", KeyError), "steps.records: missing"),
    "empty-records": (_set("records", []), "steps.records: empty"),
    "record-list": (_set("records.0", [1]), "steps.records[0]: expected an object, got a list"),
    "recompiled": (_set("recompiled", 2),
                   "steps.recompiled: 2 does not fit the records' 1 compiled steps"),
    "compiled-over-steps": (_set("records.1.compiled", 2),
                            "steps.records[1].compiled: 2 is more than its steps (1)"),
    "steady-steps": (_set("steady.steps", 4), "steps.steady.steps: 4 is not the number of steps "
                                              "neither warm-up nor compiled (5)"),
    "steady-null": (_set("steady", None),
                    "steps.steady: null, but 5 steps are neither warm-up nor compiled"),
    "steady-order": (_set("steady.seconds_p10", 0.2), "steps.steady: expected seconds_p10 <= "
                                                      "seconds_median <= seconds_p90"),
    "mfu-null": (_set("steady.mfu_median", None), "steps.steady.mfu_median: null with "
                                                   "peak_flops_per_s 10000"),
    "gpu-some": (_set("records.2.gpu_busy_seconds", 0.05),
                 "steps.records[2].gpu_busy_seconds: 0.05, but the total's is null"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_steps(tmp_path, case):
    change, message = BAD[case]
    d = write(tmp_path / "bad.json", bad(change))
    for args in (("report",), ("report", "--by", "step"), ("merge",), ("diff", d)):
        r = naflops(*args, d)
        assert (r.returncode, r.stdout) == (2, ""), (args, r.stdout)
        assert r.stderr.startswith(f"naflops: {d}: {message}"), (args, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_infinite_seconds(tmp_path):
    """1e999 is valid JSON for Python's reader, and infinite: refused."""
    text = json.dumps(dump(rank_steps("0"))).replace('"seconds": 0.1,', '"seconds": 1e999,', 1)
    r = naflops("report", write(tmp_path / "inf.json", text))
    assert r.returncode == 2 and r.stderr.startswith(
        f"naflops: {tmp_path / 'inf.json'}: steps.records[1].seconds: expected a number >= 0, got ")


def test_steps_not_an_object(tmp_path):
    doc = dump()
    doc["steps"] = [1, 2]
    r = naflops("report", write(tmp_path / "l.json", doc))
    assert (r.returncode, r.stderr) == (2, f"naflops: {tmp_path / 'l.json'}: steps: expected an "
                                           "object, got a list\n")


# ------------------------------------------------------------------ merge

def two_ranks(tmp_path, one=None, two=None):
    a = write(tmp_path / "rank0.json", one or dump(rank_steps("0"), rank="0"))
    b = write(tmp_path / "rank1.json", two or dump(rank_steps("1"), rank="1"))
    return a, b


MERGED_SECONDS = [0.6, 0.12, 0.1, 0.125, 0.11, 0.105]  # per step, the slower rank's
SLOWEST = ["1", "1", "0", "0", "1", "1"]


def test_merge_two_ranks(tmp_path):
    a, b = two_ranks(tmp_path)
    out = tmp_path / "m.json"
    r = naflops("merge", "-o", out, b, a)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    m = json.loads(out.read_text())
    assert (m["schema"], m["ranks"]) == ("naflops/3", ["0", "1"])
    s = m["steps"]
    assert [x["seconds"] for x in s["records"]] == MERGED_SECONDS
    assert [x["slowest_rank"] for x in s["records"]] == SLOWEST
    assert [x["start_s"] for x in s["records"]] == [
        rank_steps(k)["records"][i]["start_s"] for i, k in enumerate(SLOWEST)]
    assert [(x["model_flops"], x["hardware_flops"], x["natten_flops"]) for x in s["records"]] == \
        [(2 * f[0], 2 * f[1], 2 * f[2]) for f in FLOPS]
    assert [(x["step"], x["steps"], x["warmup"], x["compiled"]) for x in s["records"]] == \
        [(i + 1, 1, i == 0, int(i == 0)) for i in range(6)]
    assert (s["boundary"], s["count"], s["warmup"], s["recompiled"], s["bucket"]) == \
        ("optimizer", 6, 1, 0, 1)
    assert (s["peak_flops_per_s"], s["peak_source"]) == (2 * PEAK, "2 ranks x NAFLOPS_PEAK")
    assert s["total"]["seconds"] == pytest.approx(sum(MERGED_SECONDS))
    assert (s["total"]["model_flops"], s["total"]["hardware_flops"], s["total"]["natten_flops"],
            s["total"]["gpu_busy_seconds"]) == (2840, 3060, 1040, None)
    # steady, steps 2-6: 0.1 0.105 0.11 0.12 0.125; FLOP/s 480/0.12 500/0.125 480/0.11
    # 500/0.105 480/0.1: median 480/0.11; hardware FLOP/s median 520/0.11
    st = s["steady"]
    assert (st["steps"], st["seconds_median"], st["seconds_p10"], st["seconds_p90"]) == \
        (5, 0.11, 0.1, 0.125)
    assert st["model_flops_per_step"] == 488 and st["hardware_flops_per_step"] == 524
    assert st["flops_per_s_median"] == pytest.approx(480 / 0.11)
    assert st["mfu_median"] == pytest.approx(480 / 0.11 / 20000)
    assert st["hfu_median"] == pytest.approx(520 / 0.11 / 20000)
    # nothing lost: each rank's steps object as it was
    assert m["steps_by_rank"] == {"0": rank_steps("0"), "1": rank_steps("1")}
    # the merged dump is a valid dump: its steps table, the slowest rank per step
    r = naflops("report", "--by", "step", "--units", "exact", out)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == ("Steps of ranks 0, 1: 6 optimizer steps (boundary: optimizer); 1 warm-up, "
                        "0 recompiled")
    assert lines[1].split()[-1] == "slowest"
    rows = [l.split() for l in lines[2:8]]
    assert [x[3] for x in rows] == [str(2 * f[0]) for f in FLOPS]  # model FLOPs per step
    assert [x[1] + " " + x[2] for x in rows] == ["600.00 ms", "120.00 ms", "100.00 ms",
                                                  "125.00 ms", "110.00 ms", "105.00 ms"]
    assert [x[9] for x in rows] == SLOWEST
    assert "steady    5 steps: time median 110.00 ms (p10 100.00 ms, p90 125.00 ms)" in lines
    assert "per step  model 488 FLOP  hardware 524 FLOP  NATTEN 36.1%" in lines
    assert "MFU       21.82%  HFU 23.64%  (peak 20.0 KFLOP/s, 2 ranks x NAFLOPS_PEAK)" in lines
    at = lines.index("per rank (steady state; slowest: the longest median step)")
    assert [l.split() for l in lines[at + 1:]] == [
        ["rank", "steps", "steady", "median", "p10", "p90", "FLOP/s", "MFU", "slowest", "in"],
        ["0", "6", "5", "100.00", "ms", "80.00", "ms", "125.00", "ms", "2400", "24.00%", "2", "of", "6"],
        ["1", "6", "5", "105.00", "ms", "90.00", "ms", "120.00", "ms", "2381", "23.81%", "4", "of", "6",
         "slowest"]]
    # merge --by step prints the same without writing a dump
    r2 = naflops("merge", "--by", "step", "--units", "exact", a, b)
    assert (r2.returncode, r2.stdout) == (0, r.stdout)
    csv = naflops("report", "--by", "step", "--format", "csv", out).stdout.splitlines()
    assert csv[0].endswith(",slowest_rank") and [l.split(",")[-1] for l in csv[1:]] == SLOWEST
    # the op table of the merged dump is as before
    r = naflops("report", "--units", "exact", out)
    assert r.returncode == 0 and "forward   1179648 FLOP  589824 MAC" in r.stdout


def test_merge_merged_dumps(tmp_path):
    """Four ranks merged two by two, then the two merged: the same as all four at once."""
    paths = []
    for rank in "0123":
        times = [t * (1 + int(rank) / 10) for t in SECONDS["0" if rank in "02" else "1"]]
        s = rank_steps("0" if rank in "02" else "1", times)
        paths.append(write(tmp_path / f"r{rank}.json", dump(s, rank=rank, world_size="4")))
    assert naflops("merge", "-o", tmp_path / "all.json", *paths).returncode == 0
    assert naflops("merge", "-o", tmp_path / "m01.json", *paths[:2]).returncode == 0
    assert naflops("merge", "-o", tmp_path / "m23.json", *paths[2:]).returncode == 0
    r = naflops("merge", "-o", tmp_path / "again.json", tmp_path / "m23.json", tmp_path / "m01.json")
    assert (r.returncode, r.stderr) == (0, "")
    every, again = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("all", "again"))
    assert again["steps"] == every["steps"]
    assert again["steps_by_rank"] == every["steps_by_rank"]
    assert list(every["steps_by_rank"]) == ["0", "1", "2", "3"]
    assert every["steps"]["records"][0]["slowest_rank"] == "3"  # 0.6 x 1.3
    assert every["steps"]["records"][0]["model_flops"] == 4 * 200
    # a merged dump and one of its own ranks: refused, as for ops
    r = naflops("merge", tmp_path / "m01.json", paths[0])
    assert r.returncode == 2 and "rank 0 is also in" in r.stderr


def test_merge_cannot_line_up(tmp_path):
    short = rank_steps("1")
    short["records"] = short["records"][:5]
    short = steps_object(short["records"], STEADY["1"] + (4, 242.5, 260))
    short["steady"]["seconds_p90"] = 0.12
    a, b = two_ranks(tmp_path, two=dump(short, rank="1"))
    out = tmp_path / "m.json"
    r = naflops("merge", "-o", out, a, b)
    assert (r.returncode, r.stdout) == (0, "")
    assert r.stderr == ("naflops: merge: steps cannot be lined up across ranks (rank 1 has 5 "
                        "steps, rank 0 6); each rank's are kept in steps_by_rank\n")
    m = json.loads(out.read_text())
    assert m["schema"] == "naflops/3" and "steps" not in m
    assert m["steps_by_rank"] == {"0": rank_steps("0"), "1": short}
    r = naflops("report", "--by", "step", out)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines()[0] == "Steps of ranks 0, 1: not lined up across ranks; each rank's below"
    html = tmp_path / "m.html"
    assert naflops("report", "--html", html, out).returncode == 0
    assert 'data-steps="not-lined-up"' in html.read_text() and "rank 1 has 5 steps" in html.read_text()
    # a rank without steps (a naflops/2 dump goes with /3 ones)
    a, b = two_ranks(tmp_path, two=dump(rank="1", schema="naflops/2"))
    r = naflops("merge", "-o", out, a, b)
    assert r.returncode == 0 and "(rank 1 has none)" in r.stderr
    assert list(json.loads(out.read_text())["steps_by_rank"]) == ["0"]
    # no dump with steps: naflops/2 as before, no step keys
    a, b = two_ranks(tmp_path, dump(rank="0"), dump(rank="1"))
    r = naflops("merge", "-o", out, a, b)
    m = json.loads(out.read_text())
    assert (r.returncode, r.stderr, m["schema"]) == (0, "", "naflops/2")
    assert "steps" not in m and "steps_by_rank" not in m


def test_merge_refuses_steps_twice(tmp_path):
    """Two processes without a rank or a pid: their steps would have one key."""
    one = dump(rank_steps("0"))
    one.update(rank=None, local_rank=None, pid=None)
    a, b = two_ranks(tmp_path, one, dict(one, host="node1"))
    r = naflops("merge", a, b)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"naflops: {b}: the steps of norank are also in {a}: cannot keep both\n"


def test_tampered_merged_dump(tmp_path):
    a, b = two_ranks(tmp_path)
    m = json.loads(naflops("merge", "-o", "-", a, b).stdout)
    cases = [
        (lambda d: d["steps"]["records"][0].update(slowest_rank="0"),
         'steps.records[0].slowest_rank: "0" took 0.5 s, not the slowest 0.6 s'),
        (lambda d: (d["steps"]["records"][2].update(seconds=0.09),
                    d["steps"]["total"].update(seconds=d["steps"]["total"]["seconds"] - 0.01)),
         "steps.records[2].seconds: 0.09 is not the slowest rank's (0.1)"),
        (lambda d: d["steps"]["records"][1].update(slowest_rank="7"),
         'steps.records[1].slowest_rank: "7" is not a rank of steps_by_rank'),
        (lambda d: d["steps"]["records"][1].pop("slowest_rank"),
         "steps.records[1].slowest_rank: missing"),
        (lambda d: d.update(steps_by_rank=[]), "steps_by_rank: expected an object"),
        (lambda d: d["steps_by_rank"]["1"].update(count=5),
         'steps_by_rank["1"].count: 5 is not the sum of the records\' steps (6)')]
    for change, message in cases:
        doc = copy.deepcopy(m)
        change(doc)
        r = naflops("report", write(tmp_path / "t.json", doc))
        assert r.returncode == 2 and r.stderr.startswith(f"naflops: {tmp_path / 't.json'}: {message}"), \
            (message, r.stderr)
    # FLOPs that are not the ranks' sum: the totals must move with the record to get there
    doc = copy.deepcopy(m)
    doc["steps"]["records"][3]["natten_flops"] += 1
    doc["steps"]["total"]["natten_flops"] += 1
    r = naflops("report", write(tmp_path / "t.json", doc))
    assert r.stderr.endswith("steps.records[3].natten_flops: 201 is not the sum over the ranks (200)\n")


def test_diff(tmp_path):
    a, b = two_ranks(tmp_path)
    r = naflops("diff", a, b)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines()[-3:] == [
        "steady step time  a 100.00 ms  b 105.00 ms  b / a 1.050x",
        "achieved FLOP/s   a 2.4 KFLOP/s  b 2.4 KFLOP/s  b / a 0.992x",
        "model FLOPs/step  a 244 FLOP  b 244 FLOP  b / a 1.000x"]
    plain = write(tmp_path / "p.json", dump(schema="naflops/2"))
    r = naflops("diff", plain, a)
    assert r.returncode == 0 and r.stdout.endswith("\nsteps     only in b\n")
    assert naflops("diff", "--html", tmp_path / "d.html", a, b).returncode == 0


# ------------------------------------------------------------------ HTML

def test_html_page(tmp_path):
    """The page's text: one bar per record in each panel, the warm-up one marked, exact
    figures in the tooltips; the ranks' medians with the slowest marked. A page without
    steps is byte for byte what it was."""
    a, b = two_ranks(tmp_path)
    one = tmp_path / "one.html"
    assert naflops("report", "--html", one, a).returncode == 0
    text = one.read_text()
    assert '<h2 id="steps">Steps</h2>' in text and 'data-chart="step-timeline"' in text
    assert text.count('data-panel="time"') == text.count('data-panel="rate"') == 6
    assert text.count('data-kind="warmup" data-compiled="1" data-panel="time"') == 1
    assert text.count('<circle class="st-mark"') == 1  # step 1 compiled
    assert ("<title>step 1: 0.5 s; model 200 FLOP, hardware 220 FLOP, NATTEN 80 FLOP; "
            "achieved 400 FLOP/s; MFU 4.00%, HFU 4.40%; warm-up; compiled</title>") in text
    assert 'data-chart="step-ranks-time"' not in text  # one rank
    both = tmp_path / "both.html"
    r = naflops("report", "--html", both, a, b)
    assert (r.returncode, r.stderr) == (0, "")
    text = both.read_text()
    assert "; slowest rank 1</title>" in text
    assert 'data-label="rank 1" data-seconds="0.105" data-flops-per-s="2380.95238" ' \
           'data-slowest="true" data-slowest-in="4"' in text
    assert 'data-label="rank 0" data-seconds="0.1" data-flops-per-s="2400" ' \
           'data-slowest="false" data-slowest-in="2"' in text
    # without steps: the page of a naflops/2 dump, unchanged
    v2, v3 = (write(tmp_path / f"{n}.json", dump(schema=s)) for n, s in
              (("v2", "naflops/2"), ("v3", "naflops/3")))
    pages = []
    for d in (v2, v3):
        assert naflops("report", "--html", "p.html", d.name, cwd=tmp_path).returncode == 0
        pages.append((tmp_path / "p.html").read_text().replace(d.name, "DUMP"))
    assert pages[0] == pages[1] and "Steps" not in pages[0] and ".timeline" not in pages[0]
    r = naflops("report", "--html", tmp_path / "x.html", "--by", "step", a)
    assert r.returncode == 2 and r.stderr.startswith("naflops: report: --by step prints a table")




BARS = """[...document.querySelectorAll('[data-chart="step-timeline"] rect.st-bar')].map(r => {
  const box = r.getBoundingClientRect();
  return {panel: r.dataset.panel, step: +r.dataset.step, kind: r.dataset.kind,
          value: +r.dataset.value, height: box.height, width: box.width, bottom: box.bottom,
          fill: getComputedStyle(r).fill, title: r.querySelector('title').textContent};
})"""


def test_html_rendered(tmp_path, browser):
    a, b = two_ranks(tmp_path)
    out = tmp_path / "steps.html"
    assert naflops("report", "--html", out, a, b).returncode == 0
    page = browser.page(1100, 900)
    try:
        page.navigate(out.as_uri())
        png = page.screenshot(tmp_path / "steps.png", full_page=True)
        assert png.startswith(b"\x89PNG")
        keep = os.environ.get("NAFLOPS_SCREENSHOTS")
        if keep:
            os.makedirs(keep, exist_ok=True)
            (tmp_path / "steps.png").replace(os.path.join(keep, "steps-timeline.png"))
        bars = page.evaluate(BARS)
        time = [x for x in bars if x["panel"] == "time"]
        rate = [x for x in bars if x["panel"] == "rate"]
        assert [x["step"] for x in time] == [x["step"] for x in rate] == [1, 2, 3, 4, 5, 6]
        assert [x["value"] for x in time] == MERGED_SECONDS
        # heights in proportion to the figures (the tallest is the panel's top, but the
        # time axis stops at 3x the steady p90: the 0.6 s warm-up bar is cut), one baseline
        for panel, cap in ((time, 3 * 0.125), (rate, None)):  # p90: the 5th of 5 steady steps
            top = max(x["value"] for x in panel)
            top = min(top, cap) if cap else top
            tall = max(x["height"] for x in panel)
            for x in panel:
                assert abs(x["height"] - tall * min(x["value"], top) / top) < 0.5, x
                assert x["width"] > 50
            assert len({round(x["bottom"], 1) for x in panel}) == 1
        cuts = page.evaluate("[...document.querySelectorAll('polyline.st-cut')].map(p => +p.dataset.step)")
        assert cuts == [1]
        # the warm-up step is drawn in its own colour
        assert [x["kind"] for x in time] == ["warmup"] + ["steady"] * 5
        assert len({x["fill"] for x in time}) == 2 and time[0]["fill"] != time[1]["fill"]
        assert time[1]["title"].startswith("step 2: 0.12 s; model 480 FLOP, hardware 520 FLOP")
        ranks = page.evaluate("""[...document.querySelectorAll('[data-chart="step-ranks-time"] .bar')]
            .map(b => ({label: b.dataset.label, slowest: b.dataset.slowest,
                        value: b.nextElementSibling.textContent,
                        width: b.querySelector('rect').getBoundingClientRect().width,
                        fill: getComputedStyle(b.querySelector('rect')).fill}))""")
        assert [(x["label"], x["slowest"], x["value"]) for x in ranks] == [
            ("rank 0", "false", "100.00 ms"), ("rank 1", "true", "105.00 ms  (slowest)")]
        assert abs(ranks[0]["width"] / ranks[1]["width"] - 0.1 / 0.105) < 0.01
        assert ranks[0]["fill"] != ranks[1]["fill"]
        axis = page.evaluate("[...document.querySelectorAll('.timeline text')].map(t => t.textContent)")
        assert any(t.startswith("step time (per step), axis cut at 3x the steady p90") for t in axis)
        assert "375.00 ms" in axis and "0" in axis  # the cut axis: 3 x 125 ms
        assert any(t.endswith("FLOP/s") for t in axis)
    finally:
        errors, fetched = page.errors(), page.requests()
        page.close()
    assert errors == [] and fetched == [out.as_uri()]
