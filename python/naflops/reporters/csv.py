"""The CSV reporter: the library's CSV dump of a dump's ops (always exact)."""
import csv
import io

from naflops.dumps import has_modules
from naflops.figures import dims


CSV_FIELDS = ("op", "pass", "kind", "natten_version", "backend", "shape", "key_shape",
              "value_shape", "kernel_size", "stride", "dilation", "is_causal", "additional_kv",
              "dtype", "device", "calls", "flops_per_call", "flops", "macs")


def csv_text(doc):
    """The library's CSV dump of these ops (a naflops/4 dump's with its module column)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    fields = CSV_FIELDS + (("module",) if has_modules(doc) else ())
    w.writerow(fields)
    for op in doc["ops"]:
        row = {k: op[k] for k in CSV_FIELDS}
        for k in ("shape", "key_shape", "value_shape", "kernel_size", "stride", "dilation"):
            row[k] = "-" if op["kind"] in ("attention", "aten") and k in ("kernel_size", "stride",
                                                                "dilation") else dims(op[k])
        row["is_causal"] = "".join("T" if c else "F" for c in op["is_causal"])
        row["natten_version"] = op["natten_version"] or ""
        row["backend"] = op["backend"] or ""
        row["module"] = op.get("module") or ""
        w.writerow([row[k] for k in fields])
    return out.getvalue()
