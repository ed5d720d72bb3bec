"""Resume is bit-exact, saves are atomic (a real save killed), --load_model_path, non-finite loss."""

import shutil

import numpy as np
import pytest
import tiny
from safetensors.numpy import load_file


def args(assets, output, *extra):
    return [
        "stage1", "--vision_model_name_or_path", str(assets["vision"]), "--qformer_init", str(assets["bert"]),
        "--data_files", assets["data"], "--output_dir", str(output), "--per_device_train_batch_size", "4",
        "--max_steps", "6", "--warmup_steps", "2", "--learning_rate", "1e-3", "--save_steps", "2", "--seed", "7",
        *tiny.COMMON, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def straight(assets, tmp_path_factory):
    """6 steps in one go (4 steps per epoch: step 2 is mid-epoch, step 4 an epoch's end); dropout and ITM's
    sampled negatives make the result depend on the RNG."""
    out = tmp_path_factory.mktemp("straight")
    tiny.train(args(assets, out), out)
    return out


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_a_killed_save_is_never_resumed_and_resume_is_bit_exact(assets, straight, tmp_path):
    out = tmp_path / "run"
    killed = tiny.train(args(assets, out), tmp_path, check=False, inject="kill-during-save:4")
    assert killed.returncode != 0  # SIGKILL during checkpoint-4's optimizer file
    assert (out / ".staging" / "checkpoint-4" / "model.safetensors").exists()
    assert not (out / "checkpoint-4").exists() and (out / "checkpoint-2").exists()

    resumed = tiny.train(args(assets, out, "--resume_from_checkpoint", "latest"), tmp_path)
    assert "checkpoint-2" in resumed.stdout + resumed.stderr
    assert not (out / ".staging").exists()
    # optimizer, scheduler, RNG and data order restored: the same weights as the straight run, bit for bit
    assert_same_weights(tiny.trainable_weights(out / "checkpoint-6"), tiny.trainable_weights(straight / "checkpoint-6"))
    assert tiny.losses(out)[-4:] == tiny.losses(straight)[-4:]


def test_resume_at_an_epoch_boundary_with_loader_workers_is_bit_exact(assets, straight, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copytree(straight / "checkpoint-4", out / "checkpoint-4")
    # resumed with 2 image-decoding worker processes (the straight run had none): the same batches and pixels
    resume = ["--resume_from_checkpoint", str(out / "checkpoint-4"), "--dataloader_num_workers", "2"]
    tiny.train(args(assets, out, *resume), tmp_path)
    assert_same_weights(tiny.trainable_weights(out / "checkpoint-6"), tiny.trainable_weights(straight / "checkpoint-6"))


def test_load_model_path_starts_from_the_given_weights(assets, straight, tmp_path):
    out = tmp_path / "run"
    frozen_lr = ["--learning_rate", "0", "--warmup_start_lr", "0", "--eta_min", "0", "--max_steps", "1"]
    tiny.train(args(assets, out, "--load_model_path", str(straight / "checkpoint-6"), *frozen_lr), tmp_path)
    final = load_file(str(out / "model.safetensors"))
    for name, value in tiny.trainable_weights(straight / "checkpoint-6").items():
        np.testing.assert_array_equal(final[name], value, err_msg=name)


def test_a_non_finite_loss_stops_at_that_step_and_keeps_the_last_good_checkpoint(assets, tmp_path):
    out = tmp_path / "run"
    proc = tiny.train(args(assets, out, "--save_steps", "1"), tmp_path, check=False, inject="nan-loss-at:3")
    assert proc.returncode != 0
    assert "non-finite loss (nan) at optimizer step 3" in proc.stderr
    assert f"the last good checkpoint is {out / 'checkpoint-2'}" in proc.stderr
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]


def test_resume_refuses_a_checkpoint_of_another_model(assets, straight, tmp_path):
    from blip2_train.checkpoint import load_weights
    from blip2_train.models import build_stage2_model

    model = build_stage2_model(str(assets["vision"]), str(assets["llm"]), tiny.IMAGE_SIZE, freeze_vit=True)
    with pytest.raises(ValueError, match=r"checkpoint-6: weights the model does not have"):
        load_weights(model, straight / "checkpoint-6", require_all_trainable=True)
    # --load_model_path: a stage-1 checkpoint has no projection for stage 2, which would train from random values
    with pytest.raises(ValueError, match=r"trainable weights missing \(language_projection"):
        load_weights(model, straight / "checkpoint-6", require_all_trainable=False)
