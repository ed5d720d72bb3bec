"""PaddleMIX's BLIP-2 training command lines run here as written (paddlemix/examples/blip2/README.md and the flag
sets of run_pretrain_stage1.py / run_pretrain_stage2.py, every version), with PaddleMIX's meaning."""

import shlex

import pytest
import tiny

from blip2_train.cli import parse
from blip2_train.paddlemix_names import PaddleMixNameError

# The README's stage-2 example (its MODEL_NAME filled in), and its one-line commands with the script's name
# replaced by ours.
README_STAGE2 = (
    "--per_device_train_batch_size 128 --model_name_or_path paddlemix/blip2-stage2 --warmup_steps 2000 "
    "--eta_min 1e-5 --learning_rate 0.0001 --weight_decay 0.05 --num_train_epochs 10 --tensor_parallel_degree 1 "
    '--sharding_parallel_degree 1 --output_dir "./output" --logging_steps 50 --do_train --save_strategy epoch'
)
README_ONE_LINERS = [
    ("stage1", ""),
    ("stage2", ""),
    ("stage2", "--resume_from_checkpoint outdir/checkpoint-1"),
    ("stage2", "--load_model_path model_dir_path/"),
]
# Every flag run_pretrain_stage1.py / run_pretrain_stage2.py define, over their versions (fp16 off and do_eval
# off: neither runs on this CPU-only machine, and --do_eval is refused with its reason, tested elsewhere).
STAGE1_FLAGS = (
    "--task_name coco_caption --prompt 'a photo of ' --model_name_or_path paddlemix/blip2-stage1 "
    "--text_model_name_or_path facebook/opt-2.7b --image_size 224 --qformer_tokenizer_name bert-base-uncased "
    "--weight_decay 0.05 --learning_rate 1e-4 --num_train_epochs 10 --warmup_start_lr 1e-6 --eta_min 1e-5 "
    "--warmup_steps 5000 --lr_scheduler_name CosineDecayWithWarmup --per_device_train_batch_size 256 "
    "--per_device_eval_batch_size 128 --output_dir . --do_eval False --do_train True --logging_steps 50 "
    "--evaluation_strategy no --fp16_opt_level O1 --fp16 False --gradient_checkpointing False "
    "--tensor_parallel_degree 1 --sharding_parallel_degree 1 --pipeline_parallel_degree 1 --save_strategy epoch "
    "--load_model_path ckpt --benchmark False --checkpoint_steps 1000"
)
STAGE2_EXTRA = "--llm_name opt-2.7b --model_path ckpt --pretrained_model_path ckpt --resume_from_checkpoint out/ck"


def test_the_readme_commands_parse_with_paddlemix_meaning():
    model, data, training = parse("stage2", shlex.split(README_STAGE2))
    assert model.model_name_or_path == "paddlemix/blip2-stage2" and training.per_device_train_batch_size == 128
    assert training.output_dir == "./output" and training.warmup_steps == 2000 and training.eta_min == 1e-5
    for stage, flags in README_ONE_LINERS:
        model, _, training = parse(stage, shlex.split(flags))
    assert model.load_model_path == "model_dir_path/"


def test_every_script_flag_parses_with_paddlemix_meaning():
    model, data, training = parse("stage1", shlex.split(STAGE1_FLAGS))
    assert data.dataset == ["coco_caption"] and model.qformer_tokenizer == "bert-base-uncased"
    assert model.load_model_path == "ckpt" and training.warmup_steps == 5000 and training.fp16 is False
    model, data, training = parse("stage2", shlex.split(STAGE1_FLAGS.replace("--load_model_path ckpt", "")))
    model, _, training = parse("stage2", shlex.split(f"{STAGE2_EXTRA} --output_dir o"))
    assert model.load_model_path == "ckpt" and training.resume_from_checkpoint == "out/ck"
    # --task_name takes a list, as PaddleMIX's load_dataset did
    _, data, _ = parse("stage1", ["--task_name", "coco_caption", "vg_caption"])
    assert data.dataset == ["coco_caption", "vg_caption"]


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        ("--lr_scheduler_name LinearDecay", "--warmup_steps, --warmup_start_lr"),
        ("--benchmark True", "interval_samples_per_second"),
        ("--profiler_options batch_range=[10,20]", "py-spy"),
        ("--task_name coco_caption --dataset vg_caption", "give one of them"),
    ],
)
def test_what_has_no_meaning_here_is_refused_in_one_line_naming_ours(flags, names):
    with pytest.raises(PaddleMixNameError) as refused:
        parse("stage1", shlex.split(flags))
    message = str(refused.value.code)
    assert names in message and "\n" not in message


def test_the_readme_command_starts_and_stops_only_where_data_is_needed(tmp_path):
    proc = tiny.train(["stage2", *shlex.split(README_STAGE2)], tmp_path, check=False)
    assert proc.returncode != 0
    assert "Some specified arguments are not used" not in proc.stderr
    assert "coco_karpathy_train.json" in proc.stderr  # offline: the error says which file to put where
    assert "--data_files IMAGE_ROOT,ANNOTATION_JSON" in proc.stderr and "data_files=[[" not in proc.stderr
