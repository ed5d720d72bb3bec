"""Command line: subcommands, LAVIS defaults under PaddleMIX's names, start-up refusals, --resume latest."""

import pytest

from blip2_train.arguments import Blip2TrainingArguments
from blip2_train.cli import main, parse
from blip2_train.run import resolve_resume


def test_usage_without_a_stage(capsys):
    assert main([]) == 2
    assert "stage1,stage2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["stage1", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("--model_name_or_path", "--eta_min", "--warmup_steps", "--gradient_checkpointing",
                 "--load_model_path", "--resume_from_checkpoint", "--data_files", "--skip_bad_samples"):  # fmt: skip
        assert name in out


def test_defaults_are_lavis_recipes(tmp_path):
    model, data, args = parse("stage1", ["--output_dir", str(tmp_path)])
    assert (args.learning_rate, args.eta_min, args.warmup_start_lr) == (1e-4, 1e-5, 1e-6)
    assert (args.warmup_steps, args.weight_decay, args.adam_beta1, args.adam_beta2) == (5000, 0.05, 0.9, 0.999)
    assert (args.per_device_train_batch_size, args.num_train_epochs, args.max_grad_norm) == (100, 10.0, 0.0)
    assert (model.image_size, model.freeze_vit, data.max_txt_len, data.dataset) == (224, True, 32, ["coco_caption"])
    assert model.model_name_or_path is None and model.qformer_init == "bert-base-uncased"
    _, _, stage2 = parse("stage2", ["--output_dir", str(tmp_path), "--adam_beta2", "0.98"])
    assert (stage2.warmup_steps, stage2.per_device_train_batch_size, stage2.adam_beta2) == (2000, 64, 0.98)
    _, _, recompute = parse("stage1", ["--output_dir", str(tmp_path), "--gradient_checkpointing"])
    assert recompute.gradient_checkpointing and recompute.recompute  # PaddleNLP's DP-with-recompute path too


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--fp16"], "--fp16 need a GPU build of paddle"),
        (["--bf16", "true"], "--bf16 need a GPU build of paddle"),
        (["--sharding", "stage2"], "--sharding / --sharding_parallel_degree need a GPU"),
        (["--sharding_parallel_degree", "2"], "--sharding / --sharding_parallel_degree need a GPU"),
        (["--tensor_parallel_degree", "2"], "--tensor_parallel_degree / --pipeline_parallel_degree > 1 are not"),
    ],
)
def test_what_this_machine_cannot_run_stops_at_start_up(flags, message, tmp_path):
    import paddle

    if paddle.device.is_compiled_with_cuda() and "GPU" in message:
        pytest.skip("a GPU build of paddle runs these")
    with pytest.raises(SystemExit) as exit_info:
        main(["stage1", "--output_dir", str(tmp_path), *flags])  # no model named: it would fail later otherwise
    assert message in str(exit_info.value)


def test_resume_latest_takes_only_complete_checkpoints(tmp_path):
    assert resolve_resume("latest", str(tmp_path)) is None  # nothing yet: start fresh
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-2" / "checkpoint_complete.json").write_text("{}")
    assert resolve_resume("latest", str(tmp_path)) == str(tmp_path / "checkpoint-2")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        resolve_resume(str(tmp_path / "checkpoint-9"), str(tmp_path))


def test_visualdl_gets_hyperparameters_it_accepts(tmp_path):
    visualdl = pytest.importorskip("visualdl")
    hparams = Blip2TrainingArguments(output_dir=str(tmp_path), report_to=["none"]).to_sanitized_dict()
    assert not any(isinstance(v, bool) for v in hparams.values())
    with visualdl.LogWriter(logdir=str(tmp_path / "vdl")) as writer:
        writer.add_hparams(hparams, metrics_list=[])
