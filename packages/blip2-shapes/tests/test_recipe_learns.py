"""The pipeline learns: the default model's recipe (``blip2-shapes train``), smaller, with the same commands --
synthetic data, LM and ViT pre-training, blip2-train stage1, stage2, finetune-vqa, blip2-eval caption and vqa --
must lower its losses and beat chance on held-out data by a clear margin. Checks the pipeline, not a shipped
file."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("blip2-train", path=str(Path(sys.executable).parent)) is None
    or shutil.which("blip2-eval", path=str(Path(sys.executable).parent)) is None,
    reason="needs the blip2-train and blip2-eval commands installed (pip install 'blip2-shapes[train]')",
)  # fmt: skip


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PADDLE_", "FLAGS_"))}
    env.update(HF_HUB_OFFLINE="1", BLIP2_HOME=str(work / "home"), CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-m", "blip2_shapes", "train", "--work", str(work), "--out", str(work / "model"),
         "--profile", "learning_test"],
        capture_output=True, text=True, env=env, timeout=1500,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    logs = {name: (work / f"{name}.log").read_text() for name in ("stage1", "stage2")}
    return {**json.loads((work / "model" / "scores.json").read_text()), "model_dir": str(work / "model"), "logs": logs}


def test_stages_1_and_2_read_the_frozen_vits_features_computed_once(record):
    assert "cache_features" in record["timings_s"]
    for name, log in record["logs"].items():
        assert "training from the features of 600 images" in log, name


def test_every_training_loss_falls(record):
    lm, stage1, stage2 = record["lm"], record["losses"]["stage1"], record["losses"]["stage2"]
    assert lm["last_loss"] < 0.2 * lm["first_loss"]
    assert stage1["last"]["loss"] < 0.8 * stage1["first"]["loss"]
    assert stage1["last"]["loss_itg"] < 0.6 * stage1["first"]["loss_itg"]
    for name in ("loss_itc", "loss_itm"):  # at this size they barely leave chance (see the model card)
        assert stage1["last"][name] <= stage1["first"][name], name
    assert stage2["last"]["loss"] < 0.6 * stage2["first"]["loss"]
    vqa = record["losses"]["finetune_vqa"]
    assert vqa["last"]["loss"] < 0.6 * vqa["first"]["loss"]


def test_held_out_captions_beat_random_training_captions(record):
    # Chance: each test image given the caption of a random training image, scored by the same blip2-eval.
    model, chance = record["metrics"]["caption"], record["chance"]["caption"]
    assert model["CIDEr"] > chance["CIDEr"] + 0.3, (model["CIDEr"], chance["CIDEr"])
    assert model["Bleu_4"] > 2 * chance["Bleu_4"], (model["Bleu_4"], chance["Bleu_4"])


def test_held_out_answers_beat_chance(record):
    # Chance: a uniform guess among the answers of each question type, and the most common training answer. At
    # this size the colours are learnt clearly (about 60% against 17% when measured, before the ViT was
    # pre-trained); the other types' margins are thin enough for another CPU's rounding to erase, so the clear
    # margin is asked of the colours alone.
    model, chance = record["metrics"]["vqa"], record["chance"]["vqa"]
    colour = model["perQuestionType"]["what color"]
    assert colour > 2.5 * chance["uniform_per_type"]["what color"], colour


def test_the_model_reads_the_question_in_its_qformer(record):
    from blip2_core import Blip2Config

    model = Path(record["model_dir"])
    assert Blip2Config.from_file(model / "vqa" / "config.json").qformer_text_input  # the answers' model
    assert (model / "vqa" / "qformer_tokenizer" / "vocab.txt").is_file()
    assert not Blip2Config.from_file(model / "config.json").qformer_text_input  # the captions' model


def test_the_frozen_lm_alone_answers_from_a_caption(record):
    # lm_alone.py: the LM with the picture's caption as text. "what shape" is read straight off a caption that names
    # the only group ("what shape is in the picture?") or its place ("what shape is at the top?"), so even the
    # learning test's small LM does it above a guess (33%): 68% when measured; the other kinds need more of it.
    answered = record["metrics"]["lm_given_the_caption"]
    assert set(answered) == set(record["metrics"]["vqa"]["perQuestionType"])
    assert all(0 <= value <= 100 for value in answered.values())
    assert answered["what shape"] > 50, answered
