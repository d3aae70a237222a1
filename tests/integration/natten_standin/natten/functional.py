"""The stand-in's natten.functional: na2d -> neighborhood_attention_generic ->
natten.backends.fna.cutlass_fna_generic -> torch.ops.natten.na2d_forward, NATTEN
0.21.7's call path on a GPU with the CUTLASS FNA backend."""
from typing import Optional

from torch import Tensor

from natten.backends.fna import cutlass_fna_generic


def neighborhood_attention_generic(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    kernel_size,
    stride=1,
    dilation=1,
    is_causal=False,
    scale: Optional[float] = None,
    additional_keys: Optional[Tensor] = None,
    additional_values: Optional[Tensor] = None,
    attention_kwargs: Optional[dict] = None,
    backend: Optional[str] = None,
    q_tile_shape=None,
    kv_tile_shape=None,
    backward_q_tile_shape=None,
    backward_kv_tile_shape=None,
    backward_kv_splits=None,
    backward_use_pt_reduction: bool = False,
    run_persistent_kernel: bool = True,
    kernel_schedule=None,
    torch_compile: bool = False,
    return_lse: bool = False,
):
    return cutlass_fna_generic(query, key, value, kernel_size=kernel_size, stride=stride, dilation=dilation,
                               is_causal=is_causal, scale=scale, q_tile_shape=q_tile_shape,
                               kv_tile_shape=kv_tile_shape, return_lse=return_lse)


def na2d(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    kernel_size,
    stride=1,
    dilation=1,
    is_causal=False,
    scale: Optional[float] = None,
    additional_keys: Optional[Tensor] = None,
    additional_values: Optional[Tensor] = None,
    attention_kwargs: Optional[dict] = None,
    backend: Optional[str] = None,
    q_tile_shape=None,
    kv_tile_shape=None,
    backward_q_tile_shape=None,
    backward_kv_tile_shape=None,
    backward_kv_splits=None,
    backward_use_pt_reduction: bool = False,
    run_persistent_kernel: bool = True,
    kernel_schedule=None,
    torch_compile: bool = False,
    return_lse: bool = False,
):
    return neighborhood_attention_generic(query, key, value, kernel_size=kernel_size, stride=stride,
                                          dilation=dilation, is_causal=is_causal, scale=scale,
                                          additional_keys=additional_keys, additional_values=additional_values,
                                          backend=backend, q_tile_shape=q_tile_shape, kv_tile_shape=kv_tile_shape,
                                          return_lse=return_lse)
