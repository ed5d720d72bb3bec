"""Resume is bit-exact, saves are atomic (a real save killed), a finished run stays finished, --load_model_path,
non-finite values (loss, gradients, weights) stop a run and are never saved."""

import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import tiny
from safetensors.numpy import load_file, save_file

from blip2_train.checkpoint import resumable_checkpoints


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
    # the killed run had logged steps 1-4; the resumed one logs 3-6 again: each step is in the log once
    assert logged_steps(out) == [1, 2, 3, 4, 5, 6]
    assert tiny.losses(out) == tiny.losses(straight)


def logged_steps(output_dir):
    lines = (output_dir / "train_log.jsonl").read_text().splitlines()
    return [entry["step"] for entry in map(json.loads, lines) if "loss" in entry]


def snapshot(directory):
    """Every file under ``directory``: its mode, modification time and contents' hash."""
    return {
        str(path.relative_to(directory)): (
            path.stat().st_mode,
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_a_run_killed_after_its_last_checkpoint_writes_its_final_model_without_training(assets, straight, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copytree(straight / "checkpoint-6", out / "checkpoint-6")  # killed before the final model was written
    proc = tiny.train(args(assets, out, "--resume_from_checkpoint", "latest"), tmp_path)
    assert "is at step 6 of 6: nothing left to train" in proc.stderr
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-6"]
    assert not (out / "train_log.jsonl").exists()  # no step 7 (PaddleNLP's loop trains one before it checks)
    final = load_file(str(out / "model.safetensors"))
    assert_same_weights(final, load_file(str(straight / "model.safetensors")))


def test_rerunning_a_finished_run_says_so_and_changes_nothing(assets, straight, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(straight, out)  # copies keep their modification times
    before = snapshot(out)
    proc = tiny.train(args(assets, out, "--resume_from_checkpoint", "latest"), tmp_path)
    assert "this run already finished (final model from step 6, --max_steps 6): nothing to do" in proc.stderr
    assert snapshot(out) == before
    # more steps asked for: it goes on from the newest checkpoint
    longer = tiny.train(args(assets, out, "--resume_from_checkpoint", "latest", "--max_steps", "7"), tmp_path)
    assert "already finished" not in longer.stderr and logged_steps(out) == [1, 2, 3, 4, 5, 6, 7]


def test_files_are_written_with_the_usual_mode(straight):
    umask = os.umask(0)
    os.umask(umask)
    for path in [
        straight / "model.safetensors",
        straight / "config.json",
        straight / "checkpoint-6" / "model.safetensors",
    ]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


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
    assert re.search(r"non-finite loss \(nan\).* at optimizer step 3", proc.stderr) and "Traceback" not in proc.stderr
    # step 3's loss came from checkpoint-2's weights: resuming from those would fail again
    assert f"the last good checkpoint is {out / 'checkpoint-1'}" in proc.stderr
    assert f"--resume_from_checkpoint {out / 'checkpoint-1'}" in proc.stderr
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]


def test_a_diverging_run_with_itm_stops_and_names_a_checkpoint_that_resumes(assets, tmp_path):
    out = tmp_path / "run"
    diverge = ["--learning_rate", "1e6", "--warmup_steps", "0", "--save_steps", "1"]
    proc = tiny.train(args(assets, out, *diverge), tmp_path, check=False)  # stage 1's default losses: ITM on
    assert proc.returncode != 0
    assert "non-finite loss" in proc.stderr and "multinomial" not in proc.stderr and "Traceback" not in proc.stderr
    for checkpoint in out.glob("checkpoint-*"):
        assert all(np.isfinite(v).all() for v in tiny.trainable_weights(checkpoint).values()), checkpoint
    step = int(re.search(r"at optimizer step (\d+)", proc.stderr).group(1))
    good = Path(re.search(r"the last good checkpoint is (\S+)", proc.stderr).group(1))
    assert tiny.step_of(good) < step - 1  # checkpoint-(step - 1) holds the weights that failed
    # as the message advises: from it, with a lower learning rate (used from the first resumed step on)
    tiny.train(args(assets, out, "--resume_from_checkpoint", str(good), "--save_steps", "100"), tmp_path)
    final = load_file(str(out / "model.safetensors"))
    assert all(np.isfinite(v).all() for v in final.values())


def test_non_finite_weights_are_never_saved(assets, tmp_path):
    out = tmp_path / "run"
    proc = tiny.train(args(assets, out, "--save_steps", "1"), tmp_path, check=False, inject="nan-weights-after:3")
    assert proc.returncode != 0
    assert "non-finite weights" in proc.stderr and "checkpoint-3 not saved" in proc.stderr
    assert f"the last good checkpoint is {out / 'checkpoint-2'}" in proc.stderr
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]


def test_the_checkpoint_named_good_has_finite_weights(straight, tmp_path):
    for step in (2, 4):
        shutil.copytree(straight / f"checkpoint-{step}", tmp_path / f"checkpoint-{step}")
    poisoned = tiny.trainable_weights(tmp_path / "checkpoint-4")
    first = sorted(poisoned)[0]
    poisoned[first] = np.full_like(poisoned[first], np.inf)
    save_file(poisoned, str(tmp_path / "checkpoint-4" / "model.safetensors"))
    assert next(resumable_checkpoints(tmp_path, before_step=6)) == tmp_path / "checkpoint-2"
    assert next(resumable_checkpoints(tmp_path, before_step=2), None) is None


def test_resume_refuses_a_checkpoint_of_another_model(assets, straight, tmp_path):
    from blip2_train.checkpoint import load_weights
    from blip2_train.models import build_stage2_model

    model = build_stage2_model(str(assets["vision"]), str(assets["llm"]), tiny.IMAGE_SIZE, freeze_vit=True)
    with pytest.raises(ValueError, match=r"checkpoint-6: weights the model does not have"):
        load_weights(model, straight / "checkpoint-6", require_all_trainable=True)
    # --load_model_path: a stage-1 checkpoint has no projection for stage 2, which would train from random values
    with pytest.raises(ValueError, match=r"trainable weights missing \(language_projection"):
        load_weights(model, straight / "checkpoint-6", require_all_trainable=False)
