"""The demo's starting point for ``blip2-train stage1``: a small EVA-ViT and Q-Former, freshly initialised.

There is no pre-trained vision encoder or BERT of this size, so stage 1 starts from random weights (and trains
the ViT with the Q-Former: ``--freeze_vit false``); stage 2 then freezes the ViT, as BLIP-2 freezes EVA-ViT-g.
Written as a stage-1 model directory, which ``blip2-train stage1 --model_name_or_path`` continues from.
"""

from __future__ import annotations

from pathlib import Path

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


def write_initial_stage1(bert_vocab_dir: Path, out: Path, seed: int = 0, vision=None, qformer=None) -> Path:
    """config.json, model.safetensors, the Q-Former's vocab.txt and the image processor in ``out``."""
    import paddle

    from blip2_core import Blip2Config, Blip2Qformer
    from blip2_core.text_tokenizer import load_tokenizer
    from blip2_data import ImageProcessor, ImageProcessorConfig
    from blip2_eva_vit import EvaVitConfig
    from blip2_qformer import QFormerConfig

    vision = {**VISION, **(vision or {})}
    words = len((bert_vocab_dir / "vocab.txt").read_text().splitlines())
    qformer_config = QFormerConfig(
        vocab_size=words + 1,  # + [DEC], the ITG start token
        bos_token_id=words,
        encoder_hidden_size=vision["hidden_size"],
        **{**QFORMER, **(qformer or {})},
    )
    config = Blip2Config(vision_config=EvaVitConfig(**vision), qformer_config=qformer_config, freeze_vit=False)
    paddle.seed(seed)
    model = Blip2Qformer(config)
    model.save_pretrained(
        out,
        tokenizer=load_tokenizer(bert_vocab_dir),
        image_processor=ImageProcessor(ImageProcessorConfig(image_size=vision["image_size"])),
    )
    return out
