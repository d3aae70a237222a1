# The bootstrap, part 3: functions torch runs or traces on the counter's behalf:
# describe() and grads(), traced by Dynamo in a wrapper's compiled path (never run
# eagerly); the backward hook factory, the multi-grad hook, nested tensors' parts
# and the forward-AD tangent test, called from C.


def describe(roles, args):
    """Traced by Dynamo, never run eagerly: the arguments the rules read, as
    values Dynamo passes to a logging function after the graph with no graph
    op and no graph break. Anything that may be symbolic (a tensor's sizes
    under dynamic shapes, a kernel size Dynamo made dynamic) goes through
    str.format, which Dynamo folds to a constant when it is static and formats
    with the run's values after the graph when it is not: no tensor becomes a
    graph output, no size is specialised (no new guard), and nothing here asks
    Dynamo a question about a symbolic value (a type test would break the
    graph on some releases). A tensor: "T", dtype, device, rank,
    "2x8x8x2x16"; one whose values the rules read (variable-length sequence
    lengths): "t", the tensor; a tuple or list: "S", "3,3" (items formatted);
    anything else: "V", its formatted value; None as is."""
    import torch

    described = []
    for index, values in roles:
        a = args[index]
        if a is None:
            described.append(None)
        elif isinstance(a, torch.Tensor):
            if values:
                described += ["t", a]
            else:
                rank = len(a.shape)
                described += ["T", a.dtype, a.device, rank, "x".join(["{}"] * rank).format(*a.shape)]
        elif isinstance(a, (tuple, list)):
            described += ["S", ",".join(["{}"] * len(a)).format(*a)]
        else:
            described += ["V", "{}".format(a)]
    return described


def grads(out):
    """Traced by Dynamo: the outputs that need gradients, for end() to hook."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out] if out.requires_grad else []
    found = []
    if isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, torch.Tensor) and o.requires_grad:
                found.append(o)
    return found


def backward_hook(order, backward=backward):
    """The backward hook of the op whose forward entry has this order: a Python
    function calling a C builtin with a constant, so that compiled autograd traces
    it without a graph break (backward is a reorderable logging function too)."""

    def naflops_backward(*grads):
        backward(order)

    return naflops_backward


def multi_grad_hook(tensors, hook):
    """Once per backward pass through any of tensors ((output, lse))."""
    import torch.autograd.graph as graph

    return graph.register_multi_grad_hook(tensors, hook, mode="any")


def nested_parts(args):
    """For a call on nested tensors: per component (each a whole batch of its own
    shape), the arguments with each nested tensor replaced by that component."""
    n = None
    for a in args:
        if getattr(a, "is_nested", False):
            n = a.size(0)
            break
    if n is None:
        return None
    return [tuple(a[i] if getattr(a, "is_nested", False) else a for a in args)
            for i in range(n)]


def has_tangent(tensor):
    import torch.autograd.forward_ad as fwad

    return fwad.unpack_dual(tensor).tangent is not None
