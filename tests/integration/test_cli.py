"""scripts/naflops (the naflops package in python/), run as a separate process: report, merge and diff on dumps made
here by hand, one clean line and exit status 2 for every kind of bad dump, and
`naflops run` end to end with a real NATTEN 0.17 program."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, clean_env

NAFLOPS = ROOT / "scripts" / "naflops"
U128_MAX = 2**128 - 1


def naflops(*args, cwd=None, script=NAFLOPS, **env):
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                          text=True, env=clean_env(**env), cwd=cwd, timeout=300)


def op(name, pass_, kind, fpc, calls, shape, key_shape=None, value_shape=None, kernel=None,
       causal=(False,), extra=0, backend="flex-fna", version="0.21.7", flops=None):
    flops = calls * fpc if flops is None else flops
    dims = None if kernel is None else [1] * len(kernel)
    return {"op": name, "pass": pass_, "kind": kind, "natten_version": version, "backend": backend,
            "shape": list(shape), "key_shape": key_shape and list(key_shape),
            "value_shape": value_shape and list(value_shape),
            "kernel_size": kernel and list(kernel), "stride": dims, "dilation": dims,
            "is_causal": list(causal), "additional_kv": extra, "varlen_pairs": None,
            "dtype": "float32", "device": "cpu", "calls": calls, "flops_per_call": fpc,
            "flops": flops, "macs": flops // 2}


def dump(ops, pid=4242, rank="0", world_size="2", host="node0"):
    f = {p: sum(o["flops"] for o in ops if o["pass"] == p) for p in ("forward", "backward")}
    versions = [o["natten_version"] for o in ops if o["natten_version"]]
    return {"schema": "naflops/1", "pid": pid, "host": host, "rank": rank, "local_rank": rank,
            "world_size": world_size, "natten_version": versions[0] if versions else None,
            "ops": ops,
            "totals": {"flops": f["forward"] + f["backward"], "macs": (f["forward"] + f["backward"]) // 2,
                       "forward_flops": f["forward"], "backward_flops": f["backward"],
                       "forward_macs": f["forward"] // 2, "backward_macs": f["backward"] // 2,
                       "calls": sum(o["calls"] for o in ops)}}


# B=2, H=2, 8x8 tokens, 3x3 window, D=16: 4*B*H*N*W*D = 147456 (README's example)
NA2D_F = op("na2d", "forward", "fused", 147456, 3, (2, 8, 8, 2, 16), (2, 8, 8, 2, 16),
            (2, 8, 8, 2, 16), kernel=(3, 3), causal=(False, False))
NA2D_B = op("na2d", "backward", "fused", 2 * 147456, 3, (2, 8, 8, 2, 16), (2, 8, 8, 2, 16),
            (2, 8, 8, 2, 16), kernel=(3, 3), causal=(False, False))
# dense attention, 5 queries over 7 keys: 2*B*H*Nq*Nkv*(D+Dv) = 2*1*2*5*7*16
ATTN = op("attention", "forward", "attention", 2240, 1, (1, 5, 2, 8), (1, 7, 2, 8), (1, 7, 2, 8),
          backend="flex-fmha")
# causal na1d with 3 additional KV tokens: 4*1*2*12*(3+3)*8
NA1D = op("na1d", "forward", "fused", 4608, 2, (1, 12, 2, 8), (1, 12, 2, 8), (1, 12, 2, 8),
          kernel=(3,), causal=(True,), extra=3, backend="flex-fna+flex-fmha")
RUN = dump([NA2D_F, NA2D_B, ATTN, NA1D])


def write(path, doc):
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


# ---------------------------------------------------------------------- report

def test_report_table(tmp_path):
    r = naflops("report", write(tmp_path / "d.json", RUN))
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == """\
NATTEN FLOPs of pid 4242, rank 0 (NATTEN 0.21.7)
op        pass     kind      backend            shape             kernel dilation causal dtype   device calls       FLOPs
na2d      forward  fused     flex-fna           2x8x8x2x16        3x3    1x1      FF     float32 cpu        3 442.4 KFLOP
na2d      backward fused     flex-fna           2x8x8x2x16        3x3    1x1      FF     float32 cpu        3 884.7 KFLOP
attention forward  attention flex-fmha          1x5x2x8 k:1x7x2x8 kv=7   -        F      float32 cpu        1   2.2 KFLOP
na1d      forward  fused     flex-fna+flex-fmha 1x12x2x8          3+3    1        T      float32 cpu        2   9.2 KFLOP
forward   453.8 KFLOP  (226.9 KMAC)
backward  884.7 KFLOP  (442.4 KMAC)
total     1.3 MFLOP  (669.3 KMAC)
"""


def test_report_exact_csv_md(tmp_path):
    d = write(tmp_path / "d.json", RUN)
    exact = naflops("report", "--units", "exact", d).stdout.splitlines()
    assert exact[2].split()[-2:] == ["3", "442368"]
    assert exact[-3:] == ["forward   453824 FLOP  226912 MAC", "backward  884736 FLOP  442368 MAC",
                          "total     1338560 FLOP  669280 MAC"]
    assert naflops("report", "--format", "csv", d).stdout == """\
op,pass,kind,natten_version,backend,shape,key_shape,value_shape,kernel_size,stride,dilation,is_causal,additional_kv,dtype,device,calls,flops_per_call,flops,macs
na2d,forward,fused,0.21.7,flex-fna,2x8x8x2x16,2x8x8x2x16,2x8x8x2x16,3x3,1x1,1x1,FF,0,float32,cpu,3,147456,442368,221184
na2d,backward,fused,0.21.7,flex-fna,2x8x8x2x16,2x8x8x2x16,2x8x8x2x16,3x3,1x1,1x1,FF,0,float32,cpu,3,294912,884736,442368
attention,forward,attention,0.21.7,flex-fmha,1x5x2x8,1x7x2x8,1x7x2x8,-,-,-,F,0,float32,cpu,1,2240,2240,1120
na1d,forward,fused,0.21.7,flex-fna+flex-fmha,1x12x2x8,1x12x2x8,1x12x2x8,3,1,1,T,3,float32,cpu,2,4608,9216,4608
"""
    md = naflops("report", "--format", "md", "--units", "exact", d).stdout.splitlines()
    assert md[0] == "**NATTEN FLOPs of pid 4242, rank 0 (NATTEN 0.21.7)**"
    assert md[2] == ("| op | pass | kind | backend | shape | kernel | dilation | causal | dtype "
                     "| device | calls | FLOPs |")
    assert md[4] == "| na2d | forward | fused | flex-fna | 2x8x8x2x16 | 3x3 | 1x1 | FF | float32 | cpu | 3 | 442368 |"
    assert md[-1] == "| total | 1338560 | 669280 |"


def aten(name, pass_, fpc, calls, *operands):
    """A whole-model row: the operands of the aten op's formula in the shape fields."""
    row = op(name, pass_, "aten", fpc, calls, *operands, causal=(), backend=None, version=None)
    row["value_shape"] = list(operands[2]) if len(operands) > 2 else None
    return row


def test_report_whole_model_rows(tmp_path):
    """NATTEN's rows first, then the aten rows largest first; NATTEN's and the other
    ops' shares under the totals, rounded as the library rounds them."""
    ops = [NA2D_F, aten("aten::mm", "backward", 786432, 1, (128, 96), (96, 32)),
           aten("aten::addmm", "forward", 786432, 2, (128, 32), (32, 96)),
           aten("aten::convolution", "forward", 55296, 1, (2, 3, 16, 16), (8, 3, 3, 3),
                (2, 8, 8, 8))]
    d = dump(ops)
    d["totals"]["natten_flops"] = 442368
    d["totals"]["other_flops"] = 786432 * 3 + 55296
    r = naflops("report", "--units", "exact", write(tmp_path / "d.json", d))
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == """\
FLOPs (NATTEN and the whole model) of pid 4242, rank 0 (NATTEN 0.21.7)
op                pass     kind  backend  shape                       kernel dilation causal dtype   device calls   FLOPs
na2d              forward  fused flex-fna 2x8x8x2x16                  3x3    1x1      FF     float32 cpu        3  442368
aten::addmm       forward  aten  -        128x32, 32x96               -      -        -      float32 cpu        2 1572864
aten::mm          backward aten  -        128x96, 96x32               -      -        -      float32 cpu        1  786432
aten::convolution forward  aten  -        2x3x16x16, 8x3x3x3, 2x8x8x8 -      -        -      float32 cpu        1   55296
forward   2070528 FLOP  1035264 MAC
backward  786432 FLOP  393216 MAC
total     2856960 FLOP  1428480 MAC
NATTEN    442368 FLOP  221184 MAC  15.5%
other     2414592 FLOP  1207296 MAC  84.5%
"""
    merged = naflops("merge", "-o", "-", tmp_path / "d.json")
    m = json.loads(merged.stdout)
    assert (m["totals"]["natten_flops"], m["totals"]["other_flops"]) == (442368, 2414592)
    wrong = dict(d, totals=dict(d["totals"], other_flops=5))
    r = naflops("report", write(tmp_path / "w.json", wrong))
    assert r.returncode == 2
    assert r.stderr.strip().endswith("totals.other_flops: 5 is not the sum of the aten ops' flops")


# ----------------------------------------------------------------------- merge

def two_ranks(tmp_path, one=None, two=None):
    big = op("na1d_qk", "forward", "qk", 2**60, 2**63, (2, 4, 16, 8), (2, 4, 16, 8), kernel=(5,),
             backend="libnatten")
    a = one or dump([big, NA2D_F], pid=11, rank="0")
    b = two or dump([dict(big, calls=2**63 + 5, flops=(2**63 + 5) * 2**60,
                          macs=(2**63 + 5) * 2**59)], pid=12, rank="1")
    return write(tmp_path / "rank0.json", a), write(tmp_path / "rank1.json", b)


def test_merge_sums_exactly(tmp_path):
    a, b = two_ranks(tmp_path)
    out = tmp_path / "merged.json"
    r = naflops("merge", "-o", out, b, a)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    m = json.loads(out.read_text())
    assert (m["schema"], m["ranks"], m["world_size"], m["pid"]) == ("naflops/2", ["0", "1"], "2", None)
    qk = [o for o in m["ops"] if o["op"] == "na1d_qk"]
    assert len(qk) == 1 and qk[0]["calls"] == 2**64 + 5 > 2**64
    assert qk[0]["flops"] == (2**64 + 5) * 2**60 and qk[0]["macs"] == (2**64 + 5) * 2**59
    total = (2**64 + 5) * 2**60 + 442368
    assert m["totals"] == {"flops": total, "macs": total // 2, "forward_flops": total,
                           "backward_flops": 0, "forward_macs": total // 2, "backward_macs": 0,
                           "natten_flops": total, "other_flops": 0, "calls": 2**64 + 5 + 3,
                           # naflops/1 dumps in, naflops/2 out: no recompute, model = all
                           "recompute_flops": 0, "recompute_macs": 0, "jvp_flops": 0,
                           "jvp_macs": 0, "model_flops": total,
                           "model_macs": total // 2, "uncounted_calls": 0}
    # the merged dump is a valid dump: report prints it, exactly
    r = naflops("report", "--units", "exact", out)
    assert r.returncode == 0 and r.stdout.startswith("NATTEN FLOPs of ranks 0, 1 (NATTEN 0.21.7)\n")
    assert f"total     {total} FLOP  {total // 2} MAC" in r.stdout
    # without -o: the table
    r = naflops("merge", "--units", "exact", a, b)
    assert r.returncode == 0 and f"forward   {total} FLOP  {total // 2} MAC" in r.stdout


def test_merge_saturated_ranks_go_past_2_128(tmp_path):
    """Each rank's library saturated at 2^128-1; the merged counts are exact."""
    calls, fpc = 2**64 - 1, 2**70
    sat = op("na3d", "forward", "fused", fpc, calls, (1, 4, 4, 4, 1, 8), kernel=(3, 3, 3),
             causal=(False,) * 3, flops=U128_MAX)
    a, b = two_ranks(tmp_path, dump([sat], pid=1, rank="0"), dump([sat], pid=2, rank="1"))
    m = json.loads(naflops("merge", "-o", "-", a, b).stdout)
    assert m["ops"][0]["flops"] == 2 * calls * fpc > 2**128
    assert m["totals"]["flops"] == 2 * calls * fpc


@pytest.mark.parametrize("change,message", [
    (dict(schema="naflops/3"), "rank1.json: schema \"naflops/3\", but rank0.json has "
                               "\"naflops/1\": cannot merge dumps of different schemas"),
    (dict(world_size="4"), "rank1.json: world_size \"4\", but rank0.json has \"2\": not the same run"),
    (dict(rank="0"), "rank1.json: rank 0 is also in rank0.json: the dumps of a run have distinct ranks"),
    (dict(pid=11, rank=None, world_size="2"), "rank1.json: pid 11 on host \"node0\" is also in "
                                              "rank0.json: the same process twice"),
    (dict(natten_version="0.17.4"), "rank1.json: NATTEN 0.17.4, but rank0.json has NATTEN 0.21.7: "
                                    "not the same run"),
], ids=["schema", "world_size", "duplicate-rank", "same-process", "natten-version"])
def test_merge_refuses(tmp_path, change, message):
    a, b = two_ranks(tmp_path)
    doc = json.loads(b.read_text())
    doc.update(change)
    if "natten_version" in change:
        doc["ops"][0]["natten_version"] = change["natten_version"]
    write(b, doc)
    r = naflops("merge", "-o", "m.json", a.name, b.name, cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"naflops: {message}\n")
    assert not (tmp_path / "m.json").exists()


# ------------------------------------------------------------------------ diff

def test_diff(tmp_path):
    a = write(tmp_path / "a.json", RUN)
    # b: na2d forward twice as often, no backward; another NATTEN version
    newer = [dict(o, natten_version="0.21.8") for o in
             (dict(NA2D_F, calls=6, flops=6 * 147456, macs=3 * 147456), ATTN, NA1D)]
    b = write(tmp_path / "b.json", dump(newer, pid=7))
    r = naflops("diff", "--units", "exact", a, b)
    assert (r.returncode, r.stderr) == (0, "")
    lines = r.stdout.splitlines()
    assert lines[:2] == [f"a: {a}: NATTEN FLOPs of pid 4242, rank 0 (NATTEN 0.21.7)",
                         f"b: {b}: NATTEN FLOPs of pid 7, rank 0 (NATTEN 0.21.8)"]
    assert lines[2].endswith("device calls a calls b FLOPs a FLOPs b   b - a     b / a")
    col = lines[2].index("calls a")
    rows = {tuple(l.split()[:2]): l[col:].split() for l in lines[3:7]}
    assert rows == {  # the same ops of two NATTEN versions line up
        ("na2d", "forward"): ["3", "6", "442368", "884736", "+442368", "2.000x"],
        ("na2d", "backward"): ["3", "-", "884736", "-", "-884736", "only", "in", "a"],
        ("attention", "forward"): ["1", "1", "2240", "2240", "0", "1.000x"],
        ("na1d", "forward"): ["2", "2", "9216", "9216", "0", "1.000x"]}
    assert [l.split() for l in lines[7:]] == [
        ["forward", "6", "9", "453824", "896192", "+442368", "1.975x"],
        ["backward", "3", "0", "884736", "0", "-884736", "0.000x"],
        ["total", "9", "9", "1338560", "896192", "-442368", "0.670x"]]
    r = naflops("diff", b, a)
    assert r.returncode == 0 and "only in b" in r.stdout and "-442.4 KFLOP" in r.stdout


# -------------------------------------------------------------- malformed dumps

def bad_dump(**change):
    doc = json.loads(json.dumps(RUN))
    for path, value in change.items():
        *keys, last = path.split("__")
        node = doc
        for k in keys:
            node = node[int(k)] if k.isdigit() else node[k]
        if value is KeyError:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return json.dumps(doc)


GOOD = json.dumps(RUN)
MALFORMED = {
    "missing-file": (None, "cannot read: No such file or directory"),
    "directory": ("<dir>", "cannot read: Is a directory"),
    "empty": ("", "empty file"),
    "not-utf8": (b"\xff\xfe{}", "not UTF-8 text"),
    "not-json": ("{", "not valid JSON"),
    "truncated": (GOOD[: len(GOOD) // 2], "not valid JSON"),
    "trailing-garbage": (GOOD + "x", "not valid JSON: Extra data"),
    "array": ("[1, 2]", "not a naflops dump"),
    "string": ('"naflops/1"', "not a naflops dump"),
    "nan": (GOOD.replace('"calls": 1,', '"calls": NaN,'), "NaN is not a JSON number"),
    "duplicate-key": (GOOD.replace('"calls": 1,', '"calls": 1, "calls": 1,'), "duplicate key \"calls\""),
    "csv-dump": ("op,pass,kind,natten_version\n", "a CSV dump"),
    "no-schema": (bad_dump(schema=KeyError), 'no "schema"'),
    "other-schema": (bad_dump(schema="naflops/5"), 'schema "naflops/5" is not supported'),
    "schema-int": (bad_dump(schema=1), "schema 1 is not supported"),
    "no-ops": (bad_dump(ops=KeyError), "ops: missing"),
    "ops-object": (bad_dump(ops={}), "ops: expected a list, got an object"),
    "op-not-object": (bad_dump(ops=[1]), "ops[0]: expected an object, got 1"),
    "op-missing-calls": (bad_dump(ops__2__calls=KeyError), "ops[2].calls: missing"),
    "negative-calls": (bad_dump(ops__0__calls=-3), "ops[0].calls: expected a whole number >= 0, got -3"),
    "float-calls": (bad_dump(ops__0__calls=3.0), "ops[0].calls: expected a whole number >= 0, got 3.0"),
    "bool-calls": (bad_dump(ops__0__calls=True), "got true"),
    "string-calls": (bad_dump(ops__0__calls="3"), 'got "3"'),
    "huge-number": (bad_dump(ops__0__calls=2**300), "ops[0].calls: expected a whole number"),
    "too-many-digits": (GOOD.replace('"calls": 1,', '"calls": ' + "9" * 5000 + ","), "not valid JSON"),
    "flops-not-product": (bad_dump(ops__0__flops=442369), "ops[0].flops: 442369 is not calls x flops_per_call"),
    "macs-not-half": (bad_dump(ops__0__macs=1), "ops[0].macs: 1 is not flops / 2 (221184)"),
    "bad-pass": (bad_dump(ops__1__pass="sideways"), "ops[1].pass: expected forward or backward"),
    "negative-dim": (bad_dump(ops__0__shape=[2, -8]), "ops[0].shape: expected a list of whole numbers"),
    "causal-ints": (bad_dump(ops__0__is_causal=[0, 1]), "ops[0].is_causal: expected a list of true/false"),
    "op-null": (bad_dump(ops__3__op=None), "ops[3].op: expected a string, got null"),
    "no-totals": (bad_dump(totals=KeyError), "totals: missing"),
    "totals-wrong": (bad_dump(totals__flops=1), "totals.flops: 1 is not the sum of the ops' flops"),
    "totals-calls": (bad_dump(totals__calls=0), "totals.calls: 0 is not the sum of the ops' calls (9)"),
    "negative-pid": (bad_dump(pid=-1), "pid: expected a whole number >= 0 or null, got -1"),
    "rank-int": (bad_dump(rank=0), "rank: expected a string or null, got 0"),
    "ranks-object": (bad_dump(ranks={}), "ranks: expected a list of strings or nulls"),
    "deep-nesting": ("[" * 100000 + "]" * 100000, "not valid JSON"),
}


def malformed_file(tmp_path, content):
    path = tmp_path / "bad.json"
    if content == "<dir>":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize("command", ["report", "merge", "diff"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_dump(tmp_path, case, command):
    content, what = MALFORMED[case]
    bad = malformed_file(tmp_path, content)
    good = write(tmp_path / "good.json", dump([NA2D_F], pid=1, rank="1"))
    args = {"report": [bad], "merge": [good, bad], "diff": [good, bad]}[command]
    if command == "merge" and case in ("other-schema", "schema-int"):
        what = f'but {good} has "naflops/1": cannot merge dumps of different schemas'
    r = naflops(command, *args)
    assert r.returncode == 2 and r.stdout == ""
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"naflops: {bad}: ") and what in r.stderr, r.stderr


def test_usage_errors_exit_2(tmp_path):
    for args in ([], ["report"], ["frobnicate"], ["report", "--format", "xml", "d.json"]):
        r = naflops(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr and "usage:" in r.stderr


def test_help():
    r = naflops("--help")
    assert r.returncode == 0
    for word in ("naflops run", "naflops report", "naflops merge", "naflops diff", "NAFLOPS_LIB"):
        assert word in r.stdout


# ------------------------------------------------------------------------- run

PROGRAM = """
import sys, torch
from natten.functional import na1d_qk
q = torch.randn(2, 4, 16, 8)
for _ in range(3):
    na1d_qk(q, q, kernel_size=5)
print("program says hello")
sys.exit(3)
"""
QK = 2 * 2 * 4 * 16 * 5 * 8  # 2*B*H*N*W*D


def test_run_end_to_end(py017, lib, tmp_path):
    r = naflops("run", "--output", "d-%r.json", "--units", "exact", "--", py017, "-c", PROGRAM,
                cwd=tmp_path, NAFLOPS_LIB=lib)
    assert (r.returncode, r.stdout) == (3, "program says hello\n"), r.stderr
    assert f"naflops: total     {3 * QK} FLOP  {3 * QK // 2} MAC" in r.stderr
    d = json.loads((tmp_path / "d-norank.json").read_text())
    assert (d["totals"]["flops"], d["totals"]["calls"]) == (3 * QK, 3)
    rep = naflops("report", "--units", "exact", tmp_path / "d-norank.json")
    assert rep.returncode == 0
    assert f"total     {3 * QK} FLOP  {3 * QK // 2} MAC" in rep.stdout
    # the same table the library printed, without its prefixes
    assert rep.stdout.splitlines() == [l.removeprefix("naflops: ") for l in r.stderr.splitlines()
                                       if l.startswith("naflops: ")]


def test_run_sets_variables(lib, tmp_path):
    show = 'printf "%s\\n" "$LD_PRELOAD" "$NAFLOPS_OUTPUT" "$NAFLOPS_FORMAT" "$NAFLOPS_SUMMARY" ' \
           '"$NAFLOPS_UNITS" "$NAFLOPS_BACKWARD" "$NAFLOPS_FLUSH_SECONDS" "$NAFLOPS_FLUSH_OPS"'
    r = naflops("run", "--output", "out/%r-%p.csv", "--format", "csv", "--summary", "never",
                "--units", "exact", "--no-backward", "--flush-seconds", "5", "--flush-ops", "100",
                "--", "sh", "-c", show, cwd=tmp_path, NAFLOPS_LIB=lib, LD_PRELOAD="/no/such/pre.so")
    assert r.returncode == 0
    assert r.stdout.splitlines() == [f"/no/such/pre.so:{lib}", f"{tmp_path}/out/%r-%p.csv", "csv",
                                     "never", "exact", "0", "5", "100"]
    # options not given leave the variables alone; the library is not preloaded twice
    r = naflops("run", "sh", "-c", show, NAFLOPS_LIB=lib, LD_PRELOAD=lib, NAFLOPS_UNITS="si")
    assert r.stdout.splitlines() == [lib, "", "", "", "si", "", "", ""]


def test_run_status_and_signals(lib, tmp_path):
    assert naflops("run", "--", "sh", "-c", "exit 7", NAFLOPS_LIB=lib).returncode == 7
    assert naflops("run", "--", "sh", "-c", "kill -TERM $$", NAFLOPS_LIB=lib).returncode == -15
    r = naflops("run", "--", str(tmp_path / "nope"), NAFLOPS_LIB=lib)
    assert (r.returncode, r.stderr) == (127, f"naflops: {tmp_path / 'nope'}: command not found\n")
    r = naflops("run", "--", NAFLOPS_LIB=lib)
    assert r.returncode == 2 and "no command given" in r.stderr
    for bad in (["--flush-seconds", "-1"], ["--flush-ops", "1e3"], ["--output", "x%q.json"]):
        r = naflops("run", *bad, "--", "true", NAFLOPS_LIB=lib)
        assert r.returncode == 2 and "Traceback" not in r.stderr


@pytest.mark.parametrize("layout,found", [
    (("scripts", "build"), "build"),        # a checkout after make
    (("bin", "lib"), "lib"),                # after make install
    (("bin", "build", "lib"), "build"),     # build first
    (("bin",), None),
])
def test_run_finds_library(lib, tmp_path, layout, found):
    script = tmp_path / layout[0] / "naflops"
    script.parent.mkdir()
    shutil.copy(NAFLOPS, script)
    for d in layout[1:]:
        (tmp_path / d).mkdir()
        shutil.copy(lib, tmp_path / d / "libnaflops.so")
    package = ROOT / "python"  # the script alone: its package from PYTHONPATH
    r = naflops("run", "--", "sh", "-c", 'echo "$LD_PRELOAD"', script=script, PYTHONPATH=package)
    if found:
        assert (r.returncode, r.stdout) == (0, f"{tmp_path / found / 'libnaflops.so'}\n")
    else:
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr.startswith("naflops: cannot find libnaflops.so (looked for ")
        assert "set NAFLOPS_LIB" in r.stderr and r.stderr.count("\n") == 1
    r = naflops("run", "true", script=script, NAFLOPS_LIB=tmp_path / "missing.so", PYTHONPATH=package)
    assert (r.returncode, r.stderr) == (2, f"naflops: NAFLOPS_LIB={tmp_path / 'missing.so'}: no such file\n")


def test_make_install(lib, tmp_path):
    """make install puts naflops in bin/ and the library in lib/, where naflops finds it."""
    r = subprocess.run(["make", "-s", "-o", lib, "install", f"PREFIX={tmp_path}",
                        f"BUILD={os.path.dirname(lib)}"], cwd=ROOT, capture_output=True, text=True,
                       env=clean_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert os.access(tmp_path / "bin" / "naflops", os.X_OK)
    r = naflops("run", "--", "sh", "-c", 'echo "$LD_PRELOAD"', script=tmp_path / "bin" / "naflops")
    assert r.stdout == f"{tmp_path / 'lib' / 'libnaflops.so'}\n"
