"""AdamW over the trainable parameters only, with no weight decay on 1-D parameters.

Biases, LayerNorm weights and scalars (the temperature) have fewer than 2 dimensions; LAVIS exempts exactly those
(its rule ``ndim < 2 or "bias"/"ln"/"bn" in the name`` selects the same set here). The choice is made per
parameter object, not by matching internal names (PaddleMIX's name match never matched, so everything decayed).
"""

from __future__ import annotations

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


def build_adamw(
    model: nn.Layer,
    learning_rate: float | paddle.optimizer.lr.LRScheduler,
    weight_decay: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    max_grad_norm: float = 0.0,
    multi_precision: bool = False,
) -> paddle.optimizer.AdamW:
    """AdamW over the trainable parameters; ``max_grad_norm > 0`` clips by the global norm."""
    groups = parameter_groups(model)
    decayed = {id(p) for p in groups.decay.values()}
    decayed_names = {p.name for p in groups.parameters if id(p) in decayed}
    return paddle.optimizer.AdamW(
        learning_rate=learning_rate,
        parameters=groups.parameters,
        weight_decay=weight_decay,
        # paddle asks by the parameter's unique tensor name, which we read from the very objects chosen above
        apply_decay_param_fun=lambda tensor_name: tensor_name in decayed_names,
        beta1=beta1,
        beta2=beta2,
        epsilon=epsilon,
        grad_clip=nn.ClipGradByGlobalNorm(max_grad_norm) if max_grad_norm > 0 else None,
        multi_precision=multi_precision,
    )
