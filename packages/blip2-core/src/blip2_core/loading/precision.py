"""Which dtype each part of a model runs in: decided once (``plan_precision``), then applied while loading.

- float32: as stored.
- On a GPU, float16 / bfloat16: the vision encoder (but its LayerNorms), the projection and the LLM in that dtype,
  each weight set straight into its parameter in it (no float32 copy of the model); the Q-Former stays float32.
- On a CPU, bfloat16: paddle's dygraph has no bf16 matmul there, so the image side (ViT, Q-Former, projection)
  runs as a compiled oneDNN bf16 graph (``compiled_image_encoder``, exported once and cached on disk) that the
  model calls through ``model.compiled_image_encoder``; its dygraph ViT and Q-Former weights are freed (the graph
  holds them), and the LLM stays float32. float16 on a CPU is refused: it has no kernels there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from blip2_eva_vit import cast_floating_point

logger = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")
# The parts of a stage-2 model that the compiled CPU graph replaces; loaded first, so that their dygraph weights
# are freed before the LLM's are read and the two never add up.
IMAGE_SIDE = ("vision_model", "qformer", "language_projection")


@dataclass(frozen=True)
class PrecisionPlan:
    """What loading does about the dtype; made by ``plan_precision``, before anything is read."""

    dtype: str = "float32"
    on_gpu: bool = False
    compile_image_side: bool = False  # CPU bfloat16: the image side becomes a compiled oneDNN graph

    @property
    def is_float32(self) -> bool:
        return self.dtype == "float32"

    def parameter_dtypes(self, model: Any) -> dict[str, str]:
        """The parameters whose dtype changes, by state-dict key: loading sets them in it at once (GPU only)."""
        import paddle

        if self.is_float32 or not self.on_gpu:
            return {}
        plan = {}
        for name in _half_parts(model):
            keep = kept_float32(name)
            for sub_name, sub in getattr(model, name).named_sublayers(prefix=name, include_self=True):
                if isinstance(sub, keep):
                    continue
                for param_name, param in sub.named_parameters(include_sublayers=False):
                    if param.dtype == paddle.float32:
                        plan[f"{sub_name}.{param_name}"] = self.dtype
        return plan


def plan_precision(dtype: str | None, *, stage1: bool = False) -> PrecisionPlan:
    """The one check of a requested dtype (``ValueError`` naming what to use instead), and what it means here."""
    dtype = dtype or "float32"
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected float32, bfloat16 or float16")
    gpu = on_gpu()
    if dtype == "float16" and not gpu:
        raise ValueError(f"dtype={dtype!r} needs a GPU (paddle has no {dtype} kernels on CPU); use bfloat16 or float32")
    if stage1 and dtype != "float32":
        raise ValueError(f"dtype={dtype!r}: stage-1 models (Blip2Qformer) run in float32")
    return PrecisionPlan(dtype, gpu, compile_image_side=dtype == "bfloat16" and not gpu)


def compile_image_side(model: Any, plan: PrecisionPlan) -> None:
    """CPU bfloat16: the image side becomes the compiled graph (its dygraph ViT and Q-Former weights freed)."""
    from .compiled_image_encoder import CompiledImageEncoder, cpu_bf16_support

    if cpu_bf16_support() is None:
        logger.warning("this CPU has neither avx512_bf16 nor AMX: bf16 is emulated and slower than float32")
    # The projection's dygraph weights stay (they are small); the ViT's and Q-Former's go: the graph has a copy.
    model.compiled_image_encoder = CompiledImageEncoder.for_model(model, plan.dtype, release_model_weights=True)


def finish_cast(model: Any, plan: PrecisionPlan) -> None:
    """After loading on a GPU: buffers and anything the loader did not set, in the planned dtype."""
    if plan.on_gpu and not plan.is_float32:
        for name in _half_parts(model):
            cast_part(model, name, plan.dtype)


def kept_float32(part: str) -> tuple[type, ...]:
    """The layer types of a model part that stay float32 when the part runs in half precision: the vision
    encoder's LayerNorms (their statistics overflow in float16)."""
    from paddle import nn

    return (nn.LayerNorm,) if part == "vision_model" else ()


def cast_part(model: Any, part: str, dtype: str) -> None:
    """One top-level part of ``model`` (``vision_model``, ``language_model``, ...) to ``dtype``, but what
    ``kept_float32`` keeps; what blip2-train also uses for its frozen parts."""
    cast_floating_point(getattr(model, part), dtype, kept_float32(part))


def _half_parts(model: Any) -> tuple[str, ...]:
    """What a GPU half-precision load changes: the vision encoder, the LLM and the projection; the Q-Former stays
    float32."""
    return (
        ("vision_model", "language_model", "language_projection")
        if hasattr(model, "language_model")
        else ("vision_model",)
    )


def running_dtype(model: Any) -> str:
    """The dtype ``model`` computes in: "float32", "bfloat16", "float16", or, where its image side and LLM differ
    (bfloat16 on a CPU), e.g. "image bfloat16 (compiled oneDNN), LLM float32"."""
    llm = _dtype_name(model.language_model.input_embeddings.weight.dtype)
    compiled = getattr(model, "compiled_image_encoder", None)
    if compiled is not None:
        return f"image {compiled.dtype} (compiled oneDNN), LLM {llm}"
    image = _dtype_name(model.vision_model.patch_embed.weight.dtype)
    return image if image == llm else f"image {image}, LLM {llm}"


def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("paddle.", "")


def on_gpu() -> bool:
    import paddle

    return paddle.is_compiled_with_cuda() and "gpu" in str(paddle.get_device())
