"""Layers both encoders build with."""

from __future__ import annotations

from ._paddle import nn, paddle


class LayerNormFp32(nn.LayerNorm):
    """LayerNorm that computes in float32 whatever the input dtype (fp16 statistics overflow)."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if x.dtype == paddle.float32:
            return super().forward(x)
        return super().forward(x.astype(paddle.float32)).astype(x.dtype)
