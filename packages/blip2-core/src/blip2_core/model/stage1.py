"""Stage 1: the Q-Former with its ITC / ITM / ITG heads on a frozen image encoder (retrieval, features)."""

from __future__ import annotations

from typing import Any

import paddle
import paddle.nn.functional as F

from blip2_eva_vit import EvaVisionTransformer
from blip2_qformer import QFormerForPretraining

from .base import Blip2ModelBase
from .config import Blip2Config


class Blip2Qformer(Blip2ModelBase, QFormerForPretraining):
    """Stage 1: EVA-ViT (frozen) + the Q-Former with ITC/ITM/ITG heads; feature extraction and retrieval scores."""

    # What a checkpoint may lack without the model running on random weights where it matters: HF's retrieval
    # model (Blip2ForImageTextRetrieval) has no ITG head (``lm_head``) and no ITC temperature (``temp``); neither
    # enters retrieval or features (LAVIS scores ITC without the temperature). Training them starts them fresh.
    optional_weights = ("lm_head.", "temp")

    def __init__(self, config: Blip2Config) -> None:
        if not config.qformer_config.has_text_input:
            raise ValueError("stage 1 needs the Q-Former's text parts: qformer_config.has_text_input=True")
        super().__init__(config.qformer_config)
        self.config = config  # the whole model's, as on Blip2ForConditionalGeneration (the Q-Former keeps its own)
        self.load_report = None
        self.vision_model = EvaVisionTransformer(config.vision_config)
        if config.freeze_vit:
            self.vision_model.freeze()

    def forward(
        self,
        pixel_values: paddle.Tensor | None = None,
        input_ids: paddle.Tensor | None = None,
        attention_mask: paddle.Tensor | None = None,
        image_embeds: paddle.Tensor | None = None,
        **kwargs: Any,
    ):
        """The stage-1 losses (see ``QFormerForPretraining.forward``) from images, or from ``image_embeds``
        (the image encoder's output, e.g. from a feature cache of the frozen ViT)."""
        if input_ids is None or attention_mask is None:
            raise ValueError("stage 1 needs the captions: input_ids and attention_mask")
        return super().forward(self.encode_image(pixel_values, image_embeds), input_ids, attention_mask, **kwargs)

    @paddle.no_grad()
    def extract_features(
        self,
        pixel_values: paddle.Tensor | None = None,
        input_ids: paddle.Tensor | None = None,
        attention_mask: paddle.Tensor | None = None,
        mode: str = "multimodal",
    ):
        image_embeds = self.encode_image(pixel_values) if pixel_values is not None else None
        return super().extract_features(image_embeds, input_ids, attention_mask, mode)

    @paddle.no_grad()
    def itm_scores(
        self, pixel_values: paddle.Tensor, input_ids: paddle.Tensor, attention_mask: paddle.Tensor
    ) -> paddle.Tensor:
        """P(match) for each (image, text) pair [batch]."""
        return F.softmax(self.itm_logits(self.encode_image(pixel_values), input_ids, attention_mask), axis=-1)[:, 1]

    @paddle.no_grad()
    def itc_scores(
        self, pixel_values: paddle.Tensor, input_ids: paddle.Tensor, attention_mask: paddle.Tensor
    ) -> paddle.Tensor:
        """Cosine similarity [images, texts] of every image with every text (best query)."""
        image = self.extract_features(pixel_values, mode="image").image_embeds_proj
        text = self.extract_features(input_ids=input_ids, attention_mask=attention_mask, mode="text").text_embeds_proj
        return self.itc_similarity(image, text[:, 0])
