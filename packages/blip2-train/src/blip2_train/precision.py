"""Training precision as the peers train: mixed precision by default on a GPU, each part's dtype written down.

PaddleMIX's run_pretrain_stage{1,2}.py default to ``fp16=True`` (AMP) and LAVIS's training yamls to ``amp: True``;
LAVIS keeps the frozen ViT in fp16 (``vit_precision: fp16``, ``convert_weights_to_fp16``), the Q-Former in fp32
under autocast, and loads the frozen LLM in fp16 (OPT) or bf16 (FlanT5). Here, on a GPU, a run given neither
``--fp16`` nor ``--bf16`` trains with ``--fp16 true`` (``--fp16 false`` keeps fp32), and the frozen ViT and LLM are
cast to the half dtype (the ViT's LayerNorms stay fp32) while everything trained stays fp32 under autocast. On a
CPU everything stays fp32: paddle has no fp16 kernels there and its dygraph no bf16 matmul.

None of the GPU path could be run here (no GPU build of paddle installs on our machines); the decision is tested
with a GPU faked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

_FLAGS = ("--fp16", "--bf16")


def with_default_mixed_precision(argv: Sequence[str], on_gpu: bool) -> list[str]:
    """``argv`` with ``--fp16 true`` added on a GPU when it names neither ``--fp16`` nor ``--bf16``."""
    argv = list(argv)
    named = any(arg == flag or arg.startswith(flag + "=") for arg in argv for flag in _FLAGS)
    if on_gpu and not named:
        logger.info("mixed precision by default on a GPU (PaddleMIX fp16=True, LAVIS amp: True): --fp16 true")
        return [*argv, "--fp16", "true"]
    return argv


def part_dtypes(model: Any, half: str | None) -> dict[str, str]:
    """The dtype each part of ``model`` trains in: frozen ViT and LLM in ``half`` ("float16" / "bfloat16"), the
    rest float32; ``half`` None keeps everything float32."""
    frozen_vit = all(p.stop_gradient for p in model.vision_model.parameters())
    dtypes = {"vision_model": half if half and frozen_vit else "float32", "qformer": "float32"}
    if hasattr(model, "language_model"):
        dtypes["language_projection"] = "float32"
        dtypes["language_model"] = half or "float32"
    return dtypes


def apply_part_dtypes(model: Any, dtypes: dict[str, str]) -> None:
    """Cast the frozen parts ``part_dtypes`` put in half precision (blip2-core's rule: the ViT's LayerNorms stay
    float32) and log every part's dtype."""
    from blip2_core.loading.precision import cast_part

    for name, dtype in dtypes.items():
        if dtype != "float32":
            cast_part(model, name, dtype)
    logger.info("precision: %s", ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items()))
