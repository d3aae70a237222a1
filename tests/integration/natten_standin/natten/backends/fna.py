"""The stand-in's CUTLASS FNA backend: cutlass_fna_generic, as in NATTEN 0.21.7's
natten/backends/fna.py, reaching torch.ops.natten.na{1,2,3}d_forward (its autograd
calls natten::na*d_backward)."""
from typing import Optional

import torch
from torch import Tensor

import natten._libnatten  # noqa: F401  (registers the natten:: ops)

FORWARD_OPS = {1: torch.ops.natten.na1d_forward, 2: torch.ops.natten.na2d_forward,
               3: torch.ops.natten.na3d_forward}


def _tuple(x, n, cast=int):
    return [cast(x)] * n if isinstance(x, (int, bool)) else [cast(v) for v in x]


def cutlass_fna_generic(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    kernel_size,
    stride=1,
    dilation=1,
    is_causal: Optional[bool] = False,
    scale: Optional[float] = None,
    q_tile_shape=None,
    kv_tile_shape=None,
    backward_q_tile_shape=None,
    backward_kv_tile_shape=None,
    backward_kv_splits=None,
    backward_use_pt_reduction: bool = False,
    return_lse: bool = False,
):
    na_dim = query.dim() - 3
    kernel_size = _tuple(kernel_size, na_dim)
    stride = _tuple(stride, na_dim)
    dilation = _tuple(dilation, na_dim)
    is_causal = _tuple(bool(is_causal) if is_causal is not None else False, na_dim, bool) \
        if not isinstance(is_causal, (tuple, list)) else [bool(c) for c in is_causal]
    scale = scale or query.shape[-1] ** -0.5
    tile = [8] * na_dim
    output, lse = FORWARD_OPS[na_dim](query, key, value, kernel_size, stride, dilation, is_causal, scale,
                                      list(q_tile_shape or tile), list(kv_tile_shape or tile))
    if return_lse:
        return output, lse
    return output
