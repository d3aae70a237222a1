# The bootstrap, part 6: recomputed forward work inside a compiled backward.
# AOTAutograd's partitioner may put forward ops into the backward graph (activation
# checkpointing's recomputation, or its own choice), where they run like the
# backward's own. Every compiled graph runs through runtime_wrappers'
# call_func_at_runtime_with_args; the C side (py_aot.c) takes that name's place and,
# the first time a compiled backward runs, asks backward_plan() for its graph's plan.
aot_runtime = "torch._functorch._aot_autograd.runtime_wrappers"


def run_compiled(module):
    """The builtin in place of module.call_func_at_runtime_with_args (once)."""
    original = module.__dict__.get("call_func_at_runtime_with_args")
    if original is None or state.get("aot_runner") is not None:
        return
    runner = _c["aot_runner"](original, backward_plan)
    if runner is not None:
        state["aot_runner"] = runner
        module.call_func_at_runtime_with_args = runner


def backward_plan(frame):
    """The plan of the compiled backward AOTAutograd's _backward_impl (frame) is about
    to run, or None when it has no forward work or its graph is out of reach."""
    scope = frame.f_locals
    info = scope.get("lazy_backward_info")  # 2.5 to 2.8: a closure variable
    if info is None:  # 2.15 (and releases before it that have one): the lazy compiler holds it
        info = getattr(scope.get("backward_compiler"), "lazy_backward_info", None)
    graph = getattr(getattr(info, "bw_module", None), "graph", None)
    if graph is not None:
        return graph_plan(graph)
    # Loaded from AOTAutograd's cache (2.15): the graph, serialized, is only its
    # generated code; read as text (rebuilding the module would run it).
    serialized = getattr(getattr(info, "bw_module_fn", None), "__self__", None)
    args = getattr(serialized, "args", None)
    body = args[0] if isinstance(args, tuple) and args else None
    code = body.get("_code") if isinstance(body, dict) else None
    return code_plan(code) if isinstance(code, str) else None


def graph_plan(graph):
    """(names, recomputed) over a backward graph's op calls in graph order, for each
    op name with at least one call that is forward work; None when it has none. A
    call is forward work unless the partitioner tagged it "is_backward" (torch 2.5 to
    2.8 leave forward nodes untagged, 2.15 tags them "is_forward"). Where no node is
    tagged (AOTAutograd clears node metadata when it saves a graph to its cache, as
    Inductor does on 2.15), forward work is what does not depend on the backward's
    incoming gradients (its `tangents_*` inputs): a backward formula's matmuls all do."""
    calls, tagged, needs_grad = [], False, set()
    for node in graph.nodes:
        if node.op == "placeholder" and str(node.name).startswith("tangents"):
            needs_grad.add(node)
        if node.op != "call_function":
            continue
        if any(a in needs_grad for a in node.all_input_nodes):
            needs_grad.add(node)
        own = node.meta.get("partitioner_tag") == "is_backward"
        tagged = tagged or own
        schema = getattr(node.target, "_schema", None)
        if schema is not None:
            calls.append((schema.name, own, node in needs_grad))
    return plan_from_calls([(name, not (own if tagged else from_grad)) for name, own, from_grad in calls])


def code_plan(code):
    """graph_plan() for a backward graph known only by its generated code, one
    `name = torch.ops.<ns>.<op>.<overload>(...)` (or `name = other[0]`) per node, in
    graph order: untagged, so forward work is what does not depend on `tangents_*`."""
    calls, needs_grad = [], set()
    for line in code.splitlines():
        statement = line.strip().split(";")[0]
        if " = " not in statement:
            continue
        name, value = (part.strip() for part in statement.split(" = ", 1))
        if not name.isidentifier():
            continue
        words = "".join(c if c.isalnum() or c == "_" else " " for c in value).split()
        if any(w in needs_grad or w.startswith("tangents") for w in words):
            needs_grad.add(name)
        if value.startswith("torch.ops."):
            parts = value[len("torch.ops."):].split("(", 1)[0].split(".")
            if len(parts) >= 2:
                calls.append((parts[0] + "::" + parts[1], name not in needs_grad))
    return plan_from_calls(calls)


def plan_from_calls(calls):
    """The plan of a backward's (op name, recomputed) calls in graph order: the calls
    of each name with at least one recomputed, as (names, recomputed); None when none
    is recomputed."""
    forward = {name for name, recomputed in calls if recomputed}
    if not forward:
        return None
    calls = [c for c in calls if c[0] in forward]
    return tuple(c[0] for c in calls), tuple(c[1] for c in calls)
