"""A killed run continues where it stopped; two processes under paddle.distributed.launch give one's results."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import write_jpeg

from blip2_eval.cli import main

SCRIPT = str(Path(sys.executable).parent / "blip2-eval")


def many_images(root: Path, count: int) -> Path:
    rows = []
    for i in range(count):
        write_jpeg(root / "images" / f"{1000 + i}.jpg", seed=i)
        rows.append({"image": f"{1000 + i}.jpg", "caption": ["a red dog", "a cat on a man"]})
    (root / "flickr_test.json").write_text(json.dumps(rows))
    return root


def shard_lines(out: Path) -> int:
    return sum(p.read_text().count("\n") for p in (out / "shards").glob("*.jsonl")) if (out / "shards").exists() else 0


def test_a_killed_run_resumes_to_the_same_results(opt_model, tmp_path):
    data = many_images(tmp_path / "data", 40)
    args = ["caption", "--model", str(opt_model), "--dataset", "custom_caption", "--data_files", str(data / "images"),
            str(data / "flickr_test.json"), "--batch_size", "1", "--max_new_tokens", "30", "--min_new_tokens", "30",
            "--no_score"]  # fmt: skip
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.Popen([sys.executable, SCRIPT, *args, "--output_dir", str(killed)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while shard_lines(killed) < 5 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    written = shard_lines(killed)
    assert run.returncode == -signal.SIGKILL and 5 <= written < 40, (run.returncode, written, run.stderr.read()[-2000:])
    assert not (killed / "results.json").exists()
    # a kill in the middle of a write leaves half a line: it is dropped and that item done again
    with open(killed / "shards" / "rank-000.jsonl", "a") as shard:
        shard.write('{"image_id": 1039, "capt')

    assert main([*args, "--output_dir", str(killed)]) == 0
    resumed = json.loads((killed / "results.json").read_text())
    lines = (killed / "shards" / "rank-000.jsonl").read_text().splitlines()
    assert len(lines) == 40  # nothing generated twice, the cut line replaced

    whole = tmp_path / "whole"
    assert main([*args, "--output_dir", str(whole)]) == 0
    assert resumed == json.loads((whole / "results.json").read_text())
    assert [r["image_id"] for r in resumed] == list(range(1000, 1040))


def test_two_processes_write_the_results_of_one(opt_model, coco_tree, tmp_path):
    args = ["vqa", "--model", str(opt_model), "--dataset", "coco_vqa", "--data_files", str(coco_tree / "images"),
            str(coco_tree / "v2_OpenEnded_mscoco_val2014_questions.json"),
            str(coco_tree / "v2_mscoco_val2014_annotations.json"), "--batch_size", "4"]  # fmt: skip
    one = tmp_path / "one"
    assert main([*args, "--output_dir", str(one)]) == 0
    two = tmp_path / "two"
    launch = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--backend", "gloo",
              "--log_dir", str(tmp_path / "logs"), SCRIPT, *args, "--output_dir", str(two)]  # fmt: skip
    done = subprocess.run(launch, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    logs = "".join(p.read_text()[-1500:] for p in sorted((tmp_path / "logs").glob("workerlog.*")))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:] + logs
    # each rank wrote its own share, rank 0 gathered them in dataset order and scored once
    assert sorted(p.name for p in (two / "shards").iterdir()) == ["rank-000.jsonl", "rank-001.jsonl"]
    assert (two / "results.json").read_text() == (one / "results.json").read_text()
    metrics_one = json.loads((one / "metrics.json").read_text())
    metrics_two = json.loads((two / "metrics.json").read_text())
    assert metrics_two["run"]["world_size"] == 2 and metrics_two["run"]["rank0_items"] == 9
    assert metrics_two["overall"] == metrics_one["overall"]
    shutil.rmtree(tmp_path / "logs", ignore_errors=True)
