"""A stand-in for NATTEN 0.20+'s GPU path, on the CPU (naflops tests only).

On a GPU, NATTEN 0.20+'s natten.functional.na2d reaches libnatten through
torch.library custom ops with fake kernels and autograd
(natten/_libnatten/torch_wrappers.py), which Dynamo captures whole: a compiled model
has no graph break at the NA call. NATTEN from PyPI on a machine without a GPU has
no libnatten (Flex backend only, which graph-breaks on the CPU), so the tests use
this package, put first on PYTHONPATH, to check that the preload keeps such a call
free of graph breaks (fullgraph=True, torch.export strict) and counts every run."""
__version__ = "0.21.99"
from . import functional  # noqa: E402,F401
