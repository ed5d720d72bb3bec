"""Building the stage models: BERT by Hub name from the cache (the default bert-base-uncased path)."""

import os
import shutil
from pathlib import Path

import numpy as np
import tiny
from safetensors.numpy import load_file

from blip2_train.arguments import ModelArguments
from blip2_train.models import build_stage1_model, read_bert_checkpoint
from blip2_train.run import load_text_tokenizer


def cache_repo(cache: Path, repo_id: str, source: Path) -> None:
    """A Hub repo as huggingface_hub caches it: models--name/{refs/main, snapshots/<commit>/...}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(source, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot.name)


def test_bert_base_uncased_by_name_comes_from_the_hub_cache(assets):
    cache_repo(Path(os.environ["HF_HUB_CACHE"]), "bert-base-uncased", assets["bert"])
    state = read_bert_checkpoint("bert-base-uncased")
    expected = load_file(str(assets["bert"] / "model.safetensors"))
    assert state.keys() == expected.keys()
    np.testing.assert_array_equal(
        state["bert.encoder.layer.1.output.dense.weight"], expected["bert.encoder.layer.1.output.dense.weight"]
    )
    model = build_stage1_model(None, str(assets["vision"]), "bert-base-uncased", tiny.IMAGE_SIZE, freeze_vit=True)
    np.testing.assert_allclose(  # torch [out, in] -> paddle [in, out]
        model.qformer.layers[1].ffn.fc2.weight.numpy(), expected["bert.encoder.layer.1.output.dense.weight"].T
    )
    tokenizer = load_text_tokenizer("stage1", ModelArguments())  # --qformer_init's vocabulary by default
    assert tokenizer.convert_tokens_to_ids(["dog"]) == [tiny.BERT_VOCAB.index("dog")]
