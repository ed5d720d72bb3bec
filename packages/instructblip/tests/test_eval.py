"""blip2-eval evaluates InstructBLIP as LAVIS does (lavis/projects/instructblip/qa_okvqa_*_eval.yaml): the prompt
"Question: {} Short Answer:" read whole by the Q-Former and the LLM, beam 5, 1 to 10 tokens, length penalty -1, and
its generate's repetition penalty 1.5; VQA (OK-VQA's files) and GQA."""

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("blip2_eval")

from blip2_eval.cli import main  # noqa: E402


def write_jpeg(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.RandomState(seed).randint(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)


def test_gqa_with_instructblip_prompts_and_decoding(model_dir, tmp_path):
    root = tmp_path / "gqa"
    rows = []
    for i in range(2):
        write_jpeg(root / "images" / f"n{i}.jpg", seed=i)
        rows.append({"image": f"n{i}.jpg", "question": "What color is it?", "question_id": str(i), "answer": "red"})
    (root / "testdev_balanced_questions.json").write_text(json.dumps(rows))
    out = tmp_path / "out"
    args = ["vqa", "--model", str(model_dir), "--dataset", "gqa", "--output_dir", str(out), "--data_files",
            str(root / "images"), str(root / "testdev_balanced_questions.json")]  # fmt: skip
    assert main(args) == 0
    settings = json.loads((out / "settings.json").read_text())
    decoding = settings.get("generation", settings)
    text = json.dumps(decoding)
    assert "Question: {} Short Answer:" in text
    assert '"repetition_penalty": 1.5' in text and '"length_penalty": -1.0' in text
    assert len(json.loads((out / "results.json").read_text())) == 2


def test_okvqa_runs(model_dir, tmp_path):
    root = tmp_path / "okvqa"
    write_jpeg(root / "images" / "val2014" / "COCO_val2014_000000000042.jpg", seed=42)
    (root / "OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps(
        {"questions": [{"image_id": 42, "question": "What sport is this?", "question_id": 420}]}))  # fmt: skip
    (root / "mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": [
        {"question_id": 420, "question_type": "what", "answer_type": "other",
         "answers": [{"answer": "surfing", "answer_id": i} for i in range(10)]}]}))  # fmt: skip
    out = tmp_path / "out"
    args = ["vqa", "--model", str(model_dir), "--dataset", "ok_vqa", "--output_dir", str(out), "--data_files",
            str(root / "images"), str(root / "OpenEnded_mscoco_val2014_questions.json"),
            str(root / "mscoco_val2014_annotations.json")]  # fmt: skip
    assert main(args) == 0
    assert json.loads((out / "metrics.json").read_text())["metric"] == "vqa_accuracy"
