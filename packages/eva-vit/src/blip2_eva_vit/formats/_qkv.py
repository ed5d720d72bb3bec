"""Fused qkv weights <-> our per-head q/k/v weights (shared by the layouts that fuse them)."""

from __future__ import annotations

import numpy as np


def split_heads(weight_in_out: np.ndarray, num_heads: int) -> np.ndarray:
    """[D_in, H*d] (paddle Linear layout) -> [H, D_in, d]."""
    d_in, d_out = weight_in_out.shape
    return weight_in_out.reshape(d_in, num_heads, d_out // num_heads).transpose(1, 0, 2)


def merge_heads(weight_heads: np.ndarray) -> np.ndarray:
    """[H, D_in, d] -> [D_in, H*d]."""
    heads, d_in, head_dim = weight_heads.shape
    return weight_heads.transpose(1, 0, 2).reshape(d_in, heads * head_dim)


def unfuse_qkv(prefix: str, qkv_in_out: np.ndarray, qkv_bias: np.ndarray | None, num_heads: int) -> dict:
    """A fused [D, 3D] qkv weight (and optional [3D] bias) -> our ``q/k/v_weight`` and ``q/v_bias``.

    The key third of a fused bias is dropped: it adds the same amount to every score of a query
    row, which softmax ignores.
    """
    width = qkv_in_out.shape[0]
    q, k, v = (qkv_in_out[:, i * width : (i + 1) * width] for i in range(3))
    out = {
        f"{prefix}q_weight": split_heads(q, num_heads),
        f"{prefix}k_weight": split_heads(k, num_heads),
        f"{prefix}v_weight": split_heads(v, num_heads),
    }
    if qkv_bias is not None:
        out[f"{prefix}q_bias"] = qkv_bias[:width]
        out[f"{prefix}v_bias"] = qkv_bias[2 * width :]
    return out


def fuse_qkv(native: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Our per-head weights under ``prefix`` -> a fused [D, 3D] weight and a [3D] bias (zero key third)."""
    weight = np.concatenate([merge_heads(native[prefix + n]) for n in ("q_weight", "k_weight", "v_weight")], 1)
    if prefix + "q_bias" not in native:
        return weight, None
    q_bias = native[prefix + "q_bias"]
    return weight, np.concatenate([q_bias, np.zeros_like(q_bias), native[prefix + "v_bias"]])
