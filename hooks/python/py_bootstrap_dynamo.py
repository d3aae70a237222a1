# The bootstrap, part 2: what Dynamo is told. The counter's builtins join its
# reorderable logging functions (and torch.export's copy of the set); an inlined
# call of theirs goes to the root translator; a wrapper's code is marked "skip" for
# frame evaluation; and the torch release decides which of these exist.


def register_logging(module):
    """Into Dynamo's set, and into the set torch.export swaps in while it traces
    (where Dynamo drops such calls: an exported program counts nothing)."""
    config = getattr(module, "DEFAULT_EXPORT_DYNAMO_CONFIG", module)
    fns = getattr(config, "reorderable_logging_functions", None)
    if isinstance(fns, set):
        fns.update(ours)


def route_to_root(misc):
    """A reorderable logging call made inside an inlined function goes to that
    function's translator, whose list Dynamo never emits (2.8: silently dropped;
    2.6: AttributeError, it has none). Our calls (only ours) are handed the root
    translator instead, whose list Dynamo emits after the graph, in trace order.
    DebuggingVariable.call_function reads only tx.export and tx.debug_locals."""
    cls = getattr(misc, "DebuggingVariable", None)
    call = getattr(cls, "call_function", None)
    if call is None or getattr(call, "_naflops", False):
        return

    def call_function(self, tx, *args, **kwargs):
        if getattr(self, "value", None) in ours:
            if self.value is begin and args and isinstance(args[0], list):
                args = (args[0] + traced_module(tx),) + args[1:]
            output = getattr(tx, "output", None)
            root = getattr(output, "root_tx", None)
            if root is not None:
                tx = root
            if args and in_subgraph(output):
                args = (subgraph_args(self.value, args[0]),) + args[1:]
                if args[0] is None:
                    return None
        return call(self, tx, *args, **kwargs)

    call_function._naflops = True
    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        setattr(call_function, attr, getattr(call, attr, None))
    cls.call_function = call_function


def route_functions(functions):
    """Where a function is hooked rather than wrapped (3.12+), Dynamo is handed the
    wrapper it would have met in its place: a UserFunctionVariable made for a hooked
    function traces its traced twin, whose compiled path counts as the wrapper's
    does. Guards still name the original (they are built from the source)."""
    cls = getattr(functions, "UserFunctionVariable", None)
    init = getattr(cls, "__dict__", {}).get("__init__")
    if init is None or getattr(init, "_naflops", False):
        return

    def __init__(self, fn, *args, **kwargs):
        if type(fn) is function_type and fn in hooked:
            fn = traced_twin(fn)
        init(self, fn, *args, **kwargs)

    __init__._naflops = True
    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        setattr(__init__, attr, getattr(init, attr, None))
    cls.__init__ = __init__


MODULE_ARG = "naflops.module="


def traced_module(tx):
    """The module Dynamo was inside when it traced a NATTEN call, as one more argument
    of begin(): "naflops.module=levels.0.attn", the path from the traced frame's own
    module (its `self`), which begin() looks up from the module running that frame.
    Dynamo's nn_module_stack spells paths per release ("L['self']._modules['levels']
    ._modules['0'].attn" on 2.8, "L['self'].levels.0.attn" on 2.15); none when the
    path does not start at the frame's `self` or cannot be read."""
    try:
        stack = getattr(tx, "nn_module_stack", None)
        if not stack:
            return []
        path = list(stack.values())[-1][0]
        if not isinstance(path, str) or not path.startswith("L['self']"):
            return []
        parts, rest = [], path[len("L['self']"):]
        while rest:
            if rest.startswith("._modules['"):
                end = rest.index("']", 11)
                parts.append(rest[11:end])
                rest = rest[end + 2:]
            elif rest.startswith("['"):
                end = rest.index("']", 2)
                parts.append(rest[2:end])
                rest = rest[end + 2:]
            elif rest.startswith("["):
                end = rest.index("]")
                parts.append(rest[1:end])
                rest = rest[end + 1:]
            elif rest.startswith("."):
                end = min([i for i in (rest.find(".", 1), rest.find("[", 1)) if i > 0] or [len(rest)])
                parts.append(rest[1:end])
                rest = rest[end:]
            else:
                return []
        from torch._dynamo.variables import ConstantVariable

        return [ConstantVariable.create(MODULE_ARG + ".".join(parts))]
    except Exception:
        return []


def in_subgraph(output):
    """Whether Dynamo traces the body of a higher-order op (activation checkpointing,
    cond, ...) into a subgraph: its values do not exist in the root graph, after
    which our calls run."""
    current = getattr(output, "current_tracer", None)
    return current is not None and current is not getattr(output, "root_tracer", current)


def subgraph_args(fn, args):
    """Our call's arguments where they can leave a subgraph, or None to drop the call:
    end() keeps its token (the outputs to hook are the subgraph's: its backward is
    counted where NATTEN's dispatcher ops count it, not here); begin() and mark()
    only with constants (a symbolic size or a live tensor is the subgraph's)."""
    if fn is end:
        return list(args[:1])
    for a in args:
        known = getattr(a, "is_python_constant", None)
        if known is None or not known():
            return None
    return args


def skip_frame(code, recursive=False):
    """Dynamo never analyses the wrapper's own frame: called from eager code (a
    graph break inside NATTEN sends the call back to eager), the wrapper runs
    as it is and Dynamo starts at the original's frame, as it does plain, so
    its frames, breaks, graphs and frame ids are plain's. Inlined into a traced
    frame, the wrapper is traced as before (this only marks the code object,
    through Dynamo's per-code execution strategy in torch._C: no import).
    recursive: what the frame calls is skipped too (the bootstrap's own helpers,
    which the C side calls during an eager NATTEN call, maybe under a compiled
    function's frame callback: Dynamo would analyse them and count frames plain
    never has)."""
    ev = getattr(getattr(getattr(sys.modules.get("torch"), "_C", None), "_dynamo", None), "eval_frame", None)
    try:
        strategy = getattr(ev, "set_code_exec_strategy", None)
        if strategy is not None:  # torch 2.7 and later
            action = ev._FrameAction
            strategy(code, ev._FrameExecStrategy(action.SKIP, action.SKIP if recursive else action.DEFAULT))
            return
        skip = getattr(ev, "skip_code", None)
        if skip is not None:  # torch 2.5, 2.6
            skip(code)
    except Exception as e:
        _c["failed"]("Dynamo's frame skip: %r" % (e,))


def reorderable():
    """Whether Dynamo has reorderable logging functions (torch 2.3 and later)."""
    torch = sys.modules.get("torch")
    try:
        major, minor = (int(x) for x in str(torch.__version__).split(".")[:2])
    except (AttributeError, ValueError):
        return False
    return (major, minor) >= (2, 3)


def compiling():
    torch = sys.modules.get("torch")
    compiler = getattr(torch, "compiler", None)
    f = getattr(compiler, "is_dynamo_compiling", None)
    if f is None:
        f = getattr(compiler, "is_compiling", None)
    return f if f is not None else (lambda: False)
