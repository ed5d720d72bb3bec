"""Configuration of the EVA vision transformer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from blip2_encoder_common import config_from_dict


@dataclass
class EvaVitConfig:
    """Sizes of an EVA-style ViT (pre-norm blocks, q/v bias, cls token, absolute positions).

    The defaults are EVA-ViT-g as BLIP-2 uses it: the 40th block of EVA-CLIP-g dropped,
    no final norm (BLIP-2 applies its own ``ln_vision``).
    """

    image_size: int = 224
    patch_size: int = 14
    num_channels: int = 3
    hidden_size: int = 1408
    num_layers: int = 39
    num_heads: int = 16
    mlp_hidden_size: int = 6144
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    attention_dropout: float = 0.0
    dropout: float = 0.0
    drop_path_rate: float = 0.0
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_positions(self) -> int:
        return self.grid_size**2 + 1

    @classmethod
    def eva_vit_g(cls, **overrides: Any) -> EvaVitConfig:
        """EVA-ViT-g/14 of BLIP-2 (~986M parameters at 39 blocks)."""
        return cls(**overrides)

    @classmethod
    def vit_l(cls, **overrides: Any) -> EvaVitConfig:
        """An EVA-style ViT-L/14 (1024 wide, 24 blocks)."""
        sizes = dict(hidden_size=1024, num_layers=24, num_heads=16, mlp_hidden_size=4096)
        return cls(**{**sizes, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvaVitConfig:
        """Build from our own keys; unknown keys are an error, so a typo is not silently dropped."""
        return config_from_dict(cls, values)
