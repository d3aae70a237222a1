# The bootstrap, part 4: making the wrappers. dress() builds a real Python function
# with the original's signature and attributes whose body has the eager and the
# compiled path; wrap_module() puts one on each target of a module that finished
# executing, and every other name bound to the same original gets it too.


def natten_version():
    try:
        from importlib.metadata import version

        return version("natten")
    except Exception:
        return ""


def set_torch():
    if state["torch"]:
        return
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "Tensor"):
        return
    state["torch"] = True
    for helper in (backward_hook, multi_grad_hook, nested_parts, has_tangent, backward_plan):
        skip_frame(_c["code_of"](helper), recursive=True)  # (C reads it: no audit event)
    _c["set_torch"](torch, backward_hook, multi_grad_hook, nested_parts, has_tangent)
    config = sys.modules.get(dynamo_config)
    if config is not None:
        register_logging(config)
    if export_trace in sys.modules:
        register_logging(sys.modules[export_trace])
    misc = sys.modules.get(dynamo_misc)
    if misc is not None:
        route_to_root(misc)
    functions = sys.modules.get(dynamo_functions)
    if functions is not None and state["hook_calls"]:
        route_functions(functions)
    if aot_runtime in sys.modules:
        run_compiled(sys.modules[aot_runtime])


def torch_ready(module):
    set_torch()
    version = getattr(module, "__version__", None)
    _c["torch_ready"](str(version) if version is not None else "")


def natten_ready(module):
    """natten has finished importing: its version is known whether or not any
    entry point was wrapped, and a release the table does not know is said."""
    own = str(getattr(module, "__version__", "") or "")
    version = state["version"] or (state["hook_calls"] and own) or natten_version() or own
    if version != state["version"]:
        state["version"] = version
        _c["set_version"](version)
    rebind_aliases()
    _c["natten_ready"](version)


def wrap_module(module):
    rows = targets.get(getattr(module, "__name__", None))
    if not rows:
        return
    if state["version"] is None and not state["hook_calls"]:
        # 3.12+: the version waits for natten_ready (natten.__version__): reading
        # the installed metadata now opens files the program's audit hooks would see
        state["version"] = natten_version()
        _c["set_version"](state["version"])
    set_torch()
    paths = (compiling(), reorderable())  # the same for every function
    for function, index in rows:
        original = module.__dict__.get(function)
        if _is_function(original) and (original in hooked or hook(original, index)):
            continue  # counted through its own vectorcall slot (3.12+): nothing replaced
        already = wrapper_of(original)
        if already is not None:  # another name for a function already wrapped (0.15: natten1dqk = na1d_qk)
            setattr(module, function, already)
            continue
        if not _is_function(original):
            continue
        fn = dress(original, index, *paths)
        if fn is not None:
            wrapped[original] = fn
            ours_made.add(fn)
            setattr(module, function, fn)
        else:  # a signature the wrapper cannot mirror (*args, **kwargs): said once
            _c["failed"]("%s.%s: its signature cannot be mirrored" % (module.__name__, function))
    rebind_aliases()


def rebind_aliases():
    """Every other name a loaded natten module binds to a wrapped original (an
    alias the table does not list, a copy taken before the wrap) gets the wrapper,
    so that a call through any name is counted and `a is b` holds as it did."""
    for name, module in list(sys.modules.items()):
        if name != "natten" and not name.startswith("natten."):
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attr, value in list(namespace.items()):
            fn = wrapper_of(value)
            if fn is not None:
                namespace[attr] = fn


def wrapper_of(original):
    """The wrapper made for this very function object, or None."""
    return wrapped.get(original) if type(original) is function_type else None


def _is_function(f):
    """A plain function, and not one of our wrappers (a module run again)."""
    return type(f) is function_type and f not in ours_made


def hook(original, index):
    """Python 3.12+: original counted through its own vectorcall slot, with no frame
    of ours and nothing replaced (py_call_hook.c). False where this CPython cannot:
    the caller wraps instead."""
    if not state["hook_calls"]:
        return False
    # From the code object, which C reads (a function's __code__ read in Python is an
    # audit event the program's hooks would see: inspect.signature reads it).
    code = _c["code_of"](original)
    if code is None or code.co_flags & 0x0C:  # CO_VARARGS, CO_VARKEYWORDS
        return False
    npos, nkw = code.co_argcount, code.co_kwonlyargcount
    made = make(original, index, tuple(code.co_varnames[:npos + nkw]), npos)
    if made is None:
        return False
    twin = _c["hook"](original, made[1], code.co_posonlyargcount)
    if twin is None:
        state["hook_calls"] = False  # this CPython cannot: every function is wrapped
        return False
    hooked[original] = (index, made, twin)
    return True


def traced_twin(fn):
    """What Dynamo traces for a hooked function: the wrapper dress() would have made,
    made the first time Dynamo meets the function (an eager program makes none). Its
    compiled path calls the twin, which runs the original's code unhooked."""
    twin = twins.get(fn)
    if twin is None:
        index, made, runs = hooked[fn]
        twin = dress(fn, index, compiling(), reorderable(), made, runs) or fn
        twins[fn] = twin
    return twin


def dress(original, index, is_compiling, can_reorder, made=None, runs=None):
    """A real function with original's signature whose body calls C. made: what
    make() gave for it already; runs: what its compiled path calls (original)."""
    import inspect

    try:
        params = list(inspect.signature(original, follow_wrapped=False).parameters.values())
    except (TypeError, ValueError):
        return None
    P = inspect.Parameter
    if any(p.kind in (P.VAR_POSITIONAL, P.VAR_KEYWORD) for p in params):
        return None
    positional = [p.name for p in params if p.kind != P.KEYWORD_ONLY]
    keyword = [p.name for p in params if p.kind == P.KEYWORD_ONLY]
    names = positional + keyword
    if made is None:
        made = make(original, index, tuple(names), len(positional))
    if made is None:
        return None
    hot, token, roles = made
    spec = []
    for i, p in enumerate(params):
        if p.kind == P.KEYWORD_ONLY and "*" not in spec:
            spec.append("*")
        spec.append(p.name)
        if p.kind == P.POSITIONAL_ONLY and (i + 1 == len(params) or params[i + 1].kind != P.POSITIONAL_ONLY):
            spec.append("/")
    bound = ", ".join(names)
    call = ", ".join(positional + ["%s=%s" % (k, k) for k in keyword])
    # The compiled path, traced by Dynamo only. The token and roles are literals
    # in this function's own code: a value passed in would be a frame input
    # that Dynamo may make symbolic, which its logging calls refuse.
    if not can_reorder:  # torch < 2.3: Dynamo would break the graph at our calls
        compiled = ("        return _naflops_original(%s)" % call,)
    elif roles is None:  # a backend marker
        compiled = ("        _naflops_mark(%d)" % token,
                    "        return _naflops_original(%s)" % call)
    else:
        compiled = (
            "        _naflops_begin(%d, *_naflops_describe(%r, (%s%s)))"
            % (token, roles, bound, "," if len(names) == 1 else ""),
            "        _naflops_out = _naflops_original(%s)" % call,
            "        _naflops_end(%d, *_naflops_grads(_naflops_out))" % token,
            "        return _naflops_out",
        )
    lines = (  # (no backslashes in this file: the Makefile embeds it as a C string)
        ("def %s(%s):" % (original.__name__, ", ".join(spec)),
         "    if _naflops_compiling():")
        + compiled
        + ("    return _naflops_hot(%s)" % bound,)
    )
    source = chr(10).join(lines) + chr(10)
    scope = {  # no __name__: Dynamo would import a module by that name
        "__builtins__": __builtins__,
        "_naflops_compiling": is_compiling,
        "_naflops_describe": describe,
        "_naflops_grads": grads,
        "_naflops_begin": begin,
        "_naflops_mark": mark,
        "_naflops_end": end,
        "_naflops_original": original if runs is None else runs,
        "_naflops_hot": hot,
    }
    return build(original, source, scope)


def build(original, source, scope):
    """The function source defines, run in scope, dressed as original: its code
    filed at original's file and definition line, its attributes original's."""
    code = compile(source, original.__code__.co_filename, "exec")
    fn_code = next(c for c in code.co_consts if hasattr(c, "co_code"))
    replace = {"co_firstlineno": original.__code__.co_firstlineno}
    if hasattr(fn_code, "co_qualname"):
        replace["co_qualname"] = original.__code__.co_qualname
    # Every instruction on the original's definition line, with no column (the
    # columns and lines would be this source's): where a traceback, a debugger
    # or Dynamo's user stack shows the wrapper's frame, it shows the def line.
    table = line_table(len(fn_code.co_code))
    if table is not None:
        replace["co_linetable"] = table
    fn_code = fn_code.replace(**replace)
    skip_frame(fn_code)
    import types

    fn = types.FunctionType(fn_code, scope, original.__name__, original.__defaults__, None)
    fn.__kwdefaults__ = original.__kwdefaults__
    for attr in ("__module__", "__qualname__", "__doc__", "__annotations__"):
        try:
            setattr(fn, attr, getattr(original, attr))
        except (AttributeError, TypeError):
            pass
    fn.__dict__.update(original.__dict__)
    fn.__wrapped__ = original
    return fn


def line_table(nbytes):
    """A location table putting each instruction of nbytes of bytecode on the
    first line: 3.11+ entries of kind 13 (line, no column), up to 8 code units
    each, line delta 0; 3.10 (offset delta, line delta) pairs. None for another
    format."""
    table = []
    if sys.version_info >= (3, 11):
        units = nbytes // 2
        while units > 0:
            n = min(units, 8)
            table += [0x80 | (13 << 3) | (n - 1), 0]
            units -= n
    elif sys.version_info >= (3, 10):
        while nbytes > 0:
            n = min(nbytes, 254)
            table += [n, 0]
            nbytes -= n
    else:
        return None
    return bytes(table)
