# Run once by libnaflops.so, inside the first "import" audit event for a natten
# module (or for torch, when the whole model is counted). `_c` holds the C side:
# targets() -> {module: [(function, index)]}, make(original, index,
# parameter_names) -> wrapper or None, set_version(str), failed(str),
# torch_ready(version) once torch has finished importing.
#
# A sys.meta_path finder wraps each target module the moment it has finished
# executing, before any sibling can copy its functions with `from m import f`
# (natten/na2d.py does that with natten.functional, natten/backends/__init__.py
# with the Flex functions).
import sys
from types import MethodType


def _naflops_install(_c):
    targets = _c["targets"]()
    make = _c["make"]
    state = {"version": None}

    def natten_version():
        try:
            from importlib.metadata import version

            return version("natten")
        except Exception:
            return ""

    def wrap_module(module):
        rows = targets.get(getattr(module, "__name__", None))
        if not rows:
            return
        if state["version"] is None:
            state["version"] = natten_version()
            _c["set_version"](state["version"])
        import inspect

        for function, index in rows:
            original = module.__dict__.get(function)
            if original is None or not callable(original):
                continue
            try:
                params = tuple(inspect.signature(original).parameters)
            except (TypeError, ValueError):
                params = ()
            call = make(original, index, params)
            if call is not None:
                setattr(module, function, dress(original, call))

    def dress(original, call):
        """An object that calls the C wrapper `call` and otherwise looks like
        `original`: name, qualname, module, doc, signature (through __wrapped__),
        repr, method binding, pickling by reference. `__call__` is the C builtin
        itself, so no Python frame is added to the call or to tracebacks."""
        qualname = getattr(original, "__qualname__", getattr(original, "__name__", "?"))
        ns = {
            "__slots__": (),
            "__call__": call,
            "__wrapped__": staticmethod(original),  # a plain function here would bind
            "__doc__": getattr(original, "__doc__", None),
            "__module__": getattr(original, "__module__", None),
            "__name__": getattr(original, "__name__", "?"),
            "__reduce__": lambda self: qualname,
            "__repr__": lambda self: repr(original),
            "__getattr__": lambda self, name: getattr(original, name),
            "__get__": lambda self, obj, cls=None: self if obj is None else MethodType(self, obj),
        }
        cls = type("function", (), ns)
        cls.__qualname__ = "naflops." + qualname
        return cls()

    def torch_ready(module):
        version = getattr(module, "__version__", None)
        _c["torch_ready"](str(version) if version is not None else "")

    class NaflopsFinder:
        def find_spec(self, name, path=None, target=None):
            if name not in targets and name != "torch":
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
                    else:
                        wrap_module(module)
                except Exception as e:  # never let the counter break an import
                    _c["failed"]("%s: %r" % (module.__name__, e))

            try:
                spec.loader.exec_module = exec_and_wrap
            except Exception:
                pass
            return spec

    import atexit

    atexit.register(_c["finish"])
    sys.meta_path.insert(0, NaflopsFinder())
    for name in targets:  # loaded before the finder was in place
        if name in sys.modules:
            wrap_module(sys.modules[name])
    if "torch" in sys.modules and hasattr(sys.modules["torch"], "__version__"):
        torch_ready(sys.modules["torch"])


_naflops_install(_c)
del _naflops_install
