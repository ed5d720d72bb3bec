"""Tiny random BLIP-2 models (stage 2 with OPT, stage 1) saved as checkpoints, and small datasets on disk."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))  # official_vqa_reference, tiny_models

WORDS = ["a", "photo", "of", "question", "short", "answer", ":", "?", "what", "is", "the", "cat", "dog", "red",
         "two", "yes", "no", "man", "on", "in", "color", "how", "many", "there"]  # fmt: skip
VISION = {"hidden_size": 48, "intermediate_size": 104, "num_hidden_layers": 2, "num_attention_heads": 4,
          "image_size": 28, "patch_size": 14, "layer_norm_eps": 1e-6, "qkv_bias": True, "hidden_act": "gelu"}  # fmt: skip
QFORMER = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 37, "max_position_embeddings": 64, "cross_attention_frequency": 2,
           "encoder_hidden_size": 48, "layer_norm_eps": 1e-12, "hidden_act": "gelu"}  # fmt: skip
OPT = {"model_type": "opt", "vocab_size": 100, "hidden_size": 32, "word_embed_proj_dim": 32, "num_hidden_layers": 2,
       "ffn_dim": 37, "num_attention_heads": 4, "max_position_embeddings": 128, "do_layer_norm_before": True,
       "activation_function": "relu", "bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0}  # fmt: skip
T5 = {"model_type": "t5", "vocab_size": 100, "d_model": 32, "d_kv": 8, "d_ff": 37, "num_layers": 2,
      "num_decoder_layers": 2, "num_heads": 4, "relative_attention_num_buckets": 8,
      "relative_attention_max_distance": 20, "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu",
      "tie_word_embeddings": False, "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 3}  # fmt: skip


def write_wordpiece_tokenizer(directory: Path) -> None:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    vocab += [f"w{i}" for i in range(100 - len(vocab))]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))


def build_model(directory: Path, stage1: bool, llm: dict | None = None) -> Path:
    import paddle

    from blip2_core import Blip2Config, Blip2ForConditionalGeneration, Blip2Qformer

    values = {"model_type": "blip-2", "num_query_tokens": 4, "vision_config": VISION,
              "qformer_config": {**QFORMER, "use_qformer_text_input": stage1}}  # fmt: skip
    if stage1:
        values["image_text_hidden_size"] = 16
    else:
        values["text_config"] = llm or OPT
    config = Blip2Config.from_dict(values)
    paddle.seed(1)
    model = Blip2Qformer(config) if stage1 else Blip2ForConditionalGeneration(config)
    if not stage1:
        # random weights of this size put every logit near zero: scale the LM head so decoding varies by image
        with paddle.no_grad():
            for p in model.language_projection.parameters():
                p.set_value(p * 20)
    model.save_pretrained(directory)
    write_wordpiece_tokenizer(directory)
    return directory


@pytest.fixture(scope="session")
def opt_model(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("opt") / "blip2-tiny-opt", stage1=False)


@pytest.fixture(scope="session")
def t5_model(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("t5") / "blip2-tiny-t5", stage1=False, llm=T5)


@pytest.fixture(scope="session")
def stage1_model(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("stage1") / "blip2-tiny-stage1", stage1=True)


def write_jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, 3)
    pixels = np.clip(base + rng.normal(0, 60, (40, 48, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


COCO_IDS = [42, 73, 74, 133, 136, 139]
CAPTIONS = ["a man on a red dog", "two cats in the photo", "a dog on a man", "what a red cat", "the dog is red",
            "a cat is on the man"]  # fmt: skip
EXTRA = ["there", "yes", "no", "how", "many", "color"]  # every caption distinct: no tied retrieval scores


@pytest.fixture(scope="session")
def coco_tree(tmp_path_factory) -> Path:
    """val2014 images; Karpathy-test captions; official VQAv2 questions and annotations (3 per image)."""
    root = tmp_path_factory.mktemp("coco")
    for i in COCO_IDS:
        write_jpeg(root / "images" / "val2014" / f"COCO_val2014_{i:012d}.jpg", seed=i)
    karpathy = [
        {"image": f"val2014/COCO_val2014_{i:012d}.jpg", "caption": [CAPTIONS[n], f"{CAPTIONS[(n + 1) % 6]} {EXTRA[n]}"],
         "image_id": f"coco_{i}"}
        for n, i in enumerate(COCO_IDS)
    ]  # fmt: skip
    (root / "coco_karpathy_test.json").write_text(json.dumps(karpathy))
    questions, annotations = [], []
    for n, image_id in enumerate(COCO_IDS):
        for k, (question, answers, kind) in enumerate(
            [("What color is the dog?", ["red"] * 8 + ["brown"] * 2, "other"),
             ("How many cats are there?", ["two", "2", "2", "3"] + ["2"] * 6, "number"),
             ("Is this a man?", ["yes"] * (n + 4) + ["no"] * (6 - n), "yes/no")]
        ):  # fmt: skip
            question_id = image_id * 10 + k
            questions.append({"image_id": image_id, "question": question, "question_id": question_id})
            annotations.append(
                {"question_id": question_id, "image_id": image_id, "question_type": question.split()[0].lower(),
                 "answer_type": kind, "multiple_choice_answer": answers[0],
                 "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1} for j, a in enumerate(answers)]}
            )  # fmt: skip
    (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(
        json.dumps({"data_subtype": "val2014", "questions": questions})
    )
    (root / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": annotations}))
    return root


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    # no test may reach a hub or a dataset URL
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("BLIP2_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("BLIP2_HOME", str(tmp_path / "blip2-home"))
