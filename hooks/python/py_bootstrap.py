# Run once by libnaflops.so (py_bootstrap_side.c), as the concatenation of
# py_bootstrap.py, py_bootstrap_dynamo.py, py_bootstrap_traced.py,
# py_bootstrap_wrap.py, py_bootstrap_step.py, py_bootstrap_aot.py,
# py_bootstrap_flex.py and py_bootstrap_finder.py (in that order; the Makefile
# embeds them as one C string) in a private globals dict, never a module's: no name
# reaches the program. Run inside the first "import" audit event for a natten
# module or for torch. `_c` holds the C side:
#   targets() -> {module: [(function, index)]}
#   make(original, index, parameter_names, n_positional) -> (hot, token, roles) or None
#   begin(token, *described_args), mark(token), end(token, *grad_outputs): the
#       compiled path (below); backward(order): a backward pass of an entry;
#   set_torch(torch, backward_hook, multi_grad_hook, nested_parts, has_tangent): what
#       C needs from torch and from here;
#   set_version(str), failed(str), finish(), at_exit() (the report at the
#       interpreter's end, from C; False: use atexit), torch_ready(version),
#   natten_ready(version): natten has finished importing (says a release the
#       target table does not know);
#   step_target() -> (module, qualname) or None, step_make(original) -> the
#       builtin a step function's wrapper calls, step_failed(str): NAFLOPS_STEP;
#   aot_runner(original, backward_plan) -> AOTAutograd's runner with recompute
#       plans (py_aot.c), or None;
#   flex_kernel(original, is_backward, natten_mask, GraphModule) -> a kernel of
#       torch's flex_attention op that counts NATTEN's Flex calls in exported
#       programs (py_flex.c), or None.
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

targets = _c["targets"]()
make = _c["make"]
begin, mark, end, backward = _c["begin"], _c["mark"], _c["end"], _c["backward"]
ours = (begin, mark, end, backward)
# hook_calls: count through the functions' own vectorcall slots (CPython 3.12+, no
# wrapper; py_call_hook.c), until the C side says it cannot.
state = {"version": None, "torch": False, "hook_calls": sys.version_info >= (3, 12)}
# hooked function -> (index, what make() gave, its twin); twins: Dynamo's traced
# wrapper for each, made when Dynamo first meets it.
hooked = {}
twins = {}
ours_made = set()  # every wrapper made (told apart from NATTEN's functions)
# original -> wrapper. Keyed by the function itself (hashed by identity), not by
# id(): id() is an audit event ("builtins.id") the program's own hooks would see
# once for every name of every natten module at each rescan.
wrapped = {}
function_type = type(lambda: None)
dynamo_config = "torch._dynamo.config"
dynamo_misc = "torch._dynamo.variables.misc"
dynamo_functions = "torch._dynamo.variables.functions"
export_trace = "torch.export._trace"
