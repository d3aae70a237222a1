# The bootstrap, part 5: NAFLOPS_STEP's function (module:qualname, or
# torch.autograd:backward for NAFLOPS_STEP=backward). Once its module has run, the
# function (or a class's method) gets a wrapper made as NATTEN's are: a real
# function with the original's signature, *args and **kwargs included, whose eager
# body hands the call to C (`step`), which calls the original and ends a step when
# the outermost call returns. Under Dynamo it is the original, traced as it is.
step_target = _c["step_target"]()


def wrap_step(module):
    if step_target is None or getattr(module, "__name__", None) != step_target[0]:
        return
    set_torch()
    owner, parts = module, step_target[1].split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part, None)
        if owner is None:
            _c["step_failed"]("%s has no %s" % (module.__name__, ".".join(parts[:-1])))
            return
    name = parts[-1]
    namespace = getattr(owner, "__dict__", {})
    original = namespace.get(name)
    already = wrapper_of(original)
    if already is not None:
        setattr(owner, name, already)
        return
    if not _is_function(original):
        what = "nothing" if original is None else "a %s" % type(original).__name__
        _c["step_failed"]("%s is %s, not a Python function" % (step_target[1], what))
        return
    fn = dress_step(original, compiling())
    if fn is None:
        _c["step_failed"]("the signature of %s cannot be mirrored" % step_target[1])
        return
    wrapped[original] = fn
    setattr(owner, name, fn)


def dress_step(original, is_compiling):
    import inspect

    try:
        params = list(inspect.signature(original, follow_wrapped=False).parameters.values())
    except (TypeError, ValueError):
        return None
    P = inspect.Parameter
    spec, call = [], []
    for i, p in enumerate(params):
        if p.kind == P.KEYWORD_ONLY and not any(s.startswith("*") for s in spec):
            spec.append("*")
        if p.kind == P.VAR_POSITIONAL:
            spec.append("*" + p.name)
            call.append("*" + p.name)
        elif p.kind == P.VAR_KEYWORD:
            spec.append("**" + p.name)
            call.append("**" + p.name)
        elif p.kind == P.KEYWORD_ONLY:
            spec.append(p.name)
            call.append("%s=%s" % (p.name, p.name))
        else:
            spec.append(p.name)
            call.append(p.name)
        if p.kind == P.POSITIONAL_ONLY and (i + 1 == len(params) or params[i + 1].kind != P.POSITIONAL_ONLY):
            spec.append("/")
    args = ", ".join(call)
    lines = (
        "def %s(%s):" % (original.__name__, ", ".join(spec)),
        "    if _naflops_compiling():",
        "        return _naflops_original(%s)" % args,
        "    return _naflops_step(%s)" % args,
    )
    scope = {
        "__builtins__": __builtins__,
        "_naflops_compiling": is_compiling,
        "_naflops_original": original,
        "_naflops_step": _c["step_make"](original),
        "_naflops_hot": None,  # marks it as the counter's (_is_function)
    }
    return build(original, chr(10).join(lines) + chr(10), scope)
