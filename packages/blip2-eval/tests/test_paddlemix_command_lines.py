"""PaddleMIX's evaluation command lines (run_eval_caption.py, run_eval_vqav2_zeroshot.py: README and flag sets) on
blip2-eval, with PaddleMIX's meaning; and the decoding presets (LAVIS's eval yamls, LAVIS's current CaptionTask,
PaddleMIX's greedy decoding)."""

import shlex

import pytest

from blip2_eval.cli import build_parser, main
from blip2_eval.settings import settings_from_args

# Every flag the two scripts define, over their versions (training settings included: they parse paddlenlp's
# TrainingArguments), as a PaddleMIX user passes them.
EVAL_FLAGS = (
    "--task_name {task} --prompt 'a photo of' --model_name_or_path {model} --text_model_name_or_path tok "
    "--image_size 224 --weight_decay 0.05 --learning_rate 1e-4 --num_train_epochs 10 --warmup_start_lr 1e-6 "
    "--eta_min 1e-5 --warmup_steps 2000 --lr_scheduler_name CosineDecayWithWarmup --per_device_train_batch_size 128 "
    "--per_device_eval_batch_size 64 --output_dir out --do_eval True --do_train True --logging_steps 50 "
    "--evaluation_strategy no --fp16_opt_level O1 --fp16 True --gradient_checkpointing False "
    "--tensor_parallel_degree 1 --sharding_parallel_degree 1 --pipeline_parallel_degree 1 --load_model_path ck "
    "--model_path ck --benchmark False --profiler_options batch_range=[10,20]"
)


@pytest.mark.parametrize(("task", "dataset", "model"), [("caption", "coco_caption", "m1"), ("vqa", "coco_vqa", "m2")])
def test_every_paddlemix_eval_flag_parses_with_its_meaning(task, dataset, model):
    args = build_parser().parse_args([task, *shlex.split(EVAL_FLAGS.format(task=dataset, model=model))])
    assert (args.model, args.dataset, args.tokenizer, args.batch_size) == (model, dataset, "tok", 64)
    assert args.load_model_path == "ck" and args.output_dir == "out" and args.image_size == 224


@pytest.mark.parametrize(
    ("task", "model"), [("caption", "paddlemix/blip2-caption-opt2.7b"), ("vqa", "paddlemix/blip2-pretrained-opt2.7b")]
)
def test_the_readme_commands_without_flags_evaluate_paddlemixs_default_model(task, model, tmp_path, capsys):
    """`fleetrun ... run_eval_vqav2_zeroshot.py` with no flags: its default model and task; offline, the run stops
    where the weights are needed, saying so."""
    args = build_parser().parse_args([task])
    assert args.model == model and args.dataset == ("coco_caption" if task == "caption" else "coco_vqa")
    assert main([task, "--output_dir", str(tmp_path / "out"), "--fp16", "True"]) == 1
    err = capsys.readouterr().err
    assert "ignored, as they are training settings: --fp16" in err
    assert "usage:" not in err and ("offline" in err.lower() or "not available" in err or "download" in err)
    assert "data_files=[[" not in err


def decoding(task, *flags):
    args = build_parser().parse_args([task, "--model", "m", *flags])
    return settings_from_args(args).for_model(task, "opt", (50118,))


def test_decoding_presets():
    paper = decoding("caption")
    assert (paper.num_beams, paper.repetition_penalty, paper.length_penalty) == (5, 1.0, 1.0)
    current = decoding("caption", "--decoding", "lavis-current")
    assert (current.num_beams, current.repetition_penalty, current.length_penalty) == (5, 1.15, 0.0)
    greedy = decoding("caption", "--decoding", "paddlemix")
    assert (greedy.num_beams, greedy.max_new_tokens, greedy.min_new_tokens) == (1, 30, 8)
    assert decoding("vqa", "--decoding", "paddlemix").num_beams == 1
    assert decoding("vqa", "--decoding", "lavis-current").length_penalty == 0.0  # OPT's predict_answers default
    assert decoding("caption", "--decoding", "paddlemix", "--num_beams", "3").num_beams == 3  # a flag wins


def test_offline_data_errors_name_the_command_lines_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BLIP2_OFFLINE", "1")
    assert main(["caption", "--model", "blip2-shapes", "--dataset", "coco_caption", "--output_dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "coco_karpathy_test.json" in err and "--data_files IMAGE_ROOT ANNOTATION" in err
    assert "data_files=[[" not in err
