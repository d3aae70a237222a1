"""`naflops report --html` and `naflops diff --html`, rendered in headless Chromium (one
browser for the module, spoken to over the DevTools pipe, tests/integration/cdp.py):
the demo's real dump, four rank dumps and their merge, a 500-row dump, a dump with a
"gpu" object and a diff. Each page is screenshotted (NAFLOPS_SCREENSHOTS=DIR keeps
the PNGs) and read back from the rendered DOM: bars exist and have the widths of their
figures, the figures are the dump's, rows are largest first and the grouped row sums
the rest; no console error, nothing fetched but the page itself.

Skips when Chromium is not installed, unless CI is set (then it fails)."""
import json
import os
import random
import shutil
import subprocess
import sys

import pytest

import cdp
from cdp import browser  # noqa: F401  (a fixture)
from conftest import ROOT, clean_env, run_program

NAFLOPS = ROOT / "scripts" / "naflops"
COUNTED = ("pass", "calls", "flops", "macs", "flops_per_call", "module")  # the per-op view sums modules
PASSES = ("forward", "backward", "recompute", "jvp")
TOP = 30


def _cli():
    sys.path.insert(0, str(ROOT / "python"))  # the naflops package
    import naflops
    return naflops


CLI = _cli()  # for si(), share(), ratio() and totals_of(): the figures the page must show


def naflops(*args, cwd=None, script=NAFLOPS):
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                          text=True, env=clean_env(), cwd=cwd, timeout=120)


def write(path, doc):
    path.write_text(json.dumps(doc))
    return path


def with_ops(doc, ops, **fields):
    """doc with these ops (flops and macs recomputed) and totals to match."""
    for op in ops:
        op["flops"] = op["calls"] * op["flops_per_call"]
        op["macs"] = op["flops"] // 2
    return dict(doc, ops=ops, totals=CLI.totals_of(ops), **fields)


def groups(doc):
    """The page's per-op rows, computed here: ops alike but for their pass, summed."""
    rows = {}
    for op in doc["ops"]:
        key = json.dumps({k: v for k, v in op.items() if k not in COUNTED}, sort_keys=True)
        r = rows.setdefault(key, {"total": 0, "calls": 0, "passes": {}, "aten": op["kind"] == "aten"})
        r["total"] += op["flops"]
        r["calls"] += op["calls"]
        r["passes"][op["pass"]] = r["passes"].get(op["pass"], 0) + op["flops"]
    return sorted(rows.values(), key=lambda r: -r["total"])


def plain(text):
    return int(text.replace(",", ""))


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def demo(py021, lib, tmp_path_factory):
    """The demo's dump (scripts/demo.py, run under the preload)."""
    tmp = tmp_path_factory.mktemp("demo")
    r = run_program(py021, (ROOT / "scripts" / "demo.py").read_text(), tmp, lib=lib)
    assert r.returncode == 0, r.stderr
    return r.dump


CHART = """(name) => [...document.querySelectorAll(`[data-chart="${name}"] .bar`)].map(b => {
  const svg = b.querySelector('svg').getBoundingClientRect();
  return {data: {...b.dataset}, svgWidth: svg.width, svgHeight: svg.height,
          label: b.previousElementSibling.textContent, value: b.nextElementSibling.textContent,
          labelTitle: b.previousElementSibling.title,
          background: getComputedStyle(b).backgroundColor,
          rects: [...b.querySelectorAll('rect')].map(r => ({data: {...r.dataset},
            cls: r.getAttribute('class'), width: r.getBoundingClientRect().width,
            fill: getComputedStyle(r).fill, title: r.querySelector('title').textContent}))};
})"""
TABLE = """(name) => [...document.querySelectorAll(`table[data-table="${name}"] tr`)].slice(1).map(
  tr => ({cls: tr.className, cells: [...tr.cells].map(c => c.textContent)}))"""


class Rendered:
    def __init__(self, page, html):
        self.page, self.html = page, html

    def chart(self, name):
        return self.page.evaluate(f"({CHART})({json.dumps(name)})")

    def table(self, name):
        return self.page.evaluate(f"({TABLE})({json.dumps(name)})")

    def js(self, expression):
        return self.page.evaluate(expression)


@pytest.fixture
def render(browser, tmp_path, request):
    """render(html_path) -> Rendered: the page loaded, screenshotted; on leaving, the
    page must have logged no error and fetched nothing but itself."""
    opened = []

    def go(path):
        text = path.read_text()
        assert "://" not in text and "<script" not in text  # self-contained, no script
        assert " src=" not in text and " href=" not in text
        assert "default-src 'none'" in text  # and the browser is told to fetch nothing
        page = browser.page(1000, 700)
        opened.append((page, path))
        page.navigate(path.as_uri())
        shot = tmp_path / (path.stem + ".png")
        png = page.screenshot(shot, full_page=True)
        assert png.startswith(b"\x89PNG") and len(png) > 5000
        keep = os.environ.get("NAFLOPS_SCREENSHOTS")
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(shot, os.path.join(keep, f"{request.node.name}-{shot.name}"))
            page.screenshot(os.path.join(keep, f"{request.node.name}-{path.stem}-top.png"))
        return Rendered(page, text)

    yield go
    for page, path in opened:
        errors, fetched = page.errors(), page.requests()
        page.close()
        assert errors == [], f"{path}: console errors: {errors}"
        assert fetched == [path.as_uri()], f"{path}: fetched {fetched}"


# ------------------------------------------------------------------ checks

def check_cards(r, doc):
    t = doc["totals"]
    natten = sum(op["flops"] for op in doc["ops"] if op["kind"] != "aten")
    cards = r.js("Object.fromEntries([...document.querySelectorAll('.card')].map(c => "
                 "[c.dataset.card, [c.querySelector('b').textContent, c.title]]))")
    assert cards["total"] == [CLI.si(t["flops"], "FLOP"), f"{t['flops']} FLOP"]
    assert cards["natten"] == [CLI.si(natten, "FLOP"), f"{natten} FLOP"]
    assert cards["calls"][0] == f"{t['calls']:,}"
    if any(op["kind"] == "aten" for op in doc["ops"]):
        assert cards["share"][0] == CLI.share(natten, t["flops"]).strip()
        assert cards["other"][0] == CLI.si(t["flops"] - natten, "FLOP")


def check_bars(rows, key="total"):
    """Each drawn bar is as long as its figure against the longest (1 px)."""
    scale = max(int(row["data"][key]) for row in rows)
    for row in rows:
        drawn = sum(rect["width"] for rect in row["rects"])
        assert row["svgHeight"] > 0
        assert abs(drawn - row["svgWidth"] * int(row["data"][key]) / scale) <= 1.0, row


def check_ops(r, doc, top=TOP):
    """The per-op chart and table against the dump: the first `top` rows largest
    first, then one row summing the rest."""
    want = groups(doc)
    rows = r.chart("ops")
    shown = want[:top]
    assert len(rows) == len(shown) + (len(want) > top)
    for row, w in zip(rows, shown):
        assert row["data"]["group"] == "row"
        assert int(row["data"]["total"]) == w["total"] and int(row["data"]["calls"]) == w["calls"]
        assert row["value"] == CLI.si(w["total"], "FLOP")
        segs = {}
        for rect in row["rects"]:
            assert rect["width"] > 0 and rect["title"].endswith(f"{rect['data']['flops']} FLOP")
            assert rect["data"]["side"] == ("other" if w["aten"] else "natten")
            segs[rect["data"]["pass"]] = int(rect["data"]["flops"])
        assert segs == {p: f for p, f in w["passes"].items() if f}  # passes stacked
        assert row["label"].startswith("aten" if w["aten"] else "NATTEN")
    totals = [int(row["data"]["total"]) for row in rows[:len(shown)]]
    assert totals == sorted(totals, reverse=True) == [w["total"] for w in shown]
    if len(want) > top:
        rest = rows[-1]
        assert rest["data"]["group"] == "rest"
        assert int(rest["data"]["total"]) == sum(w["total"] for w in want[top:])
        assert int(rest["data"]["calls"]) == sum(w["calls"] for w in want[top:])
        assert rest["label"] == f"other ({len(want) - top} ops)"
        assert sum(int(x["data"]["flops"]) for x in rest["rects"]) == int(rest["data"]["total"])
    check_bars(rows)
    table = r.table("ops")
    assert [plain(t["cells"][-2]) for t in table] == [int(row["data"]["total"]) for row in rows]
    assert [t["cells"][-1] for t in table] == [
        CLI.share(int(row["data"]["total"]), doc["totals"]["flops"]).strip() for row in rows]
    return rows


def check_passes(r, doc):
    rows = {row["data"]["label"]: row for row in r.chart("passes")}
    for p in PASSES:
        f = doc["totals"][f"{p}_flops"]
        if f or p in ("forward", "backward"):
            assert int(rows[p]["data"]["total"]) == f and rows[p]["value"] == CLI.si(f, "FLOP")
    natten = sum(op["flops"] for op in doc["ops"] if op["kind"] != "aten")
    share = rows["share"]
    assert int(share["data"]["natten"]) == natten
    assert [int(x["data"]["flops"]) for x in share["rects"]] == [
        f for f in (natten, doc["totals"]["flops"] - natten) if f]
    assert share["value"] == "NATTEN " + CLI.share(natten, doc["totals"]["flops"]).strip()
    check_bars([rows[p] for p in rows if p != "share"])


# ------------------------------------------------------------------ tests

def test_demo_report(demo, tmp_path, render):
    dump = write(tmp_path / "demo.json", demo)
    out = tmp_path / "demo.html"
    res = naflops("report", "--html", out, dump)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    r = render(out)
    assert r.js("document.title") == f"naflops report: {CLI.title(demo)}"
    check_cards(r, demo)
    check_passes(r, demo)
    rows = check_ops(r, demo)
    assert any(row["label"].startswith("NATTEN") for row in rows)
    # NATTEN and the other ops, forward and backward: four colours
    fills = {(x["data"]["side"], x["data"]["pass"]): x["fill"] for row in rows for x in row["rects"]}
    assert len(set(fills.values())) == len(fills) == 4
    # by operator: one bar per op name
    names = {}
    for op in demo["ops"]:
        names[op["op"]] = names.get(op["op"], 0) + op["flops"]
    by_name = r.chart("operators")
    assert {row["data"]["label"]: int(row["data"]["total"]) for row in by_name} == names
    assert r.js("document.querySelector('[data-chart=\"ranks\"]')") is None
    assert r.js("document.querySelector('[data-chart=\"gpu-time\"]')") is None


def rank_dumps(demo, tmp_path):
    """Four ranks of one run, rank 3 doing half as much again as the others."""
    paths = []
    for rank, factor in enumerate((2, 2, 2, 3)):
        ops = [dict(op, calls=op["calls"] * factor) for op in demo["ops"]]
        doc = with_ops(demo, ops, pid=1000 + rank, rank=str(rank), local_rank=str(rank),
                       world_size="4", host="node0")
        paths.append(write(tmp_path / f"rank{rank}.json", doc))
    return paths


def test_ranks_report(demo, tmp_path, render):
    paths = rank_dumps(demo, tmp_path)
    docs = [json.loads(p.read_text()) for p in paths]
    res = naflops("merge", "-o", tmp_path / "job.json", *paths)
    assert res.returncode == 0, res.stderr
    merged = json.loads((tmp_path / "job.json").read_text())
    out = tmp_path / "ranks.html"
    res = naflops("report", "--html", out, *paths)
    assert (res.returncode, res.stderr) == (0, "")
    r = render(out)
    check_cards(r, merged)
    check_passes(r, merged)
    check_ops(r, merged)
    ranks = r.chart("ranks")
    assert [row["data"]["label"] for row in ranks] == ["rank 0", "rank 1", "rank 2", "rank 3"]
    assert [int(row["data"]["total"]) for row in ranks] == [d["totals"]["flops"] for d in docs]
    assert [row["value"].endswith("(heaviest)") for row in ranks] == [False, False, False, True]
    check_bars(ranks)
    flops = [d["totals"]["flops"] for d in docs]
    assert r.js("document.querySelector('[data-imbalance]').dataset.imbalance") == \
        CLI.ratio(sum(flops), 4 * max(flops)) == "1.333x"
    # the merged dump alone: the same page but the per-rank bars
    out = tmp_path / "merged.html"
    assert naflops("report", "--html", out, tmp_path / "job.json").returncode == 0
    r = render(out)
    assert "of ranks 0, 1, 2, 3" in r.js("document.querySelector('h1').textContent")
    check_cards(r, merged)
    check_ops(r, merged)
    assert r.chart("ranks") == []


def big_dump():
    """500 op rows: 400 aten and NATTEN signatures, 100 of them with a backward row."""
    rnd = random.Random(15)
    ops = []
    for i in range(400):
        natten = i % 8 == 0
        fpc = rnd.randrange(1, 10**9)
        op = {"op": "na2d" if natten else f"aten::{('mm', 'addmm', 'bmm', 'convolution')[i % 4]}",
              "pass": "forward", "kind": "fused" if natten else "aten",
              "natten_version": "0.21.7" if natten else None,
              "backend": "flex-fna" if natten else None,
              "shape": [2, 16 + i, 16, 4, 32] if natten else [512, 64 + i],
              "key_shape": [2, 16 + i, 16, 4, 32] if natten else [64 + i, 256],
              "value_shape": [2, 16 + i, 16, 4, 32] if natten else None,
              "kernel_size": [7, 7] if natten else None, "stride": [1, 1] if natten else None,
              "dilation": [1, 1] if natten else None,
              "is_causal": [False, False] if natten else [], "additional_kv": 0,
              "varlen_pairs": None, "dtype": "bfloat16", "device": "cuda:0",
              "calls": rnd.randrange(1, 50), "flops_per_call": fpc}
        ops.append(op)
        if i % 4 == 1:
            ops.append(dict(op, **{"pass": "backward", "flops_per_call": 2 * fpc}))
    assert len(ops) == 500
    return with_ops({"schema": "naflops/2", "pid": 77, "host": "n", "rank": "0",
                     "local_rank": "0", "world_size": "1", "natten_version": "0.21.7"}, ops)


def test_500_rows(tmp_path, render):
    doc = big_dump()
    out = tmp_path / "big.html"
    res = naflops("report", "--html", out, write(tmp_path / "big.json", doc))
    assert (res.returncode, res.stderr) == (0, "")
    r = render(out)
    check_cards(r, doc)
    check_passes(r, doc)
    rows = check_ops(r, doc)
    assert len(rows) == TOP + 1 and rows[-1]["label"] == "other (370 ops)"
    everything = r.table("all-ops")  # every row, exact, folded under the chart
    assert len(everything) == 400
    assert [plain(t["cells"][-2]) for t in everything] == [w["total"] for w in groups(doc)]
    assert r.js("document.querySelector('details').open") is False
    by_name = r.chart("operators")
    assert len(by_name) == 5


def gpu_dump(demo):
    """The demo's dump as if it ran 1000 times as long on an H200, in bfloat16, with a
    "gpu" object for its NATTEN ops."""
    ops = [dict(op, device="cuda:0", dtype="bfloat16", calls=1000 * op["calls"])
           for op in demo["ops"]]
    doc = with_ops(demo, ops)
    gpu_ops = []
    for tf, op in zip((310, 150.5, 421, 80), (o for o in ops if o["kind"] != "aten")):
        ns = int(op["flops"] // (1000 * tf)) + 7
        tf = op["flops"] / ns / 1e3
        gpu_ops.append({"op": op["op"], "pass": op["pass"], "dtype": "bfloat16", "device": "cuda:0",
                        "shape": "x".join(map(str, op["shape"])), "calls": op["calls"],
                        "kernels": 2 * op["calls"], "gpu_ns": ns, "flops": op["flops"],
                        "tflops": float(f"{tf:.6g}"), "peak_tflops": 989.4,
                        "utilization": float(f"{tf / 989.4:.6g}"), "measured_flops": None,
                        "ratio": None, "kernel_names": []})
    doc["gpu"] = {"off_reason": "", "devices": [{"index": 0, "chip": "GH100", "name": "NVIDIA H200"}],
                  "ops": gpu_ops, "other": {"kernels": 120, "gpu_ns": 250_000,
                                            "measured_flops": None},
                  "graphs": [], "unknown_graph_launches": 0,
                  "crosscheck": {"ran": False, "note": "", "explanation": ""},
                  "overflows": {"pending": 0, "nodes": 0, "ops": 0, "graphs": 0}}
    return doc


def test_gpu_report(demo, tmp_path, render):
    doc = gpu_dump(demo)
    out = tmp_path / "gpu.html"
    res = naflops("report", "--html", out, write(tmp_path / "gpu.json", doc))
    assert (res.returncode, res.stderr) == (0, "")
    r = render(out)
    check_ops(r, doc)
    assert "NVIDIA H200 (GH100)" in r.js("document.body.textContent")
    gpu = sorted(doc["gpu"]["ops"], key=lambda o: -o["gpu_ns"])
    time_rows = r.chart("gpu-time")
    assert [int(x["data"]["ns"]) for x in time_rows] == [o["gpu_ns"] for o in gpu] + [250_000]
    assert time_rows[-1]["data"]["label"] == "other kernels (not in a NATTEN op)"
    assert [x["value"] for x in time_rows] == [f"{o['gpu_ns'] / 1e6:.3f} ms" for o in gpu] + \
        ["0.250 ms"]
    assert all(x["rects"][0]["width"] > 0 for x in time_rows)
    check_bars(time_rows, "ns")
    tf_rows = r.chart("gpu-tflops")
    assert len(tf_rows) == len(gpu)
    for row, o in zip(tf_rows, gpu):
        assert row["data"]["label"] == f"{o['op']} {o['pass']} {o['shape']} bfloat16 cuda:0"
        tf = o["flops"] / o["gpu_ns"] / 1e3
        assert abs(tf - o["tflops"]) <= 1e-5 * tf  # the library's figure
        assert row["value"] == f"{tf:.2f} TFLOP/s of 989.4 ({100 * tf / 989.4:.1f}%)"
        peak, achieved = row["rects"]
        assert peak["cls"] == "peak" and achieved["cls"] == "tflops"
        assert abs(achieved["width"] / peak["width"] - tf / 989.4) < 0.01
    table = r.table("gpu")
    assert [plain(t["cells"][8]) for t in table[:-1]] == [o["flops"] for o in gpu]


def without_modules(doc):
    """The dump as a naflops/3 one: rows that differ only in their module summed (the
    per-op diff lines up signatures; the per-module diff is test_modules_cli's)."""
    from naflops.figures import across_modules

    ops = across_modules(doc["ops"])
    for op in ops:
        del op["module"]
    return dict(doc, schema="naflops/3", ops=ops)


def test_diff(demo, tmp_path, render):
    demo = without_modules(demo)
    a = write(tmp_path / "a.json", demo)
    ops = [dict(op) for op in demo["ops"]]
    natten = next(op for op in ops if op["kind"] != "aten" and op["pass"] == "forward")
    natten["calls"] *= 2                  # changed
    gone = next(op for op in ops if op["kind"] == "aten" and op["pass"] == "backward")
    ops.remove(gone)                      # only in a
    ops.append(dict(gone, shape=[1024, 64], flops_per_call=2 * gone["flops_per_call"]))  # only in b
    b_doc = with_ops(demo, ops, pid=demo["pid"] + 1)
    b = write(tmp_path / "b.json", b_doc)
    out = tmp_path / "diff.html"
    res = naflops("diff", "--html", out, a, b)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    r = render(out)
    rows = r.chart("ops")
    assert len(rows) == len(demo["ops"]) + 1
    states = {row["data"]["label"]: row["data"]["state"] for row in rows}
    changed = {k: v for k, v in states.items() if v != "same"}
    assert sorted(changed.values()) == ["changed", "only-a", "only-b"]
    assert r.js("document.querySelector('[data-changed]').dataset.changed") == "3"
    for row in rows:
        st = row["data"]["state"]
        fa = int(row["data"]["a"]) if row["data"]["a"] else None
        fb = int(row["data"]["b"]) if row["data"]["b"] else None
        if st == "changed":
            assert (fa, fb) == (natten["flops"] // 2, natten["flops"])
            assert row["value"] == f"{CLI.si(fa, 'FLOP')} → {CLI.si(fb, 'FLOP')} 2.000x"
        elif st == "only-a":
            assert (fa, fb) == (gone["flops"], None) and row["value"].endswith("only in a")
        elif st == "only-b":
            assert (fa, fb) == (None, 2 * gone["flops"]) and row["value"].endswith("only in b")
        else:
            assert fa == fb and row["value"].endswith("1.000x")
        # highlighted: a coloured background for the three, none for the rest
        assert (row["background"] != "rgba(0, 0, 0, 0)") == (st != "same")
        assert [x["data"]["side"] for x in row["rects"]] == [s for s, f in (("a", fa), ("b", fb))
                                                           if f is not None]
    maxf = max(max(int(x["data"]["flops"]) for x in row["rects"]) for row in rows)
    for row in rows:
        for x in row["rects"]:
            assert abs(x["width"] - row["svgWidth"] * int(x["data"]["flops"]) / maxf) <= 1.0
    table = r.table("ops")  # the same rows, exact: calls and FLOPs of both, b - a, b / a
    assert [t["cls"] for t in table] == [row["data"]["state"] for row in rows]
    for t, row in zip(table, rows):
        fa, fb = (plain(v) if v != "-" else None for v in t["cells"][12:14])
        assert (fa, fb) == tuple(int(row["data"][s]) if row["data"][s] else None for s in "ab")
        assert plain(t["cells"][14]) == (fb or 0) - (fa or 0)
    totals = {row["data"]["label"]: (int(row["data"]["a"]), int(row["data"]["b"]))
              for row in r.chart("totals")}
    assert totals["total"] == (demo["totals"]["flops"], b_doc["totals"]["flops"])
    assert totals["forward"] == (demo["totals"]["forward_flops"], b_doc["totals"]["forward_flops"])
    assert totals["NATTEN"] == (demo["totals"]["natten_flops"], b_doc["totals"]["natten_flops"])


def test_cli_html_errors(demo, tmp_path):
    """No browser needed: refusals are one line and status 2; the page is written only
    when asked for."""
    paths = rank_dumps(demo, tmp_path)
    r = naflops("report", *paths[:2])
    assert r.returncode == 2 and r.stderr.startswith("naflops: report: one dump") and \
        r.stderr.count("\n") == 1
    other = write(tmp_path / "other.json", dict(json.loads(paths[1].read_text()), world_size="8"))
    r = naflops("report", "--html", tmp_path / "x.html", paths[0], other)
    assert r.returncode == 2 and "not the same run" in r.stderr and not (tmp_path / "x.html").exists()
    r = naflops("report", "--html", tmp_path / "missing" / "x.html", paths[0])
    assert r.returncode == 2 and r.stderr.startswith(f"naflops: {tmp_path / 'missing' / 'x.html'}: cannot write")
    (tmp_path / "bad.json").write_text('{"schema": "naflops/2"}')
    r = naflops("diff", "--html", tmp_path / "d.html", paths[0], tmp_path / "bad.json")
    assert r.returncode == 2 and "Traceback" not in r.stderr and not (tmp_path / "d.html").exists()


def test_installed_and_linked(lib, demo, tmp_path):
    """make install puts the naflops package (the page's module with it) under lib/naflops;
    bin/naflops finds it from any directory, and so does a symbolic link to scripts/naflops."""
    prefix = tmp_path / "prefix"
    r = subprocess.run(["make", "-s", "-o", lib, "install", f"PREFIX={prefix}",
                        f"BUILD={os.path.dirname(lib)}"], cwd=ROOT, capture_output=True, text=True,
                       env=clean_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    dump = write(tmp_path / "demo.json", demo)
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "elsewhere" / "naflops"
    link.symlink_to(NAFLOPS)
    for script in (prefix / "bin" / "naflops", link):
        out = tmp_path / f"{script.parent.name}.html"
        r = naflops("report", "--html", out, dump, script=script, cwd=tmp_path / "elsewhere")
        assert (r.returncode, r.stderr) == (0, "")
        assert out.read_text().startswith("<!DOCTYPE html>")
