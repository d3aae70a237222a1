"""scripts/naflops on naflops/4 dumps (each op with its module), written here by hand
with their sums worked out below: report --by module (table, exact and SI, CSV,
Markdown, --depth), the work outside modules, NATTEN's share, merge of two ranks,
diff per module, an older dump refused by --by module, a bad "module" refused, and
the HTML page's icicle (the page text, then rendered in headless Chromium). Nothing
here needs torch or the library."""
import copy
import csv
import io
import json
import subprocess
import sys

import pytest

from cdp import browser  # noqa: F401  (a fixture)
from conftest import ROOT

NAFLOPS = ROOT / "scripts" / "naflops"
NO_MODULES = 3  # report --by module's exit status for a valid dump without modules


def naflops(*args):
    return subprocess.run([sys.executable, str(NAFLOPS), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def aten(op, pass_, module, calls, per_call, shape=(8, 8), key=(8, 8)):
    return {"op": op, "pass": pass_, "module": module, "kind": "aten", "natten_version": None,
            "backend": None, "shape": list(shape), "key_shape": list(key), "value_shape": None,
            "kernel_size": None, "stride": None, "dilation": None, "is_causal": [],
            "additional_kv": 0, "varlen_pairs": None, "dtype": "float32", "device": "cpu",
            "calls": calls, "flops_per_call": per_call, "flops": calls * per_call,
            "macs": calls * per_call // 2}


def natten(pass_, module, calls, per_call):
    return {"op": "na2d", "pass": pass_, "module": module, "kind": "fused",
            "natten_version": "0.21.7", "backend": "flex-fna", "shape": [2, 8, 8, 2, 16],
            "key_shape": [2, 8, 8, 2, 16], "value_shape": [2, 8, 8, 2, 16], "kernel_size": [3, 3],
            "stride": [1, 1], "dilation": [1, 1], "is_causal": [False, False], "additional_kv": 0,
            "varlen_pairs": None, "dtype": "float32", "device": "cpu", "calls": calls,
            "flops_per_call": per_call, "flops": calls * per_call, "macs": calls * per_call // 2}


# The model "Net": blocks.0 and blocks.1 each with attn (a qkv Linear and NATTEN) and an
# mlp; a head; work outside modules. FLOPs (forward / backward / recompute):
#   Net.blocks.0.attn.qkv  aten 1000 / 2000 / 1000 (recompute: a checkpointed block)
#   Net.blocks.0.attn      NATTEN 400 / 800 / 400
#   Net.blocks.0.mlp.0     aten 3000 / 6000
#   Net.blocks.1.attn.qkv  aten 1000 / 2000
#   Net.blocks.1.attn      NATTEN 400 / 800
#   Net.blocks.1.mlp.0     aten 3000 / 6000
#   Net.head               aten 500 / 1000
#   outside                aten 100 forward
# Inclusive: Net.blocks.0 = 1000+2000+1000 + 400+800+400 + 3000+6000 = 14600
#   (model 13200, recompute 1400, NATTEN 1600: 10.96% -> 11.0%); Net.blocks.1 =
#   3000+1200+9000 = 13200 (NATTEN 1200: 9.09% -> 9.1%); Net.blocks = 27800 (NATTEN
#   2800: 10.07% -> 10.1%); Net = 27800 + 1500 = 29300 (forward 9300, backward 18600,
#   NATTEN 9.56% -> 9.6%); with the 100 outside, the total is 29400 (9.52% -> 9.5%).
OPS = [aten("aten::addmm", "forward", "Net.blocks.0.attn.qkv", 1, 1000),
       natten("forward", "Net.blocks.0.attn", 1, 400),
       aten("aten::addmm", "forward", "Net.blocks.0.mlp.0", 1, 3000, key=(8, 32)),
       aten("aten::addmm", "forward", "Net.blocks.1.attn.qkv", 1, 1000),
       natten("forward", "Net.blocks.1.attn", 1, 400),
       aten("aten::addmm", "forward", "Net.blocks.1.mlp.0", 1, 3000, key=(8, 32)),
       aten("aten::addmm", "forward", "Net.head", 1, 500, key=(8, 4)),
       aten("aten::mm", "forward", None, 1, 100, key=(8, 2)),
       aten("aten::addmm", "recompute", "Net.blocks.0.attn.qkv", 1, 1000),
       natten("recompute", "Net.blocks.0.attn", 1, 400),
       aten("aten::mm", "backward", "Net.head", 2, 500, key=(4, 8)),
       aten("aten::mm", "backward", "Net.blocks.1.mlp.0", 2, 3000, key=(32, 8)),
       natten("backward", "Net.blocks.1.attn", 1, 800),
       aten("aten::mm", "backward", "Net.blocks.1.attn.qkv", 2, 1000, key=(24, 8)),
       aten("aten::mm", "backward", "Net.blocks.0.mlp.0", 2, 3000, key=(32, 8)),
       natten("backward", "Net.blocks.0.attn", 1, 800),
       aten("aten::mm", "backward", "Net.blocks.0.attn.qkv", 2, 1000, key=(24, 8))]


def dump_of(ops, rank=None, pid=42):
    ops = copy.deepcopy(ops)
    f = {p: sum(o["flops"] for o in ops if o["pass"] == p) for p in ("forward", "backward", "recompute", "jvp")}
    every = sum(f.values())
    model = f["forward"] + f["backward"]
    nat = sum(o["flops"] for o in ops if o["kind"] != "aten")
    totals = {"flops": every, "macs": every // 2, "forward_flops": f["forward"],
              "backward_flops": f["backward"], "forward_macs": f["forward"] // 2,
              "backward_macs": f["backward"] // 2, "jvp_flops": 0, "jvp_macs": 0,
              "recompute_flops": f["recompute"], "recompute_macs": f["recompute"] // 2,
              "model_flops": model, "model_macs": model // 2, "natten_flops": nat,
              "other_flops": every - nat, "calls": sum(o["calls"] for o in ops),
              "uncounted_calls": 0}
    return {"schema": "naflops/4", "pid": pid, "host": "h", "rank": rank, "local_rank": rank,
            "world_size": None if rank is None else "2", "natten_version": "0.21.7", "ops": ops,
            "totals": totals}


def write(tmp_path, name, doc):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


def test_report_by_module_table(tmp_path):
    d = write(tmp_path, "d.json", dump_of(OPS))
    r = naflops("report", "--by", "module", "--units", "exact", "--depth", "4", d)
    assert r.returncode == 0, r.stderr
    lines = [l.split() for l in r.stdout.splitlines()]
    assert r.stdout.splitlines()[0] == "FLOPs by module of pid 42 (submodules included; depth 4)"
    assert lines[1] == ["module", "forward", "backward", "recompute", "model", "hardware", "NATTEN", "NATTEN", "%"]
    got = {l[0]: l[1:] for l in lines[2:]}
    # name: forward backward recompute model hardware NATTEN share
    assert got["Net"] == ["9300", "18600", "1400", "27900", "29300", "2800", "9.6%"]
    assert got["Net.blocks"] == ["8800", "17600", "1400", "26400", "27800", "2800", "10.1%"]
    assert got["Net.blocks.0"] == ["4400", "8800", "1400", "13200", "14600", "1600", "11.0%"]
    assert got["Net.blocks.0.attn"] == ["1400", "2800", "1400", "4200", "5600", "1600", "28.6%"]
    assert got["Net.blocks.0.attn.qkv"] == ["1000", "2000", "1000", "3000", "4000", "0", "0.0%"]
    assert got["Net.blocks.1"] == ["4400", "8800", "0", "13200", "13200", "1200", "9.1%"]
    assert got["Net.head"] == ["500", "1000", "0", "1500", "1500", "0", "0.0%"]
    assert got["(outside"] == ["modules)", "100", "0", "0", "100", "100", "0", "0.0%"]
    assert got["total"] == ["9400", "18600", "1400", "28000", "29400", "2800", "9.5%"]
    # depth first, children in the order they first ran, indented by depth
    names = [l.strip().split()[0] for l in r.stdout.splitlines()[2:]]
    assert names[:6] == ["Net", "Net.blocks", "Net.blocks.0", "Net.blocks.0.attn",
                         "Net.blocks.0.attn.qkv", "Net.blocks.0.mlp"]
    assert r.stdout.splitlines()[4].startswith("    Net.blocks.0 ")


def test_report_by_module_depth_si_csv_md(tmp_path):
    d = write(tmp_path, "d.json", dump_of(OPS))
    r = naflops("report", "--by", "module", "--depth", "1", d)
    assert r.returncode == 0, r.stderr
    names = [l.split()[0] for l in r.stdout.splitlines()[2:]]
    assert names == ["Net", "Net.blocks", "Net.head", "(outside", "total"]  # deeper ones folded
    assert "27.9 KFLOP" in r.stdout.splitlines()[2]  # Net's model FLOPs, SI
    r = naflops("report", "--by", "module", "--depth", "0", "--format", "csv", d)
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows == [["module", "depth", "forward_flops", "backward_flops", "recompute_flops",
                     "model_flops", "hardware_flops", "natten_flops", "natten_share"],
                    ["Net", "0", "9300", "18600", "1400", "27900", "29300", "2800", "9.6%"],
                    ["(outside modules)", "", "100", "0", "0", "100", "100", "0", "0.0%"],
                    ["total", "", "9400", "18600", "1400", "28000", "29400", "2800", "9.5%"]]
    r = naflops("report", "--by", "module", "--format", "md", "--units", "exact", "--depth", "2", d)
    assert "| Net.blocks.0 | 4400 | 8800 | 1400 | 13200 | 14600 | 1600 | 11.0% |" in r.stdout
    assert "| --- | ---: |" in r.stdout
    for bad in ("-1", "x", "1001"):
        r = naflops("report", "--by", "module", "--depth", bad, d)
        assert r.returncode == 2 and "--depth" in r.stderr


def test_per_op_views_sum_modules(tmp_path):
    """report (by op) shows each signature once, whichever modules ran it; CSV keeps
    the rows and adds the module column, as the library writes it."""
    d = write(tmp_path, "d.json", dump_of(OPS))
    r = naflops("report", "--units", "exact", d)
    natten_fwd = [l for l in r.stdout.splitlines() if l.startswith("na2d") and " forward " in l]
    assert len(natten_fwd) == 1 and natten_fwd[0].split()[-2:] == ["2", "800"]
    r = naflops("report", "--format", "csv", d)
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == len(OPS) and rows[0]["module"] == "Net.blocks.0.attn.qkv"
    assert rows[7]["module"] == ""  # outside any module


def test_older_dump_and_bad_module(tmp_path):
    old = dump_of(OPS)
    old["schema"] = "naflops/3"
    for op in old["ops"]:
        del op["module"]
    p = write(tmp_path, "old.json", old)
    r = naflops("report", "--by", "module", p)
    assert r.returncode == NO_MODULES and r.stdout == ""
    assert r.stderr == (f"naflops: {p}: schema naflops/3 predates module attribution (naflops/4): "
                        "this dump has no modules\n")
    assert naflops("report", p).returncode == 0  # older dumps still read
    bad = dump_of(OPS)
    bad["ops"][2]["module"] = 7
    p = write(tmp_path, "bad.json", bad)
    r = naflops("report", p)
    assert r.returncode == 2
    assert r.stderr == (f"naflops: {p}: ops[2].module: expected a module name (a string) or null, "
                        "got 7\n")
    del bad["ops"][2]["module"]
    p = write(tmp_path, "bad2.json", bad)
    r = naflops("report", p)
    assert r.returncode == 2 and r.stderr.endswith("ops[2].module: missing\n")
    # a /4 dump and a /3 dump are not merged: the older has no module to merge by
    r = naflops("merge", write(tmp_path, "r0.json", dump_of(OPS, "0", 1)), write(tmp_path, "r1.json", dict(old, rank="1", local_rank="1", world_size="2", pid=2)))
    assert r.returncode == 2 and r.stderr.endswith(
        "cannot merge dumps of different schemas: the older one's rows have no module to merge "
        "by\n")


def test_merge_keeps_modules(tmp_path):
    """Two ranks: the same rows, rank 1 with twice the calls; merged per (signature,
    module), the tree's figures are three times rank 0's."""
    r1_ops = copy.deepcopy(OPS)
    for op in r1_ops:
        op["calls"] *= 2
        op["flops"] *= 2
        op["macs"] *= 2
    a = write(tmp_path, "r0.json", dump_of(OPS, "0", 1))
    b = write(tmp_path, "r1.json", dump_of(r1_ops, "1", 2))
    out = tmp_path / "m.json"
    r = naflops("merge", "-o", out, a, b)
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())
    assert m["schema"] == "naflops/4" and len(m["ops"]) == len(OPS)
    assert [op["module"] for op in m["ops"]] == [op["module"] for op in OPS]
    assert list(m["ops"][0])[:3] == ["op", "pass", "module"]  # where the library puts it
    r = naflops("merge", "--by", "module", "--units", "exact", "--depth", "0", a, b)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[2].split() == ["Net", "27900", "55800", "4200", "83700", "87900",
                                                "8400", "9.6%"]
    r = naflops("report", "--by", "module", out)  # the merged dump reads back
    assert r.returncode == 0


def test_diff_per_module(tmp_path):
    """b: block 1's attention with a larger window (NATTEN 400 -> 1000 forward, 800 ->
    2000 backward), a new module Net.extra, no head."""
    b_ops = copy.deepcopy(OPS)
    for op in b_ops:
        if op["module"] == "Net.blocks.1.attn" and op["kind"] != "aten":
            op["flops_per_call"] = op["flops_per_call"] * 5 // 2
            op["flops"] = op["calls"] * op["flops_per_call"]
            op["macs"] = op["flops"] // 2
    b_ops = [op for op in b_ops if op["module"] != "Net.head"] + [aten("aten::mm", "forward", "Net.extra", 1, 50)]
    a = write(tmp_path, "a.json", dump_of(OPS))
    b = write(tmp_path, "b.json", dump_of(b_ops))
    r = naflops("diff", "--units", "exact", a, b)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    at = next(i for i, l in enumerate(lines) if l.startswith("by module"))
    # model FLOPs: Net 27900 - 1500 (head) + 50 (extra) + 1800 (block 1's NATTEN, 600
    # forward + 1200 backward more) = 28250; Net.blocks 26400 + 1800 = 28200. Changed:
    # Net, Net.blocks, Net.blocks.1, its attn, head (only in a), extra (only in b), of 14
    assert lines[at] == "by module (model FLOPs, submodules included): 6 of 14 changed"
    # only the changed ones, the largest change first (equal ones by name): block 1 is
    # 13200 -> 15000 (1.136x), its attn 4200 -> 6000 (1.429x)
    assert [l.split() for l in lines[at + 1:]] == [
        ["module", "model", "a", "model", "b", "b", "-", "a", "b", "/", "a"],
        ["Net.blocks", "26400", "28200", "+1800", "1.068x"],
        ["Net.blocks.1", "13200", "15000", "+1800", "1.136x"],
        ["Net.blocks.1.attn", "4200", "6000", "+1800", "1.429x"],
        ["Net.head", "1500", "-", "-1500", "only", "in", "a"],
        ["Net", "27900", "28250", "+350", "1.013x"],
        ["Net.extra", "-", "50", "+50", "only", "in", "b"]]
    r = naflops("diff", a, a)  # nothing changed: the count alone
    assert r.stdout.splitlines()[-1] == "by module (model FLOPs, submodules included): 0 of 13 changed"
    # with an older dump on one side: the per-op diff, no module section
    old = dump_of(OPS)
    old["schema"] = "naflops/3"
    for op in old["ops"]:
        del op["module"]
    r = naflops("diff", write(tmp_path, "old.json", old), b)
    assert r.returncode == 0 and "by module" not in r.stdout
    out = tmp_path / "d.html"
    assert naflops("diff", "--html", out, a, b).returncode == 0
    page = out.read_text()
    assert 'data-modules-changed="6"' in page
    assert '<tr class="only-a" data-module="Net.head">' in page
    assert '<tr class="only-b" data-module="Net.extra">' in page
    assert '<td class="n">+1,800</td><td class="n">1.068x</td>' in page  # Net.blocks
    assert "<summary>8 modules unchanged</summary>" in page  # 14 - 6, folded away
    assert '<tr class="same" data-module="Net.blocks.0">' in page
    # an older dump on one side: the page has no module table
    out = tmp_path / "old.html"
    assert naflops("diff", "--html", out, tmp_path / "old.json", b).returncode == 0
    assert "By module" not in out.read_text() and "data-module" not in out.read_text()


# A GAN: two outermost modules, each with work of its own (not in a submodule), a
# module name with a "|" (Markdown escapes it), nothing outside modules. FLOPs:
#   Generator.net.0     aten   600 forward
#   Generator.net.a|b   NATTEN 200 forward
#   Generator           aten    50 forward (its own)
#   Discriminator.net.0 aten   300 forward, 2 x 300 backward
#   Discriminator       aten   100 backward (its own)
# Inclusive: Generator 850 (NATTEN 200: 23.53% -> 23.5%), Generator.net 800 (25.0%);
# Discriminator forward 300, backward 700, 1000 (0.0%), Discriminator.net 900; total
# 1150 forward, 700 backward, 1850 (NATTEN 200: 10.81% -> 10.8%). Generator ran first,
# so it comes first though Discriminator has more FLOPs (program order, not size).
GAN = [aten("aten::addmm", "forward", "Generator.net.0", 1, 600),
       natten("forward", "Generator.net.a|b", 1, 200),
       aten("aten::mm", "forward", "Generator", 1, 50, key=(8, 2)),
       aten("aten::addmm", "forward", "Discriminator.net.0", 1, 300, key=(8, 1)),
       aten("aten::mm", "backward", "Discriminator.net.0", 2, 300, key=(1, 8)),
       aten("aten::mm", "backward", "Discriminator", 1, 100, key=(2, 8))]


def test_several_outermost_modules(tmp_path):
    d = write(tmp_path, "gan.json", dump_of(GAN))
    r = naflops("report", "--by", "module", "--units", "exact", d)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()[2:]
    assert [l.split() for l in lines] == [
        ["Generator", "850", "0", "0", "850", "850", "200", "23.5%"],
        ["Generator.net", "800", "0", "0", "800", "800", "200", "25.0%"],
        ["Generator.net.0", "600", "0", "0", "600", "600", "0", "0.0%"],
        ["Generator.net.a|b", "200", "0", "0", "200", "200", "200", "100.0%"],
        ["Discriminator", "300", "700", "0", "1000", "1000", "0", "0.0%"],
        ["Discriminator.net", "300", "600", "0", "900", "900", "0", "0.0%"],
        ["Discriminator.net.0", "300", "600", "0", "900", "900", "0", "0.0%"],
        ["total", "1150", "700", "0", "1850", "1850", "200", "10.8%"]]  # no outside line
    assert lines[4].startswith("Discriminator ") and lines[5].startswith("  Discriminator.net ")
    r = naflops("report", "--by", "module", "--depth", "0", "--format", "csv", d)
    assert [row[:2] + row[6:] for row in csv.reader(io.StringIO(r.stdout))][1:] == [
        ["Generator", "0", "850", "200", "23.5%"], ["Discriminator", "0", "1000", "0", "0.0%"],
        ["total", "", "1850", "200", "10.8%"]]
    r = naflops("report", "--by", "module", "--format", "md", "--units", "exact", d)
    assert "| Generator.net.a\\|b | 200 | 0 | 0 | 200 | 200 | 200 | 100.0% |" in r.stdout


def test_depth_and_by_module_misused(tmp_path):
    d = write(tmp_path, "d.json", dump_of(OPS))
    for cmd in ("report", "merge"):
        r = naflops(cmd, "--depth", "2", d)
        assert (r.returncode, r.stdout) == (2, "")
        assert r.stderr == f"naflops: {cmd}: --depth goes with --by module\n"
    r = naflops("report", "--by", "module", "--html", tmp_path / "r.html", d)
    assert r.returncode == 2 and not (tmp_path / "r.html").exists()
    assert r.stderr == ('naflops: report: --by module prints a table; the --html page has its '
                        'module tree in its "by module" section\n')


def test_html_icicle(tmp_path, browser):
    ops = OPS + [aten("aten::mm", "forward", "Net.blocks.0.<script>\"x", 1, 0)]
    d = write(tmp_path, "d.json", dump_of(ops))
    out = tmp_path / "r.html"
    r = naflops("report", "--html", out, d)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text  # names from user code escaped
    page = browser.page(1200, 900)
    try:
        page.navigate(out.as_uri())
        assert page.errors() == []
        blocks = page.evaluate("""[...document.querySelectorAll('[data-chart="modules"] g')]
            .map(g => ({name: g.dataset.module, flops: +g.dataset.flops, natten: +g.dataset.natten,
                        width: g.querySelector('rect.mod').getBoundingClientRect().width,
                        band: g.querySelector('rect.mod-natten') ?
                              g.querySelector('rect.mod-natten').getBoundingClientRect().width : 0}))""")
        by = {b["name"]: b for b in blocks}
        # one block per module with FLOPs (the 0-FLOP one has no width), and outside modules
        assert set(by) == {"Net", "Net.blocks", "Net.blocks.0", "Net.blocks.0.attn", "Net.blocks.0.attn.qkv",
                           "Net.blocks.0.mlp", "Net.blocks.0.mlp.0", "Net.blocks.0.<script>\"x",
                           "Net.blocks.1", "Net.blocks.1.attn", "Net.blocks.1.attn.qkv", "Net.blocks.1.mlp",
                           "Net.blocks.1.mlp.0", "Net.head", "(outside modules)"}
        assert by["Net"]["flops"] == 29300 and by["Net"]["natten"] == 2800
        # widths in proportion to FLOPs (all passes), NATTEN's band to its share
        scale = by["Net"]["width"] / 29300
        for b in blocks:
            assert abs(b["width"] - b["flops"] * scale) < 1.0, b
            if b["flops"]:
                assert abs(b["band"] - b["width"] * b["natten"] / b["flops"]) < 1.0, b
        rows = page.evaluate("""[...document.querySelectorAll('[data-table="modules"] tr[data-module]')]
            .map(r => r.dataset.module)""")
        assert rows[:3] == ["Net", "Net.blocks", "Net.blocks.0"] and rows[-1] == "total"
    finally:
        page.close()
