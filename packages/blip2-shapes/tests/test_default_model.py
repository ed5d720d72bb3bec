"""The embedded default model (blip2-shapes): found with no network, complete in itself, and it still produces
the test-split scores its model card records (re-measured here with blip2-eval on regenerated data)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from blip2_core.loading.default_model import default_model_path, default_stage1_path, default_vqa_path, model_or_default

MODEL = default_model_path()
pytestmark = pytest.mark.skipif(MODEL is None, reason="this installation carries no default model")


@pytest.fixture(scope="module")
def record():
    return json.loads((MODEL / "scores.json").read_text())


def offline_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PADDLE_", "FLAGS_"))}
    env.update(HF_HUB_OFFLINE="1", BLIP2_HOME=str(tmp_path / "home"), HF_HOME=str(tmp_path / "hf"))
    return env


def test_the_model_directory_is_complete_and_small():
    from blip2_core.model.config import Blip2Config

    for directory in (MODEL, default_vqa_path()):  # captions, and answers
        config = Blip2Config.from_file(directory / "config.json")
        assert config.text_config is not None and config.text_name_or_path is None  # the LLM is inside
        for name in ("vocab.json", "merges.txt", "preprocessor_config.json", "generation_config.json"):
            assert (directory / name).is_file(), name
    assert (MODEL / "README.md").is_file() and default_stage1_path() is not None
    # its answers give the question to the Q-Former too (VQA fine-tuned so), in its own WordPiece tokens
    vqa = default_vqa_path()
    assert Blip2Config.from_file(vqa / "config.json").qformer_text_input
    assert (vqa / "qformer_tokenizer" / "vocab.txt").is_file()
    # the commands pick them: a question goes to the VQA model, captions to the stage-2 one, a named model wins
    assert model_or_default(None, question=True) == str(vqa) and model_or_default(None) == str(MODEL)
    assert model_or_default("mine", question=True) == "mine"
    size = sum(p.stat().st_size for p in MODEL.rglob("*") if p.is_file())
    assert size < 40 * 2**20, size


def test_it_loads_offline_with_its_own_tokenizer(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from blip2_core import Blip2ForConditionalGeneration, Blip2Qformer
    from blip2_core.loading.text_tokenizer import load_tokenizer

    model = Blip2ForConditionalGeneration.from_pretrained(MODEL)
    assert not model.load_report.missing
    assert not Blip2ForConditionalGeneration.from_pretrained(default_vqa_path()).load_report.missing
    tokenizer = load_tokenizer(MODEL)
    assert type(tokenizer).__name__ == "GPTTokenizer"
    assert tokenizer.convert_ids_to_tokens(model.generation_config.eos_token_id[0]) == "\u010a"  # "\n", as OPT
    stage1 = Blip2Qformer.from_pretrained(default_stage1_path())
    assert not stage1.load_report.missing


@pytest.mark.skipif(shutil.which("blip2-eval", path=str(Path(sys.executable).parent)) is None, reason="no blip2-eval")
def test_recorded_test_split_caption_scores_are_reproduced(record, tmp_path):
    from blip2_data.synthetic import write_synthetic_shapes

    files = write_synthetic_shapes(tmp_path / "data", record["settings"]["data"], seed=0)
    test = files["test"]
    command = [
        str(Path(sys.executable).with_name("blip2-eval")), "caption", "--model", str(MODEL),
        "--dataset", "custom_caption", "--prompt", "", "--batch_size", "32", "--output_dir", str(tmp_path / "eval"),
        "--data_files", test["image_root"], test["captions"],
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, env=offline_env(tmp_path), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    recorded = record["metrics"]["caption"]
    assert metrics["num_images"] == recorded["num_images"]
    assert abs(metrics["CIDEr"] - recorded["CIDEr"]) < 0.01
    assert abs(metrics["Bleu_4"] - recorded["Bleu_4"]) < 0.01


@pytest.mark.skipif(shutil.which("blip2-eval", path=str(Path(sys.executable).parent)) is None, reason="no blip2-eval")
def test_recorded_vqa_answers_are_reproduced_on_a_slice(record, tmp_path):
    # The whole VQA test split takes minutes on 2 cores; the first 200 answers must equal the recorded ones.
    from blip2_data.synthetic import write_synthetic_shapes

    files = write_synthetic_shapes(tmp_path / "data", record["settings"]["data"], seed=0)
    test = files["test"]
    command = [
        str(Path(sys.executable).with_name("blip2-eval")), "vqa", "--model", str(default_vqa_path()), "--dataset",
        "coco_vqa",
        "--prompt", "Question: {} Answer:", "--batch_size", "32", "--limit", "200", "--no_score",
        "--output_dir", str(tmp_path / "eval"), "--data_files", test["image_root"], test["questions"],
        test["annotations"],
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, env=offline_env(tmp_path), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = {
        row["question_id"]: row["answer"] for row in json.loads((tmp_path / "eval" / "results.json").read_text())
    }
    recorded = {row["question_id"]: row["answer"] for row in json.loads((MODEL / "vqa_test_results.json").read_text())}
    assert len(answers) == 200
    same = sum(answers[q] == recorded[q] for q in answers)
    assert same >= 198, f"{200 - same} of 200 answers differ from the recorded ones"
