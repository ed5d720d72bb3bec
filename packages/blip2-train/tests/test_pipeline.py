"""A whole tiny stage 1 -> stage 2 run through the command line, and what its output directories are."""

import json

import numpy as np
import paddle
import tiny

from blip2_core import Blip2ForConditionalGeneration, Blip2Qformer
from blip2_train.models import build_stage2_model


def stage1_args(assets, output, steps=10):
    return [
        "stage1", "--vision_model_name_or_path", str(assets["vision"]), "--qformer_init", str(assets["bert"]),
        "--data_files", assets["data"], "--output_dir", str(output), "--per_device_train_batch_size", "4",
        "--max_steps", str(steps), "--warmup_steps", "2", "--learning_rate", "1e-3", "--eta_min", "1e-4",
        "--save_steps", "5", "--save_total_limit", "1", "--seed", "3", *tiny.COMMON,
    ]  # fmt: skip


def test_stage1_then_stage2_from_its_output(assets, tmp_path):
    out1 = tmp_path / "stage1"
    tiny.train(stage1_args(assets, out1), tmp_path)
    curve = tiny.losses(out1)
    assert len(curve) == 10 and np.mean(curve[-3:]) < np.mean(curve[:3]), curve
    assert sorted(p.name for p in out1.glob("checkpoint-*")) == ["checkpoint-10"]  # checkpoint-5 rotated out

    # checkpoints hold only the trainable weights: no ViT
    ckpt = tiny.trainable_weights(out1 / "checkpoint-10")
    assert not any(k.startswith("vision_model.") for k in ckpt) and "qformer.query_tokens" in ckpt
    # the final directory is a complete stage-1 model with the trained weights
    model = Blip2Qformer.from_pretrained(out1)
    for name, value in ckpt.items():
        np.testing.assert_array_equal(model.state_dict()[name].numpy(), value, err_msg=name)
    assert not model.load_report.missing

    out2 = tmp_path / "stage2"
    tiny.train(
        [
            "stage2",
            "--model_name_or_path",
            str(out1),
            "--text_model_name_or_path",
            str(assets["llm"]),
            "--data_files",
            assets["data"],
            "--output_dir",
            str(out2),
            "--per_device_train_batch_size",
            "4",
            "--max_steps",
            "8",
            "--warmup_steps",
            "1",
            "--learning_rate",
            "1e-3",
            "--save_steps",
            "8",
            *tiny.COMMON,
        ],  # fmt: skip
        tmp_path,
    )
    curve2 = tiny.losses(out2)
    assert np.mean(curve2[-3:]) < np.mean(curve2[:3]), curve2
    ckpt2 = tiny.trainable_weights(out2 / "checkpoint-8")
    assert not any(k.startswith(("language_model.", "vision_model.")) for k in ckpt2)
    assert "language_projection.weight" in ckpt2
    # stage 2 starts from stage 1's Q-Former (the parts it keeps), with a fresh projection
    begin = build_stage2_model(str(out1), str(assets["llm"]), tiny.IMAGE_SIZE, freeze_vit=True)
    stage1_state = model.state_dict()
    for name, value in begin.state_dict().items():
        if name.startswith("qformer."):
            np.testing.assert_array_equal(value.numpy(), stage1_state[name].numpy(), err_msg=name)
    # the final directory holds the trained weights
    start = Blip2ForConditionalGeneration.from_pretrained(out2)
    config = json.loads((out2 / "config.json").read_text())
    assert config["text_name_or_path"] == str(assets["llm"]) and not config["qformer_config"]["has_text_input"]
    for name, value in ckpt2.items():
        np.testing.assert_array_equal(start.state_dict()[name].numpy(), value, err_msg=name)
    # the frozen LLM was not copied into the output: it comes back from text_name_or_path unchanged
    llm = Blip2ForConditionalGeneration.from_pretrained(
        out1, text_name_or_path=str(assets["llm"]), allow_missing_weights=True
    )
    np.testing.assert_array_equal(
        start.language_model.state_dict()[next(iter(start.language_model.state_dict()))].numpy(),
        llm.language_model.state_dict()[next(iter(llm.language_model.state_dict()))].numpy(),
    )
    with paddle.no_grad():
        pixels = paddle.randn([1, 3, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE])
        assert start.generate(pixels, max_new_tokens=3).shape[0] == 1


def test_stage2_with_flant5(assets, tmp_path):
    # without dropout (T5's and the Q-Former's): with it, 8 steps of the tiny model fall or not by chance
    t5 = tiny.HERE.parents[1] / "blip2-core" / "tests" / "fixtures" / "t5" / "llm"
    llm = tiny.write_llm(tmp_path / "t5", t5, dropout=0.0)
    out = tmp_path / "out"
    tiny.train(
        [
            "stage2",
            "--model_name_or_path",
            str(assets["vision_no_dropout"]),
            "--text_model_name_or_path",
            str(llm),
            "--data_files",
            assets["data"],
            "--output_dir",
            str(out),
            "--per_device_train_batch_size",
            "4",
            "--max_steps",
            "8",
            "--warmup_steps",
            "1",
            "--learning_rate",
            "2e-3",
            "--save_steps",
            "8",
            *tiny.COMMON,
        ],  # fmt: skip
        tmp_path,
    )
    curve = tiny.losses(out)
    assert np.mean(curve[-3:]) < np.mean(curve[:3]) - 0.05, curve
    model = Blip2ForConditionalGeneration.from_pretrained(out)
    assert not model.language_model.is_decoder_only
