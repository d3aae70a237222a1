"""Reading and validating dumps: the library's JSON dumps (schemas naflops/1 to /4),
every field checked, a /1 dump read as /2; a /3 or /4 dump's steps are checked by
naflops.stepcheck. A /4 dump's ops each name their module (a string, or null for work
outside any module); an older dump's ops are given "module": None too, so that every
reader can rely on the key, but for them it means "not recorded", not "outside":
has_modules() tells the two apart, and whatever reports modules asks it first. What is
wrong is a NaflopsError whose text is the one line to print."""
import json

from naflops.errors import NaflopsError

SCHEMA = "naflops/2"        # what merge writes when no dump has steps
SCHEMA_STEPS = "naflops/3"  # and when one has
SCHEMA_MODULES = "naflops/4"  # what merge writes for /4 dumps
# /2 adds the recompute pass and model/hardware totals; /3 the optional "steps"; /4
# each op's "module" (rows per signature and module)
READS = ("naflops/1", "naflops/2", "naflops/3", "naflops/4")
STEP_KEYS = ("steps", "steps_by_rank")  # /3's (steps_by_rank: a merged dump's)
U128_MAX = 2**128 - 1   # the library's counts saturate here
LIMIT = 2**256          # numbers in a dump must be below this
PASSES = ("forward", "backward", "recompute", "jvp")
MODEL = ("forward", "backward")  # the model's work; recompute is the hardware's only


def _count(v):
    return type(v) is int and 0 <= v < LIMIT


def _dims(v):
    return type(v) is list and all(_count(x) for x in v)


def _optional(check):
    return lambda v: v is None or check(v)


_STR = (lambda v: isinstance(v, str), "a string")
_OPT_STR = (_optional(_STR[0]), "a string or null")
_COUNT = (_count, "a whole number >= 0")
_OPT_COUNT = (_optional(_count), "a whole number >= 0 or null")
_DIMS = (_dims, "a list of whole numbers >= 0")
_OPT_DIMS = (_optional(_dims), "a list of whole numbers >= 0 or null")
_BOOLS = (lambda v: type(v) is list and all(type(x) is bool for x in v), "a list of true/false")
_LIST = (lambda v: type(v) is list, "a list")
_OBJECT = (lambda v: type(v) is dict, "an object")
_RANKS = (lambda v: type(v) is list and all(x is None or isinstance(x, str) for x in v),
          "a list of strings or nulls")

TOP_FIELDS = {"pid": _OPT_COUNT, "host": _OPT_STR, "rank": _OPT_STR, "local_rank": _OPT_STR,
              "world_size": _OPT_STR, "natten_version": _OPT_STR, "ops": _LIST,
              "totals": _OBJECT}
OP_FIELDS = {"op": _STR, "pass": _STR, "kind": _STR, "natten_version": _OPT_STR,
             "backend": _OPT_STR, "shape": _DIMS, "key_shape": _OPT_DIMS,
             "value_shape": _OPT_DIMS, "kernel_size": _OPT_DIMS, "stride": _OPT_DIMS,
             "dilation": _OPT_DIMS, "is_causal": _BOOLS, "additional_kv": _COUNT,
             "varlen_pairs": _OPT_COUNT, "dtype": _STR, "device": _STR, "calls": _COUNT,
             "flops_per_call": _COUNT, "flops": _COUNT, "macs": _COUNT}
TOTAL_FIELDS = {k: _COUNT for k in ("flops", "macs", "forward_flops", "backward_flops",
                                    "forward_macs", "backward_macs", "calls")}
TOTAL_FIELDS_2 = {k: _COUNT for k in ("recompute_flops", "recompute_macs", "jvp_flops",
                                      "jvp_macs", "model_flops", "model_macs", "uncounted_calls")}
COUNTED = ("calls", "flops", "macs")  # what merge adds up; the rest is the signature
MODULE_FIELD = (_OPT_STR[0], "a module name (a string) or null")


def has_modules(doc):
    """Whether the dump's ops carry the module that ran them (naflops/4)."""
    return doc["schema"] == SCHEMA_MODULES


def show(v):
    """A short, one-line picture of a JSON value for a message."""
    if isinstance(v, (list, dict)):
        return "a list" if isinstance(v, list) else "an object"
    text = json.dumps(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _sums_to(total, parts):
    """Whether total is the sum of parts, saturated as the library does."""
    s = sum(parts)
    return total == s or (total == U128_MAX and s >= U128_MAX)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise NaflopsError(f"duplicate key {show(next(k for k in keys if keys.count(k) > 1))}")
    return dict(pairs)


def _no_constant(name):
    raise NaflopsError(f"{name} is not a JSON number")


def parse_dump(data, name):
    """The JSON document in data (bytes); NaflopsError if it is not JSON."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NaflopsError(f"{name}: not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise NaflopsError(f"{name}: empty file")
    if text.startswith("op,pass,kind,"):
        raise NaflopsError(f"{name}: a CSV dump; naflops reads JSON dumps (NAFLOPS_FORMAT=json)")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except NaflopsError as e:
        raise NaflopsError(f"{name}: not valid JSON: {e}") from None
    except RecursionError:
        raise NaflopsError(f"{name}: not valid JSON: nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, or a number too long to convert
        raise NaflopsError(f"{name}: not valid JSON: {e}") from None


def _check_fields(obj, fields, where, fail):
    for key, (check, what) in fields.items():
        if key not in obj:
            fail(f"{where}{key}: missing")
        if not check(obj[key]):
            fail(f"{where}{key}: expected {what}, got {show(obj[key])}")


def validate(doc, name):
    """Returns doc if it is a valid naflops/1 to /4 dump, else raises NaflopsError.
    A naflops/1 dump comes back as /2 (no recompute: model = hardware = flops); a /1 or
    /2 dump's "steps", beyond its schema, are dropped."""
    def fail(message):
        raise NaflopsError(f"{name}: {message}")

    if type(doc) is not dict:
        fail(f"not a naflops dump (expected a JSON object, got {show(doc)})")
    if "schema" not in doc:
        fail('no "schema": not a naflops dump')
    if doc["schema"] not in READS:
        fail(f"schema {show(doc['schema'])} is not supported (naflops reads {', '.join(READS)})")
    v1 = doc["schema"] == "naflops/1"
    passes_allowed = MODEL if v1 else PASSES
    _check_fields(doc, TOP_FIELDS, "", fail)
    if "ranks" in doc and not _RANKS[0](doc["ranks"]):
        fail(f"ranks: expected {_RANKS[1]}, got {show(doc['ranks'])}")
    for i, op in enumerate(doc["ops"]):
        where = f"ops[{i}]"
        if type(op) is not dict:
            fail(f"{where}: expected an object, got {show(op)}")
        _check_fields(op, OP_FIELDS, where + ".", fail)
        if doc["schema"] == SCHEMA_MODULES:
            _check_fields(op, {"module": MODULE_FIELD}, where + ".", fail)
        else:
            op["module"] = None  # not known: has_modules() is false
        if op["pass"] not in passes_allowed:
            fail(f"{where}.pass: expected {' or '.join(passes_allowed)}, got {show(op['pass'])}")
        if not _sums_to(op["flops"], [op["calls"] * op["flops_per_call"]]):
            fail(f"{where}.flops: {op['flops']} is not calls x flops_per_call "
                 f"({op['calls']} x {op['flops_per_call']})")
        if op["macs"] != op["flops"] // 2:
            fail(f"{where}.macs: {op['macs']} is not flops / 2 ({op['flops'] // 2})")
    totals = doc["totals"]
    _check_fields(totals, TOTAL_FIELDS if v1 else {**TOTAL_FIELDS, **TOTAL_FIELDS_2}, "totals.", fail)
    sums = [("forward_flops", ("forward",)), ("backward_flops", ("backward",)),
            ("flops", passes_allowed)]
    if not v1:
        sums += [("recompute_flops", ("recompute",)), ("jvp_flops", ("jvp",)), ("model_flops", MODEL)]
    for key, passes in sums:
        if not _sums_to(totals[key], [op["flops"] for op in doc["ops"] if op["pass"] in passes]):
            fail(f"totals.{key}: {totals[key]} is not the sum of the ops' flops")
    for key, natten in (("natten_flops", True), ("other_flops", False)):
        # absent from dumps written before the whole-model count
        if key in totals and not (_count(totals[key]) and _sums_to(
                totals[key], [op["flops"] for op in doc["ops"] if (op["kind"] != "aten") == natten])):
            fail(f"totals.{key}: {show(totals[key])} is not the sum of the "
                 f"{'NATTEN' if natten else 'aten'} ops' flops")
    for key in ("macs", "forward_macs", "backward_macs") + (() if v1 else ("recompute_macs", "jvp_macs", "model_macs")):
        flops = totals[key.replace("macs", "flops")]
        if totals[key] != flops // 2:
            fail(f"totals.{key}: {totals[key]} is not flops / 2 ({flops // 2})")
    calls = sum(op["calls"] for op in doc["ops"])
    if totals["calls"] not in (calls, calls % 2**64):  # the library's total is 64-bit
        fail(f"totals.calls: {totals['calls']} is not the sum of the ops' calls ({calls})")
    if doc["schema"] in (SCHEMA_STEPS, SCHEMA_MODULES):
        from naflops import stepcheck  # it builds on this module's checks
        stepcheck.check(doc, fail)
    else:
        for key in STEP_KEYS:
            doc.pop(key, None)
    if v1:
        totals.update(recompute_flops=0, recompute_macs=0, jvp_flops=0, jvp_macs=0,
                      model_flops=totals["flops"],
                      model_macs=totals["macs"], uncounted_calls=0)
        doc["schema"] = SCHEMA
    return doc


def read_dump(name):
    """The valid dump in file `name`, or NaflopsError."""
    return validate(parse_dump(read_bytes(name), name), name)


def read_bytes(name):
    try:
        with open(name, "rb") as f:
            return f.read()
    except OSError as e:
        raise NaflopsError(f"{name}: cannot read: {e.strerror or e}") from None


def read_run(names):
    """The valid dumps [(name, doc)] of one run's ranks, of one schema (/2 and /3 go
    together; /4 only with /4: older rows have no module to merge by)."""
    parsed = [(name, parse_dump(read_bytes(name), name)) for name in names]
    schemas = [(n, d["schema"]) for n, d in parsed if type(d) is dict and "schema" in d]
    both = (SCHEMA, SCHEMA_STEPS)  # /3 is /2 with steps
    alike = lambda a, b: a == b or (a in both and b in both)
    for name, schema in schemas[1:]:
        if not alike(schema, schemas[0][1]):
            # /4 beside an older dump: its rows would need a module no one recorded, and
            # null means "outside any module", which would be wrong; so say which is which
            why = (": the older one's rows have no module to merge by"
                   if SCHEMA_MODULES in (schema, schemas[0][1]) else "")
            raise NaflopsError(f"{name}: schema {show(schema)}, but {schemas[0][0]} has "
                               f"{show(schemas[0][1])}: cannot merge dumps of different "
                               f"schemas{why}")
    return [(name, validate(doc, name)) for name, doc in parsed]
