"""The stand-in's libnatten: NATTEN 0.21.7's CUTLASS FNA ops under their real names
and schemas (natten/_libnatten/torch_wrappers.py: natten::na{1,2,3}d_forward and
natten::na{1,2,3}d_backward), as torch.library custom ops with a CPU implementation,
fake kernels, and autograd (forward -> natten::na*d_backward)."""
from typing import Optional, Tuple

import torch
from torch import Tensor


def _flat(t):
    # [B, *spatial, H, D] -> [B, H, tokens, D]
    return t.reshape(t.shape[0], -1, t.shape[-2], t.shape[-1]).transpose(1, 2)


def _unflat(t, like):
    return t.transpose(1, 2).reshape(like.shape).contiguous()


# The stand-in's math: dense, unnormalised attention over the flattened tokens (any
# deterministic function will do: the rule counts NATTEN's GEMMs from the shapes).
# Its matrix products are aten::bmm calls inside the NATTEN op: the whole-model count
# must leave them to NATTEN's rule.
def _forward(query, key, value, scale):
    q, k, v = _flat(query), _flat(key), _flat(value)
    out = _unflat((q @ k.transpose(-1, -2) * scale) @ v, value.new_empty(*query.shape[:-1], value.shape[-1]))
    lse = torch.zeros(query.shape[:-1], dtype=torch.float32, device=query.device)
    return out, lse


def _backward(query, key, value, d_output, scale):
    G, Q, K, V = _flat(d_output), _flat(query), _flat(key), _flat(value)
    A = Q @ K.transpose(-1, -2) * scale
    dA = G @ V.transpose(-1, -2) * scale
    return _unflat(dA @ K, query), _unflat(dA.transpose(-1, -2) @ Q, key), _unflat(A.transpose(-1, -2) @ G, value)


def make_fna_ops(na_dim):
    @torch.library.custom_op(f"natten::na{na_dim}d_forward", mutates_args=())
    def fna_forward_torch_op(
        query: Tensor,
        key: Tensor,
        value: Tensor,
        kernel_size: list[int],
        stride: list[int],
        dilation: list[int],
        is_causal: list[bool],
        scale: float,
        q_tile_shape: list[int],
        kv_tile_shape: list[int],
    ) -> Tuple[Tensor, Tensor]:
        return _forward(query.contiguous(), key.contiguous(), value.contiguous(), scale)

    @torch.library.register_fake(f"natten::na{na_dim}d_forward")
    def fna_forward_torch_fake_op(query, key, value, kernel_size, stride, dilation, is_causal, scale,
                                  q_tile_shape, kv_tile_shape):
        output = torch.empty([s for s in query.shape[:-1]] + [value.shape[-1]], device=query.device,
                             dtype=query.dtype)
        logsumexp = torch.empty(query.shape[:-1], dtype=torch.float32, device=query.device)
        return output, logsumexp

    @torch.library.custom_op(f"natten::na{na_dim}d_backward", mutates_args=())
    def fna_backward_torch_op(
        query: Tensor,
        key: Tensor,
        value: Tensor,
        output: Tensor,
        d_output: Tensor,
        logsumexp: Tensor,
        kernel_size: list[int],
        stride: list[int],
        dilation: list[int],
        is_causal: list[bool],
        scale: float,
        q_tile_shape: list[int],
        kv_tile_shape: list[int],
        num_kv_splits: Optional[list[int]],
        compute_delta_with_pt: bool,
        deterministic: bool,
    ) -> Tuple[Tensor, Tensor, Tensor]:
        return _backward(query, key, value, d_output.contiguous(), scale)

    @torch.library.register_fake(f"natten::na{na_dim}d_backward")
    def fna_backward_torch_fake_op(query, key, value, output, d_output, logsumexp, kernel_size, stride,
                                   dilation, is_causal, scale, q_tile_shape, kv_tile_shape, num_kv_splits,
                                   compute_delta_with_pt, deterministic):
        return torch.empty_like(query), torch.empty_like(key), torch.empty_like(value)

    def setup_context(ctx, inputs, output):
        query, key, value, kernel_size, stride, dilation, is_causal, scale, _, _ = inputs
        out, lse = output
        ctx.save_for_backward(query, key, value, out, lse)
        ctx.args = (kernel_size, stride, dilation, is_causal, scale)

    def backward(ctx, grad_out, grad_lse):
        query, key, value, out, lse = ctx.saved_tensors
        kernel_size, stride, dilation, is_causal, scale = ctx.args
        tile = [8] * na_dim
        dq, dk, dv = BACKWARD[na_dim](query, key, value, out, grad_out.contiguous(), lse, kernel_size,
                                      stride, dilation, is_causal, scale, tile, tile, None, False, False)
        return dq, dk, dv, None, None, None, None, None, None, None

    fna_forward_torch_op.register_autograd(backward, setup_context=setup_context)
    return fna_forward_torch_op, fna_backward_torch_op


BACKWARD = {}
na1d_forward, na1d_backward = make_fna_ops(1)
na2d_forward, na2d_backward = make_fna_ops(2)
na3d_forward, na3d_backward = make_fna_ops(3)
BACKWARD.update({1: torch.ops.natten.na1d_backward, 2: torch.ops.natten.na2d_backward,
                 3: torch.ops.natten.na3d_backward})
