# The bootstrap, part 8: the import finder that wraps each target module the moment
# it has finished executing, and the start: the finder first on sys.meta_path, the
# report at exit, and whatever was imported before. Compiled apart, filed as
# importlib's own code ("<frozen importlib._bootstrap_external>"): CPython removes
# importlib's frames from an import's traceback, so a module that fails to import
# shows no frame of the counter's (filed so at compile time: no code.replace, no
# __code__ set, which the program's audit hooks would see).


class NaflopsFinder:
    def find_spec(self, name, path=None, target=None):
        if name not in targets and name not in ("torch", "natten", dynamo_config, dynamo_misc, dynamo_functions, export_trace, aot_runtime, flex_module) and (
            step_target is None or name != step_target[0]
        ):
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

        # A builtin: exec_module(module), then after_exec(name, module). No frame of
        # ours under the module's own code (its stack, warnings, tracebacks are plain's).
        exec_and_wrap = _c["exec_then"](exec_module, name, after_exec)
        try:
            spec.loader.exec_module = exec_and_wrap
        except Exception:
            pass
        return spec


def after_exec(name, module):
    """The counter's part for a found module, once it executed (called from C: no
    frame of ours is on the stack while the module itself runs)."""
    try:
        if name == "torch":
            torch_ready(module)
        elif name in (dynamo_config, export_trace):
            register_logging(module)
        elif name == dynamo_misc:
            route_to_root(module)
        elif name == dynamo_functions:
            if state["hook_calls"]:
                route_functions(module)
        elif name == aot_runtime:
            run_compiled(module)
        elif name == flex_module:
            flex_ready(module)
        else:
            wrap_module(module)
            if name == "natten":
                natten_ready(module)
        if step_target is not None and name == step_target[0]:
            wrap_step(module)
    except Exception as e:  # never let the counter break an import
        _c["failed"]("%s: %r" % (module.__name__, e))



if not _c["at_exit"]():
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
if flex_module in sys.modules:
    flex_ready(sys.modules[flex_module])
if step_target is not None and step_target[0] in sys.modules:
    wrap_step(sys.modules[step_target[0]])
