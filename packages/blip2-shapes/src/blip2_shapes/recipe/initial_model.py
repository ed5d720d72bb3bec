"""The demo's starting point for ``blip2-train stage1``: a small EVA-ViT and Q-Former.

There is no pre-trained vision encoder or BERT of this size: the recipe pre-trains the ViT (``pretrain_vit.py``,
EVA-CLIP's stand-in) and the Q-Former's text side (``pretrain_text.py``, BERT-base's) and hands their weights here;
the Q-Former's cross-attention and queries start fresh, as in BLIP-2. Without them both start random. Written as a
stage-1 model directory, which ``blip2-train stage1 --model_name_or_path`` continues from.

The ViT's learned position embedding starts as a 2-D sine-cosine table (MAE's), not EVA's truncated normal of
std 0.02: at that size the positions are about 70 times smaller than the patch tokens, and a ViT this small,
trained this briefly, barely learns where anything is (measured on these images: a ViT trained for 400 steps to
name the top group's colour got 71% from the default start, 99% from the sine-cosine one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

VISION = {
    "image_size": 64,
    "patch_size": 8,
    "hidden_size": 128,
    "num_layers": 2,
    "num_heads": 4,
    "mlp_hidden_size": 512,
}
QFORMER = {
    "hidden_size": 128,
    "num_layers": 2,
    "num_heads": 4,
    "intermediate_size": 512,
    "max_position_embeddings": 64,
    "cross_attention_freq": 1,
    "num_query_tokens": 8,
    "embed_dim": 64,
}


def initial_positions(vision: dict) -> np.ndarray:
    return sincos_positions(vision["hidden_size"], vision["image_size"] // vision["patch_size"])


def sincos_positions(hidden_size: int, grid: int) -> np.ndarray:
    """[1, 1 + grid², hidden] position table: sines and cosines of the row and of the column (a quarter of the
    channels each, frequencies 1 .. 1/10000), zeros for the cls token."""
    if hidden_size % 4:
        raise ValueError(f"hidden_size {hidden_size} is not a multiple of 4")
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    quarter = hidden_size // 4
    frequencies = 1.0 / 10000 ** (np.arange(quarter) / quarter)
    angles = [axis.reshape(-1, 1) * frequencies for axis in (rows, cols)]
    table = np.concatenate([f(a) for a in angles for f in (np.sin, np.cos)], axis=1)
    return np.concatenate([np.zeros((1, hidden_size)), table])[None].astype("float32")


def qformer_config(bert_vocab_dir: Path, vision: dict | None = None, qformer: dict | None = None) -> Any:
    """The demo's QFormerConfig: the vocabulary of ``bert_vocab_dir`` and [DEC], cross-attention to the ViT's width."""
    from blip2_qformer import QFormerConfig

    vision = {**VISION, **(vision or {})}
    words = len((bert_vocab_dir / "vocab.txt").read_text().splitlines())
    return QFormerConfig(
        vocab_size=words + 1,  # + [DEC], the ITG start token
        bos_token_id=words,
        encoder_hidden_size=vision["hidden_size"],
        **{**QFORMER, **(qformer or {})},
    )


def write_initial_stage1(
    bert_vocab_dir: Path, out: Path, seed: int = 0, vision=None, qformer=None, vision_state=None, text_state=None
) -> Path:
    """config.json, model.safetensors, the Q-Former's vocab.txt and the image processor in ``out``.
    ``vision_state``: the pre-trained ViT's weights (``pretrain_vit.py``), else the ViT starts random too;
    ``text_state``: the Q-Former's pre-trained text side (``pretrain_text.py``), else it starts random."""
    import paddle

    from blip2_core import Blip2Config, Blip2Qformer
    from blip2_core.loading.text_tokenizer import load_tokenizer
    from blip2_data import ImageProcessor, ImageProcessorConfig
    from blip2_eva_vit import EvaVitConfig

    vision = {**VISION, **(vision or {})}
    config = Blip2Config(
        vision_config=EvaVitConfig(**vision),
        qformer_config=qformer_config(bert_vocab_dir, vision, qformer),
        freeze_vit=False,
    )
    paddle.seed(seed)
    model = Blip2Qformer(config)
    if vision_state is not None:
        missing, unexpected = model.vision_model.set_state_dict(vision_state)
        if missing or unexpected:
            raise ValueError(f"pre-trained ViT weights do not fit: missing {missing}, unexpected {unexpected}")
    else:
        model.vision_model.pos_embed.set_value(initial_positions(vision))
    if text_state is not None:
        parameters = dict(model.named_parameters())
        unknown = sorted(set(text_state) - set(parameters))
        if unknown:
            raise ValueError(f"pre-trained text weights do not fit the Q-Former: {unknown[:5]}")
        for name, value in text_state.items():
            if tuple(parameters[name].shape) != value.shape:
                raise ValueError(f"{name}: pre-trained {value.shape}, Q-Former {tuple(parameters[name].shape)}")
            parameters[name].set_value(value)
    model.save_pretrained(
        out,
        tokenizer=load_tokenizer(bert_vocab_dir),
        image_processor=ImageProcessor(ImageProcessorConfig(image_size=vision["image_size"])),
    )
    return out
