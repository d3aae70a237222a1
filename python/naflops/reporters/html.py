"""HTML pages for `naflops report --html` and `naflops diff --html`.

One self-contained file: inline CSS and inline SVG bars, no script and nothing fetched
(a Content-Security-Policy of default-src 'none' says so to the browser). Every bar has
its exact figure in a <title> tooltip and in the table below it; bars carry SI figures.
Rows are sorted largest first; past the first TOP rows the rest are one grouped row.

Its figures are the other reporters' (naflops.figures); the rank dumps are
merged and two runs lined up by naflops.combine. A dump with steps gets a Steps section
(reporters/html_steps.py, with its own CSS), a dump with modules a module view
(reporters/html_modules.py: an icicle of the module tree).

Over 500 lines on purpose: one page builder, whose report and diff pages share the
chart, table and card helpers above them; about 40 lines are the page's CSS."""
import html

from naflops import combine, dumps
from naflops import figures

TOP = 30  # rows drawn before the rest are grouped
PASS_ORDER = ("forward", "backward", "recompute", "jvp")
SIDES = ("natten", "other")

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:20px 28px;color:#212529;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:26px 0 8px;border-bottom:1px solid #dee2e6;padding-bottom:3px}
.sub{color:#495057;margin:0 0 12px}.note{color:#495057;font-size:12px;margin:4px 0}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.card{border:1px solid #dee2e6;border-radius:6px;padding:6px 12px;min-width:120px}
.card b{display:block;font-size:18px}.card span{color:#495057;font-size:12px}
.chart{display:grid;grid-template-columns:minmax(180px,440px) 1fr 200px;gap:3px 10px;align-items:center;max-width:1400px}
.chart .label{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;font-size:12.5px}
.chart .val{font-size:12.5px;font-variant-numeric:tabular-nums;white-space:nowrap}
.chart svg{width:100%;height:16px;display:block;background:#f8f9fa}
.chart svg.pair{height:22px}
.chart .group{font-style:italic}
.natten.forward{fill:#d9480f}.natten.backward{fill:#f76707}.natten.recompute{fill:#ffa94d}.natten.jvp{fill:#ffd8a8}
.other.forward{fill:#1864ab}.other.backward{fill:#339af0}.other.recompute{fill:#74c0fc}.other.jvp{fill:#d0ebff}
.side-a{fill:#868e96}.side-b{fill:#1c7ed6}.gputime{fill:#2f9e44}.gpuother{fill:#adb5bd}.tflops{fill:#7048e8}
.peak{fill:#e9ecef}.mean{stroke:#c92a2a;stroke-width:2;stroke-dasharray:3 2}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;margin:6px 0}
.legend i{display:inline-block;width:11px;height:11px;margin-right:4px;vertical-align:-1px}
i.natten.forward{background:#d9480f}i.natten.backward{background:#f76707}i.natten.recompute{background:#ffa94d}i.natten.jvp{background:#ffd8a8}
i.other.forward{background:#1864ab}i.other.backward{background:#339af0}i.other.recompute{background:#74c0fc}i.other.jvp{background:#d0ebff}
i.side-a{background:#868e96}i.side-b{background:#1c7ed6}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border-bottom:1px solid #e9ecef;padding:2px 8px;text-align:left;white-space:nowrap}
th{background:#f1f3f5}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.changed td,.chart .changed{background:#fff3bf}tr.only-a td,.chart .only-a{background:#ffe3e3}
tr.only-b td,.chart .only-b{background:#d3f9d8}.up{color:#c92a2a}.down{color:#2b8a3e}
.tag{font-size:10px;border-radius:3px;padding:0 4px;margin-right:4px;color:#fff;background:#d9480f}
.tag.other{background:#1864ab}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:20px}
details summary{cursor:pointer;color:#1864ab;margin:6px 0}
"""


def esc(v):
    return html.escape(str(v), quote=True)


def exact(v):
    return f"{v:,}"


def attrs(d):
    return "".join(f' {k}="{esc(v)}"' for k, v in d.items())


def page(title, body, css=""):
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}{css}</style></head>\n<body>\n{body}\n"
            "</body></html>\n")


def card(value, label, tip=None, cls=None):
    extra = attrs({k: v for k, v in (("title", tip), ("data-card", cls)) if v})
    return f'<div class="card"{extra}><b>{esc(value)}</b><span>{esc(label)}</span></div>'


def legend(items):
    return '<div class="legend">' + "".join(
        f'<span><i class="{c}"></i>{esc(t)}</span>' for c, t in items) + "</div>"


def pass_legend(passes):
    return legend([(f"{side} {p}", f"{'NATTEN' if side == 'natten' else 'other ops'} {p}")
                   for side in SIDES for p in passes])


# ------------------------------------------------------------------ bars

def _x(v, scale):
    """v on a 0..1000 axis of which scale is the end."""
    return 0.0 if scale <= 0 else min(1000.0, (v * 1000000 // scale) / 1000)


def svg(rects, cls="", extra=""):
    return (f'<svg class="{cls}" viewBox="0 0 1000 16" preserveAspectRatio="none" '
            f'role="img">{"".join(rects)}{extra}</svg>')


def rect(x, y, w, h, cls, tip, data):
    return (f'<rect class="{cls}" x="{x:.3f}" y="{y}" width="{w:.3f}" height="{h}"{attrs(data)}>'
            f"<title>{esc(tip)}</title></rect>")


def stacked(segs, scale, label, extra=""):
    """A bar of segments [(side, pass, flops)] stacked left to right."""
    rects, at, x = [], 0, 0.0
    for side, p, flops in segs:
        if not flops:
            continue
        at += flops
        end = _x(at, scale)
        who = "NATTEN" if side == "natten" else "other ops"
        rects.append(rect(x, 0, end - x, 16, f"seg {side} {p}",
                          f"{label}: {who} {p}: {flops} FLOP", {"data-flops": flops,
                                                               "data-pass": p, "data-side": side}))
        x = end
    return svg(rects, extra=extra)


def chart_row(label, tip, bar, value, row_attrs, cls=""):
    return (f'<div class="label {cls}" title="{esc(tip)}">{label}</div>'
            f'<div class="bar {cls}"{attrs(row_attrs)}>{bar}</div>'
            f'<div class="val {cls}">{value}</div>')


def chart(name, rows):
    return f'<div class="chart" data-chart="{esc(name)}">' + "".join(rows) + "</div>"


# ------------------------------------------------------------------ grouping

def side_of(op):
    return "other" if op["kind"] == "aten" else "natten"


def grouped(ops, key, label):
    """Rows of ops grouped by key(op): label, exact FLOPs per (side, pass), calls,
    total, the member ops; largest first (ties: by label)."""
    rows = {}
    for op in ops:
        k = key(op)
        if k not in rows:
            rows[k] = {"label": label(op), "op": op, "flops": {}, "calls": 0, "total": 0, "n": 0}
        r = rows[k]
        sp = (side_of(op), op["pass"])
        r["flops"][sp] = r["flops"].get(sp, 0) + op["flops"]
        r["calls"] += op["calls"]
        r["total"] += op["flops"]
        r["n"] += 1
    return sorted(rows.values(), key=lambda r: (-r["total"], r["label"]))


def top_and_rest(rows, what):
    """The first TOP rows and, if more, one row summing the rest."""
    if len(rows) <= TOP:
        return rows, None
    rest = rows[TOP:]
    flops = {}
    for r in rest:
        for sp, f in r["flops"].items():
            flops[sp] = flops.get(sp, 0) + f
    return rows[:TOP], {"label": f"other ({len(rest)} {what})", "op": None, "flops": flops,
                        "calls": sum(r["calls"] for r in rest),
                        "total": sum(r["total"] for r in rest), "n": len(rest)}


def segs_of(r):
    return [(side, p, r["flops"].get((side, p), 0)) for side in SIDES for p in PASS_ORDER]


def op_label(op):
    d = dict(zip(figures.DESCRIBE, figures.describe(op)))
    text = f"{d['op']} {d['shape']}"
    if d["kernel"] != "-":
        text += f" k{d['kernel']}"
    if d["backend"] != "-":
        text += f" [{d['backend']}]"
    if d["dtype"] != "float32" or d["device"] != "cpu":
        text += f" {d['dtype']} {d['device']}"
    return text


def tag(side):
    return (f'<span class="tag {side}">{"NATTEN" if side == "natten" else "aten"}</span>'
            if side else "")


def flops_chart(name, rows, rest):
    scale = max([r["total"] for r in rows] + [rest["total"] if rest else 0] + [1])
    out = []
    for i, r in enumerate(rows + ([rest] if rest else [])):
        is_rest = r is rest
        side = None if is_rest else side_of(r["op"])
        per_pass = ", ".join(f"{p} {sum(f for (s, q), f in r['flops'].items() if q == p)}"
                             for p in PASS_ORDER if any(q == p for (_, q) in r["flops"]))
        tip = f"{r['label']}: {r['total']} FLOP ({per_pass}), {r['calls']} calls"
        data = {"data-total": r["total"], "data-calls": r["calls"], "data-rank": i,
                "data-label": r["label"], "data-side": side or "mixed",
                "data-group": "rest" if is_rest else "row", "data-ops": r["n"]}
        out.append(chart_row(tag(side) + esc(r["label"]), tip,
                             stacked(segs_of(r), scale, r["label"]),
                             esc(figures.si(r["total"], "FLOP")), data, "group" if is_rest else ""))
    return chart(name, out)


def flops_table(name, rows, rest, passes):
    head = ("<tr><th class=n>#</th><th>op</th><th>kind</th><th>backend</th><th>shape</th>"
            "<th>kernel</th><th>dtype</th><th>device</th><th class=n>calls</th>"
            + "".join(f"<th class=n>{p} FLOPs</th>" for p in passes)
            + "<th class=n>FLOPs</th><th class=n>share</th></tr>")
    grand = sum(r["total"] for r in rows) + (rest["total"] if rest else 0)
    body = []
    for i, r in enumerate(rows + ([rest] if rest else [])):
        if r is rest:
            cells = [f'<td colspan=7 class="group">{esc(r["label"])}</td>']
        else:
            d = dict(zip(figures.DESCRIBE, figures.describe(r["op"])))
            cells = [f"<td>{esc(d[k])}</td>" for k in ("op", "kind", "backend", "shape", "kernel",
                                                       "dtype", "device")]
        per = [sum(f for (_, q), f in r["flops"].items() if q == p) for p in passes]
        body.append(f'<tr data-total="{r["total"]}"><td class=n>{i + 1}</td>' + "".join(cells)
                    + f'<td class=n>{exact(r["calls"])}</td>'
                    + "".join(f"<td class=n>{exact(v)}</td>" for v in per)
                    + f'<td class="n total">{exact(r["total"])}</td>'
                    + f'<td class=n>{esc(figures.share(r["total"], grand).strip())}</td></tr>')
    return f'<table data-table="{esc(name)}">{head}{"".join(body)}</table>'


# ------------------------------------------------------------------ GPU

def _int(v):
    return type(v) is int and v >= 0


def _num(v):
    return type(v) in (int, float) and v >= 0


def gpu_rows(docs):
    """The gpu objects' per-op rows summed over the dumps, and the other kernels'
    (kernels, ns); None when no dump has a usable gpu object (it is not validated)."""
    rows, other, devices, seen = {}, [0, 0], [], False
    for doc in docs:
        g = doc.get("gpu")
        if type(g) is not dict or type(g.get("ops")) is not list:
            continue
        seen = True
        for d in g.get("devices") if type(g.get("devices")) is list else []:
            if type(d) is dict and (d.get("name"), d.get("chip")) not in devices:
                devices.append((d.get("name"), d.get("chip")))
        o = g.get("other")
        if type(o) is dict and _int(o.get("kernels")) and _int(o.get("gpu_ns")):
            other[0] += o["kernels"]
            other[1] += o["gpu_ns"]
        nth = {}  # ops alike in these fields (kernel sizes are not in them) stay apart
        for op in g["ops"]:
            if type(op) is not dict or not all(_int(op.get(k)) for k in
                                               ("calls", "kernels", "gpu_ns", "flops")):
                continue
            key = tuple(str(op.get(k)) for k in ("op", "pass", "dtype", "device", "shape"))
            nth[key] = nth.get(key, -1) + 1
            r = rows.setdefault((key, nth[key]), {"key": key, "calls": 0, "kernels": 0,
                                                  "gpu_ns": 0, "flops": 0, "peak": None})
            for k in ("calls", "kernels", "gpu_ns", "flops"):
                r[k] += op[k]
            if _num(op.get("peak_tflops")) and op["peak_tflops"] > 0:
                r["peak"] = op["peak_tflops"]
    if not seen:
        return None
    return sorted(rows.values(), key=lambda r: (-r["gpu_ns"], r["key"])), other, devices


def tflops_of(r):
    """Achieved TFLOP/s as the library computes it: FLOPs / GPU ns / 1000."""
    return r["flops"] / r["gpu_ns"] / 1e3 if r["gpu_ns"] else None


def gpu_section(docs):
    got = gpu_rows(docs)
    if got is None:
        return ""
    rows, (other_kernels, other_ns), devices = got
    notes = [g["off_reason"] for g in (d.get("gpu") for d in docs)
             if type(g) is dict and isinstance(g.get("off_reason"), str) and g["off_reason"]]
    out = ["<h2>GPU: time and achieved TFLOP/s per NATTEN op</h2>"]
    if devices:
        out.append('<p class="note">' + esc(", ".join(
            f"{n or 'device'}" + (f" ({c})" if c else "") for n, c in devices)) +
            "; float32 against the TF32 peak</p>")
    out += [f'<p class="note">GPU part off: {esc(n)}</p>' for n in notes]
    shown, rest = rows[:TOP], rows[TOP:]
    if rest:
        shown = shown + [{"key": (f"other ({len(rest)} ops)", "", "", "", ""),
                          "calls": sum(r["calls"] for r in rest),
                          "kernels": sum(r["kernels"] for r in rest),
                          "gpu_ns": sum(r["gpu_ns"] for r in rest),
                          "flops": sum(r["flops"] for r in rest), "peak": None, "rest": True}]
    other_row = {"key": ("other kernels (not in a NATTEN op)", "", "", "", ""), "calls": 0,
                 "kernels": other_kernels, "gpu_ns": other_ns, "flops": 0, "peak": None,
                 "other": True}
    time_scale = max([r["gpu_ns"] for r in shown] + [other_ns, 1])
    peaks = [r["peak"] for r in shown if r["peak"]]
    tf_scale = max(peaks + [tflops_of(r) or 0 for r in shown] + [1e-9])
    trows, frows, table = [], [], []
    for r in shown + [other_row]:
        op, p, dtype, device, shape = r["key"]
        label = " ".join(x for x in (op, p, shape, dtype, device) if x)
        ms = r["gpu_ns"] / 1e6
        cls = "gpuother" if r.get("other") else "gputime"
        tbar = svg([rect(0, 0, _x(r["gpu_ns"], time_scale), 16, cls,
                         f"{label}: {r['gpu_ns']} ns", {"data-ns": r["gpu_ns"]})])
        data = {"data-label": label, "data-ns": r["gpu_ns"], "data-kernels": r["kernels"]}
        trows.append(chart_row(esc(label), label, tbar, f"{ms:.3f} ms", data))
        tf = tflops_of(r)
        util = f"{100 * tf / r['peak']:.1f}%" if tf is not None and r["peak"] else "-"
        if not r.get("other"):
            peak = r["peak"] or 0
            bar = []
            if peak:
                bar.append(rect(0, 0, _x(peak, tf_scale), 16, "peak",
                                f"{label}: peak {peak:g} TFLOP/s", {"data-peak": f"{peak:g}"}))
            bar.append(rect(0, 3, _x(tf or 0, tf_scale), 10, "tflops",
                            f"{label}: {tf or 0:.2f} TFLOP/s", {"data-tflops": f"{tf or 0:.6g}"}))
            value = ("-" if tf is None else f"{tf:.2f} TFLOP/s") + (
                f" of {peak:g} ({util})" if peak else "")
            frows.append(chart_row(esc(label), label, svg(bar), esc(value),
                                   dict(data, **{"data-flops": r["flops"]})))
        nums = (exact(r["calls"]), exact(r["kernels"]), f"{ms:.3f}", exact(r["flops"]),
                "-" if tf is None else f"{tf:.2f}", f"{r['peak']:g}" if r["peak"] else "-", util)
        if r.get("other"):  # kernels outside NATTEN's ops: no calls or FLOPs of theirs
            nums = ("-", nums[1], nums[2], "-", "-", "-", "-")
        table.append("<tr>" + "".join(f"<td>{esc(x)}</td>" for x in r["key"]) +
                     "".join(f"<td class=n>{v}</td>" for v in nums) + "</tr>")
    out += ["<h3>GPU time</h3>", chart("gpu-time", trows),
            "<h3>Achieved TFLOP/s against the chip's dense tensor-core peak (grey)</h3>",
            chart("gpu-tflops", frows),
            '<table data-table="gpu"><tr><th>op</th><th>pass</th><th>dtype</th><th>device</th>'
            "<th>shape</th><th class=n>calls</th><th class=n>kernels</th><th class=n>GPU ms</th>"
            "<th class=n>FLOPs</th><th class=n>TFLOP/s</th><th class=n>peak</th>"
            "<th class=n>util</th></tr>" + "".join(table) + "</table>"]
    return "\n".join(out)


# ------------------------------------------------------------------ report

def summary_cards(doc):
    t = doc["totals"]
    natten = sum(op["flops"] for op in doc["ops"] if op["kind"] != "aten")
    cards = [card(figures.si(t["flops"], "FLOP"), "total (every pass)", f"{t['flops']} FLOP", "total")]
    if t["recompute_flops"] or t["jvp_flops"]:
        cards.append(card(figures.si(t["model_flops"], "FLOP"), "model (forward + backward)",
                          f"{t['model_flops']} FLOP", "model"))
    cards.append(card(figures.si(natten, "FLOP"), "NATTEN", f"{natten} FLOP", "natten"))
    if figures.has_aten(doc):
        cards.append(card(figures.share(natten, t["flops"]).strip() or "-",
                          "NATTEN share of the whole model", None, "share"))
        cards.append(card(figures.si(t["flops"] - natten, "FLOP"), "other ops",
                          f"{t['flops'] - natten} FLOP", "other"))
    cards.append(card(exact(t["calls"]), "calls", None, "calls"))
    if t["uncounted_calls"]:
        cards.append(card(exact(t["uncounted_calls"]), "NATTEN calls not counted", None,
                          "uncounted"))
    return '<div class="cards">' + "".join(cards) + "</div>"


def passes_chart(doc):
    """One bar per pass that ran, NATTEN and the other ops stacked; then NATTEN
    against the rest over every pass."""
    rows = []
    for p in PASS_ORDER:
        f = {(side_of(op), p): 0 for op in doc["ops"]}
        for op in doc["ops"]:
            if op["pass"] == p:
                f[(side_of(op), p)] += op["flops"]
        if sum(f.values()) or p in dumps.MODEL:
            rows.append({"label": p, "op": None, "flops": f, "calls": sum(
                op["calls"] for op in doc["ops"] if op["pass"] == p), "total": sum(f.values()),
                "n": 0})
    scale = max([r["total"] for r in rows] + [1])
    out = []
    for r in rows:
        out.append(chart_row(esc(r["label"]), f"{r['label']}: {r['total']} FLOP",
                             stacked(segs_of(r), scale, r["label"]),
                             esc(figures.si(r["total"], "FLOP")),
                             {"data-label": r["label"], "data-total": r["total"]}))
    total = doc["totals"]["flops"]
    natten = sum(op["flops"] for op in doc["ops"] if op["kind"] != "aten")
    share = [("natten", "forward", natten), ("other", "forward", total - natten)]
    out.append(chart_row("<b>NATTEN vs rest</b>", "NATTEN against the other ops, every pass",
                         stacked(share, total, "all passes"),
                         esc(f"NATTEN {figures.share(natten, total).strip() or '-'}"),
                         {"data-label": "share", "data-total": total, "data-natten": natten}))
    return chart("passes", out)


def ranks_chart(named):
    totals = [doc["totals"]["flops"] for _, doc in named]
    scale = max(totals + [1])
    mean_x = _x(sum(totals), scale * len(totals))
    line = (f'<line class="mean" x1="{mean_x:.3f}" x2="{mean_x:.3f}" y1="0" y2="16" '
            'vector-effect="non-scaling-stroke"/>')
    heaviest = max(range(len(named)), key=lambda i: totals[i])
    out = []
    for i, (name, doc) in enumerate(named):
        who = f"rank {doc['rank']}" if doc["rank"] is not None else name
        f = {}
        for op in doc["ops"]:
            sp = (side_of(op), op["pass"])
            f[sp] = f.get(sp, 0) + op["flops"]
        bar = stacked(segs_of({"flops": f}), scale, who, line)
        value = figures.si(totals[i], "FLOP") + ("  (heaviest)" if i == heaviest else "")
        out.append(chart_row(esc(who), f"{name}: {totals[i]} FLOP", bar, esc(value),
                             {"data-label": who, "data-total": totals[i], "data-file": name}))
    imbalance = figures.ratio(sum(totals), max(totals) * len(totals)) if sum(totals) else "-"
    return ("<h2>Per rank</h2>" + f'<p class="note" data-imbalance="{esc(imbalance)}">'
            f"heaviest rank / mean: <b>{esc(imbalance)}</b> (dashed line: the mean, "
            f"{esc(figures.si(sum(totals) // len(totals), 'FLOP'))})</p>" + chart("ranks", out))


def report(named):
    """The page for the dumps [(name, doc)]: one dump, or several ranks of one run
    (merged for the per-op view, one bar each in the per-rank view)."""
    doc = named[0][1] if len(named) == 1 else combine.merge(named)
    title = figures.title(doc)
    files = ", ".join(name for name, _ in named)
    passes = [p for p in PASS_ORDER if doc["totals"][f"{p}_flops"] or p in dumps.MODEL]
    sig = lambda op: combine.signature(op, dumps.COUNTED + ("pass", "flops_per_call", "module"))
    by_sig = grouped(doc["ops"], sig, lambda op: op_label(op))
    by_name = grouped(doc["ops"], lambda op: (op["op"], side_of(op)), lambda op: op["op"])
    sig_top, sig_rest = top_and_rest(by_sig, "ops")
    name_top, name_rest = top_and_rest(by_name, "operators")
    body = [f"<h1>naflops: {esc(title)}</h1>", f'<p class="sub">{esc(files)}</p>',
            summary_cards(doc), "<h2>By pass, and NATTEN against the rest</h2>",
            pass_legend(passes), passes_chart(doc)]
    if len(named) > 1:
        body.append(ranks_chart(named))
    from naflops.reporters import html_steps  # it builds on this module's helpers
    steps_html, steps_css = html_steps.section(doc)
    if steps_html:  # only a dump with steps (naflops/3): other pages stay as they were
        body.append(steps_html)
    from naflops.reporters import html_modules  # it builds on this module's helpers
    modules_html, modules_css = html_modules.section(doc)
    if modules_html:  # only a dump with modules (naflops/4)
        body.append(modules_html)
    body += [f"<h2>Where the FLOPs go: by op ({len(by_sig)} distinct)</h2>",
             '<p class="note">One bar per op signature (op, shapes, kernel, backend, dtype, '
             "device), its passes stacked; largest first. Hover a bar for exact FLOPs.</p>",
             flops_chart("ops", sig_top, sig_rest),
             flops_table("ops", sig_top, sig_rest, passes)]
    if len(by_sig) > TOP:
        body.append(f"<details><summary>all {len(by_sig)} ops</summary>"
                    + flops_table("all-ops", by_sig, None, passes) + "</details>")
    if len(by_name) > 1:
        body += [f"<h2>By operator ({len(by_name)})</h2>",
                 flops_chart("operators", name_top, name_rest)]
    body.append(gpu_section([d for _, d in named]))
    return page(f"naflops report: {title}", "\n".join(body), steps_css + modules_css)


# ------------------------------------------------------------------ diff

def diff(a, b, name_a, name_b):
    sides = combine.diff_sides(a, b)
    rows = []
    for e in sides.values():
        d = dict(zip(figures.DESCRIBE, e["desc"]))
        ca, fa = e["a"] or (None, None)
        cb, fb = e["b"] or (None, None)
        label = f"{d['op']} {d['pass']} {d['shape']}" + (
            f" k{d['kernel']}" if d["kernel"] != "-" else "")
        rows.append({"label": label, "desc": e["desc"], "ca": ca, "cb": cb, "fa": fa, "fb": fb,
                     "side": "other" if d["kind"] == "aten" else "natten", "n": 1})
    rows.sort(key=lambda r: (-max(r["fa"] or 0, r["fb"] or 0), r["label"]))
    shown, rest = rows[:TOP], rows[TOP:]
    if rest:
        sums = {k: sum(r[k] or 0 for r in rest) for k in ("ca", "cb", "fa", "fb")}
        shown.append(dict(sums, label=f"other ({len(rest)} ops)", desc=None, side=None,
                          n=len(rest), group=True))

    def state(r):
        if r["fa"] is None and not r.get("group"):
            return "only-b"
        if r["fb"] is None and not r.get("group"):
            return "only-a"
        return "changed" if (r["fa"], r["ca"]) != (r["fb"], r["cb"]) else "same"

    def delta_cells(fa, fb, st):
        delta = (fb or 0) - (fa or 0)
        mark = {"only-a": "only in a", "only-b": "only in b"}.get(st) or figures.ratio(fa, fb)
        cls = "up" if delta > 0 else "down" if delta < 0 else ""
        return delta, mark, cls

    def pair(label, fa, fb, scale):
        return ('<svg class="pair" viewBox="0 0 1000 22" preserveAspectRatio="none">'
                + (rect(0, 1, _x(fa, scale), 9, "side-a", f"{label}: a {fa} FLOP",
                        {"data-flops": fa, "data-side": "a"}) if fa is not None else "")
                + (rect(0, 12, _x(fb, scale), 9, "side-b", f"{label}: b {fb} FLOP",
                        {"data-flops": fb, "data-side": "b"}) if fb is not None else "")
                + "</svg>")

    def fig(v):
        return "-" if v is None else figures.si(v, "FLOP")

    def chart_rows(items):
        scale = max([max(r["fa"] or 0, r["fb"] or 0) for r in items] + [1])
        out = []
        for r in items:
            st = state(r)
            delta, mark, cls = delta_cells(r["fa"], r["fb"], st)
            value = (f"{esc(fig(r['fa']))} &rarr; {esc(fig(r['fb']))} "
                     f'<span class="{cls}">{esc(mark)}</span>')
            data = {"data-label": r["label"], "data-state": st, "data-a": "" if r["fa"] is None
                    else r["fa"], "data-b": "" if r["fb"] is None else r["fb"], "data-delta": delta,
                    "data-group": "rest" if r.get("group") else "row", "data-ops": r["n"]}
            tip = f"{r['label']}: a {r['fa']} FLOP, b {r['fb']} FLOP, b - a {delta:+d}"
            out.append(chart_row(tag(r["side"]) + esc(r["label"]), tip,
                                 pair(r["label"], r["fa"], r["fb"], scale), value, data,
                                 st if st != "same" else ""))
        return out

    labels = [("forward", ("forward",)), ("backward", ("backward",))] + [
        (p, (p,)) for p in ("recompute", "jvp") if a["totals"][f"{p}_flops"] or
        b["totals"][f"{p}_flops"]] + [("total", PASS_ORDER)]
    tot = []
    for label, passes in labels:
        key = "flops" if label == "total" else f"{label}_flops"
        ca, cb = (sum(op["calls"] for op in d["ops"] if op["pass"] in passes) for d in (a, b))
        tot.append({"label": label, "fa": a["totals"][key], "fb": b["totals"][key], "ca": ca,
                    "cb": cb, "side": None, "n": 0, "group": True})
    for side, label in (("natten", "NATTEN"), ("other", "other ops")):
        fa, fb = (sum(op["flops"] for op in d["ops"] if side_of(op) == side) for d in (a, b))
        ca, cb = (sum(op["calls"] for op in d["ops"] if side_of(op) == side) for d in (a, b))
        tot.append({"label": label, "fa": fa, "fb": fb, "ca": ca, "cb": cb, "side": None,
                    "n": 0, "group": True})

    def table(name, items):
        head = ("<tr><th>" + "</th><th>".join(figures.DESCRIBE) + "</th><th class=n>calls a</th>"
                "<th class=n>calls b</th><th class=n>FLOPs a</th><th class=n>FLOPs b</th>"
                "<th class=n>b - a</th><th class=n>b / a</th></tr>")
        body = []
        for r in items:
            st = state(r)
            delta, mark, cls = delta_cells(r["fa"], r["fb"], st)
            desc = ([f"<td>{esc(c)}</td>" for c in r["desc"]] if r.get("desc")
                    else [f'<td colspan={len(figures.DESCRIBE)} class="group">{esc(r["label"])}</td>'])
            nums = ["-" if v is None else exact(v) for v in (r["ca"], r["cb"], r["fa"], r["fb"])]
            body.append(f'<tr class="{st}" data-state="{st}">' + "".join(desc)
                        + "".join(f"<td class=n>{v}</td>" for v in nums)
                        + f'<td class="n {cls}">{delta:+,d}</td><td class=n>{esc(mark)}</td></tr>'
                        .replace(">+0<", ">0<"))
        return f'<table data-table="{esc(name)}">{head}{"".join(body)}</table>'

    changed = sum(state(r) != "same" for r in rows)
    cols = "".join(f'<div><h3>{s}: {esc(n)}</h3><p class="sub">{esc(figures.title(d))}</p>'
                   f"{summary_cards(d)}</div>"
                   for s, n, d in (("a", name_a, a), ("b", name_b, b)))
    body = [f"<h1>naflops diff</h1>", f'<div class="cols">{cols}</div>',
            legend([("side-a", f"a: {name_a}"), ("side-b", f"b: {name_b}")]),
            "<h2>Totals</h2>", chart("totals", chart_rows(tot)), table("totals", tot),
            f'<h2>By op: {len(rows)} signatures, <span data-changed="{changed}">{changed} '
            "changed</span></h2>",
            '<p class="note">Highlighted: changed (yellow), only in a (red), only in b '
            "(green). Largest first (the larger of a and b).</p>",
            chart("ops", chart_rows(shown)), table("ops", shown)]
    if rest:
        body.append(f"<details><summary>all {len(rows)} ops</summary>{table('all-ops', rows)}"
                    "</details>")
    from naflops.reporters import html_modules  # it builds on this module's helpers
    modules_html = html_modules.diff_section(a, b, name_a, name_b)
    if modules_html:  # both dumps with modules (naflops/4): other pages stay as they were
        body.append(modules_html)
    return page(f"naflops diff: {name_a} vs {name_b}", "\n".join(body))
