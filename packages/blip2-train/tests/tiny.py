"""Tiny models, data and a command runner shared by the tests (everything is made here; nothing is downloaded)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
from PIL import Image
from safetensors.numpy import save_file

from blip2_core import Blip2Config, Blip2Qformer
from blip2_eva_vit import EvaVitConfig
from blip2_qformer import QFormerConfig

WORDS = ["a", "dog", "cat", "man", "woman", "red", "blue", "car", "tree", "on", "the", "with", "sofa", "grass"]
BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
HIDDEN, LAYERS, HEADS, FFN, POSITIONS = 32, 2, 4, 37, 64
IMAGE_SIZE = 56
HERE = Path(__file__).parent


def qformer_config(dropout: float) -> QFormerConfig:
    return QFormerConfig(
        vocab_size=len(BERT_VOCAB) + 1, hidden_size=HIDDEN, num_layers=LAYERS, num_heads=HEADS,
        intermediate_size=FFN, max_position_embeddings=POSITIONS, encoder_hidden_size=48, num_query_tokens=4,
        embed_dim=16, bos_token_id=len(BERT_VOCAB), hidden_dropout=dropout, attention_dropout=dropout,
    )  # fmt: skip


def vision_config() -> EvaVitConfig:
    return EvaVitConfig(
        image_size=IMAGE_SIZE, patch_size=14, hidden_size=48, num_layers=2, num_heads=4, mlp_hidden_size=104
    )


def write_vision_only(directory: Path, dropout: float = 0.1) -> Path:
    """A stage-1 config.json whose weights file holds only the vision encoder (LAVIS's eva_vit_g role)."""
    directory.mkdir(parents=True, exist_ok=True)
    paddle.seed(5)
    config = Blip2Config(vision_config=vision_config(), qformer_config=qformer_config(dropout))
    model = Blip2Qformer(config)
    state = {k: v.numpy() for k, v in model.state_dict().items() if k.startswith("vision_model.")}
    save_file(state, str(directory / "model.safetensors"))
    config.save(directory)
    return directory


def write_bert(directory: Path) -> Path:
    """A BERT checkpoint in HF's BertForPreTraining names (torch shapes) + vocab.txt."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(9)

    def w(*shape):
        return rng.normal(0, 0.05, shape).astype("float32")

    sd = {
        "bert.embeddings.word_embeddings.weight": w(len(BERT_VOCAB), HIDDEN),
        "bert.embeddings.position_embeddings.weight": w(POSITIONS, HIDDEN),
        "bert.embeddings.token_type_embeddings.weight": w(2, HIDDEN),
        "bert.embeddings.LayerNorm.weight": np.ones(HIDDEN, "float32"),
        "bert.embeddings.LayerNorm.bias": np.zeros(HIDDEN, "float32"),
        "cls.predictions.transform.dense.weight": w(HIDDEN, HIDDEN),
        "cls.predictions.transform.dense.bias": np.zeros(HIDDEN, "float32"),
        "cls.predictions.transform.LayerNorm.weight": np.ones(HIDDEN, "float32"),
        "cls.predictions.transform.LayerNorm.bias": np.zeros(HIDDEN, "float32"),
        "cls.predictions.bias": np.zeros(len(BERT_VOCAB), "float32"),
    }
    for i in range(LAYERS):
        p = f"bert.encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            sd[p + name + ".weight"], sd[p + name + ".bias"] = w(HIDDEN, HIDDEN), np.zeros(HIDDEN, "float32")
        sd[p + "intermediate.dense.weight"], sd[p + "intermediate.dense.bias"] = (
            w(FFN, HIDDEN),
            np.zeros(FFN, "float32"),
        )
        sd[p + "output.dense.weight"], sd[p + "output.dense.bias"] = w(HIDDEN, FFN), np.zeros(HIDDEN, "float32")
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            sd[p + norm + ".weight"], sd[p + norm + ".bias"] = np.ones(HIDDEN, "float32"), np.zeros(HIDDEN, "float32")
    save_file(sd, str(directory / "model.safetensors"))
    write_bert_vocab(directory)
    (directory / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": HIDDEN}))
    return directory


def write_bert_vocab(directory: Path) -> None:
    (directory / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n")
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    )


def write_llm(directory: Path, fixtures: Path, dropout: float = 0.1) -> Path:
    """blip2-core's tiny OPT (100 ids) with a WordPiece tokenizer whose ids all fit its vocabulary."""
    shutil.copytree(fixtures, directory)
    config = json.loads((directory / "config.json").read_text())
    config["dropout_rate" if config["model_type"] == "t5" else "dropout"] = dropout  # T5 names it dropout_rate
    (directory / "config.json").write_text(json.dumps(config))
    write_bert_vocab(directory)
    return directory


def write_captions(
    directory: Path,
    images: int = 8,
    captions_per_image: int = 2,
    bad_row: int | None = None,
    empty_caption_row: int | None = None,
    words: tuple[int, int] = (4, 4),
) -> str:
    """coco_karpathy-format data: ``images`` JPEGs, captions of ``words`` (fewest, most) words, one token each,
    two per image (4 words each by default).

    ``bad_row``: that row's image is a corrupt file; ``empty_caption_row``: that caption is only punctuation.
    Returns the --data_files entry.
    """
    rng = np.random.RandomState(0)
    root = directory / "images"
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(images):
        path = root / f"img{i}.jpg"
        Image.fromarray(rng.randint(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
        for _ in range(captions_per_image):
            # the default draws no length: its data stay what they were
            count = 4 if words == (4, 4) else rng.randint(words[0], words[1] + 1)
            caption = " ".join(rng.choice(WORDS[1:], count))
            rows.append({"image": f"img{i}.jpg", "caption": caption, "image_id": f"coco_{i}"})
    if bad_row is not None:
        (root / "broken.jpg").write_bytes(b"not a jpeg")
        rows[bad_row]["image"] = "broken.jpg"
    if empty_caption_row is not None:
        rows[empty_caption_row]["caption"] = "!!! ..."
    annotation = directory / "captions.json"
    annotation.write_text(json.dumps(rows))
    return f"{root},{annotation}"


COMMON = [
    "--report_to", "none", "--dataloader_num_workers", "0", "--image_size", str(IMAGE_SIZE), "--max_txt_len", "8",
    "--logging_steps", "1", "--disable_tqdm", "true", "--save_strategy", "steps",
]  # fmt: skip


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PADDLE_", "FLAGS_"))}
    env.update(CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1", BLIP2_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONFAULTHANDLER"] = "1"  # a native crash in a launched rank prints its Python stack in the rank's log
    return env


def train(
    args: list[str], cwd: Path, check: bool = True, timeout: int = 300, inject: str | None = None
) -> subprocess.CompletedProcess:
    """``python -m blip2_train ...`` in a fresh process (as users run it); ``inject``: a fault (see inject.py)."""
    command = (
        [sys.executable, "-m", "blip2_train"] if inject is None else [sys.executable, str(HERE / "inject.py"), inject]
    )
    proc = subprocess.run(
        [*command, *args], cwd=cwd, env=environment(), capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    return proc


def losses(output_dir: Path) -> list[float]:
    """The per-step training losses logged to train_log.jsonl (logging_steps 1), in order."""
    lines = (output_dir / "train_log.jsonl").read_text().splitlines()
    return [entry["loss"] for entry in map(json.loads, lines) if "loss" in entry]


def step_of(path: Path) -> int:
    return int(path.name.split("-")[1])


def trainable_weights(directory: Path) -> dict[str, np.ndarray]:
    """A checkpoint's weights: what training changes (and the small frozen parts), not the frozen ViT and LLM."""
    from safetensors.numpy import load_file

    return load_file(str(directory / "model.safetensors"))


def write_vqa(directory: Path, images: int = 8) -> str:
    """VQAv2 train rows (LAVIS's vqa_train.json): a question per image, several answers (repeats weigh more).

    Returns the --data_files entry."""
    rng = np.random.RandomState(1)
    root = directory / "images"
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(images):
        Image.fromarray(rng.randint(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / f"img{i}.jpg")
        answers = [str(rng.choice(WORDS[1:]))] * 3 + [str(rng.choice(WORDS[1:]))]
        rows.append({"question": f"the {WORDS[1 + i % 6]} on the sofa?", "image": f"img{i}.jpg", "answer": answers,
                     "question_id": i})  # fmt: skip
    annotation = directory / "vqa_train.json"
    annotation.write_text(json.dumps(rows))
    return f"{root},{annotation}"
