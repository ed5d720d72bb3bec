"""``Blip2Config``: the parts of a BLIP-2 model and where their weights come from.

Reads three config.json dialects: ours (what ``save_pretrained`` writes), the one HF transformers writes
for ``Salesforce/blip2-*`` (``model_type: blip-2`` with nested HF configs), and PaddleMIX's
(``vision_name_or_path``, ``bridge_name_or_path``, ``vision_and_bridge_name_or_path``, ``text_config`` naming
the LLM, ``freeze_vit``, ``qformer_config``, ``vision_config``, ``use_decoder_only_language_model``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from blip2_eva_vit import EvaVitConfig
from blip2_qformer import QFormerConfig

from ..formats import hf, paddlemix
from .text_config import TextConfig

FORMAT_NAME = "blip2-paddle"


@dataclass
class Blip2Config:
    """A BLIP-2 model: EVA-ViT + Q-Former (+ projection and an LLM for stage 2)."""

    # config.json's "model_type": what ``blip2_core.loading.model_types`` builds from it (a model built on the same parts,
    # such as InstructBLIP, subclasses this config and names its own)
    model_type: ClassVar[str] = "blip-2"
    vision_config: EvaVitConfig = field(default_factory=EvaVitConfig)
    qformer_config: QFormerConfig = field(default_factory=lambda: QFormerConfig(has_text_input=False))
    # The LLM's config (model_type "opt", "t5" or "llama"); None for a stage-1 model. A dict in HF's form is accepted.
    text_config: TextConfig | None = None
    # Where the LLM's weights and tokenizer live when they are not in this checkpoint (PaddleMIX's config.json names it in "text_config").
    text_name_or_path: str | None = None
    image_token_index: int | None = None
    freeze_vit: bool = True
    # The Q-Former reads the question beside its queries when answering (VQA fine-tuned that way, as the paper's VQA
    # fine-tuning; HF's InstructBLIP has the same idea). Off for every released BLIP-2 checkpoint. When on, the
    # Q-Former's BERT tokenizer is saved in ``qformer_tokenizer/`` beside the weights.
    qformer_text_input: bool = False
    vision_name_or_path: str | None = None
    bridge_name_or_path: str | None = None
    vision_and_bridge_name_or_path: str | None = None
    # Layout of the weights beside this config: "native" (ours), "hf", "lavis" or "paddlemix".
    weights_layout: str = "native"

    def __post_init__(self) -> None:
        if isinstance(self.text_config, dict):
            self.text_config = TextConfig.from_dict(self.text_config)
        if self.qformer_text_input and not self.qformer_config.has_text_input:
            raise ValueError(
                "qformer_text_input=true needs the Q-Former's text parts (qformer_config.has_text_input=true)"
            )

    @property
    def num_query_tokens(self) -> int:
        return self.qformer_config.num_query_tokens

    @property
    def use_decoder_only_language_model(self) -> bool:
        return self.text_config is not None and self.text_config.is_decoder_only

    @property
    def llm_type(self) -> str | None:
        return self.text_config.model_type if self.text_config else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "model_type": self.model_type,
            "vision_config": self.vision_config.to_dict(),
            "qformer_config": self.qformer_config.to_dict(),
            "text_config": self.text_config.to_dict() if self.text_config else None,
            "text_name_or_path": self.text_name_or_path,
            "num_query_tokens": self.num_query_tokens,
            "use_decoder_only_language_model": self.use_decoder_only_language_model,
            "image_token_index": self.image_token_index,
            "freeze_vit": self.freeze_vit,
            "qformer_text_input": self.qformer_text_input,
        }

    def save(self, directory: str | Path) -> None:
        path = Path(directory) / "config.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")

    @classmethod
    def from_dict(cls, values: dict[str, Any], stage1: bool = False) -> Blip2Config:
        """Read any of the three dialects. ``stage1`` keeps the Q-Former's text parts (embeddings, text FFN)."""
        cls._check_model_type(values.get("model_type"))
        if values.get("format") == FORMAT_NAME:
            return cls._from_native(values)
        if paddlemix.is_paddlemix_config(values):
            return cls._from_paddlemix(values, stage1)
        if hf.is_hf_config(values):
            return cls._from_hf(values)
        raise ValueError(
            "config.json is neither ours, HF's (model_type blip-2 with vision_config.num_hidden_layers) "
            "nor PaddleMIX's (vision_config.depth / *_name_or_path)"
        )

    @classmethod
    def _check_model_type(cls, declared: Any) -> None:
        """A config.json of another model built on the same parts (an installed ``blip2_core.loading.model_types`` entry,
        e.g. InstructBLIP) is not read as this one: its weights would half load."""
        if not isinstance(declared, str) or declared in ("blip-2", "blip2", cls.model_type):
            return
        from ..loading.model_types import BLIP2, by_config_name

        other = by_config_name(declared)
        if other is not BLIP2 and other.name != cls.model_type:
            raise ValueError(
                f"config.json is a {declared!r} model: load it with {other.model_class.replace(':', '.')} "
                f"(blip2-predict, blip2-serve and blip2-eval pick it by themselves)"
            )

    @classmethod
    def from_file(cls, path: str | Path, stage1: bool = False) -> Blip2Config:
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        try:
            return cls.from_dict(values, stage1)
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: {error}") from None

    @classmethod
    def _from_native(cls, values: dict[str, Any]) -> Blip2Config:
        return cls(
            vision_config=EvaVitConfig.from_dict(values["vision_config"]),
            qformer_config=QFormerConfig.from_dict(values["qformer_config"]),
            text_config=values.get("text_config"),
            text_name_or_path=values.get("text_name_or_path"),
            image_token_index=values.get("image_token_index"),
            freeze_vit=values.get("freeze_vit", True),
            qformer_text_input=bool(values.get("qformer_text_input", False)),
        )

    @classmethod
    def _from_hf(cls, values: dict[str, Any]) -> Blip2Config:
        vision = hf.vision_config_from_hf(values.get("vision_config") or {})
        num_queries = values.get("num_query_tokens", 32)
        qformer = hf.qformer_config_from_hf(
            values.get("qformer_config") or {}, vision, vision.layer_norm_eps, num_queries
        )
        if "image_text_hidden_size" in values:
            qformer = dataclasses.replace(qformer, embed_dim=values["image_text_hidden_size"])
        text = values.get("text_config")
        if text is not None and "model_type" not in text:
            text = {**text, "model_type": "opt"}  # HF's default text model
        image_token = values.get("image_token_index", values.get("image_token_id"))
        return cls(vision, qformer, text, None, image_token, weights_layout="hf")

    @classmethod
    def _from_paddlemix(cls, values: dict[str, Any], stage1: bool) -> Blip2Config:
        vision = paddlemix.vision_config_from_paddlemix(values.get("vision_config") or {})
        qformer = paddlemix.qformer_config_from_paddlemix(
            values.get("qformer_config") or {}, vision, values.get("num_query_tokens"), has_text_input=stage1
        )
        text = values.get("text_config")
        text_config, text_name = (None, text) if isinstance(text, str) else (text, None)
        return cls(
            vision_config=vision,
            qformer_config=qformer,
            text_config=text_config,
            text_name_or_path=text_name,
            freeze_vit=values.get("freeze_vit", True),
            vision_name_or_path=values.get("vision_name_or_path"),
            bridge_name_or_path=values.get("bridge_name_or_path"),
            vision_and_bridge_name_or_path=values.get("vision_and_bridge_name_or_path"),
            image_token_index=values.get("image_token_index"),  # not PaddleMIX's, accepted for HF-style prompts
            weights_layout="paddlemix",
        )
