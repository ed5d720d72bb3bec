"""``InstructBlipConfig``: BLIP-2's config with the Q-Former's text parts on and the instruction always read.

It reads the same dialects as ``Blip2Config`` (ours, and HF's ``model_type: instructblip`` config.json, whose
Q-Former config does not say that the Q-Former reads text: in HF's InstructBLIP the class says it) and writes
ours with ``model_type: instructblip``, so that blip2-core's tools build this package's model from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from blip2_core.model.config import FORMAT_NAME, Blip2Config
from blip2_qformer import QFormerConfig

from .registration import CONFIG_MODEL_TYPE


@dataclass
class InstructBlipConfig(Blip2Config):
    """EVA-ViT + a Q-Former that reads the instruction beside its queries (word and position embeddings, the text
    FFN of every layer, BERT's vocabulary with ``[DEC]``) + an LLM (FlanT5 or Vicuna/LLaMA)."""

    model_type: ClassVar[str] = CONFIG_MODEL_TYPE
    qformer_config: QFormerConfig = field(default_factory=QFormerConfig)  # has_text_input=True
    qformer_text_input: bool = True

    def __post_init__(self) -> None:
        if not self.qformer_text_input:
            raise ValueError("InstructBLIP's Q-Former always reads the instruction (qformer_text_input must be true)")
        super().__post_init__()

    @classmethod
    def from_dict(cls, values: dict[str, Any], stage1: bool = False) -> InstructBlipConfig:
        if values.get("format") != FORMAT_NAME:  # HF's: the text parts are implied by the model type
            qformer = {**(values.get("qformer_config") or {}), "use_qformer_text_input": True}
            values = {**values, "qformer_config": qformer}
        return super().from_dict(values, stage1)  # type: ignore[return-value]
