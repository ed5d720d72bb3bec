"""EVA-ViT-g image encoder (as used by BLIP-2) in PaddlePaddle."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from blip2_encoder_common import LayerNormFp32

from .config import EvaVitConfig


@dataclass
class EvaVitOutput:
    """``last_hidden_state``: [batch, 1 + patches, hidden] (cls first), without any final norm.

    ``hidden_states``: the embeddings and the output of every block (``num_layers + 1`` tensors),
    only when asked for.
    """

    last_hidden_state: paddle.Tensor
    hidden_states: tuple[paddle.Tensor, ...] | None = None


class DropPath(nn.Layer):
    """Stochastic depth: drops a sample's whole residual branch."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        mask = paddle.bernoulli(paddle.full([x.shape[0]] + [1] * (x.ndim - 1), keep, dtype=x.dtype))
        return x * mask / keep


class Attention(nn.Layer):
    """Multi-head self-attention with q and v biases (the key has none).

    The q/k/v weights are stored per head, [heads, hidden, head_dim], so one broadcast matmul
    yields [batch, heads, tokens, head_dim] directly. On CPU this is ~1.5x faster than a fused
    qkv matmul followed by a reshape+transpose, whose copy costs more than the matmul itself.
    """

    def __init__(self, hidden_size: int, num_heads: int, qkv_bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scale = self.head_dim**-0.5
        shape = [num_heads, hidden_size, self.head_dim]
        init = nn.initializer.TruncatedNormal(std=0.02)
        self.q_weight = self.create_parameter(shape, default_initializer=init)
        self.k_weight = self.create_parameter(shape, default_initializer=init)
        self.v_weight = self.create_parameter(shape, default_initializer=init)
        if qkv_bias:
            zeros = nn.initializer.Constant(0.0)
            self.q_bias = self.create_parameter([hidden_size], default_initializer=zeros)
            self.v_bias = self.create_parameter([hidden_size], default_initializer=zeros)
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.dropout = dropout

    def _heads_bias(self, bias: paddle.Tensor) -> paddle.Tensor:
        return bias.reshape([self.num_heads, 1, self.head_dim])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if not paddle.in_dynamic_mode():
            return self._forward_fused(x)
        batch, tokens, width = x.shape
        # Both operands 4-D: paddle's matmul backward fails when broadcasting a 3-D weight.
        x_heads = x.unsqueeze(1)
        q = paddle.matmul(x_heads, self.q_weight.unsqueeze(0))
        k = paddle.matmul(x_heads, self.k_weight.unsqueeze(0))
        v = paddle.matmul(x_heads, self.v_weight.unsqueeze(0))
        if self.q_bias is not None:
            q = q + self._heads_bias(self.q_bias)
            v = v + self._heads_bias(self.v_bias)
        context = self.attend(q, k, v, fused=_on_gpu_in_half_precision(q))
        return self.proj(context.reshape([batch, tokens, width]))

    def attend(self, q: paddle.Tensor, k: paddle.Tensor, v: paddle.Tensor, fused: bool = False) -> paddle.Tensor:
        """softmax(q k^T / sqrt(head_dim)) v for [batch, heads, tokens, head_dim] inputs; [batch, tokens, heads,
        head_dim] out. ``fused``: paddle's ``scaled_dot_product_attention`` (its flash kernel on a GPU in fp16/bf16;
        a plain composition elsewhere, where it equals the unfused form, as the tests check on CPU)."""
        dropout = self.dropout if self.training else 0.0
        if fused:  # it takes [batch, tokens, heads, head_dim], and scales by 1/sqrt(head_dim) as self.scale does
            q, k, v = (t.transpose([0, 2, 1, 3]) for t in (q, k, v))
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, training=self.training)
        probs = F.softmax(paddle.matmul(q * self.scale, k, transpose_y=True), axis=-1)
        if dropout:
            probs = F.dropout(probs, dropout)
        return paddle.matmul(probs, v).transpose([0, 2, 1, 3])

    def pack_qkv(self) -> None:
        """Give the attention its q/k/v weights as one [hidden, 3 * hidden] parameter (and one bias), which a
        traced graph then reads as stored; ``unpack_qkv`` removes them. Without them the graph re-lays the
        per-head weights out itself, and Paddle Inference folds that into constants again at every predictor
        creation (seconds for ViT-g)."""
        with paddle.no_grad():
            weight, bias = self._qkv_by_slicing()
        self.packed_qkv_weight = self.create_parameter(weight.shape, dtype=weight.dtype)
        self.packed_qkv_weight.set_value(weight)
        self.packed_qkv_bias = None
        if bias is not None:
            self.packed_qkv_bias = self.create_parameter(bias.shape, dtype=bias.dtype, is_bias=True)
            self.packed_qkv_bias.set_value(bias)

    def unpack_qkv(self) -> None:
        """Remove what ``pack_qkv`` added (the per-head weights stay the attention's own)."""
        for name in ("packed_qkv_weight", "packed_qkv_bias"):
            if name in self._parameters:
                del self._parameters[name]
            self.__dict__.pop(name, None)

    def _qkv_by_slicing(self) -> tuple[paddle.Tensor, paddle.Tensor | None]:
        # [heads, hidden, head_dim] -> [hidden, heads * head_dim] by slicing (Paddle Inference's passes reject
        # a reshape of a transposed parameter)
        weights = [w[h] for w in (self.q_weight, self.k_weight, self.v_weight) for h in range(self.num_heads)]
        bias = None
        if self.q_bias is not None:
            bias = paddle.concat([self.q_bias, paddle.zeros_like(self.q_bias), self.v_bias])
        return paddle.concat(weights, axis=1), bias

    def _forward_fused(self, x: paddle.Tensor) -> paddle.Tensor:
        """The same attention as one [hidden, 3 * hidden] matmul, for a traced graph (``paddle.jit``).

        oneDNN runs the per-head broadcast matmul of ``forward`` on a slow generic path; the fused form reads
        ``pack_qkv``'s weights where they exist, else lays the per-head ones out in the graph.
        """
        batch, tokens, width = x.shape[0], x.shape[1], self.num_heads * self.head_dim
        if getattr(self, "packed_qkv_weight", None) is not None:
            weight, bias = self.packed_qkv_weight, self.packed_qkv_bias
        else:
            weight, bias = self._qkv_by_slicing()
        qkv = F.linear(x, weight, bias)
        qkv = qkv.reshape([batch, tokens, 3, self.num_heads, self.head_dim]).transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0], qkv[1], qkv[2]
        probs = F.softmax(paddle.matmul(q * self.scale, k, transpose_y=True), axis=-1)
        context = paddle.matmul(probs, v).transpose([0, 2, 1, 3]).reshape([batch, tokens, width])
        return self.proj(context)


def _on_gpu_in_half_precision(x: paddle.Tensor) -> bool:
    return x.dtype in (paddle.float16, paddle.bfloat16) and x.place.is_gpu_place()


class Mlp(nn.Layer):
    def __init__(self, hidden_size: int, mlp_hidden_size: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, mlp_hidden_size)
        self.fc2 = nn.Linear(mlp_hidden_size, hidden_size)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Layer):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, config: EvaVitConfig, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = LayerNormFp32(config.hidden_size, epsilon=config.layer_norm_eps)
        self.attn = Attention(config.hidden_size, config.num_heads, config.qkv_bias, config.attention_dropout)
        self.norm2 = LayerNormFp32(config.hidden_size, epsilon=config.layer_norm_eps)
        self.mlp = Mlp(config.hidden_size, config.mlp_hidden_size)
        self.drop_path = DropPath(drop_path)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = x + self.drop_path(self.dropout(self.attn(self.norm1(x))))
        return x + self.drop_path(self.dropout(self.mlp(self.norm2(x))))


def resize_position_embedding(pos_embed: paddle.Tensor, new_grid: int) -> paddle.Tensor:
    """Bicubically resize the patch part of a [1, 1 + g*g, D] embedding to a new_grid x new_grid grid.

    The cls position is kept as is. Matches torch's ``interpolate(mode="bicubic", align_corners=False)``
    used by LAVIS and HF (224 px -> 364 px: 16x16 -> 26x26).
    """
    num_patches = pos_embed.shape[1] - 1
    old_grid = int(round(num_patches**0.5))
    if old_grid * old_grid != num_patches:
        raise ValueError(f"position embedding has {num_patches} patch positions, not a square grid")
    if old_grid == new_grid:
        return pos_embed
    dim = pos_embed.shape[-1]
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    grid = patch_pos.astype(paddle.float32).reshape([1, old_grid, old_grid, dim]).transpose([0, 3, 1, 2])
    grid = F.interpolate(grid, size=[new_grid, new_grid], mode="bicubic", align_corners=False)
    patch_pos = grid.transpose([0, 2, 3, 1]).reshape([1, new_grid * new_grid, dim]).astype(pos_embed.dtype)
    return paddle.concat([cls_pos, patch_pos], axis=1)


class EvaVisionTransformer(nn.Layer):
    """EVA-ViT: patch embedding, cls token, absolute positions, pre-norm blocks, no final norm."""

    def __init__(self, config: EvaVitConfig) -> None:
        super().__init__()
        self.config = config = dataclasses.replace(config)  # our own copy: set_image_size changes it
        hidden = config.hidden_size
        self.patch_embed = nn.Conv2D(config.num_channels, hidden, config.patch_size, stride=config.patch_size)
        init = nn.initializer.TruncatedNormal(std=0.02)
        self.cls_token = self.create_parameter([1, 1, hidden], default_initializer=init)
        self.pos_embed = self.create_parameter([1, config.num_positions, hidden], default_initializer=init)
        rates = np.linspace(0, config.drop_path_rate, config.num_layers).tolist()
        self.blocks = nn.LayerList([Block(config, rate) for rate in rates])
        self.gradient_checkpointing = config.gradient_checkpointing

    def embed(self, pixel_values: paddle.Tensor, interpolate_pos_encoding: bool = False) -> paddle.Tensor:
        height, width = pixel_values.shape[-2:]
        patch = self.config.patch_size
        expected = self.config.image_size
        if (height != expected or width != expected) and not interpolate_pos_encoding:
            raise ValueError(
                f"image is {height}x{width} but the model is configured for {expected}x{expected}; "
                "call set_image_size() or pass interpolate_pos_encoding=True"
            )
        if height != width:
            raise ValueError(f"only square images are supported, got {height}x{width}")
        x = self.patch_embed(pixel_values.astype(self.patch_embed.weight.dtype))
        x = x.flatten(2).transpose([0, 2, 1])
        cls = self.cls_token.expand([x.shape[0], 1, x.shape[-1]]).astype(x.dtype)
        x = paddle.concat([cls, x], axis=1)
        pos = self.pos_embed
        if height != expected:
            pos = resize_position_embedding(pos, height // patch)
        return x + pos.astype(x.dtype)

    def forward(
        self,
        pixel_values: paddle.Tensor,
        output_hidden_states: bool = False,
        interpolate_pos_encoding: bool = False,
    ) -> EvaVitOutput:
        x = self.embed(pixel_values, interpolate_pos_encoding)
        hidden_states = [x] if output_hidden_states else None
        checkpointing = self.gradient_checkpointing and self.training and _needs_grad(self, x)
        for block in self.blocks:
            if checkpointing:
                x = _recompute(block, x)
            else:
                x = block(x)
            if hidden_states is not None:
                hidden_states.append(x)
        return EvaVitOutput(x, tuple(hidden_states) if hidden_states is not None else None)

    def set_image_size(self, image_size: int) -> None:
        """Permanently resize the position embedding for a new input size (e.g. 224 -> 364)."""
        if image_size % self.config.patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {self.config.patch_size}")
        resized = resize_position_embedding(self.pos_embed, image_size // self.config.patch_size)
        stop_gradient = self.pos_embed.stop_gradient
        self.pos_embed = self.create_parameter(resized.shape, dtype=resized.dtype)
        self.pos_embed.set_value(resized)
        self.pos_embed.stop_gradient = stop_gradient
        self.config.image_size = image_size

    def freeze(self) -> EvaVisionTransformer:
        """Stop gradients to every parameter and switch to eval mode (BLIP-2 keeps the ViT frozen)."""
        for param in self.parameters():
            param.stop_gradient = True
        self.eval()
        return self

    def cast(self, dtype: str | paddle.dtype) -> EvaVisionTransformer:
        """Cast weights to ``dtype`` (e.g. "float16", "bfloat16"), keeping LayerNorms in float32."""
        return cast_floating_point(self, dtype, keep=(nn.LayerNorm,))

    @property
    def dtype(self) -> paddle.dtype:
        return self.patch_embed.weight.dtype


def cast_floating_point(model: nn.Layer, dtype: str | paddle.dtype, keep: tuple[type, ...] = ()) -> nn.Layer:
    """Cast every floating-point parameter and buffer of ``model`` to ``dtype``, except in layers of ``keep``.

    paddle's public ``Layer.float16()`` / ``bfloat16()`` do this very per-layer cast, but refuse float16 on
    builds without fp16 kernels (every CPU build, where a model is still cast before moving it to a GPU) and
    exclude layer types only exactly, not their subclasses; so this calls the ``_to_impl`` they call.
    """
    for layer in model.sublayers(include_self=True):
        if not isinstance(layer, keep):
            layer._to_impl(dtype=dtype, include_sublayers=False, floating_only=True)
    return model


def _needs_grad(model: nn.Layer, x: paddle.Tensor) -> bool:
    return not x.stop_gradient or any(not p.stop_gradient for p in model.parameters())


def _recompute(block: nn.Layer, x: paddle.Tensor) -> paddle.Tensor:
    # Imported lazily: fleet pulls in the distributed stack, which plain inference never needs.
    from paddle.distributed.fleet.utils import recompute

    return recompute(block, x)
