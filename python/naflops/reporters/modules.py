"""`report --by module` (and `merge --by module`): the module tree of a naflops/4
dump, one line per module down to --depth, each with its FLOPs per pass, model
(forward + backward) and hardware (every pass) FLOPs, NATTEN's FLOPs and their share
of the hardware FLOPs (per mille, rounded as the library's module block), submodules
included; children in program order (naflops.modules); then the work outside any
module and the total. As a table (names indented by depth), CSV (full names, exact
figures, depth column) or Markdown. The text diff's module section is here too."""
import csv
import io

from naflops.figures import aligned, amount, whose
from naflops.modules import OUTSIDE, require_modules, tree

HEADER = ("module", "forward", "backward", "recompute", "model", "hardware", "NATTEN", "NATTEN %")
CSV_HEADER = ("module", "depth", "forward_flops", "backward_flops", "recompute_flops", "model_flops",
              "hardware_flops", "natten_flops", "natten_share")


def rows_of(doc, depth):
    """[(label, depth, node)]: the tree depth first, then outside modules and the total
    (a node summing everything)."""
    roots, outside = tree(doc, depth)
    rows = [(n.name, n.depth, n) for root in roots.values() for n in root.walk()]
    if outside.hardware:
        rows.append((OUTSIDE, 0, outside))
    total = type(outside)("total", 0)
    for op in doc["ops"]:
        total.add(op)
    rows.append(("total", 0, total))
    return rows


def per_mille(part, whole):
    """part / whole as "12.3%", rounded half up at the per mille (exact integers, as
    the library's module block), or "-" of nothing."""
    if whole == 0:
        return "-"
    pm = min((2000 * part + whole) // (2 * whole), 1000)
    return f"{pm // 10}.{pm % 10}%"


def _share(node):
    return per_mille(node.natten, node.hardware)


def render(doc, name, fmt, units, depth):
    require_modules(doc, name)
    rows = rows_of(doc, depth)
    if fmt == "csv":
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(CSV_HEADER)
        for label, d, n in rows:
            w.writerow([label, d if label not in (OUTSIDE, "total") else "", n.flops["forward"],
                        n.flops["backward"], n.flops["recompute"], n.model, n.hardware, n.natten,
                        _share(n)])
        return out.getvalue()
    cells = [[("  " * d if fmt == "table" else "") + label] +
             [amount(v, "FLOP", units) for v in (n.flops["forward"], n.flops["backward"],
                                                  n.flops["recompute"], n.model, n.hardware, n.natten)] +
             [_share(n)] for label, d, n in rows]
    title = f"FLOPs by module{whose(doc)} (submodules included; depth {depth})"
    if fmt == "md":
        line = lambda c: "| " + " | ".join(x.replace("|", "\\|") for x in c) + " |"
        return "\n".join([f"**{title}**", "", line(HEADER), line(["---"] + ["---:"] * 7)] +
                         [line(c) for c in cells]) + "\n"
    return "\n".join([title] + aligned([list(HEADER)] + cells, 1)) + "\n"


def diff_rows(a, b):
    """[(module, model FLOPs in a or None, in b or None)] for every module of either
    dump (submodules included), largest change first, then by name; [] unless both
    dumps have modules."""
    from naflops.dumps import has_modules
    from naflops.modules import inclusive

    if not (has_modules(a) and has_modules(b)):
        return []
    ma, mb = inclusive(a), inclusive(b)
    rows = [(m, ma[m].model if m in ma else None, mb[m].model if m in mb else None)
            for m in list(ma) + [m for m in mb if m not in ma]]
    return sorted(rows, key=lambda r: (-abs((r[2] or 0) - (r[1] or 0)), r[0]))


def diff_lines(a, b, units):
    """The text diff's module section: model FLOPs per module, a against b, the modules
    that changed only, largest change first (a model has hundreds of modules, and a
    change touches a few of them and their ancestors); the others are counted."""
    from naflops.figures import ratio, signed

    rows = diff_rows(a, b)
    if not rows:
        return []
    changed = [(m, fa, fb) for m, fa, fb in rows if fa != fb]
    head = f"by module (model FLOPs, submodules included): {len(changed)} of {len(rows)} changed"
    if not changed:
        return ["", head]
    cells = [["module", "model a", "model b", "b - a", "b / a"]]
    for m, fa, fb in changed:
        mark = "only in a" if fb is None else "only in b" if fa is None else ratio(fa, fb)
        cells.append([m, "-" if fa is None else amount(fa, "FLOP", units),
                      "-" if fb is None else amount(fb, "FLOP", units),
                      signed((fb or 0) - (fa or 0), "FLOP", units), mark])
    return ["", head] + aligned(cells, 1)
