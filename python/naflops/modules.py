"""The module tree of a naflops/4 dump: each row's FLOPs added to its module and to
every ancestor, as FlopCounterMode's get_flop_counts() reports modules (a module's
count includes its submodules').

A row's module is a FlopCounterMode-style name, "HDiT.encoder.levels.1.attn": the
outermost module's class, then its named_modules() path; null for work outside any
module. Modules deeper than `depth` components below their outermost module are
folded into their ancestor at that depth. Children come in the order they first
appear in the dump (rows are in the order the program first ran them), so the tree
reads as the model runs."""
from naflops.dumps import MODEL, PASSES, has_modules
from naflops.errors import NaflopsError

OUTSIDE = "(outside modules)"


class Node:
    """One module: its name, depth (components below the outermost module), inclusive
    FLOPs per pass, NATTEN's FLOPs, and its children in order."""

    def __init__(self, name, depth):
        self.name = name
        self.depth = depth
        self.flops = dict.fromkeys(PASSES, 0)
        self.natten = 0
        self.children = {}

    def add(self, op):
        self.flops[op["pass"]] += op["flops"]
        if op["kind"] != "aten":
            self.natten += op["flops"]

    @property
    def model(self):
        return sum(self.flops[p] for p in MODEL)

    @property
    def hardware(self):
        return sum(self.flops.values())

    def walk(self):
        """This node, then its subtree, depth first."""
        yield self
        for child in self.children.values():
            yield from child.walk()


NO_MODULES_STATUS = 3  # a valid dump without the module dimension (2: not valid)


def require_modules(doc, name):
    if not has_modules(doc):
        raise NaflopsError(f"{name}: schema {doc['schema']} predates module attribution "
                           "(naflops/4): this dump has no modules", status=NO_MODULES_STATUS)


def tree(doc, depth=None):
    """(roots {name: Node}, outside Node): the module tree, folded below depth
    (None: every level)."""
    roots, outside = {}, Node(OUTSIDE, 0)
    for op in doc["ops"]:
        if op["module"] is None:
            outside.add(op)
            continue
        parts = op["module"].split(".")
        if depth is not None:
            parts = parts[:depth + 1]
        level, node = roots, None
        for i in range(len(parts)):
            name = ".".join(parts[:i + 1])
            node = level.setdefault(name, Node(name, i))
            node.add(op)
            level = node.children
    return roots, outside


def inclusive(doc):
    """{module name: Node} for every module (and each ancestor prefix), unfolded."""
    roots, _ = tree(doc)
    return {n.name: n for root in roots.values() for n in root.walk()}
