"""Two CPU processes (gloo) under paddle's launcher equal one process on the same global batch."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tiny

import blip2_train

ENTRY = str(Path(blip2_train.__file__).parent / "__main__.py")  # the launcher starts a script


def launch_two(args, cwd: Path) -> None:
    log = cwd / "launch-log"
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--backend", "gloo",
               "--log_dir", str(log), ENTRY, *args]  # fmt: skip
    proc = subprocess.run(command, cwd=cwd, env=tiny.environment(), capture_output=True, text=True, timeout=300)
    logs = "".join(p.read_text() for p in sorted(log.glob("workerlog.*")))
    assert proc.returncode == 0, proc.stderr[-3000:] + logs[-6000:]


def max_difference(a: Path, b: Path) -> float:
    x, y = tiny.trainable_weights(a), tiny.trainable_weights(b)
    assert x.keys() == y.keys()
    return max(float(np.abs(x[k] - y[k]).max()) for k in x)


def logged(output_dir: Path, name: str) -> list[float]:
    lines = (output_dir / "train_log.jsonl").read_text().splitlines()
    return [entry[name] for entry in map(json.loads, lines) if name in entry]


# No dropout, ITC + ITG (ITM draws its negatives at random, differently in one and two processes), captions of
# 1 to 6 words (token-level losses must average over the global batch's tokens, not each rank's), a smooth AdamW
# (epsilon 1e-3: no sign flips of near-zero gradients); the same global batch of 4 either way.
STAGE1 = ["--stage1_losses", "itc,itg", "--adam_epsilon", "1e-3", "--max_steps", "3", "--warmup_steps", "1",
          "--learning_rate", "1e-3", "--save_steps", "3", *tiny.COMMON]  # fmt: skip


def test_stage1_two_ranks_equal_one_process_and_negatives_span_ranks(assets, tmp_path):
    common = ["stage1", "--vision_model_name_or_path", str(assets["vision_no_dropout"]), "--qformer_init",
              str(assets["bert"]), "--data_files", assets["data_lengths"], *STAGE1]  # fmt: skip
    launch_two([*common, "--output_dir", str(tmp_path / "two"), "--per_device_train_batch_size", "2"], tmp_path)
    tiny.train([*common, "--output_dir", str(tmp_path / "one"), "--per_device_train_batch_size", "4"], tmp_path)
    diff = max_difference(tmp_path / "two" / "checkpoint-3", tmp_path / "one" / "checkpoint-3")
    assert diff < 1e-5
    # the logged loss and its parts are the global batch's, not rank 0's
    for name in ("loss", "loss_itc", "loss_itg"):
        assert logged(tmp_path / "two", name) == pytest.approx(logged(tmp_path / "one", name), rel=1e-5), name
    # Control: one process, batches of 2 accumulated twice, sees the same samples per step, but its ITC
    # negatives are only the other local sample; the two ranks' negatives were all 4 (gathered across ranks).
    tiny.train(
        [
            *common,
            "--output_dir",
            str(tmp_path / "local"),
            "--per_device_train_batch_size",
            "2",
            "--gradient_accumulation_steps",
            "2",
        ],  # fmt: skip
        tmp_path,
    )
    assert max_difference(tmp_path / "local" / "checkpoint-3", tmp_path / "one" / "checkpoint-3") > 100 * max(
        diff, 1e-7
    )


def test_stage2_two_ranks_equal_one_process(assets, tmp_path):
    common = ["stage2", "--model_name_or_path", str(assets["vision_no_dropout"]), "--text_model_name_or_path",
              str(assets["llm_no_dropout"]), "--data_files", assets["data_lengths"], "--adam_epsilon", "1e-3",
              "--max_steps", "2", "--warmup_steps", "1", "--learning_rate", "1e-3", "--save_steps", "2",
              *tiny.COMMON]  # fmt: skip
    launch_two([*common, "--output_dir", str(tmp_path / "two"), "--per_device_train_batch_size", "2"], tmp_path)
    tiny.train([*common, "--output_dir", str(tmp_path / "one"), "--per_device_train_batch_size", "4"], tmp_path)
    assert max_difference(tmp_path / "two" / "checkpoint-2", tmp_path / "one" / "checkpoint-2") < 1e-5
    assert tiny.losses(tmp_path / "two") == pytest.approx(tiny.losses(tmp_path / "one"), rel=1e-5)
