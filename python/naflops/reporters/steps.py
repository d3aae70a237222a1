"""`report --by step` (and `merge --by step`): a dump's steps as a table, CSV or
Markdown, one row per record (a step, or a range of steps once a long job's records
were merged pairwise), then the steady state as the library's step lines give it and,
for a merged dump, one row per rank. Figures per step are the record's divided by its
steps: exact as decimals with --units exact (to 6 places, marked ~, where the decimal
does not end), SI otherwise."""
import csv
import io
from fractions import Fraction

from naflops import steps as st
from naflops.errors import NaflopsError
from naflops.figures import percent, seconds, si, whose

NO_STEPS_STATUS = 3  # a valid dump that has no steps (2: a dump that is not valid)


def decimal(v, places=6, mark="~"):
    """A Fraction as an exact decimal, or rounded to places and marked."""
    for k in range(64):
        if (v * 10**k).denominator == 1:
            break
    else:
        k = None
    n = int(v * 10**k) if k is not None else round(v * 10**places)
    digits = k if k is not None else places
    text = str(n).rjust(digits + 1, "0")
    text = text[:-digits] + "." + text[-digits:] if digits else text
    return text if k is not None else mark + text


def amount(v, unit, units):
    """FLOPs (a Fraction or an int) per step: exact, or SI rounded to whole FLOPs."""
    if units == "exact":
        return decimal(Fraction(v))
    return si(int(Fraction(v) + Fraction(1, 2)), unit)


def share(part, whole):
    """NATTEN's share, "36.1%" (per mille, rounded half up), or "-" of nothing."""
    if not whole:
        return "-"
    pm = (2000 * part + whole) // (2 * whole)
    return f"{pm // 10}.{pm % 10}%"


def flop(v, units):
    """FLOPs (per step) with their unit in either units, for the summary lines."""
    return amount(v, "FLOP", units) + (" FLOP" if units == "exact" else "")


def rate(v, units):
    if v is None:
        return "-"
    return str(round(v)) if units == "exact" else si(round(v), "FLOP/s")


def steps_of(doc, name):
    """The dump's steps and each rank's ({} unless merged); a dump without either is
    refused with NO_STEPS_STATUS."""
    if "steps" not in doc and "steps_by_rank" not in doc:
        raise NaflopsError(f"{name}: no steps in this dump (the program ended no step; "
                           "see NAFLOPS_STEP)", status=NO_STEPS_STATUS)
    return doc.get("steps"), doc.get("steps_by_rank") or {}


def what(s):
    b = s["boundary"]
    return "optimizer steps" if b == "optimizer" else "backward calls" if b == "backward" else "calls"


def headline(doc, s):
    if s is None:
        return f"Steps{whose(doc)}: not lined up across ranks; each rank's below"
    line = (f"Steps{whose(doc)}: {s['count']} {what(s)} (boundary: {s['boundary']}); "
            f"{s['warmup']} warm-up, {s['recompiled']} recompiled")
    return line + (f"; {s['bucket']} steps a record past the first" if s["bucket"] > 1 else "")


def note(f):
    marks = ["warm-up"] if f["warmup"] else []
    if f["compiled"]:
        marks.append("compiled" if f["steps"] == 1 else f"{f['compiled']} compiled")
    return ", ".join(marks)


def columns(s):
    """The record table's columns: (header, cell(figures, units))."""
    peak = s["peak_flops_per_s"]
    cols = [("step", lambda f, u: str(f["first"]) if f["steps"] == 1 else f"{f['first']}-{f['last']}"),
            ("time/step", lambda f, u: seconds(f["seconds_per_step"])),
            ("model/step", lambda f, u: amount(f["model"], "FLOP", u)),
            ("hardware/step", lambda f, u: amount(f["hardware"], "FLOP", u)),
            ("NATTEN", lambda f, u: share(f["natten"], f["model_flops"])),
            ("FLOP/s", lambda f, u: rate(f["flops_per_s"], u))]
    if peak:
        cols += [("MFU", lambda f, u: percent(f["mfu"])), ("HFU", lambda f, u: percent(f["hfu"]))]
    if s["total"]["gpu_busy_seconds"] is not None:
        cols.append(("GPU busy", lambda f, u: percent(f["gpu_busy"])))
    if any("slowest_rank" in r for r in s["records"]):
        cols.append(("slowest", lambda f, u: f["slowest_rank"] or "-"))
    return cols + [("", lambda f, u: note(f))]


def record_rows(s, units):
    cols = columns(s)
    rows = [[h for h, _ in cols]]
    for r in s["records"]:
        f = st.record_figures(r, s["peak_flops_per_s"])
        rows.append([cell(f, units) for _, cell in cols])
    return rows


def summary(s, units):
    """The steady state and the totals, as the library's step lines say them."""
    t, steady, peak = s["total"], s["steady"], s["peak_flops_per_s"]
    lines = []
    if steady is None:
        per = Fraction(t["model_flops"], s["count"])
        lines.append(f"steady    none: every step is warm-up or compiled; model "
                     f"{flop(per, units)} per step over all {s['count']}")
    else:
        sums, n = st.steady_sums(s), steady["steps"]
        model, hardware = (Fraction(sums[k], n) for k in ("model_flops", "hardware_flops"))
        lines += [f"steady    {n} step{'s' if n != 1 else ''}: time median "
                  f"{seconds(steady['seconds_median'])} (p10 {seconds(steady['seconds_p10'])}, "
                  f"p90 {seconds(steady['seconds_p90'])})",
                  f"per step  model {flop(model, units)}  hardware "
                  f"{flop(hardware, units)}  NATTEN "
                  f"{share(sums['natten_flops'], sums['model_flops'])}",
                  f"achieved  {rate(steady['flops_per_s_median'], units)}"
                  f"{' FLOP/s' if units == 'exact' else ''} (median)"]
        if peak:
            lines.append(f"MFU       {percent(steady['mfu_median'])}  HFU "
                         f"{percent(steady['hfu_median'])}  (peak {si(round(peak), 'FLOP/s')}, "
                         f"{s['peak_source']})")
        else:
            lines.append("MFU       unknown (no peak in the dump: NAFLOPS_PEAK sets one)")
    if t["gpu_busy_seconds"] is not None and t["seconds"] > 0:
        lines.append(f"GPU busy  {100 * t['gpu_busy_seconds'] / t['seconds']:.1f}% of step "
                     "time over all steps")
    lines.append(f"total     {s['count']} steps in {seconds(t['seconds'])}: model "
                 f"{flop(t['model_flops'], units)}  hardware {flop(t['hardware_flops'], units)}"
                 f"  NATTEN {flop(t['natten_flops'], units)}")
    return lines


def rank_rows(s, ranks, units):
    """One row per rank: its steady state; the slowest (median step time) marked."""
    slowest_in = st.slowest_counts(s) if s else {}
    slowest = st.slowest_rank(ranks)
    rows = [["rank", "steps", "steady", "median", "p10", "p90", "FLOP/s", "MFU"]
            + (["slowest in"] if s else []) + [""]]
    for k, r in ranks.items():
        d = r["steady"]
        cells = [k, str(r["count"]), str(d["steps"]) if d else "0"]
        cells += ([seconds(d[x]) for x in ("seconds_median", "seconds_p10", "seconds_p90")]
                  + [rate(d["flops_per_s_median"], units), percent(d["mfu_median"])]
                  if d else ["-"] * 5)
        if s:
            cells.append(f"{slowest_in.get(k, 0)} of {s['count']}")
        rows.append(cells + ["slowest" if k == slowest else ""])
    return rows


def _aligned(rows):
    """Right-aligned columns but the last (a note), left-aligned."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return [" ".join(c.rjust(w) for c, w in zip(r[:-1], widths)) + " " + r[-1]
            for r in rows]


def table(doc, name, units):
    s, ranks = steps_of(doc, name)
    lines = [headline(doc, s)]
    if s:
        lines += [l.rstrip() for l in _aligned(record_rows(s, units))] + summary(s, units)
    if ranks:
        lines += ["per rank (steady state; slowest: the longest median step)"]
        lines += [l.rstrip() for l in _aligned(rank_rows(s, ranks, units))]
    return "\n".join(lines) + "\n"


def markdown(doc, name, units):
    s, ranks = steps_of(doc, name)

    def line(cells):
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    def md_table(rows):
        return [line(rows[0]), line(["---"] + ["---:"] * (len(rows[0]) - 2) + ["---"])] + [
            line(r) for r in rows[1:]]

    out = [f"**{headline(doc, s)}**", ""]
    if s:
        out += md_table(record_rows(s, units)) + [""] + [f"- {l}" for l in summary(s, units)]
    if ranks:
        out += ["", "**per rank** (steady state)", ""] + md_table(rank_rows(s, ranks, units))
    return "\n".join(out) + "\n"


CSV_FIELDS = ("step", "steps", "start_s", "seconds", "model_flops", "hardware_flops",
              "natten_flops", "gpu_busy_seconds", "warmup", "compiled", "seconds_per_step",
              "model_flops_per_step", "hardware_flops_per_step", "flops_per_s", "mfu", "hfu")


def csv_text(doc, name):
    """The records, exact (a merged dump's with slowest_rank; each rank's records follow
    with their rank when they are not lined up); FLOPs per step to 6 decimal places
    where the decimal does not end."""
    s, ranks = steps_of(doc, name)
    sets = [("", s)] if s else list(ranks.items())
    merged = bool(ranks)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow((("rank",) if merged and not s else ()) + CSV_FIELDS
               + (("slowest_rank",) if merged and s else ()))
    for rank, steps in sets:
        peak = steps["peak_flops_per_s"]
        for r in steps["records"]:
            f = st.record_figures(r, peak)
            row = [r[k] for k in CSV_FIELDS[:8]] + [
                "true" if r["warmup"] else "false", r["compiled"], repr(f["seconds_per_step"]),
                decimal(f["model"], mark=""), decimal(f["hardware"], mark="")] + [
                "" if f[k] is None else repr(f[k]) for k in ("flops_per_s", "mfu", "hfu")]
            row = ["" if v is None else v for v in row]
            w.writerow(([rank] if merged and not s else []) + row
                       + ([r.get("slowest_rank", "")] if merged and s else []))
    return out.getvalue()


def diff_lines(a, b):
    """The steady states of two runs side by side, for the text diff ([] when neither
    has steps)."""
    sa, sb = a.get("steps"), b.get("steps")
    if sa is None and sb is None:
        return []
    if sa is None or sb is None:
        return [f"steps     only in {'a' if sb is None else 'b'}"]
    da, db = sa["steady"], sb["steady"]
    if da is None or db is None:
        return [f"steps     a {sa['count']}, b {sb['count']}; no steady state in "
                + ("a and b" if da is None and db is None else "a" if da is None else "b")]

    def row(label, x, y, fmt):
        return f"{label:<17} a {fmt(x)}  b {fmt(y)}  b / a " + (f"{y / x:.3f}x" if x else "-")

    flops = lambda v: si(round(v), "FLOP")
    return [row("steady step time", da["seconds_median"], db["seconds_median"], seconds),
            row("achieved FLOP/s", da["flops_per_s_median"], db["flops_per_s_median"],
                lambda v: si(round(v), "FLOP/s")),
            row("model FLOPs/step", da["model_flops_per_step"], db["model_flops_per_step"], flops)]


def render(doc, name, fmt, units):
    return {"table": lambda: table(doc, name, units), "csv": lambda: csv_text(doc, name),
            "md": lambda: markdown(doc, name, units)}[fmt]()
