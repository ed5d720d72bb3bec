import json
import os
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from blip2_qformer import QFormerConfig


# fixtures_dir is the same few lines in eva-vit, qformer and blip2-core: each package's tests run alone.
@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Golden fixtures from HF transformers: the committed copy, or a live one from `nox -s parity`."""
    live = os.environ.get("BLIP2_PARITY_FIXTURES")
    return Path(live) / "qformer" if live else Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def reference_io(fixtures_dir):
    return load_file(str(fixtures_dir / "io.safetensors"))


@pytest.fixture(scope="session")
def tiny_config(fixtures_dir) -> QFormerConfig:
    hf = json.loads((fixtures_dir / "config.json").read_text())
    return QFormerConfig(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        intermediate_size=hf["intermediate_size"],
        max_position_embeddings=hf["max_position_embeddings"],
        layer_norm_eps=hf["layer_norm_eps"],
        cross_attention_freq=hf["cross_attention_frequency"],
        encoder_hidden_size=hf["encoder_hidden_size"],
        vision_layer_norm_eps=hf["vision_layer_norm_eps"],
        num_query_tokens=hf["num_query_tokens"],
        embed_dim=hf["embed_dim"],
        bos_token_id=hf["bos_token_id"],
    )
