"""Small checkpoints and checks more than one test file builds on: PaddleMIX's files for the tiny models, and the
reference greedy generation."""

import json
import shutil
from pathlib import Path

import numpy as np
import paddle
from safetensors.numpy import load_file


def paddlemix_config(fixtures_dir, llm="opt", **names):
    """PaddleMIX's config.json for a tiny model (``llm``: "opt" or "t5"), its weights named by ``names``
    (``*_name_or_path``), its LLM by ``text_config``."""
    hf = json.loads((fixtures_dir / llm / "hf" / "config.json").read_text())
    vision, qformer = hf["vision_config"], hf["qformer_config"]
    return {
        "architectures": ["Blip2ForConditionalGeneration"],
        **{key: str(value) for key, value in names.items()},
        "text_config": str(fixtures_dir / llm / "llm"),
        "freeze_vit": True,
        "use_decoder_only_language_model": llm == "opt",
        "model_type": "blip-2",
        "image_token_index": hf["image_token_index"],
        "qformer_config": {
            "cross_attention_freq": qformer["cross_attention_frequency"],
            "hidden_size": qformer["hidden_size"],
            "intermediate_size": qformer["intermediate_size"],
            "layer_norm_eps": qformer["layer_norm_eps"],
            "max_position_embeddings": qformer["max_position_embeddings"],
            "num_attention_heads": qformer["num_attention_heads"],
            "num_hidden_layers": qformer["num_hidden_layers"],
            "num_query_tokens": hf["num_query_tokens"],
            "vocab_size": qformer["vocab_size"],
            "type_vocab_size": 2,
            "vision_layer_norm_eps": vision["layer_norm_eps"],
        },
        "vision_config": {
            "depth": vision["num_hidden_layers"],
            "embed_dim": vision["hidden_size"],
            "epsilon": vision["layer_norm_eps"],
            "img_size": vision["image_size"],
            "mlp_ratio": vision["intermediate_size"] / vision["hidden_size"],
            "num_heads": vision["num_attention_heads"],
            "patch_size": vision["patch_size"],
            "qkv_bias": True,
        },
    }


def save_pdparams(state, directory):
    """As PaddleMIX ships each part: model_state.pdparams written by paddle.save."""
    directory.mkdir(parents=True, exist_ok=True)
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(directory / "model_state.pdparams"))
    return directory


WORDS = ["a", "photo", "of", "what", "is", "in", "the", "picture", "question", "answer", ":", "?", "cat", "dog"]


def copy_with_wordpiece_tokenizer(source: Path, directory: Path, vocab_size: int) -> Path:
    """A tiny model directory copied from ``source`` with a real WordPiece tokenizer over its ``vocab_size``
    ids (WORDS, then filler words), as blip2-predict and blip2-serve read a model directory."""
    shutil.copytree(source, directory)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    vocab += [f"w{i}" for i in range(vocab_size - len(vocab))]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    )
    return directory


def assert_generates_the_reference(model, fixtures_dir, llm="opt"):
    """Greedy ids on the reference inputs equal HF transformers' (the fixtures' ``greedy``)."""
    ref = {k: paddle.to_tensor(v) for k, v in load_file(str(fixtures_dir / llm / "io.safetensors")).items()}
    ids = model.generate(
        ref["pixel_values"],
        ref["input_ids_with_image_tokens"],
        ref["attention_mask_with_image_tokens"],
        max_new_tokens=7,
    )
    np.testing.assert_array_equal(ids.numpy(), ref["greedy"].numpy())
