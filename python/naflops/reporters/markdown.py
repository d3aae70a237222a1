"""The Markdown reporter: the table as a Markdown table, then the pass totals."""
from naflops.figures import (DESCRIBE, amount, describe, ordered_ops, pass_totals,
                                       title)


def markdown(doc, units):
    def line(cells):
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [f"**{title(doc)}**", "", line(list(DESCRIBE) + ["calls", "FLOPs"]),
             line(["---"] * len(DESCRIBE) + ["---:", "---:"])]
    lines += [line(describe(op) + [str(op["calls"]), amount(op["flops"], "FLOP", units)])
              for op in ordered_ops(doc)]
    lines += ["", line(["pass", "FLOPs", "MACs"]), line(["---", "---:", "---:"])]
    lines += [line([label, amount(f, "FLOP", units), amount(f // 2, "MAC", units)])
              for label, f in pass_totals(doc)]
    return "\n".join(lines) + "\n"
