"""blip2-merge and blip2-predict, run as a user runs them (their main functions, real files)."""

import json
import shutil

import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file
from tiny_checkpoints import assert_generates_the_reference

from blip2_core import Blip2ForConditionalGeneration, Blip2Qformer
from blip2_core.checkpoint_io import write_safetensors
from blip2_core.cli.merge import main as merge_main
from blip2_core.cli.predict import main as predict_main


def split_stage1(fixtures_dir, tmp_path):
    """HF's retrieval checkpoint cut in two: the vision encoder alone, and the rest (the bridge) with its config."""
    state = load_file(str(fixtures_dir / "stage1" / "hf" / "model.safetensors"))
    vision_dir, bridge_dir = tmp_path / "vision", tmp_path / "bridge"
    vision_dir.mkdir()
    encoder = {k: v for k, v in state.items() if k.startswith("vision_model.") and "post_layernorm" not in k}
    write_safetensors(encoder, vision_dir)
    write_safetensors({k: v for k, v in state.items() if k not in encoder}, bridge_dir)
    shutil.copy(fixtures_dir / "stage1" / "hf" / "config.json", bridge_dir / "config.json")
    return vision_dir, bridge_dir


def test_merge_stage1_round_trip_gives_the_reference_scores(fixtures_dir, tmp_path, capsys):
    vision, bridge = split_stage1(fixtures_dir, tmp_path)
    assert merge_main(["--vision", str(vision), "--bridge", str(bridge), "--save", str(tmp_path / "merged")]) == 0
    captured = capsys.readouterr()
    assert "stage-1 model" in captured.out and "temp" in captured.err  # HF's ITM checkpoint has no temperature
    merged = Blip2Qformer.from_pretrained(tmp_path / "merged")
    ref = {k: paddle.to_tensor(v) for k, v in load_file(str(fixtures_dir / "stage1" / "io.safetensors")).items()}
    itc = merged.itc_scores(ref["pixel_values"], ref["input_ids"], ref["attention_mask"])
    np.testing.assert_allclose(itc.numpy(), ref["itc_similarity"].numpy(), atol=1e-4, rtol=0)


def test_merge_stage2_from_two_layouts_generates_as_the_reference(fixtures_dir, tmp_path):
    """Vision from a LAVIS .pth, bridge from an HF directory, LLM named: PaddleMIX's merge_weight.py, working."""
    code = merge_main(
        [
            "--vision",
            str(fixtures_dir / "opt" / "lavis.pth"),
            "--bridge",
            str(fixtures_dir / "opt" / "hf"),
            "--llm",
            str(fixtures_dir / "opt" / "llm"),
            "--save",
            str(tmp_path / "merged"),
        ]
    )
    assert code == 0
    model = Blip2ForConditionalGeneration.from_pretrained(tmp_path / "merged")
    assert model.load_report.missing == []
    assert_generates_the_reference(model, fixtures_dir)


def test_merge_takes_paddlemix_merge_weight_flags(fixtures_dir, tmp_path, capsys):
    """paddlemix/examples/blip2/merge_weight.py's command line, as its README writes it, with our meaning."""
    code = merge_main(
        ["--vision_name_or_path", str(fixtures_dir / "opt" / "lavis.pth"), "--bridge_name_or_path",
         str(fixtures_dir / "opt" / "hf"), "--llm_path", str(fixtures_dir / "opt" / "llm"), "--save_path",
         str(tmp_path / "merged")]
    )  # fmt: skip
    assert code == 0
    assert_generates_the_reference(Blip2ForConditionalGeneration.from_pretrained(tmp_path / "merged"), fixtures_dir)
    with pytest.raises(SystemExit):  # its first version's flags: one line naming the ones to use
        merge_main(["--blip2_path", "x", "--vision", "v", "--bridge", "b", "--save", "s"])
    assert "--vision_name_or_path, --bridge_name_or_path and --llm_path" in capsys.readouterr().err


def test_merge_refuses_a_bridge_without_the_qformer(fixtures_dir, tmp_path, capsys):
    vision, bridge = split_stage1(fixtures_dir, tmp_path)
    shutil.copy(bridge / "config.json", vision / "config.json")  # the right sizes, but no Q-Former weights
    assert merge_main(["--vision", str(vision), "--bridge", str(vision), "--save", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "would lack" in err and "qformer." in err


def generate_by_hand(model_dir, images, prompt, **settings):
    """What blip2-predict should print, computed through the Python API with every setting spelled out."""
    from blip2_core.loading.text_tokenizer import load_tokenizer
    from blip2_data import ImageProcessor, ImageProcessorConfig

    model = Blip2ForConditionalGeneration.from_pretrained(model_dir)
    tokenizer = load_tokenizer(model_dir)
    pixels = paddle.to_tensor(np.stack([ImageProcessor(ImageProcessorConfig(image_size=56))(p) for p in images]))
    prompt_ids = paddle.to_tensor([tokenizer(prompt)["input_ids"]] * len(images))  # one prompt: no padding
    ids = model.generate(pixels, prompt_ids, paddle.ones_like(prompt_ids), **settings)
    return [text.strip() for text in tokenizer.batch_decode(ids.numpy().tolist(), skip_special_tokens=True)]


def test_predict_captions_with_laviss_settings_and_the_prompt_in_front(model_dir, images, capsys):
    assert predict_main(["--model", str(model_dir), "--image", *images, "--prompt", "a photo of", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["image"] for line in lines] == images
    # LAVIS's caption settings: beam 5, 8 to 30 new tokens; the prompt's words start the caption
    expected = generate_by_hand(model_dir, images, "a photo of", num_beams=5, max_new_tokens=30, min_new_tokens=8)
    assert [line["caption"] for line in lines] == [f"a photo of {text}" for text in expected]
    assert all(len(text.split()) >= 8 for text in expected)  # min_new_tokens=8 of whole words here


def test_predict_answers_with_the_papers_vqa_settings(model_dir, images, capsys):
    question = "what is in the picture?"
    assert predict_main(["--model", str(model_dir), "--image", *images, "--question", question, "--json"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert all(a["question"] == question for a in answers) and [a["image"] for a in answers] == images
    # "Question: {} Answer:", beam 5, 1 to 10 new tokens, length penalty -1
    expected = generate_by_hand(
        model_dir,
        images,
        f"Question: {question} Answer:",
        num_beams=5,
        max_new_tokens=10,
        min_new_tokens=1,
        length_penalty=-1.0,
    )
    assert [a["answer"] for a in answers] == expected


def _needs_blip2_shapes():
    from blip2_core.loading.default_model import default_model_path

    return pytest.mark.skipif(default_model_path() is None, reason="the blip2-shapes package is not installed")


@_needs_blip2_shapes()
def test_predict_without_model_runs_the_default_model(images, capsys):
    from blip2_core.loading.default_model import default_model_path

    args = ["--image", images[0], "--num-beams", "1", "--max-new-tokens", "6", "--min-new-tokens", "1"]
    assert predict_main(args) == 0
    default = capsys.readouterr().out
    assert predict_main(["--model", str(default_model_path()), *args]) == 0
    assert default == capsys.readouterr().out and default.startswith(images[0] + "\t")


@_needs_blip2_shapes()
def test_predict_without_model_answers_with_the_default_vqa_model(images, capsys):
    from blip2_core.loading.default_model import default_vqa_path

    args = ["--image", images[0], "--question", "what color is the circle?", "--num-beams", "1"]
    assert predict_main(args) == 0
    default = capsys.readouterr().out
    assert predict_main(["--model", str(default_vqa_path()), *args]) == 0
    assert default == capsys.readouterr().out and default.startswith(images[0] + "\t")


def test_predict_explains_missing_model_and_bad_images(model_dir, images, tmp_path, capsys, monkeypatch):
    from blip2_core.loading import default_model

    monkeypatch.setattr(default_model, "model_files_directory", lambda: None)  # blip2-shapes not installed
    assert predict_main(["--image", images[0]]) == 2
    assert "pip install -e packages/blip2-shapes" in capsys.readouterr().err
    assert predict_main(["--model", str(model_dir), "--image", str(tmp_path / "nope.jpg")]) == 1
    assert "nope.jpg" in capsys.readouterr().err
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    assert predict_main(["--model", str(model_dir), "--image", str(broken)]) == 1
    assert "broken.jpg" in capsys.readouterr().err


def test_list_models_shows_the_known_names(capsys):
    assert predict_main(["--list-models"]) == 0
    out = capsys.readouterr().out
    for name in ("paddlemix/blip2-caption-opt2.7b", "blip2_t5/caption_coco_flant5xl", "Salesforce/blip2-opt-2.7b"):
        assert name in out


def test_predict_takes_paddlemix_run_predict_flags(model_dir, images, fixtures_dir, tmp_path, capsys):
    """paddlemix/examples/blip2/run_predict.py's command line, with its meaning: --input_image, --model_name_or_path,
    --text_model_name_or_path, --prompt, --load_model_path (weights over the model), and the training settings it
    parses (which do nothing there) named as ignored."""
    from blip2_core.cli.predict import main as predict_main

    changed = tmp_path / "changed"
    changed.mkdir()
    state = load_file(str(fixtures_dir / "opt" / "hf" / "model.safetensors"))
    rng = np.random.RandomState(0)
    write_safetensors(
        {k: rng.permutation(v) if k.startswith("language_model") else v for k, v in state.items()}, changed
    )
    common = ["--input_image", images[0], "--model_name_or_path", str(model_dir), "--text_model_name_or_path",
              str(model_dir), "--prompt", "a photo of", "--num-beams", "1", "--max-new-tokens", "4"]  # fmt: skip
    assert predict_main([*common, "--fp16", "True", "--learning_rate", "1e-4", "--image_size", "224"]) == 0
    captured = capsys.readouterr()
    assert "ignored, as they are training settings: --learning_rate --fp16" in captured.err
    plain = captured.out
    assert predict_main([*common, "--load_model_path", str(changed)]) == 0
    assert capsys.readouterr().out != plain  # the changed LLM weights were loaded over the model
    assert predict_main([*common, "--model_path", str(tmp_path / "missing")]) == 1  # the model cannot load
    assert "missing" in capsys.readouterr().err
