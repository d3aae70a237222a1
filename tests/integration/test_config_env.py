"""NAFLOPS_* variables seen by a real program: every bad value gets one line naming
the variable, the value and what is allowed, and the program runs on with the
default; an output path that cannot be written gets one line and the summary."""
import csv
import io
import json
import os

import pytest

from conftest import run_program

PROGRAM = """
import torch, natten
torch.manual_seed(0)
q = torch.randn(1, 16, 2, 8, requires_grad=True)
o = natten.na1d(q, q, q, kernel_size=3)
o.sum().backward()
print(round(float(o.sum()), 4))
"""
FWD = 4 * 1 * 2 * 16 * 3 * 8  # 4*B*H*N*W*D = 3072

BAD = [
    ("NAFLOPS_FORMAT", "xml", "json, csv"),
    ("NAFLOPS_SUMMARY", "sometimes", "auto, always, never"),
    ("NAFLOPS_UNITS", "furlongs", "si, exact"),
    ("NAFLOPS_BACKWARD", "maybe", "1, 0, true, false, yes, no, on, off"),
    ("NAFLOPS_DISABLE", "2", "1, 0, true, false, yes, no, on, off"),
    ("NAFLOPS_FLUSH_SECONDS", "1.5", "a whole number from 0 (off) to 100000000"),
    ("NAFLOPS_FLUSH_OPS", "-3", "a whole number from 0 (off) to 100000000"),
]


@pytest.mark.parametrize("var,value,allowed", BAD, ids=[b[0] for b in BAD])
def test_bad_value_one_line_and_default(py021, lib, tmp_path, var, value, allowed):
    r = run_program(py021, PROGRAM, tmp_path, lib, env={var: value})
    assert r.returncode == 0
    bad = [l for l in r.naflops_lines() if "is not valid" in l]
    assert bad == [f"naflops: {var}='{value}' is not valid (allowed: {allowed}); using "
                   + {"NAFLOPS_FORMAT": "json", "NAFLOPS_SUMMARY": "auto", "NAFLOPS_UNITS": "si",
                      "NAFLOPS_BACKWARD": "1", "NAFLOPS_DISABLE": "0",
                      "NAFLOPS_FLUSH_SECONDS": "0", "NAFLOPS_FLUSH_OPS": "0"}[var]]
    d = r.dump  # the default format (json) and counting still work
    assert d["totals"]["forward_flops"] == FWD and d["totals"]["backward_flops"] == 2 * FWD


def test_bad_output_pattern(py021, lib, tmp_path):
    r = run_program(py021, PROGRAM, tmp_path, lib, env={"NAFLOPS_OUTPUT": str(tmp_path / "x%q.json")})
    assert r.returncode == 0
    assert [l for l in r.naflops_lines() if "is not valid" in l] == [
        f"naflops: NAFLOPS_OUTPUT='{tmp_path}/x%q.json' is not valid (allowed: a path whose only "
        "escapes are %p, %r, %h and %%); using no dump"]
    assert "naflops: total" in r.stderr
    assert not list(tmp_path.glob("x*.json"))


def test_unwritable_output(py021, lib, tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "d.json"
    r = run_program(py021, PROGRAM, tmp_path, lib,
                    env={"NAFLOPS_OUTPUT": str(target), "NAFLOPS_SUMMARY": "never"})
    assert r.returncode == 0
    lines = r.naflops_lines()
    assert [l for l in lines if l.startswith("naflops: cannot write")] == [
        f"naflops: cannot write {target}: No such file or directory; the summary goes to stderr instead"]
    assert any(l.startswith("naflops: total") for l in lines)


def test_patterns_csv_and_exact_units(py021, lib, tmp_path):
    pattern = str(tmp_path / "run-%p-%r-%h-%%.csv")
    r = run_program(py021, PROGRAM, tmp_path, lib,
                    env={"NAFLOPS_OUTPUT": pattern, "NAFLOPS_FORMAT": "csv", "NAFLOPS_UNITS": "exact",
                         "RANK": "3"})
    assert r.returncode == 0
    files = list(tmp_path.glob("run-*.csv"))
    assert len(files) == 1
    name = files[0].name
    assert name.startswith("run-") and "-3-" in name and name.endswith("-%.csv")
    assert name.split("-")[1].isdigit()
    rows = list(csv.DictReader(io.StringIO(files[0].read_text())))
    assert {(row["pass"], int(row["flops"]), int(row["macs"])) for row in rows} == {
        ("forward", FWD, FWD // 2), ("backward", 2 * FWD, FWD)}
    assert f"naflops: total     {3 * FWD} FLOP  {3 * FWD // 2} MAC" in r.stderr
    assert "rank 3" in r.stderr


def test_backward_off_and_summary_never(py021, lib, tmp_path):
    r = run_program(py021, PROGRAM, tmp_path, lib,
                    env={"NAFLOPS_BACKWARD": "0", "NAFLOPS_SUMMARY": "never"})
    assert r.returncode == 0 and r.naflops_lines() == []
    d = r.dump
    assert [o["pass"] for o in d["ops"]] == ["forward"]
    assert d["totals"]["backward_flops"] == 0 and d["totals"]["flops"] == FWD


def test_json_dump_schema(py021, lib, tmp_path):
    r = run_program(py021, PROGRAM, tmp_path, lib, env={"RANK": "1", "LOCAL_RANK": "1",
                                                         "WORLD_SIZE": "2"})
    d = r.dump
    assert d["schema"] == "naflops/4" and isinstance(d["pid"], int)
    assert (d["rank"], d["local_rank"], d["world_size"]) == ("1", "1", "2")
    for op in d["ops"]:
        for field in ("op", "pass", "kind", "shape", "kernel_size", "dilation", "is_causal",
                      "dtype", "device", "calls", "flops", "macs", "natten_version", "backend", "module"):
            assert field in op
        assert op["flops"] == 2 * op["macs"] == op["calls"] * op["flops_per_call"]
    t = d["totals"]
    assert t["flops"] == t["forward_flops"] + t["backward_flops"] == t["model_flops"] == 3 * FWD
    assert t["recompute_flops"] == t["jvp_flops"] == t["uncounted_calls"] == 0
    assert t["macs"] == t["flops"] // 2
    # no temporary file left beside the dump
    assert [p.name for p in tmp_path.iterdir() if ".tmp." in p.name] == []
