"""Every NATTEN release a user may have, plain against preloaded: 0.15.1 (CPU kernels
built from its sdist, with torch 2.6), 0.20.1 and 0.21.0 (pure Python, Flex backend),
each installed alone by scripts/setup-test-env and put first on PYTHONPATH. 0.17.4
and 0.21.7 have test files of their own.

Every public NA entry point and module of the release runs forward and backward in
one program; the expected FLOPs are worked out here from the shapes:
  unfused (0.15):  QK = AV = 2*B*H*N*(W + extra)*D, W = prod(kernel), heads first
                   [B, H, *spatial, D]; a positional bias is not counted;
  fused (0.20+):   4*B*H*N*(W + extra)*D, heads last [B, *spatial, H, D];
  attention:       2*B*H*Nq*Nkv*(Dqk + Dv);
  backward = 2 x forward.
Also: the target table's release ranges against what each release really has, the
line for a release the table does not know, and natten_version when nothing ran."""
import json
import math
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from conftest import PY017, PY021, ROOT, clean_env, run_both, run_program

STANDIN = Path(__file__).resolve().parent / "natten_standin"


def release(version):
    """(interpreter, PYTHONPATH folder) of an installed release."""
    out = subprocess.run([str(ROOT / "scripts" / "setup-test-env"), "--release", version],
                         check=True, capture_output=True, text=True).stdout.split("\n")
    py, path = out[0], out[1]
    if not Path(path, "natten").is_dir():
        pytest.fail(f"NATTEN {version} is not installed: run scripts/setup-test-env")
    return py, path


def totals_by_op(dump):
    """{(op, pass): FLOPs} over the dump's rows."""
    got = Counter()
    for o in dump["ops"]:
        got[(o["op"], o["pass"])] += o["flops"]
    return dict(got)


def said(run):
    """The counter's lines before its summary (none for a release it knows well)."""
    lines = []
    for line in run.naflops_lines():
        if line.startswith(("naflops: NATTEN FLOPs", "naflops: FLOPs")):
            break
        lines.append(line)
    return lines


def unfused(shape, kernel, extra=0):
    """QK or AV of a heads-first [B, H, *spatial, D] tensor."""
    b, h, *spatial, d = shape
    return 2 * b * h * math.prod(spatial) * (math.prod(kernel) + extra) * d


def fused(shape, kernel, extra=0):
    """Fused NA of a heads-last [B, *spatial, H, D] q (equal value dim)."""
    b, *spatial, h, d = shape
    return 4 * b * h * math.prod(spatial) * (math.prod(kernel) + extra) * d


def forward_and_backward(rows):
    """{(op, pass): FLOPs} for rows of (op, FLOPs, has_backward)."""
    exp = Counter()
    for op, f, bw in rows:
        exp[(op, "forward")] += f
        if bw:
            exp[(op, "backward")] += 2 * f
    return dict(exp)


# ------------------------------------------------------------------ 0.15.1

PROGRAM_015 = """
import torch, natten
import natten.functional as F
torch.manual_seed(0)
def t(*s, grad=True):
    return torch.randn(*s, requires_grad=grad)
def checksum(x):
    return round(float(x.double().sum()), 3)
# the legacy names are the same function objects as the canonical ones, as plain
print(F.natten1dqk is F.na1d_qk, F.natten2dav is F.na2d_av, F.natten3dqk is F.na3d_qk)
sums = []
def run(*outs):
    loss = sum(o.sum() for o in outs)
    loss.backward()
    sums.append(checksum(loss))

# 1-D [B, H, L, D]
q, k, v = t(2, 2, 16, 8), t(2, 2, 16, 8), t(2, 2, 16, 8)
a = F.na1d_qk(q, k, 5, 1); run(F.na1d_av(a.softmax(-1), v, 5, 1))
a = F.na1d_qk_with_bias(q, k, t(2, 9), 5, 1); run(a)
a = F.natten1dqkrpb(q, k, t(2, 5), 3, 2); run(a)
a = F.natten1dqk(q, k, 7, 1); run(F.natten1dav(a.softmax(-1), v, 7, 1))
# 2-D [B, H, X, Y, D], and additional keys/values [B, H, X, D]
q, k, v = t(1, 2, 9, 10, 8), t(1, 2, 9, 10, 8), t(1, 2, 9, 10, 8)
a = F.na2d_qk(q, k, 3, 2); run(F.na2d_av(a.softmax(-1), v, 3, 2))
a = F.na2d_qk_with_bias(q, k, t(2, 9, 9), 5, 1); run(a)
a = F.natten2dqkrpb(q, k, t(2, 5, 5), 3, 1); run(a)
a = F.natten2dqk(q, k, 3, 1); run(F.natten2dav(a.softmax(-1), v, 3, 1))
a = F.na2d_qk(q, k, 3, 1, additional_keys=t(1, 2, 4, 8))
run(F.na2d_av(a.softmax(-1), v, 3, 1, additional_values=t(1, 2, 4, 8)))
# 3-D [B, H, Z, X, Y, D]: (kernel_size_d, kernel_size, dilation_d, dilation)
q, k, v = t(1, 2, 5, 6, 7, 8), t(1, 2, 5, 6, 7, 8), t(1, 2, 5, 6, 7, 8)
a = F.na3d_qk(q, k, 3, 5, 1, 1); run(F.na3d_av(a.softmax(-1), v, 3, 5, 1, 1))
a = F.na3d_qk_with_bias(q, k, t(2, 9, 5, 5), 5, 3, 1, 2); run(a)
a = F.natten3dqkrpb(q, k, t(2, 5, 5, 5), 3, 3, 1, 1); run(a)
a = F.natten3dqk(q, k, 5, 3, 1, 2); run(F.natten3dav(a.softmax(-1), v, 5, 3, 1, 2))
# modules (their QK is na*d_qk_with_bias), forward and backward
m1 = natten.NeighborhoodAttention1D(dim=32, num_heads=4, kernel_size=5)
m2 = natten.NeighborhoodAttention2D(dim=32, num_heads=2, kernel_size=3, dilation=2)
m3 = natten.NeighborhoodAttention3D(dim=16, num_heads=2, kernel_size=3, kernel_size_d=5)
run(m1(t(2, 20, 32)))
run(m2(t(1, 9, 9, 32)))
run(m3(t(1, 5, 6, 6, 16)))
print(sums)
"""


def expected_015():
    s1, s2, s3 = (2, 2, 16, 8), (1, 2, 9, 10, 8), (1, 2, 5, 6, 7, 8)
    return forward_and_backward([
        ("na1d_qk", unfused(s1, (5,)), True), ("na1d_av", unfused(s1, (5,)), True),
        ("na1d_qk_with_bias", unfused(s1, (5,)), True),
        ("natten1dqkrpb", unfused(s1, (3,)), True),
        # aliases: counted under the name of the function object they are
        ("na1d_qk", unfused(s1, (7,)), True), ("na1d_av", unfused(s1, (7,)), True),
        ("na2d_qk", unfused(s2, (3, 3)), True), ("na2d_av", unfused(s2, (3, 3)), True),
        ("na2d_qk_with_bias", unfused(s2, (5, 5)), True),
        ("natten2dqkrpb", unfused(s2, (3, 3)), True),
        ("na2d_qk", unfused(s2, (3, 3)), True), ("na2d_av", unfused(s2, (3, 3)), True),
        ("na2d_qk", unfused(s2, (3, 3), extra=4), True),
        ("na2d_av", unfused(s2, (3, 3), extra=4), True),
        ("na3d_qk", unfused(s3, (3, 5, 5)), True), ("na3d_av", unfused(s3, (3, 5, 5)), True),
        ("na3d_qk_with_bias", unfused(s3, (5, 3, 3)), True),
        ("natten3dqkrpb", unfused(s3, (3, 3, 3)), True),
        ("na3d_qk", unfused(s3, (5, 3, 3)), True), ("na3d_av", unfused(s3, (5, 3, 3)), True),
        # modules: qkv [B, H, *spatial, D]
        ("na1d_qk_with_bias", unfused((2, 4, 20, 8), (5,)), True),
        ("na1d_av", unfused((2, 4, 20, 8), (5,)), True),
        ("na2d_qk_with_bias", unfused((1, 2, 9, 9, 16), (3, 3)), True),
        ("na2d_av", unfused((1, 2, 9, 9, 16), (3, 3)), True),
        ("na3d_qk_with_bias", unfused((1, 2, 5, 6, 6, 8), (5, 3, 3)), True),
        ("na3d_av", unfused((1, 2, 5, 6, 6, 8), (5, 3, 3)), True),
    ])


def test_natten015_every_entry_point(lib, tmp_path):
    py, path = release("0.15.1")
    r = run_both(py, PROGRAM_015, tmp_path, lib, PYTHONPATH=path)
    assert r.stdout.startswith("True True True\n")
    d = r.dump
    assert totals_by_op(d) == expected_015()
    assert d["natten_version"] == "0.15.1" and d["totals"]["uncounted_calls"] == 0
    # the depth kernel and dilation are their own arguments in 0.15's 3-D ops
    qk3 = {(tuple(o["kernel_size"]), tuple(o["dilation"]))
           for o in d["ops"] if o["op"] in ("na3d_qk", "na3d_qk_with_bias")}
    assert qk3 == {((3, 5, 5), (1, 1, 1)), ((5, 3, 3), (1, 2, 2)), ((5, 3, 3), (1, 1, 1))}
    assert said(r) == []


# ------------------------------------------------------------------ 0.20.1, 0.21.0

# Head dim 32: 0.20's Flex backend takes only powers of two from 32 to 512.
PROGRAM_FUSED = """
import torch, natten
from natten.functional import attention, neighborhood_attention_generic
torch.manual_seed(0)
def t(*s, grad=True):
    return torch.randn(*s, requires_grad=grad)
def checksum(x):
    return round(float(x.detach().double().sum()), 3)
sums = []
def run(*outs):
    loss = sum(o.sum() for o in outs)
    loss.backward()
    sums.append(checksum(loss))
s1, s2, s3 = (2, 32, 2, 32), (1, 10, 12, 2, 32), (1, 4, 6, 8, 1, 32)
run(natten.na1d(t(*s1), t(*s1), t(*s1), kernel_size=5, stride=2, dilation=2, is_causal=True))
run(natten.na2d(t(*s2), t(*s2), t(*s2), kernel_size=(3, 5), dilation=(2, 1), is_causal=(True, False)))
run(natten.na3d(t(*s3), t(*s3), t(*s3), kernel_size=(3, 3, 5), stride=(1, 2, 1)))
with torch.no_grad():
    o = neighborhood_attention_generic(t(1, 8, 8, 2, 32), t(1, 8, 8, 2, 32), t(1, 8, 8, 2, 32),
                                       kernel_size=(3, 5))
    sums.append(checksum(o))
run(attention(t(2, 16, 4, 32), t(2, 20, 4, 32), t(2, 20, 4, 32)))
q, k, v = t(1, 8, 8, 2, 32), t(1, 8, 8, 2, 32), t(1, 8, 8, 2, 32)
run(natten.na2d(q, k, v, kernel_size=3, additional_keys=t(1, 5, 2, 32),
                additional_values=t(1, 5, 2, 32)))
m1 = natten.NeighborhoodAttention1D(embed_dim=64, num_heads=2, kernel_size=5)
m2 = natten.NeighborhoodAttention2D(embed_dim=64, num_heads=2, kernel_size=3, dilation=2)
m3 = natten.NeighborhoodAttention3D(embed_dim=32, num_heads=1, kernel_size=3)
run(m1(t(2, 20, 64)))
run(m2(t(1, 9, 9, 64)))
run(m3(t(1, 4, 5, 6, 32)))
print(sums)
"""


def expected_fused():
    return forward_and_backward([
        ("na1d", fused((2, 32, 2, 32), (5,)), True),
        ("na2d", fused((1, 10, 12, 2, 32), (3, 5)), True),
        ("na3d", fused((1, 4, 6, 8, 1, 32), (3, 3, 5)), True),
        ("neighborhood_attention_generic", fused((1, 8, 8, 2, 32), (3, 5)), False),
        ("attention", 2 * 2 * 4 * 16 * 20 * (32 + 32), True),
        ("na2d", fused((1, 8, 8, 2, 32), (3, 3), extra=5), True),
        # modules call the generic entry point with heads-last q/k/v
        ("neighborhood_attention_generic", fused((2, 20, 2, 32), (5,)), True),
        ("neighborhood_attention_generic", fused((1, 9, 9, 2, 32), (3, 3)), True),
        ("neighborhood_attention_generic", fused((1, 4, 5, 6, 1, 32), (3, 3, 3)), True),
    ])


@pytest.mark.parametrize("version", ["0.20.1", "0.21.0"])
def test_fused_release_every_entry_point(lib, tmp_path, version):
    py, path = release(version)
    r = run_both(py, PROGRAM_FUSED, tmp_path, lib, PYTHONPATH=path)
    d = r.dump
    assert totals_by_op(d) == expected_fused()
    assert d["natten_version"] == version and d["totals"]["uncounted_calls"] == 0
    assert {o["backend"] for o in d["ops"] if o["op"] != "attention"} >= {"flex-fna"}
    assert said(r) == []


# ------------------------------------------------------------------ the table's ranges

ROW = re.compile(r'^\s*(?:OP|MARK)\("([\w.]+)", (\w+), .*, NF_V\((\d+), (\d+)\), '
                 r'(?:NF_V\((\d+), (\d+)\)|0)\),', re.M)
HAS = """
import importlib, json, sys, warnings
warnings.simplefilter("ignore")
import natten
rows = json.loads(sys.argv[1])
found = []
for module, function in rows:
    try:
        m = importlib.import_module(module)
    except Exception:
        found.append(False)
        continue
    found.append(callable(getattr(m, function, None)))
print(json.dumps([natten.__version__, found]))
"""


@pytest.mark.parametrize("version", ["0.15.1", "0.17.4", "0.20.1", "0.21.0", "0.21.7"])
def test_table_ranges_match_release(version, tmp_path):
    """Each row of hooks/python/natten_targets.c is in exactly the releases its range says."""
    rows = ROW.findall((ROOT / "hooks" / "python" / "natten_targets.c").read_text())
    newest = int(re.search(r"NF_NATTEN_NEWEST (\d+)",
                           (ROOT / "hooks" / "python" / "natten_targets.h").read_text()).group(1))
    assert len(rows) > 30, rows
    env = {}
    py = {"0.17.4": PY017, "0.21.7": PY021}.get(version)
    if py is None:
        py, env["PYTHONPATH"] = release(version)
    out = subprocess.run([py, "-c", HAS, json.dumps([[r[0], r[1]] for r in rows])],
                         env=clean_env(**env), capture_output=True, text=True, check=True)
    got_version, found = json.loads(out.stdout)
    assert got_version == version
    v = tuple(int(x) for x in version.split(".")[1:3])
    expected = [(int(sm), int(sp)) <= v <= ((int(um), int(up)) if um else (newest, 99))
                for _, _, sm, sp, um, up in rows]
    wrong = [f"{r[0]}.{r[1]} ({r[2]}.{r[3]}-{r[4] or newest}.{r[5] or 99})"
             for r, e, g in zip(rows, expected, found) if e != g]
    assert not wrong, f"NATTEN {version}: rows whose range is wrong: {wrong}"


# ------------------------------------------------------------------ unknown releases

CALL_STANDIN = """
import torch, natten
torch.manual_seed(0)
q = torch.randn(1, 6, 6, 2, 8)
print(float(natten.functional.na2d(q, q, q, kernel_size=3).sum()))
"""


@pytest.mark.parametrize("version,words", [("0.22.0", "newer"), ("0.13.1", "older")])
def test_unknown_release_is_said_once(py021, lib, tmp_path, version, words):
    """A release the table does not know: one line at import naming it and what is
    counted; the calls it makes through a known name are still counted."""
    pkg = tmp_path / "pkg"
    shutil.copytree(STANDIN / "natten", pkg / "natten")
    (pkg / f"natten-{version}.dist-info").mkdir()
    meta = (STANDIN / "natten-0.21.99.dist-info" / "METADATA").read_text()
    (pkg / f"natten-{version}.dist-info" / "METADATA").write_text(meta.replace("0.21.99", version))
    init = pkg / "natten" / "__init__.py"
    init.write_text(init.read_text().replace('"0.21.99"', f'"{version}"'))
    r = run_both(py021, CALL_STANDIN, tmp_path, lib, PYTHONPATH=str(pkg))
    assert said(r) == [f"naflops: NATTEN {version} is {words} than the releases naflops knows "
                     "(0.14 to 0.21): calls of na2d, neighborhood_attention_generic are counted by the rules of the releases "
                     "that have those names; any other entry point is not counted"]
    d = r.dump
    assert d["natten_version"] == version
    assert totals_by_op(d) == {("na2d", "forward"): fused((1, 6, 6, 2, 8), (3, 3))}


def test_version_known_when_nothing_counted(lib, tmp_path):
    """natten imported, no NA call: the dump and the summary still name the release."""
    py, path = release("0.15.1")
    code = "import torch, natten\nprint(natten.__version__)\n"
    r = run_both(py, code, tmp_path, lib, PYTHONPATH=path, NAFLOPS_SUMMARY="always")
    assert r.stdout == "0.15.1\n"
    assert r.dump["natten_version"] == "0.15.1" and r.dump["ops"] == []
    assert "(NATTEN 0.15.1)" in r.stderr
    assert not [l for l in r.naflops_lines() if "releases naflops knows" in l]


FAKE_017 = """
import torch
def na2d_qk(query, key, kernel_size, dilation, additional_keys=None, rpb=None):
    # a window of 3x3 whatever kernel_size says: a convention naflops does not know
    return torch.ones(*query.shape[:-1], 9) * (query * key).sum(-1, keepdim=True)
def na2d_av(attn, value, kernel_size, dilation, additional_values=None):
    return attn.sum(-1, keepdim=True) * value
"""


def test_kernel_that_disagrees_with_the_tensor(py021, lib, tmp_path):
    """Arguments that give a kernel the tensors contradict (here a package of the
    test's own, named as 0.17 so that its na2d_qk/na2d_av are wrapped, computing a
    3x3 window whatever kernel_size says) are counted from the tensors: AV's
    attention weights, QK's output. Said once per op."""
    pkg = tmp_path / "pkg" / "natten"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('__version__ = "0.17.4"\nfrom . import functional\n')
    (pkg / "functional.py").write_text(FAKE_017)
    code = """
import torch, natten.functional as F
torch.manual_seed(0)
q = torch.randn(1, 2, 6, 6, 8)
for _ in range(3):
    a = F.na2d_qk(q, q, 5, 1)
    o = F.na2d_av(a, q, 5, 1)
print(a.shape[-1], round(float(o.sum()), 3))
"""
    r = run_both(py021, code, tmp_path, lib, PYTHONPATH=str(pkg.parent))
    w9 = unfused((1, 2, 6, 6, 8), (3, 3))
    d = r.dump
    assert totals_by_op(d) == {("na2d_qk", "forward"): 3 * w9, ("na2d_av", "forward"): 3 * w9}
    assert {tuple(o["kernel_size"]) for o in d["ops"]} == {(9, 1)}
    assert said(r) == [
        "naflops: na2d_qk: the kernel size its arguments give does not match the 9 keys per "
        "query its output holds; its calls are counted with the tensor's window",
        "naflops: na2d_av: the kernel size its arguments give does not match the 9 keys per "
        "query its attention weights hold; its calls are counted with the tensor's window"]
