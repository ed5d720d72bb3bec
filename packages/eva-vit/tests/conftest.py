import json
import os
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from blip2_eva_vit import EvaVitConfig


# fixtures_dir is the same few lines in eva-vit, qformer and blip2-core: each package's tests run alone.
@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Golden fixtures from HF transformers: the committed copy, or a live one from `nox -s parity`."""
    live = os.environ.get("BLIP2_PARITY_FIXTURES")
    return Path(live) / "vision" if live else Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def reference_io(fixtures_dir):
    return load_file(str(fixtures_dir / "io.safetensors"))


@pytest.fixture(scope="session")
def tiny_config(fixtures_dir) -> EvaVitConfig:
    hf = json.loads((fixtures_dir / "config.json").read_text())
    return EvaVitConfig(
        image_size=hf["image_size"],
        patch_size=hf["patch_size"],
        hidden_size=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        mlp_hidden_size=hf["intermediate_size"],
        layer_norm_eps=hf["layer_norm_eps"],
    )
