"""What both BLIP-2 models share: the output type, the token loss, loading and saving, a frozen image encoder,
and prompt tokenisation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import paddle
import paddle.nn.functional as F

from blip2_eva_vit import EvaVisionTransformer, LoadReport
from blip2_qformer.distributed import global_token_mean

from ..loading.pretrained import load_pretrained
from ..loading.saving import save_pretrained
from .config import Blip2Config

ModelT = TypeVar("ModelT", bound="Blip2ModelBase")


@dataclass
class Blip2Output:
    """``logits``: decoder-only, [batch, queries + text, vocab] (the text is the last positions);
    encoder-decoder, the decoder's [batch, target, vocab]. ``loss`` when labels were given."""

    logits: paddle.Tensor
    loss: paddle.Tensor | None = None


def token_cross_entropy(logits: paddle.Tensor, labels: paddle.Tensor, across_ranks: bool = False) -> paddle.Tensor:
    """Mean cross-entropy over the tokens whose label is not -100.

    (paddle's ``cross_entropy(ignore_index=...)`` divides by all tokens, ignored ones included.)
    ``across_ranks`` (data-parallel training): the mean over the tokens of every rank's batch, as blip2-qformer's
    ``global_token_mean`` makes it, so that N processes train as one on the same global batch; in one process
    it changes nothing.
    """
    labels = labels.reshape([-1])
    valid = labels != -100
    losses = F.cross_entropy(
        logits.reshape([-1, logits.shape[-1]]).astype("float32"),
        paddle.where(valid, labels, paddle.zeros_like(labels)),
        reduction="none",
    ).flatten()
    total, count = (losses * valid.astype("float32")).sum(), valid.astype("float32").sum()
    return global_token_mean(total, count) if across_ranks else total / count.clip(min=1.0)


class Blip2ModelBase:
    """What both BLIP-2 models share: loading, saving, and a frozen image encoder that stays in eval mode."""

    config: Blip2Config
    vision_model: EvaVisionTransformer
    # What from_pretrained did not load (missing) or did not use (unexpected); None for a model built in code.
    load_report: LoadReport | None
    # Weights (key prefixes) a checkpoint may lack: they start fresh and the load report names them.
    optional_weights: tuple[str, ...] = ()

    @classmethod
    def from_pretrained(cls: type[ModelT], name_or_path: str | os.PathLike, **kwargs: Any) -> ModelT:
        """Load by known name, local path or Hub repo id (see ``blip2_core.loading.pretrained.load_pretrained``)."""
        return load_pretrained(cls, name_or_path, **kwargs)

    def save_pretrained(self, directory: str | os.PathLike, **kwargs: Any) -> Path:
        """config.json + safetensors weights (+ tokenizer and image-processor files when given)."""
        return save_pretrained(self, directory, **kwargs)

    def encode_image(
        self,
        pixel_values: paddle.Tensor | None,
        image_embeds: paddle.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> paddle.Tensor:
        """The image encoder's output [batch, patches + 1, vision_hidden], or ``image_embeds`` when given (already
        computed, e.g. by blip2-train's feature cache); exactly one of the two."""
        if (pixel_values is None) == (image_embeds is None):
            raise ValueError("pass exactly one of pixel_values and image_embeds")
        if image_embeds is not None:
            width = self.config.vision_config.hidden_size
            if image_embeds.ndim != 3 or image_embeds.shape[-1] != width:
                raise ValueError(
                    f"image_embeds must be [batch, tokens, {width}] (this model's image encoder width), "
                    f"got {list(image_embeds.shape)}"
                )
            return image_embeds
        return self.vision_model(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding).last_hidden_state

    def train(self):
        super().train()
        if self.config.freeze_vit:
            self.vision_model.eval()  # a frozen encoder keeps its eval behaviour (no dropout, no drop path)
        return self


def tokenize(tokenizer: Any, texts: Sequence[str], left_pad: bool) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Token ids and mask for ``texts``, padded on the side asked for (whatever the tokenizer's default)."""
    from blip2_data import pad_sequences

    rows = [list(ids) for ids in tokenizer(list(texts))["input_ids"]]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, mask = pad_sequences(rows, pad, "left" if left_pad else "right")
    return paddle.to_tensor(ids), paddle.to_tensor(mask)
