"""A stand-in for NATTEN 0.20+'s GPU path, on the CPU (naflops tests only).

On a GPU, NATTEN 0.21.7's natten.functional.na2d calls neighborhood_attention_generic,
which calls natten.backends.fna.cutlass_fna_generic, which reaches libnatten through
the torch.library custom ops natten::na2d_forward / natten::na2d_backward
(natten/_libnatten/torch_wrappers.py), with fake kernels and autograd: Dynamo captures
them whole (no graph break at the NA call) and exported programs run them. NATTEN from
PyPI on a machine without a GPU has no libnatten (Flex backend only, which
graph-breaks on the CPU), so the tests use this package, put first on PYTHONPATH: the
same call path, the same op names and schemas, a CPU implementation."""
__version__ = "0.21.99"
from . import functional  # noqa: E402,F401
