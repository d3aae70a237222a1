"""atheris target for the naflops package's dump reader and validator (python/naflops).

Whatever the bytes, reading a dump gives a valid dump or raises naflops's own
NaflopsError (anything else is a crash). Each input is read twice: as the file's bytes
as they are, and as one of the seed dumps with a few fields changed by the input
(replaced by odd values, removed, added), which reaches the checks behind the
JSON parser far more often. A dump that passes must render in every format and unit,
diff with itself with no op on one side only, and merge with a copy of itself from
another rank into a dump that passes again, with twice the calls.

  make fuzz-dump FUZZ_TIME=20
  python tests/fuzz/fuzz_dump.py -max_total_time=20 -dict=tests/fuzz/dump.dict \
      CORPUS_DIR tests/fuzz/seeds/dump
"""
import copy
import json
import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent


sys.path.insert(0, str(HERE.parent.parent / "python"))  # the naflops package
with atheris.instrument_imports(include=["naflops"]):
    import naflops

SEEDS = [json.loads(p.read_text()) for p in sorted((HERE / "seeds" / "dump").glob("*.json"))]
ODD = [None, True, False, 0, 1, -1, 2**64, 2**128 - 1, 2**128, 2**256 - 1, 2**256, 1.5, "",
       "x", "\ud800", "forward", "backward", "attention", "av", "naflops/1", "naflops/2", "naflops/3", "naflops/4",
       "Net.blocks.0", [],
       [0], [-1], [True], [None], {}, {"calls": 1}]


def objects(node):
    """Every JSON object in node (the dump, its totals, its ops), depth first."""
    if isinstance(node, dict):
        yield node
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            yield from objects(child)


def mutated(fdp):
    """A seed dump with up to 4 fields of its objects replaced, removed or added."""
    doc = copy.deepcopy(SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)])
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        found = list(objects(doc))
        if not found:
            break
        node = found[fdp.ConsumeIntInRange(0, len(found) - 1)]
        keys = sorted(node) + ["ranks", "extra"]
        key = keys[fdp.ConsumeIntInRange(0, len(keys) - 1)]
        action = fdp.ConsumeIntInRange(0, 5)
        if action <= 1:
            node[key] = copy.deepcopy(ODD[fdp.ConsumeIntInRange(0, len(ODD) - 1)])
        elif action == 2:
            node[key] = fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 40))
        elif action == 3:
            node[key] = fdp.ConsumeUnicode(8)
        elif action == 4:
            node.pop(key, None)
        elif isinstance(node.get(key), list):  # one element changed
            items = node[key]
            if items:
                i = fdp.ConsumeIntInRange(0, len(items) - 1)
                items[i] = copy.deepcopy(ODD[fdp.ConsumeIntInRange(0, len(ODD) - 1)])
    return json.dumps(doc).encode()  # ASCII: json.dumps escapes the rest


def read(data):
    try:
        return naflops.validate(naflops.parse_dump(data, "fuzz.json"), "fuzz.json")
    except naflops.NaflopsError as e:
        assert "\n" not in str(e), repr(str(e))
        return None


def exercise(doc):
    for fmt in ("table", "csv", "md"):
        for units in ("si", "exact"):
            assert isinstance(naflops.render(doc, fmt, units), str)
    assert "only in" not in naflops.diff(doc, doc, "a", "b", "si")
    other = copy.deepcopy(doc)
    other.pop("ranks", None)
    other.update(pid=None, rank="fuzz-other-rank")
    try:
        merged = naflops.merge([("a.json", doc), ("b.json", other)])
    except naflops.NaflopsError:
        return
    again = naflops.validate(naflops.parse_dump(naflops.to_json(merged).encode(), "m"), "m")
    assert again["totals"]["calls"] == 2 * sum(op["calls"] for op in doc["ops"])


def TestOneInput(data):
    for candidate in (data, mutated(atheris.FuzzedDataProvider(data))):
        doc = read(candidate)
        if doc is not None:
            exercise(doc)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
