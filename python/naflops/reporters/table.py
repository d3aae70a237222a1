"""The plain-text reporters: a dump's table (the library's summary without its
"naflops:" prefixes) and the diff of two dumps (their steady states last, when they
have steps)."""
from naflops.combine import diff_sides
from naflops.dumps import PASSES
from naflops.figures import (DESCRIBE, aligned, amount, describe, pass_totals,
                                       ordered_ops, ratio, share, si, signed, title)
from naflops.reporters import modules, steps


def table(doc, units):
    rows = [list(DESCRIBE) + ["calls", "FLOPs"]]
    rows += [describe(op) + [str(op["calls"]), amount(op["flops"], "FLOP", units)]
             for op in ordered_ops(doc)]
    lines = [title(doc)] + aligned(rows, len(DESCRIBE))
    for label, flops in pass_totals(doc):
        pct = share(flops, doc["totals"]["flops"]) if label in ("NATTEN", "other") else ""
        if units == "exact":
            lines.append(f"{label:<9} {flops} FLOP  {flops // 2} MAC{pct}")
        else:
            lines.append(f"{label:<9} {si(flops, 'FLOP')}  ({si(flops // 2, 'MAC')}){pct}")
    return "\n".join(lines) + "\n"


def diff(a, b, name_a, name_b, units):
    sides = diff_sides(a, b)

    def cells(desc, ca, cb, fa, fb):
        if fa is None or fb is None:
            mark = "only in a" if fb is None else "only in b"
            delta = (fb or 0) - (fa or 0)
        else:
            mark, delta = ratio(fa, fb), fb - fa
        return desc + ["-" if ca is None else str(ca), "-" if cb is None else str(cb),
                       "-" if fa is None else amount(fa, "FLOP", units),
                       "-" if fb is None else amount(fb, "FLOP", units),
                       signed(delta, "FLOP", units), mark]

    rows = [list(DESCRIBE) + ["calls a", "calls b", "FLOPs a", "FLOPs b", "b - a", "b / a"]]
    for e in sides.values():
        ca, fa = e["a"] or (None, None)
        cb, fb = e["b"] or (None, None)
        rows.append(cells(e["desc"], ca, cb, fa, fb))
    blank = [""] * (len(DESCRIBE) - 1)
    labels = [("forward", ("forward",)), ("backward", ("backward",))]
    for p in ("recompute", "jvp"):
        if a["totals"][f"{p}_flops"] or b["totals"][f"{p}_flops"]:
            labels.append((p, (p,)))
    for label, passes in labels + [("total", PASSES)]:
        ca, cb = (sum(op["calls"] for op in d["ops"] if op["pass"] in passes) for d in (a, b))
        key = "flops" if label == "total" else f"{label}_flops"
        rows.append(cells([label] + blank, ca, cb, a["totals"][key], b["totals"][key]))
    header = [f"a: {name_a}: {title(a)}", f"b: {name_b}: {title(b)}"]
    return "\n".join(header + aligned(rows, len(DESCRIBE)) + steps.diff_lines(a, b) +
                     modules.diff_lines(a, b, units)) + "\n"
