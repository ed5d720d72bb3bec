"""AdamW over the trainable parameters only, with no weight decay on 1-D parameters.

Biases, LayerNorm weights and scalars (the temperature) have fewer than 2 dimensions; LAVIS exempts exactly those
(its rule ``ndim < 2 or "bias"/"ln"/"bn" in the name`` selects the same set here). The choice is made per
parameter object, not by matching internal names (PaddleMIX's name match never matched, so everything decayed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import paddle
from paddle import nn


@dataclass
class ParameterGroups:
    """Trainable parameters by their structured names, split by whether AdamW decays them."""

    decay: dict[str, paddle.Tensor]
    no_decay: dict[str, paddle.Tensor]

    @property
    def parameters(self) -> list[paddle.Tensor]:
        return [*self.decay.values(), *self.no_decay.values()]


def parameter_groups(model: nn.Layer) -> ParameterGroups:
    """Split ``model``'s trainable parameters; frozen ones (ViT, LLM) are in neither group."""
    decay: dict[str, paddle.Tensor] = {}
    no_decay: dict[str, paddle.Tensor] = {}
    for name, param in model.named_parameters():
        if param.stop_gradient:
            continue
        (no_decay if param.ndim < 2 else decay)[name] = param
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    return ParameterGroups(decay, no_decay)


_VIT_BLOCK = re.compile(r"^vision_model\.blocks\.(\d+)\.")


def vit_layer_scales(model: nn.Layer, decay: float) -> dict[str, float]:
    """Layer-wise learning-rate decay (BEiT's rule, LAVIS's ``lr_layer_decay``) for the trainable ViT parameters.

    With L blocks, the patch/position embeddings and the cls token are layer 0, block i is layer i + 1, and the
    scale of layer k is ``decay ** (L + 1 - k)``; parameters outside the ViT keep 1 (left out of the result)."""
    blocks = len(model.vision_model.blocks)
    scales = {}
    for name, param in model.named_parameters():
        if param.stop_gradient or not name.startswith("vision_model."):
            continue
        match = _VIT_BLOCK.match(name)
        layer = int(match.group(1)) + 1 if match else 0  # outside the blocks: cls token, embeddings
        scales[name] = decay ** (blocks + 1 - layer)
    return scales


def build_adamw(
    model: nn.Layer,
    learning_rate: float | paddle.optimizer.lr.LRScheduler,
    weight_decay: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    max_grad_norm: float = 0.0,
    multi_precision: bool = False,
    layer_decay: float = 1.0,
) -> paddle.optimizer.AdamW:
    """AdamW over the trainable parameters; ``max_grad_norm > 0`` clips by the global norm.

    ``layer_decay < 1`` scales each trainable ViT layer's learning rate (``vit_layer_scales``) through paddle's
    parameter groups, whose ``learning_rate`` multiplies the scheduler's value at every step (LAVIS computed such
    scales but its scheduler overwrote every group's rate, so they did nothing)."""
    groups = parameter_groups(model)
    decayed = {id(p) for p in groups.decay.values()}
    decayed_names = {p.name for p in groups.parameters if id(p) in decayed}
    parameters: list = groups.parameters
    if layer_decay != 1.0:
        scales = vit_layer_scales(model, layer_decay)
        by_scale: dict[float, list[paddle.Tensor]] = {}
        for name, param in {**groups.decay, **groups.no_decay}.items():
            by_scale.setdefault(scales.get(name, 1.0), []).append(param)
        parameters = [{"params": params, "learning_rate": scale} for scale, params in sorted(by_scale.items())]
    return paddle.optimizer.AdamW(
        learning_rate=learning_rate,
        parameters=parameters,
        weight_decay=weight_decay,
        # paddle asks by the parameter's unique tensor name, which we read from the very objects chosen above
        apply_decay_param_fun=lambda tensor_name: tensor_name in decayed_names,
        beta1=beta1,
        beta2=beta2,
        epsilon=epsilon,
        grad_clip=nn.ClipGradByGlobalNorm(max_grad_norm) if max_grad_norm > 0 else None,
        multi_precision=multi_precision,
    )
