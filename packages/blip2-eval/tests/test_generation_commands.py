"""blip2-eval caption and vqa end to end on a tiny random model and a small COCO tree."""

from __future__ import annotations

import json

import numpy as np

from blip2_eval.caption_score import score_caption_files
from blip2_eval.cli import main
from blip2_eval.vqa_score import score_vqa_files


def caption_args(model, coco, out, *extra):
    return ["caption", "--model", str(model), "--dataset", "coco_caption", "--data_files", str(coco / "images"),
            str(coco / "coco_karpathy_test.json"), "--output_dir", str(out), "--batch_size", "4", *extra]  # fmt: skip


def vqa_args(model, coco, out, *extra):
    return ["vqa", "--model", str(model), "--dataset", "coco_vqa", "--data_files", str(coco / "images"),
            str(coco / "v2_OpenEnded_mscoco_val2014_questions.json"),
            str(coco / "v2_mscoco_val2014_annotations.json"), "--output_dir", str(out), "--batch_size", "4", *extra]  # fmt: skip


def direct_model(model_dir):
    """The same model through blip2-core's public API, for the expected outputs."""
    from blip2_core import Blip2ForConditionalGeneration
    from blip2_core.loading.text_tokenizer import load_tokenizer
    from blip2_data import ImageProcessor, ImageProcessorConfig

    model = Blip2ForConditionalGeneration.from_pretrained(model_dir)
    model.eval()
    return model, load_tokenizer(model_dir), ImageProcessor(ImageProcessorConfig(image_size=28), train=False)


def test_caption_results_settings_and_metrics(opt_model, coco_tree, tmp_path, capsys):
    import paddle

    out = tmp_path / "caption"
    assert main(caption_args(opt_model, coco_tree, out)) == 0
    results = json.loads((out / "results.json").read_text())
    karpathy = json.loads((coco_tree / "coco_karpathy_test.json").read_text())
    assert [r["image_id"] for r in results] == [int(row["image_id"].split("_")[1]) for row in karpathy]

    # every generation setting pinned, LAVIS's caption defaults
    settings = json.loads((out / "settings.json").read_text())
    assert settings["generation"] == {
        "prompt": "a photo of", "num_beams": 5, "max_new_tokens": 30, "min_new_tokens": 8, "length_penalty": 1.0,
        "repetition_penalty": 1.0, "do_sample": False, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
        "num_return_sequences": 1,
        "eos_token_id": [3],  # this vocabulary has no newline token: the model's own eos
    }  # fmt: skip
    assert settings["left_padding"] is True and settings["model_eos_token_id"] == [3]

    # the captions are the model's own beam search with those settings, image by image (batch of one)
    model, tokenizer, processor = direct_model(opt_model)
    prompt = tokenizer(["a photo of"])["input_ids"][0]
    for row, result in zip(karpathy, results):
        pixels = paddle.to_tensor(processor(str(coco_tree / "images" / row["image"]))[None])
        ids = model.generate(pixels, paddle.to_tensor([prompt]), paddle.ones([1, len(prompt)], dtype="int64"),
                             num_beams=5, max_new_tokens=30, min_new_tokens=8, length_penalty=1.0)  # fmt: skip
        assert result["caption"] == tokenizer.batch_decode(ids.numpy().tolist(), skip_special_tokens=True)[0].strip()
    assert len({r["caption"] for r in results}) > 1  # the captions depend on the image

    # metrics equal caption-score on the written files
    metrics = json.loads((out / "metrics.json").read_text())
    again = score_caption_files(out / "results.json", out / "ground_truth.json")
    for name in ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr"):
        assert metrics[name] == again[name]
    assert "CIDEr" in capsys.readouterr().out  # the summary table


def test_vqa_with_lavis_settings_scored_once(opt_model, coco_tree, tmp_path):
    import paddle

    out = tmp_path / "vqa"
    assert main(vqa_args(opt_model, coco_tree, out)) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["generation"]["prompt"] == "Question: {} Short answer:"
    assert settings["generation"]["length_penalty"] == 0.0  # OPT's own default, as LAVIS leaves it unset
    assert (settings["generation"]["num_beams"], settings["generation"]["max_new_tokens"]) == (5, 10)
    results = json.loads((out / "results.json").read_text())
    questions = json.loads((coco_tree / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())["questions"]
    assert [r["question_id"] for r in results] == [q["question_id"] for q in questions]

    # answers = blip2-core's predict_answers on LAVIS-cleaned questions, left-padded, as a batch of 3
    model, tokenizer, processor = direct_model(opt_model)
    first = questions[:3]
    pixels = paddle.to_tensor(
        np.stack(
            [processor(str(coco_tree / "images" / "val2014" / f"COCO_val2014_{q['image_id']:012d}.jpg")) for q in first]
        )
    )
    cleaned = [q["question"].lower() for q in first]  # "?" is not in LAVIS's list: only case changes here
    expected = model.predict_answers(pixels, cleaned, tokenizer, prompt="Question: {} Short answer:", num_beams=5,
                                     max_new_tokens=10, min_new_tokens=1, length_penalty=0.0)  # fmt: skip
    got = [r["answer"] for r in results[:3]]
    assert got == expected

    metrics = json.loads((out / "metrics.json").read_text())
    official = score_vqa_files(
        out / "results.json",
        coco_tree / "v2_mscoco_val2014_annotations.json",
        coco_tree / "v2_OpenEnded_mscoco_val2014_questions.json",
    )
    assert metrics["overall"] == official["overall"] and metrics["perAnswerType"] == official["perAnswerType"]
    assert metrics["num_questions"] == 18


def test_generation_settings_are_overridable_and_a_resume_with_other_settings_is_refused(
    opt_model, coco_tree, tmp_path, capsys
):
    out = tmp_path / "vqa"
    assert main(vqa_args(opt_model, coco_tree, out, "--num_beams", "1", "--length_penalty", "1", "--limit", "4")) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["generation"]["num_beams"] == 1 and settings["generation"]["length_penalty"] == 1.0
    assert len(json.loads((out / "results.json").read_text())) == 4
    capsys.readouterr()
    assert main(vqa_args(opt_model, coco_tree, out, "--num_beams", "3")) == 1
    err = capsys.readouterr().err
    assert "settings.json" in err and "other settings" in err and "num_beams" in err


def test_bad_dataset_rows_are_named(opt_model, coco_tree, tmp_path, capsys):
    broken = tmp_path / "coco_karpathy_test.json"
    rows = json.loads((coco_tree / "coco_karpathy_test.json").read_text())
    del rows[2]["caption"]
    broken.write_text(json.dumps(rows))
    args = ["caption", "--model", str(opt_model), "--dataset", "coco_caption", "--data_files",
            str(coco_tree / "images"), str(broken), "--output_dir", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "coco_karpathy_test.json, row 2" in err and "missing key 'caption'" in err


def test_unknown_dataset_lists_the_known(opt_model, tmp_path, capsys):
    assert main(["vqa", "--model", str(opt_model), "--dataset", "vizwiz", "--output_dir", str(tmp_path)]) == 1
    assert "unknown dataset 'vizwiz'" in capsys.readouterr().err


def test_offline_download_names_the_files_to_fetch(opt_model, tmp_path, capsys):
    assert main(["caption", "--model", str(opt_model), "--dataset", "coco_caption", "--output_dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "coco_karpathy_test.json" in err and "val2014.zip" in err


def test_flant5_gets_its_own_length_penalty_and_right_padded_prompts(t5_model, coco_tree, tmp_path):
    import paddle

    out = tmp_path / "t5"
    assert main(vqa_args(t5_model, coco_tree, out, "--limit", "3")) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["llm"] == "t5" and settings["generation"]["length_penalty"] == -1.0
    assert settings["left_padding"] is False
    model, tokenizer, processor = direct_model(t5_model)
    questions = json.loads((coco_tree / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())["questions"][:3]
    pixels = paddle.to_tensor(
        np.stack(
            [
                processor(str(coco_tree / "images" / "val2014" / f"COCO_val2014_{q['image_id']:012d}.jpg"))
                for q in questions
            ]
        )
    )
    expected = model.predict_answers(pixels, [q["question"].lower() for q in questions], tokenizer,
                                     prompt="Question: {} Short answer:", num_beams=5, max_new_tokens=10,
                                     min_new_tokens=1, length_penalty=-1.0)  # fmt: skip
    assert [r["answer"] for r in json.loads((out / "results.json").read_text())] == expected
    caption_out = tmp_path / "t5-caption"
    assert main(caption_args(t5_model, coco_tree, caption_out, "--limit", "2", "--no_score")) == 0
    assert len(json.loads((caption_out / "results.json").read_text())) == 2


def test_vqa_gives_the_question_to_a_qformer_that_reads_it(tmp_path, coco_tree, capsys):
    """A model VQA-fine-tuned with the question beside the Q-Former's queries (config qformer_text_input, as
    blip2-train finetune-vqa saves it): blip2-eval vqa reads qformer_tokenizer/ and gives the question to the
    Q-Former too; without that folder it stops with a clear error."""
    import shutil

    import paddle
    from conftest import OPT, QFORMER, VISION, write_wordpiece_tokenizer

    from blip2_core import Blip2Config, Blip2ForConditionalGeneration
    from blip2_core.loading.text_tokenizer import load_tokenizer

    values = {"model_type": "blip-2", "num_query_tokens": 4, "vision_config": VISION, "text_config": OPT,
              "qformer_config": {**QFORMER, "use_qformer_text_input": True}}  # fmt: skip
    config = Blip2Config.from_dict(values)
    config.qformer_text_input = True
    paddle.seed(1)
    model = Blip2ForConditionalGeneration(config)
    with paddle.no_grad():
        model.language_projection.weight.set_value(model.language_projection.weight * 20)
    directory = tmp_path / "blip2-vqa"
    model.save_pretrained(directory)
    write_wordpiece_tokenizer(directory)
    (directory / "qformer_tokenizer").mkdir()
    write_wordpiece_tokenizer(directory / "qformer_tokenizer")

    out = tmp_path / "vqa"
    assert main(vqa_args(directory, coco_tree, out)) == 0
    results = json.loads((out / "results.json").read_text())
    questions = json.loads((coco_tree / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())["questions"][:3]
    loaded, tokenizer, processor = direct_model(directory)
    pixels = paddle.to_tensor(
        np.stack([processor(str(coco_tree / "images" / "val2014" / f"COCO_val2014_{q['image_id']:012d}.jpg"))
                  for q in questions])
    )  # fmt: skip
    expected = loaded.predict_answers(
        pixels, [q["question"].lower() for q in questions], tokenizer, prompt="Question: {} Short answer:",
        num_beams=5, max_new_tokens=10, min_new_tokens=1, length_penalty=0.0,
        qformer_tokenizer=load_tokenizer(directory / "qformer_tokenizer"),
    )  # fmt: skip
    assert [r["answer"] for r in results[:3]] == expected

    shutil.rmtree(directory / "qformer_tokenizer")
    assert main(vqa_args(directory, coco_tree, tmp_path / "vqa-again")) == 1
    err = capsys.readouterr().err
    assert "qformer_text_input" in err and "qformer_tokenizer" in err
