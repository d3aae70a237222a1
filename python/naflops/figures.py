"""What every reporter (and the diff's rows) shares: figures as the library prints them
(SI or exact, ratios, shares), an op's descriptive cells, the title line, the pass
totals and the row order."""
from naflops.dumps import MODEL, OP_FIELDS


PREFIXES = " KMGTPEZYRQ"


def si(v, unit):
    """v as the library prints it: "30.7 KFLOP", or exact below 1000."""
    p = 0
    while 20 * v >= 19999 * 1000**p and p + 1 < len(PREFIXES):  # v / 1000^p >= 999.95
        p += 1
    if p == 0:
        return f"{v} {unit}"
    d = 1000**p
    tenths = (20 * v + d) // (2 * d)  # 10 * v / d, rounded half up
    return f"{tenths // 10}.{tenths % 10} {PREFIXES[p]}{unit}"


def amount(v, unit, units):
    return str(v) if units == "exact" else si(v, unit)


def signed(v, unit, units):
    text = amount(abs(v), unit, units)
    return ("+" if v > 0 else "-" if v < 0 else "") + text


def ratio(a, b):
    if a == 0:
        return "-"
    r = (2000 * b + a) // (2 * a)  # 1000 * b / a, rounded half up
    return f"{r // 1000}.{r % 1000:03d}x"


def dims(v):
    return "x".join(map(str, v)) if v else "-"


def _dash(v):
    return v if v else "-"


DESCRIBE = ("op", "pass", "kind", "backend", "shape", "kernel", "dilation", "causal", "dtype",
            "device")


def describe(op):
    """The table's descriptive cells of an op, as the library's table has them."""
    q, k, v = op["shape"], op["key_shape"], op["value_shape"]
    if op["kind"] == "aten":  # the operands of the aten op's formula
        shape = ", ".join(dims(x) for x in (q, k, v) if x is not None)
        return [_dash(op["op"]), op["pass"], op["kind"], _dash(op["backend"]), shape, "-", "-",
                "-", _dash(op["dtype"]), _dash(op["device"])]
    show_k = bool(k) and k != q
    show_v = bool(v) and v != q and not (show_k and v == k) and op["kind"] != "av"
    shape = dims(q) + (" k:" + dims(k) if show_k else "") + (" v:" + dims(v) if show_v else "")
    if op["kind"] == "attention":
        kernel = f"kv={k[1]}" if k and len(k) > 1 else "kv=-"
        dilation = "-"
    else:
        kernel = dims(op["kernel_size"])
        if op["additional_kv"] > 0:
            kernel += f"+{op['additional_kv']}"
        dilation = dims(op["dilation"])
    causal = "".join("T" if c else "F" for c in op["is_causal"])
    return [_dash(op["op"]), op["pass"], op["kind"], _dash(op["backend"]), shape, kernel,
            dilation, causal, _dash(op["dtype"]), _dash(op["device"])]


def aligned(rows, right_from):
    """Space-separated columns; columns from right_from on are right-aligned."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return [" ".join(cell.rjust(w) if c >= right_from else cell.ljust(w)
                     for c, (cell, w) in enumerate(zip(row, widths))) for row in rows]


def whose(doc):
    """" of ranks 0, 1", " of pid 42, rank 0" or "": whose figures a title gives."""
    if "ranks" in doc:
        return " of ranks " + ", ".join(r if r is not None else "norank" for r in doc["ranks"])
    if doc["pid"] is not None:
        return f" of pid {doc['pid']}" + (f", rank {doc['rank']}" if doc["rank"] is not None else "")
    return ""


def title(doc):
    version = next((op["natten_version"] for op in doc["ops"] if op["natten_version"]), "unknown")
    what = "FLOPs (NATTEN and the whole model)" if has_aten(doc) else "NATTEN FLOPs"
    return f"{what}{whose(doc)} (NATTEN {version})"


def seconds(s):
    """A duration as the library's step lines print it: 1.234 s, 12.34 ms, 5.6 us."""
    if s >= 1.0:
        return f"{s:.3f} s"
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} us"


def percent(v):
    return "-" if v is None else f"{100 * v:.2f}%"


def share(part, total):
    """'  12.5%', the library's rounding (per mille, half up), or '' for a zero total."""
    if total == 0:
        return ""
    pm = (part + total // 2000) // (total // 1000) if total // 1000 else part * 1000 // total
    pm = min(pm, 1000)
    return f"  {pm // 10}.{pm % 10}%"


def has_aten(doc):
    return any(op["kind"] == "aten" for op in doc["ops"])


def pass_totals(doc):
    """(label, FLOPs) lines under the table: passes, total, and with aten rows the
    NATTEN and other shares."""
    t = doc["totals"]
    lines = [(p, t[f"{p}_flops"]) for p in MODEL]
    if t["jvp_flops"]:
        lines += [("jvp", t["jvp_flops"])]
    if t["recompute_flops"]:  # activation checkpointing: model (MFU) and hardware (HFU)
        lines += [("recompute", t["recompute_flops"]), ("model", t["model_flops"]),
                  ("hardware", t["flops"])]
    else:
        lines += [("total", t["flops"])]
    if has_aten(doc):
        natten = sum(op["flops"] for op in doc["ops"] if op["kind"] != "aten")
        lines += [("NATTEN", natten), ("other", t["flops"] - natten)]
    return lines


def across_modules(ops):
    """The ops with rows that differ only in their module summed (the first's place
    kept): the per-op view of a naflops/4 dump, as the library's summary shows it."""
    merged = {}
    for op in ops:
        key = tuple((k, tuple(op[k]) if isinstance(op[k], list) else op[k]) for k in OP_FIELDS
                    if k not in ("calls", "flops", "macs"))
        if key in merged:
            m = merged[key]
            m["calls"] += op["calls"]
            m["flops"] += op["flops"]
            m["macs"] = m["flops"] // 2
        else:
            merged[key] = dict(op, module=None)
    return list(merged.values())


def ordered_ops(doc):
    """NATTEN's rows as they came, then the aten rows, largest first (the library's
    summary order), each signature once whichever modules ran it."""
    ops = across_modules(doc["ops"])
    aten = sorted((op for op in ops if op["kind"] == "aten"), key=lambda op: -op["flops"])
    return [op for op in ops if op["kind"] != "aten"] + aten
