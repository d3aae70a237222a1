"""The Steps section of `naflops report --html`, for a dump with steps (naflops/3):
the steady state as cards, a step timeline (one inline SVG: step time above, achieved
FLOP/s below, one bar per record on a step axis, warm-up and compiled steps in their
own colours and compiled ones marked, dashed medians, exact figures in each bar's
<title>), every record in a folded table, and for the ranks of one run their steady
medians side by side, the slowest marked. Built from html.py's helpers, as its page."""
from naflops import steps as st
from naflops.figures import percent, seconds, si
from naflops.reporters.html import (_x, attrs, card, chart, chart_row, esc, exact, legend, rect,
                                    svg)
from naflops.reporters.steps import columns, decimal, headline, share, what

CSS = """
.timeline{width:100%;max-width:1100px;height:auto;display:block;margin:6px 0}
.timeline text{font-size:12px;fill:#495057}.timeline .ptitle{font-weight:600;fill:#212529}
.timeline .axis{stroke:#868e96;stroke-width:1}.timeline .grid{stroke:#e9ecef;stroke-width:1}
.st-steady{fill:#1c7ed6}.st-warmup{fill:#f59f00}.st-recompiled{fill:#e03131}
.st-rate.st-steady{fill:#7048e8}.st-mark{fill:#212529}.st-median{stroke:#2b8a3e;stroke-width:1.5;stroke-dasharray:5 3}
i.st-steady{background:#1c7ed6}i.st-rate{background:#7048e8}i.st-warmup{background:#f59f00}
i.st-recompiled{background:#e03131}i.st-mark{background:#212529;border-radius:50%}
i.st-median{background:none;border-top:2px dashed #2b8a3e;height:0!important;vertical-align:3px}
.slowest{fill:#e03131}
"""

W, LEFT, RIGHT = 1000, 100, 24         # the timeline's viewBox width and margins
PANEL, GAP, TOP = 130, 58, 22          # each panel's height, the gap, the top margin


def kind(r):
    return "warmup" if r["warmup"] else "recompiled" if r["compiled"] else "steady"


def _steps(f):
    return f"step {f['first']}" if f["steps"] == 1 else f"steps {f['first']}-{f['last']} ({f['steps']} steps)"


def rate_tip(r, f, peak):
    """The FLOP/s bar's <title>: the rate and what it is made of."""
    rate = "-" if f["flops_per_s"] is None else f"{f['flops_per_s']:.6g} FLOP/s"
    return (f"{_steps(f)}: achieved {rate} (model {r['model_flops']} FLOP in {r['seconds']} s)"
            + (f"; MFU {percent(f['mfu'])}" if peak else ""))


def tip(r, f, peak):
    """A record's exact figures, for its step-time bar's <title>."""
    parts = [f"{_steps(f)}: {r['seconds']} s" + (f" ({f['seconds_per_step']:.9g} s per step)"
                                              if f["steps"] > 1 else ""),
             f"model {r['model_flops']} FLOP, hardware {r['hardware_flops']} FLOP, NATTEN "
             f"{r['natten_flops']} FLOP" + (" (per step: model " + decimal(f["model"]) +
                                            ", hardware " + decimal(f["hardware"]) + ")"
                                            if f["steps"] > 1 else ""),
             "achieved " + ("-" if f["flops_per_s"] is None else f"{f['flops_per_s']:.6g} FLOP/s")]
    if peak:
        parts.append(f"MFU {percent(f['mfu'])}, HFU {percent(f['hfu'])}")
    if r["gpu_busy_seconds"] is not None:
        parts.append(f"GPU busy {r['gpu_busy_seconds']} s")
    marks = (["warm-up"] if r["warmup"] else []) + (
        [f"compiled ({r['compiled']} of its steps)" if f["steps"] > 1 else "compiled"]
        if r["compiled"] else [])
    if r.get("slowest_rank") is not None:
        marks.append(f"slowest rank {r['slowest_rank']}")
    return "; ".join(parts + marks)


def _ticks(top, fmt):
    return [(v, fmt(v)) for v in (0, top / 2, top)]


def _step_ticks(count):
    """Up to 6 step numbers for the x axis: 1, count and round ones between."""
    if count <= 6:
        return list(range(1, count + 1))
    raw = count / 5
    unit = 10 ** (len(str(int(raw))) - 1)
    stride = next(m * unit for m in (1, 2, 5, 10) if m * unit >= raw)
    return sorted({1, count} | {k for k in range(stride, count, stride) if count - k >= stride / 3})


def timeline(s):
    """The SVG: step time per step (top panel), achieved FLOP/s (bottom), one bar each
    per record, medians dashed, axes labelled."""
    peak, count, records = s["peak_flops_per_s"], s["count"], s["records"]
    figs = [st.record_figures(r, peak) for r in records]
    tmax = max([f["seconds_per_step"] for f in figs] + [1e-12])
    # A compiling step is often 100x a steady one: the time axis stops at 3x the steady
    # p90, and taller bars are cut there (marked; their time is in the tooltip).
    steady_p90 = s["steady"]["seconds_p90"] if s["steady"] else 0
    cut = steady_p90 > 0 and tmax > 3 * steady_p90
    if cut:
        tmax = 3 * steady_p90
    rmax = max([f["flops_per_s"] or 0 for f in figs] + [1e-12])
    plot = W - LEFT - RIGHT
    height = TOP + 2 * PANEL + GAP + 40
    out = [f'<svg class="timeline" data-chart="step-timeline" viewBox="0 0 {W} {height}" '
           f'role="img" data-records="{len(records)}" data-count="{count}">']
    panels = (("time", "step time (per step)" + (", axis cut at 3x the steady p90: taller bars"
                                                  " are clipped (zigzag), their time in the tooltip"
                                                  if cut else ""), tmax, lambda f: f["seconds_per_step"],
               lambda v: seconds(v) if v else "0", "st-time", tip),
              ("rate", "achieved FLOP/s (model FLOPs / step time)", rmax,
               lambda f: f["flops_per_s"] or 0, lambda v: si(round(v), "FLOP/s"), "st-rate",
               rate_tip))
    medians = s["steady"] and (s["steady"]["seconds_median"], s["steady"]["flops_per_s_median"])
    for p, (name, label, top, value, fmt, cls, title) in enumerate(panels):
        y0 = TOP + p * (PANEL + GAP)  # the panel's top; its axis is at y0 + PANEL
        base = y0 + PANEL
        out.append(f'<text class="ptitle" x="{LEFT}" y="{y0 - 8}">{esc(label)}</text>')
        for v, text in _ticks(top, fmt):
            y = base - PANEL * v / top
            out.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.2f}" y2="{y:.2f}"/>'
                       f'<text x="{LEFT - 6}" y="{y + 4:.2f}" text-anchor="end">{esc(text)}</text>')
        for r, f in zip(records, figs):
            x = LEFT + plot * (r["step"] - 1) / count
            w = plot * r["steps"] / count
            w = w - 1 if w >= 4 and len(records) > 1 else w  # a gap where there is room
            clipped = value(f) > top
            h = PANEL * min(value(f), top) / top
            data = {"data-step": r["step"], "data-steps": r["steps"], "data-kind": kind(r),
                    "data-compiled": r["compiled"], "data-panel": name,
                    "data-value": f"{value(f):.9g}"}
            out.append(f'<rect class="st-bar {cls} st-{kind(r)}" x="{x:.3f}" y="{base - h:.3f}" '
                       f'width="{w:.3f}" height="{h:.3f}"{attrs(data)}>'
                       f"<title>{esc(title(r, f, peak))}</title></rect>")
            if clipped:  # a white zigzag across the bar's top
                zy = y0 + 6
                out.append(f'<polyline class="st-cut" points="{x:.3f},{zy + 3:.3f} {x + w / 3:.3f},{zy:.3f} '
                           f'{x + 2 * w / 3:.3f},{zy + 6:.3f} {x + w:.3f},{zy + 3:.3f}" '
                           f'fill="none" stroke="#fff" stroke-width="2" data-step="{r["step"]}"/>')
            if r["compiled"] and p == 0:  # above the bar, or inside a bar as tall as the panel
                out.append(f'<circle class="st-mark" cx="{x + w / 2:.3f}" '
                           f'cy="{max(base - h - 6, y0 + 6):.3f}" '
                           f'r="3" data-step="{r["step"]}"><title>{esc(tip(r, f, peak))}</title></circle>')
        if medians:
            m = medians[p]
            y = base - PANEL * m / top
            out.append(f'<line class="st-median" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.2f}" '
                       f'y2="{y:.2f}" data-median="{m:.9g}"><title>steady median: '
                       f'{esc(fmt(m))} ({m:.9g})</title></line>')
        out.append(f'<line class="axis" x1="{LEFT}" x2="{W - RIGHT}" y1="{base}" y2="{base}"/>'
                   f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{y0}" y2="{base}"/>')
    base = TOP + 2 * PANEL + GAP
    for k in _step_ticks(count):
        x = LEFT + plot * (k - 0.5) / count
        out.append(f'<line class="axis" x1="{x:.2f}" x2="{x:.2f}" y1="{base}" y2="{base + 4}"/>'
                   f'<text x="{x:.2f}" y="{base + 17}" text-anchor="middle">{k}</text>')
    out.append(f'<text x="{LEFT + plot / 2}" y="{base + 34}" text-anchor="middle">'
               f'{esc(what(s))} (step number; a bar per record)</text></svg>')
    return "".join(out)


def steady_cards(s):
    d, peak = s["steady"], s["peak_flops_per_s"]
    cards = [card(exact(s["count"]), what(s), None, "steps"),
             card(exact(s["warmup"]), "warm-up", None, "warmup")]
    if s["recompiled"]:
        cards.append(card(exact(s["recompiled"]), "recompiled later", None, "recompiled"))
    if d is None:
        return '<div class="cards">' + "".join(cards) + "</div>"
    sums = st.steady_sums(s)
    cards += [card(seconds(d["seconds_median"]), "median step time",
                   f"{d['seconds_median']} s; p10 {d['seconds_p10']} s, p90 {d['seconds_p90']} s",
                   "step-median"),
              card(f"{seconds(d['seconds_p10'])} - {seconds(d['seconds_p90'])}", "p10 - p90",
                   None, "step-spread"),
              card(si(round(d["flops_per_s_median"]), "FLOP/s"), "achieved (median)",
                   f"{d['flops_per_s_median']} FLOP/s", "step-rate"),
              card(si(round(d["model_flops_per_step"]), "FLOP"), "model FLOPs per step",
                   f"{sums['model_flops']} FLOP over {d['steps']} steady steps", "step-model"),
              card(share(sums["natten_flops"], sums["model_flops"]),
                   "NATTEN share per step", None, "step-natten")]
    if peak:
        cards += [card(percent(d["mfu_median"]), "MFU (median)",
                       f"peak {peak} FLOP/s ({s['peak_source']})", "mfu"),
                  card(percent(d["hfu_median"]), "HFU (median)", None, "hfu")]
    else:
        cards.append(card("-", "MFU: no peak (NAFLOPS_PEAK)", None, "mfu"))
    return '<div class="cards">' + "".join(cards) + "</div>"


def records_table(s):
    cols = columns(s)  # the text table's: step, the figures, the note
    head = ("<th>step</th><th class=n>steps</th>"
            + "".join(f"<th class=n>{esc(h)}</th>" for h, _ in cols[1:-1]) + "<th></th>")
    rows = []
    for r in s["records"]:
        f = st.record_figures(r, s["peak_flops_per_s"])
        cells = [cell(f, "exact" if h.endswith("/step") else "si") for h, cell in cols]  # exact FLOPs
        rows.append(f'<tr data-step="{r["step"]}" data-kind="{kind(r)}">'
                    + f"<td>{esc(cells[0])}</td><td class=n>{r['steps']}</td>"
                    + "".join(f"<td class=n>{esc(c)}</td>" for c in cells[1:-1])
                    + f"<td>{esc(cells[-1])}</td></tr>")
    return f'<table data-table="steps"><tr>{head}</tr>{"".join(rows)}</table>'


def rank_charts(s, ranks):
    """Per rank: steady median step time and median FLOP/s, the slowest rank marked."""
    slowest = st.slowest_rank(ranks)
    slowest_in = st.slowest_counts(s) if s else {}
    steady = {k: r["steady"] for k, r in ranks.items()}
    tmax = max([d["seconds_median"] for d in steady.values() if d] + [1e-12])
    rmax = max([d["flops_per_s_median"] for d in steady.values() if d] + [1e-12])
    trows, rrows = [], []
    for k, d in steady.items():
        who = st.who(k)
        mark = k == slowest
        t, rate = (d["seconds_median"], d["flops_per_s_median"]) if d else (0, 0)
        data = {"data-label": who, "data-seconds": f"{t:.9g}", "data-flops-per-s": f"{rate:.9g}",
                "data-slowest": "true" if mark else "false", "data-slowest-in": slowest_in.get(k, 0)}
        ttip = (f"{who}: median {t} s, p10 {d['seconds_p10']} s, p90 {d['seconds_p90']} s over "
                f"{d['steps']} steady steps" if d else f"{who}: no steady state") + (
            f"; the slowest rank in {slowest_in[k]} of {s['count']} steps" if k in slowest_in else "")
        bar = svg([rect(0, 0, _x(t, tmax), 16, "slowest" if mark else "st-steady", ttip,
                        {"data-seconds": f"{t:.9g}"})])
        value = (seconds(t) if d else "-") + ("  (slowest)" if mark else "")
        trows.append(chart_row(esc(who), ttip, bar, esc(value), data))
        rtip = f"{who}: median {rate} FLOP/s" + (
            f", MFU {percent(d['mfu_median'])}" if d and d["mfu_median"] is not None else "")
        bar = svg([rect(0, 0, _x(rate, rmax), 16, "slowest" if mark else "st-rate", rtip,
                        {"data-flops-per-s": f"{rate:.9g}"})])
        rrows.append(chart_row(esc(who), rtip, bar, esc(si(round(rate), "FLOP/s") if d else "-"),
                               data))
    return ["<h3>Per rank: steady median step time (the slowest in red)</h3>",
            chart("step-ranks-time", trows),
            "<h3>Per rank: steady median achieved FLOP/s</h3>", chart("step-ranks-rate", rrows)]


def section(doc):
    """The section's HTML and its CSS; ("", "") for a dump without steps."""
    s, ranks = doc.get("steps"), doc.get("steps_by_rank") or {}
    if s is None and not ranks:
        return "", ""
    out = ['<h2 id="steps">Steps</h2>']
    if s is None:
        problem = st.align_problem(ranks) if len(ranks) > 1 else None
        out.append('<p class="note" data-steps="not-lined-up">The ranks\' steps cannot be '
                   f"lined up step by step ({esc(problem or 'a rank has none')}); each rank's "
                   "steady state below.</p>")
    else:
        out += [f'<p class="note">{esc(headline(doc, s))}. A step lasts as long as its slowest '
                "rank; FLOPs are summed over the ranks.</p>" if ranks else
                f'<p class="note">{esc(headline(doc, s))}.</p>', steady_cards(s),
                legend([("st-steady", "step time (steady)"), ("st-rate", "FLOP/s (steady)"),
                        ("st-warmup", "warm-up"), ("st-recompiled", "compiled after warm-up"),
                        ("st-mark", "compiled in this step"), ("st-median", "steady median")]),
                timeline(s),
                f"<details><summary>all {len(s['records'])} records</summary>"
                f"{records_table(s)}</details>"]
    if len(ranks) > 1:
        out += rank_charts(s, ranks)
    return "\n".join(out), CSS
