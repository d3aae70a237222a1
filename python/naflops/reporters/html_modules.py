"""The HTML pages' module view (a naflops/4 dump): an SVG icicle of the module tree,
each outermost module a block of the top row and each module's children side by side
below it, widths in proportion to the FLOPs they include (every pass); the NATTEN
part of each module is the darker band at its foot. Under it the tree as a table
(as `report --by module`). The diff page gets a module table, a against b.

Module names come from the program's own attribute names: every one is escaped."""
from naflops.dumps import has_modules
from naflops.figures import ratio, si
from naflops.modules import OUTSIDE, tree
from naflops.reporters.html import esc, exact
from naflops.reporters.modules import diff_rows, per_mille, rows_of

DEPTH = 6         # icicle levels drawn below each outermost module (deeper ones folded)
TABLE_DEPTH = 3   # the table's, as `report --by module`
ROW = 26          # icicle row height (SVG units)
LABEL_MIN = 60    # narrowest block (of 1000) that gets a text label

CSS = """
.icicle{width:100%;max-width:1100px;height:auto;display:block;margin:6px 0;border:1px solid #dee2e6;background:#fff}
.icicle rect.mod{fill:#a5d8ff;stroke:#fff;stroke-width:1}
.icicle rect.mod.outside{fill:#dee2e6}
.icicle rect.mod-natten{fill:#d9480f}
.icicle text{font-size:11px;fill:#1c2a38;pointer-events:none}
i.mod{background:#a5d8ff}i.mod-natten{background:#d9480f}
"""


def _blocks(nodes, x0, width, total, out):
    """Lays out nodes (siblings) in [x0, x0 + width): (node, x, w) appended to out,
    their children below each."""
    x = x0
    for node in nodes:
        w = width * node.hardware / total if total else 0.0
        out.append((node, x, w))
        if node.children and node.hardware:
            _blocks(list(node.children.values()), x, w, node.hardware, out)
        x += w


def icicle(doc):
    roots, outside = tree(doc, DEPTH)
    total = sum(n.hardware for n in roots.values()) + outside.hardware
    placed = []
    _blocks(list(roots.values()) + ([outside] if outside.hardware else []), 0.0, 1000.0, total, placed)
    levels = 1 + max((n.depth for n, _, _ in placed), default=0)
    parts = []
    for node, x, w in placed:
        y = node.depth * ROW
        tip = (f"{node.name}: {exact(node.hardware)} FLOP, model {exact(node.model)}, "
               f"NATTEN {exact(node.natten)} ({per_mille(node.natten, node.hardware)})")
        cls = "mod outside" if node.name == OUTSIDE else "mod"
        parts.append(f'<g data-module="{esc(node.name)}" data-flops="{node.hardware}" '
                     f'data-natten="{node.natten}"><title>{esc(tip)}</title>'
                     f'<rect class="{cls}" x="{x:.3f}" y="{y}" width="{w:.3f}" height="{ROW - 2}"/>')
        if node.natten:
            nw = w * node.natten / node.hardware
            parts.append(f'<rect class="mod-natten" x="{x:.3f}" y="{y + ROW - 8}" width="{nw:.3f}" '
                         'height="6"/>')
        if w >= LABEL_MIN:
            label = node.name if node.depth == 0 else node.name.rsplit(".", 1)[-1]
            room = int(w / 6.5)  # characters that fit at 11px in w of 1000 units
            if len(label) > room:
                label = label[:max(room - 1, 1)] + "\u2026"
            parts.append(f'<text x="{x + 4:.3f}" y="{y + 15}">{esc(label)}: {esc(si(node.hardware, "FLOP"))}</text>')
        parts.append("</g>")
    height = levels * ROW
    # scaled as a whole (as the step timeline), so that the labels keep their shape
    return (f'<svg class="icicle" data-chart="modules" viewBox="0 0 1000 {height}" '
            f'role="img" data-modules="{len(placed)}">{"".join(parts)}</svg>')


def table(doc):
    head = ("<tr><th>module</th>" + "".join(f'<th class="n">{h}</th>' for h in
            ("forward", "backward", "recompute", "model", "hardware", "NATTEN", "NATTEN %")) + "</tr>")
    body = []
    for label, depth, n in rows_of(doc, TABLE_DEPTH):
        share = per_mille(n.natten, n.hardware)
        cells = [n.flops["forward"], n.flops["backward"], n.flops["recompute"], n.model, n.hardware,
                 n.natten]
        body.append(f'<tr data-module="{esc(label)}"><td style="padding-left:{8 + 14 * depth}px">'
                    f'{esc(label)}</td>' + "".join(f'<td class="n">{exact(v)}</td>' for v in cells)
                    + f'<td class="n">{share}</td></tr>')
    return f'<table data-table="modules">{head}{"".join(body)}</table>'


def section(doc):
    """(html, css) of the report page's module view; ("", "") without modules."""
    if not has_modules(doc) or not doc["ops"]:
        return "", ""
    roots, _ = tree(doc)
    count = sum(1 for r in roots.values() for _ in r.walk())
    html = ["<h2>Where the FLOPs go: by module</h2>",
            f'<p class="note">{count} modules. Each block\'s width is the FLOPs it ran, its '
            "submodules' included (every pass); the band at its foot, NATTEN's part. Hover a "
            f"block for exact figures; levels deeper than {DEPTH} are folded into their "
            "ancestor.</p>",
            '<div class="legend"><span><i class="mod"></i>module</span>'
            '<span><i class="mod-natten"></i>its NATTEN FLOPs</span></div>',
            icicle(doc), table(doc)]
    return "\n".join(html), CSS


def _diff_row(m, fa, fb):
    state = "only-b" if fa is None else "only-a" if fb is None else "changed" if fa != fb else "same"
    delta = (fb or 0) - (fa or 0)
    times = "only in a" if fb is None else "only in b" if fa is None else ratio(fa, fb)
    return (f'<tr class="{state}" data-module="{esc(m)}"><td>{esc(m)}</td>'
            f'<td class="n">{"-" if fa is None else exact(fa)}</td>'
            f'<td class="n">{"-" if fb is None else exact(fb)}</td>'
            f'<td class="n">{"+" if delta > 0 else ""}{exact(delta)}</td>'
            f'<td class="n">{times}</td></tr>')


def diff_section(a, b, name_a, name_b):
    """The diff page's module table: model FLOPs per module, a against b, the changed
    ones largest change first; the unchanged ones folded away below (as the text diff,
    which only counts them)."""
    rows = diff_rows(a, b)
    if not rows:
        return ""
    changed = [_diff_row(*r) for r in rows if r[1] != r[2]]
    same = [_diff_row(*r) for r in rows if r[1] == r[2]]
    head = ('<tr><th>module</th><th class="n">model a</th><th class="n">model b</th>'
            '<th class="n">b - a</th><th class="n">b / a</th></tr>')
    return (f'<h2>By module: <span data-modules-changed="{len(changed)}">{len(changed)} of '
            f"{len(rows)} changed</span></h2>"
            f'<p class="note">Model FLOPs (forward + backward) per module, submodules included; '
            f"a: {esc(name_a)}, b: {esc(name_b)}. Largest change first.</p>"
            + (f'<table data-table="modules-diff">{head}{"".join(changed)}</table>' if changed else "")
            + (f"<details><summary>{len(same)} modules unchanged</summary>"
               f'<table data-table="modules-same">{head}{"".join(same)}</table></details>'
               if same else ""))

