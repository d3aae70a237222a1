# Run once by libnaflops.so, inside the first "import" audit event for a natten
# module or for torch. `_c` holds the C side:
#   targets() -> {module: [(function, index)]}
#   make(original, index, parameter_names, n_positional) -> (hot, token, roles) or None
#   begin(token, *described_args), mark(token), end(token, *grad_outputs): the
#       compiled path (below); backward(order): a backward pass of an entry;
#   set_torch(torch, backward_hook, multi_grad_hook, nested_parts, has_tangent): what
#       C needs from torch and from here;
#   set_version(str), failed(str), finish(), torch_ready(version),
#   natten_ready(version): natten has finished importing (says a release the
#       target table does not know).
#
# A sys.meta_path finder wraps each target module the moment it has finished
# executing, before any sibling can copy its functions with `from m import f`
# (natten/na2d.py does that with natten.functional, natten/backends/__init__.py
# with the Flex functions).
#
# Each wrapped function is a real Python function with the original's signature,
# name, module, docstring and attributes (`inspect.isfunction`, weakrefs, attribute
# setting, `mock.create_autospec`, pickling by name behave as for the original).
# Its body has two paths:
#   eager: one call into C with every parameter bound (`hot`), which reads the
#       shapes, calls the original and counts;
#   under Dynamo (torch.compile, torch.export): `torch.compiler.is_dynamo_compiling()`
#       is a constant True while Dynamo traces, so Dynamo traces the original
#       exactly as it would without the preload, plus calls to three C builtins that
#       are registered as `torch._dynamo.config.reorderable_logging_functions`:
#       Dynamo adds no graph op and no graph break for them and calls them after
#       the compiled graph, on every run, with the shapes (compile-time constants)
#       it saw. So compiled NATTEN calls are counted each time they run, and tracing
#       counts nothing. Under torch.export they are dropped (nothing runs).
import sys


def _naflops_install(_c):
    targets = _c["targets"]()
    make = _c["make"]
    begin, mark, end, backward = _c["begin"], _c["mark"], _c["end"], _c["backward"]
    ours = (begin, mark, end, backward)
    state = {"version": None, "torch": False}
    wrapped = {}  # id(original) -> (original, wrapper)
    dynamo_config = "torch._dynamo.config"
    dynamo_misc = "torch._dynamo.variables.misc"
    export_trace = "torch.export._trace"

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
        _c["set_torch"](torch, backward_hook, multi_grad_hook, nested_parts, has_tangent)
        config = sys.modules.get(dynamo_config)
        if config is not None:
            register_logging(config)
        if export_trace in sys.modules:
            register_logging(sys.modules[export_trace])
        misc = sys.modules.get(dynamo_misc)
        if misc is not None:
            route_to_root(misc)

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
                root = getattr(getattr(tx, "output", None), "root_tx", None)
                if root is not None:
                    tx = root
            return call(self, tx, *args, **kwargs)

        call_function._naflops = True
        for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
            setattr(call_function, attr, getattr(call, attr, None))
        cls.call_function = call_function

    def wrap_module(module):
        rows = targets.get(getattr(module, "__name__", None))
        if not rows:
            return
        if state["version"] is None:
            state["version"] = natten_version()
            _c["set_version"](state["version"])
        set_torch()
        paths = (compiling(), reorderable())  # the same for every function
        for function, index in rows:
            original = module.__dict__.get(function)
            already = wrapper_of(original)
            if already is not None:  # another name for a function already wrapped (0.15: natten1dqk = na1d_qk)
                setattr(module, function, already)
                continue
            if not _is_function(original):
                continue
            fn = dress(original, index, *paths)
            if fn is not None:
                wrapped[id(original)] = (original, fn)
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
        found = wrapped.get(id(original))
        return found[1] if found is not None and found[0] is original else None

    def natten_ready(module):
        """natten has finished importing: its version is known whether or not any
        entry point was wrapped, and a release the table does not know is said."""
        version = state["version"] or natten_version() or str(getattr(module, "__version__", "") or "")
        if version != state["version"]:
            state["version"] = version
            _c["set_version"](version)
        rebind_aliases()
        _c["natten_ready"](version)

    def _is_function(f):
        """A plain function, and not one of our wrappers (a module run again)."""
        return type(f).__name__ == "function" and "_naflops_hot" not in getattr(f, "__globals__", {})

    def dress(original, index, is_compiling, can_reorder):
        """A real function with original's signature whose body calls C."""
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
        code = compile(source, original.__code__.co_filename, "exec")
        fn_code = next(c for c in code.co_consts if hasattr(c, "co_code"))
        # Tracebacks and inspect point at the original's definition.
        replace = {"co_firstlineno": original.__code__.co_firstlineno}
        if hasattr(fn_code, "co_qualname"):
            replace["co_qualname"] = original.__code__.co_qualname
        fn_code = fn_code.replace(**replace)
        scope = {  # no __name__: Dynamo would import a module by that name
            "__builtins__": __builtins__,
            "_naflops_compiling": is_compiling,
            "_naflops_describe": describe,
            "_naflops_grads": grads,
            "_naflops_begin": begin,
            "_naflops_mark": mark,
            "_naflops_end": end,
            "_naflops_original": original,
            "_naflops_hot": hot,
        }
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

    def describe(roles, args):
        """Traced by Dynamo, never run eagerly: the arguments the rules read, with
        values Dynamo knows while tracing (shapes, dtype, device, kernel sizes), so
        that begin() carries constants and adds nothing to the graph. A tensor whose
        shape is symbolic (dynamic shapes), or whose values the rules read
        (variable-length sequence lengths), is passed as the tensor; a symbolic int
        (a kernel size Dynamo made dynamic) as "?": that call is said, not counted."""
        import torch

        described = []
        for index, values in roles:
            a = args[index]
            if a is None:
                described.append(None)
            elif isinstance(a, torch.Tensor):
                static = not values
                for d in a.shape:
                    if d.__class__ is not int:  # a SymInt says int to type()
                        static = False
                if static:
                    described += ["T", a.dtype, a.device, len(a.shape), *a.shape]
                else:
                    described += ["t", a]
            elif isinstance(a, (tuple, list)):
                known = True
                for x in a:
                    if x.__class__ not in (int, bool):
                        known = False
                described += ["S", len(a), *a] if known else ["?"]
            elif a.__class__ in (int, bool, float, str):
                described.append(a)
            else:
                described.append("?")
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

    def backward_hook(order):
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

    def torch_ready(module):
        set_torch()
        version = getattr(module, "__version__", None)
        _c["torch_ready"](str(version) if version is not None else "")

    class NaflopsFinder:
        def find_spec(self, name, path=None, target=None):
            if name not in targets and name not in ("torch", "natten", dynamo_config, dynamo_misc, export_trace):
                return None
            for finder in sys.meta_path:
                if finder is self:
                    continue
                find = getattr(finder, "find_spec", None)
                if find is None:
                    continue
                spec = find(name, path, target)
                if spec is not None:
                    break
            else:
                return None
            exec_module = getattr(spec.loader, "exec_module", None)
            if exec_module is None:
                return spec

            def exec_and_wrap(module, _exec=exec_module):
                _exec(module)
                try:
                    if name == "torch":
                        torch_ready(module)
                    elif name in (dynamo_config, export_trace):
                        register_logging(module)
                    elif name == dynamo_misc:
                        route_to_root(module)
                    else:
                        wrap_module(module)
                        if name == "natten":
                            natten_ready(module)
                except Exception as e:  # never let the counter break an import
                    _c["failed"]("%s: %r" % (module.__name__, e))

            exec_and_wrap.__code__ = importlib_code(exec_and_wrap.__code__)
            try:
                spec.loader.exec_module = exec_and_wrap
            except Exception:
                pass
            return spec

    def importlib_code(code):
        """code, filed as importlib's: CPython removes importlib's frames from an
        import's traceback (up to _call_with_frames_removed), so a module that fails
        to import shows no frame of the counter's."""
        return code.replace(co_filename="<frozen importlib._bootstrap_external>")

    NaflopsFinder.find_spec.__code__ = importlib_code(NaflopsFinder.find_spec.__code__)

    import atexit

    atexit.register(_c["finish"])
    sys.meta_path.insert(0, NaflopsFinder())
    for name in targets:  # loaded before the finder was in place
        if name in sys.modules:
            wrap_module(sys.modules[name])
    if "natten" in sys.modules and "natten" not in targets:
        natten_ready(sys.modules["natten"])
    if "torch" in sys.modules and hasattr(sys.modules["torch"], "__version__"):
        torch_ready(sys.modules["torch"])


_naflops_install(_c)
del _naflops_install
