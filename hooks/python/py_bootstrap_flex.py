# The bootstrap, part 7: NATTEN's Flex attention where no NATTEN call runs.
# An exported program (torch.export, then ExportedProgram.module(), or one loaded
# back) holds NATTEN's Flex backend as torch's flex_attention higher-order op: NATTEN's
# Python function is gone, and on the CPU the op runs as a dense computation (bmm)
# that would count as other ops. The C side (py_flex.c) hooks the op's Autograd and
# dense kernels (and its backward's dense kernel); the first time it meets a mask graph it asks
# natten_mask() here whether that graph is NATTEN's neighborhood mask, and with what
# arguments. Only a mask that behaves exactly like NATTEN's (checked against
# NATTEN's own rule, below) is counted as NATTEN.
flex_module = "torch._higher_order_ops.flex_attention"


def flex_ready(module):
    """flex_attention's Autograd and dense kernels and flex_attention_backward's dense
    kernel, counted (once): on CPython 3.12+ through the functions' own vectorcall
    slots (py_kernels unchanged), before that by C builtins in their place."""
    if state.get("flex") is not None:
        return
    state["flex"] = True
    keys = module.DispatchKey
    places = (
        ("flex_attention", keys.Autograd, False),
        ("flex_attention", keys.CompositeExplicitAutograd, False),
        ("flex_attention_backward", keys.CompositeExplicitAutograd, True),
    )
    graph_module = module.torch.fx.GraphModule
    for name, key, is_backward in places:
        hop = module.__dict__.get(name)
        kernels = getattr(hop, "py_kernels", None)
        original = kernels.get(key) if isinstance(kernels, dict) else None
        if original is None:
            continue
        kernel = _c["flex_kernel"](original, is_backward, natten_mask, graph_module)
        if kernel is None or kernel is True:  # True: hooked in place (CPython 3.12+)
            continue
        kernels[key] = kernel
        cache = getattr(hop, "_dispatch_cache", None)
        if isinstance(cache, dict):  # resolved keys point at the original: look up again
            cache.clear()


# The mask graph's ops that split a flat index into coordinates (NATTEN's idx2crd).
_mod_ops = ("aten.remainder.Scalar", "aten.remainder.Tensor", "<built-in function mod>")
_div_ops = ("aten.floor_divide.default", "aten.floor_divide.Scalar", "<built-in function floordiv>")


def _spatial_shape(graph, length):
    """The token layout a NATTEN mask graph unflattens q_idx into (its idx2crd:
    remainder, then floor division, by each extent from the last), or None."""
    places = [n for n in graph.nodes if n.op == "placeholder"]
    if len(places) != 4 or places[0].users or places[1].users:
        return None  # NATTEN's single-dimension mask reads neither batch nor head
    x, extents = places[2], []
    while len(extents) < 3:
        mods = [u for u in x.users if str(u.target) in _mod_ops and u.args[0] is x]
        if len(mods) != 1 or not isinstance(mods[0].args[1], int):
            break
        extent = mods[0].args[1]
        extents.append(extent)
        divs = [u for u in x.users if str(u.target) in _div_ops and u.args[0] is x and u.args[1] == extent]
        if len(divs) != 1:
            break
        x = divs[0]
    shape = tuple(reversed(extents))
    product = 1
    for e in shape:
        product *= e
    return shape if shape and product == length and min(shape) > 0 else None


def _na_1d(torch, q, kv, extent, kernel, stride, dilation, causal):
    """NATTEN's neighborhood along one dimension (natten/backends/flex.py,
    single_dim_tiling_mask), for coordinates q and kv (tensors that broadcast)."""
    q_di, kv_di = q // dilation, kv // dilation
    q_group, kv_group = q % dilation, kv % dilation
    corrected = extent // dilation + 1 - (q_group + (dilation - extent % dilation)) // dilation
    same_group = q_group == kv_group
    if causal:
        leader = torch.minimum((q_di // stride) * stride + stride - 1, corrected - 1)
        return (q_di - kv_di >= 0) & (leader - kv_di < kernel) & same_group
    left, right = kernel // 2, kernel // 2 + (kernel % 2 - 1)
    leader = torch.minimum((q_di // stride) * stride + stride // 2, corrected - 1)
    center = torch.minimum(torch.maximum(leader, torch.full_like(leader, left)), corrected - 1 - right)
    w0, w1 = center - kv_di, kv_di - center
    return (((0 <= w0) & (w0 <= left)) | ((0 <= w1) & (w1 <= right))) & same_group


def _rows_of(extent):
    """The query coordinates sampled along one dimension: the first and last 96 and
    every k-th between, so that an extent of thousands costs a few hundred rows."""
    step = max(1, extent // 96)
    return sorted(set(range(min(extent, 96))) | set(range(max(0, extent - 96), extent)) | set(range(0, extent, step)))


def _one_dim(torch, mask, shape, i):
    """(kernel, stride, dilation, causal) of dimension i, or None: the mask along
    the line through the origin (other coordinates 0, which every query attends)."""
    extent = shape[i]
    place = 1
    for e in shape[i + 1:]:
        place *= e
    qs = torch.tensor(_rows_of(extent), dtype=torch.int64)
    kvs = torch.arange(extent, dtype=torch.int64)
    zero = torch.zeros((), dtype=torch.int64)
    seen = mask(zero, zero, (qs * place)[:, None], (kvs * place)[None, :])
    seen = seen.expand(len(qs), extent).to(torch.bool)
    counts = seen.sum(1)
    kernel = int(counts.max())
    if kernel < 1:
        return None
    causal = not bool((seen & (kvs[None, :] > qs[:, None])).any()) and kernel > 1
    dilation = 1
    for row in seen:
        attended = row.nonzero().flatten()
        if len(attended) > 1:
            dilation = int((attended[1:] - attended[:-1]).min())
            break
    for stride in range(1, kernel + 1):
        expected = _na_1d(torch, qs[:, None], kvs[None, :], extent, kernel, stride, dilation, causal)
        if bool((expected == seen).all()):
            return kernel, stride, dilation, causal
    return None


def natten_mask(mask, q_len, kv_len):
    """(shape, kernel, stride, dilation, causal) when the mask graph is NATTEN's
    neighborhood mask over a token layout of that shape, else None. Evaluated once
    per mask graph (the C side keeps the answer), on the CPU, with the program's
    torch-function and dispatch modes set aside."""
    torch = sys.modules["torch"]
    graph = getattr(mask, "graph", None)
    if graph is None or q_len != kv_len or any(n.op in ("get_attr", "call_module") for n in graph.nodes):
        return None
    shape = _spatial_shape(graph, q_len)
    if shape is None:
        return None
    from torch.utils._python_dispatch import _disable_current_modes

    with torch._C.DisableTorchFunction(), _disable_current_modes(), torch.no_grad():
        dims = [_one_dim(torch, mask.forward, shape, i) for i in range(len(shape))]
        if any(d is None for d in dims):
            return None
        # The whole mask is the product of its dimensions' (NATTEN's is separable):
        # checked on pseudo-random query/key pairs over the whole layout.
        n = 4096
        index = torch.arange(n, dtype=torch.int64)
        qi = (index * 2654435761 + 12345) % q_len
        ki = (index * 40503 + qi * 97 + 7) % kv_len
        zero = torch.zeros((), dtype=torch.int64)
        seen = mask.forward(zero, zero, qi, ki).expand(n).to(torch.bool)
        expected = torch.ones(n, dtype=torch.bool)
        place = q_len
        for extent, (kernel, stride, dilation, causal) in zip(shape, dims):
            place //= extent
            q, k = (qi // place) % extent, (ki // place) % extent
            expected &= _na_1d(torch, q, k, extent, kernel, stride, dilation, causal)
        if not bool((seen == expected).all()):
            return None
    return (shape,) + tuple(tuple(d[j] for d in dims) for j in range(4))
