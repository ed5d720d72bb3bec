"""``--dataset webdataset``: stage 1 from tar shards over two processes of two loader workers each, every sample
once per epoch, a stop after a checkpoint and a resume that train the same samples in the same order as a run
straight through, ranks that run out at different steps, bad samples named."""

import io
import json
import re
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import tiny

import blip2_train
from blip2_data import DatasetError, make_shards
from blip2_data.synthetic import write_synthetic_shapes
from blip2_train.mixture import MixedLoader, PartSpec, plan_mixture
from blip2_train.stream import is_stream

ENTRY = str(Path(blip2_train.__file__).parent / "__main__.py")  # the launcher starts a script
IMAGES, PER_SHARD = 32, 8  # 4 shards: one per (rank, worker) slot of 2 ranks x 2 workers
STEPS_PER_EPOCH = IMAGES // 4  # a global batch of 2 per rank x 2 ranks


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    """synthetic_shapes' train split of 32 images written as shards by ``python -m blip2_data.make_shards``."""
    root = tmp_path_factory.mktemp("shapes")
    files = write_synthetic_shapes(root / "shapes", {"train": IMAGES, "val": 1, "test": 1, "shifted": 1})
    data = f"{files['train']['image_root']},{files['train']['captions']}"
    out = root / "shards"
    assert make_shards.main(["--data_files", data, "--out", str(out), "--samples_per_shard", str(PER_SHARD)]) == 0
    return str(out / "{00000..00003}.tar")


def stage1(assets, shards: str, output: Path, *extra: str) -> list[str]:
    return [
        "stage1", "--vision_model_name_or_path", str(assets["vision"]), "--qformer_init", str(assets["bert"]),
        "--dataset", "webdataset", "--data_files", shards, "--output_dir", str(output), *tiny.COMMON,
        "--per_device_train_batch_size", "2", "--warmup_steps", "1", "--learning_rate", "1e-3", "--save_steps", "3",
        "--dataloader_num_workers", "2", "--shuffle_buffer", "4", "--log_consumed_samples", "true", *extra,
    ]  # fmt: skip


def launch_two(args: list[str], cwd: Path, check: bool = True) -> tuple[int, str]:
    """Two CPU processes (gloo); returns the exit code and both ranks' logs."""
    log = cwd / f"launch-log-{len(list(cwd.glob('launch-log-*')))}"
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--backend", "gloo",
               "--log_dir", str(log), ENTRY, *args]  # fmt: skip
    proc = subprocess.run(command, cwd=cwd, env=tiny.environment(), capture_output=True, text=True, timeout=400)
    ranks = [p.read_text() for p in sorted(log.glob("workerlog.*"))]
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:] + "".join(f"\n--- {r[-3000:]}" for r in ranks)
    return proc.returncode, "".join(ranks)


def consumed(output: Path, rank: int) -> list[tuple[int, list[str]]]:
    lines = (output / f"consumed_samples_rank{rank}.jsonl").read_text().splitlines()
    return [(entry["step"], entry["keys"]) for entry in map(json.loads, lines)]


def test_two_ranks_see_every_sample_once_per_epoch_and_resume_exactly(assets, shards, tmp_path):
    steps = STEPS_PER_EPOCH + 2  # into the second epoch
    straight = tmp_path / "straight"
    launch_two(stage1(assets, shards, straight, "--max_steps", str(steps)), tmp_path)
    runs = [consumed(straight, rank) for rank in (0, 1)]
    for run in runs:
        assert [step for step, _ in run] == list(range(1, steps + 1))
        assert all(len(keys) == 2 for _, keys in run)
    first_epoch = Counter(key for run in runs for _, keys in run[:STEPS_PER_EPOCH] for key in keys)
    assert first_epoch == Counter(f"{i:09d}" for i in range(IMAGES))  # each image once in the epoch
    second_epoch = [key for run in runs for _, keys in run[STEPS_PER_EPOCH:] for key in keys]
    assert len(set(second_epoch)) == len(second_epoch)

    # stopped after checkpoint-3 (mid-epoch, each rank's second worker next), then resumed to the end
    out = tmp_path / "resumed"
    launch_two(stage1(assets, shards, out, "--max_steps", "3"), tmp_path)
    state = json.loads((out / "checkpoint-3" / "data_state_rank1.json").read_text())
    assert state["next_worker"] == 1 and state["source"]["epoch"] == 0
    _, logs = launch_two(
        stage1(assets, shards, out, "--max_steps", str(steps), "--resume_from_checkpoint", str(out / "checkpoint-3")),
        tmp_path,
    )
    assert "resumed the data at epoch 0" in logs
    for rank in (0, 1):
        assert consumed(out, rank) == runs[rank]  # the same keys at the same steps: none repeated or skipped


def corrupt(shards: str, tmp_path: Path, keys: tuple[str, ...] = ("000000001",)) -> str:
    """A copy of the first two shards with the images of ``keys`` replaced by bytes that are no JPEG."""
    folder = tmp_path / f"bad-shards-{'-'.join(keys)}"
    folder.mkdir()
    source = Path(shards).parent
    for name in ("00000.tar", "00001.tar"):
        with tarfile.open(source / name) as tar:
            members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
        with tarfile.open(folder / name, "w") as tar:
            for member, content in members:
                content = b"not a jpeg" if member.name in {f"{key}.jpg" for key in keys} else content
                member.size = len(content)
                tar.addfile(member, io.BytesIO(content))
    return str(folder / "{00000..00001}.tar")


def test_a_bad_sample_is_skipped_and_named_or_stops_the_run(assets, shards, tmp_path):
    bad = corrupt(shards, tmp_path)
    where = r"shard \S*00000.tar sample 1 key '000000001': cannot decode image"
    extra = ["--max_steps", "7", "--dataloader_num_workers", "1", "--per_device_train_batch_size", "2"]
    skipped = tiny.train([*stage1(assets, bad, tmp_path / "skip", *extra), "--skip_bad_samples", "true"], tmp_path)
    assert len(re.findall(f"skipped a bad sample: webdataset: {where}", skipped.stderr)) >= 1
    log = [json.loads(line) for line in (tmp_path / "skip" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1].get("skipped_bad_samples") == 1
    keys = [key for _, batch in consumed(tmp_path / "skip", 0) for key in batch]
    good = {f"{i:09d}" for i in range(16)} - {"000000001"}
    assert len(keys) == len(set(keys)) == 14 and set(keys) < good  # 15 good in the epoch: 7 batches of 2

    # the last sample of each shard: read after the worker's last good item, and counted all the same
    last = corrupt(shards, tmp_path, ("000000007", "000000015"))
    extra_last = [*extra, "--shuffle_buffer", "1", "--skip_bad_samples", "true"]
    tiny.train(stage1(assets, last, tmp_path / "last", *extra_last), tmp_path)
    log = [json.loads(line) for line in (tmp_path / "last" / "train_log.jsonl").read_text().splitlines()]
    assert [entry.get("skipped_bad_samples") for entry in log if "loss" in entry][-2:] == [None, 2]

    failed = tiny.train(stage1(assets, bad, tmp_path / "fail", *extra), tmp_path, check=False)
    assert failed.returncode != 0
    message = failed.stderr.strip().splitlines()[-1]
    assert re.search(f"blip2-train stage1: webdataset: {where}.*--skip_bad_samples", message), message


def test_ranks_with_unequal_shares_end_each_epoch_together(assets, shards, tmp_path):
    """3 shards for 2 ranks x 2 workers: rank 0 reads two (8 batches), rank 1 one (4 batches); every epoch ends
    for both after 4 steps, when rank 1 has no batch left, and the next begins on both."""
    three = shards.replace("{00000..00003}", "{00000..00002}")
    out = tmp_path / "out"
    _, logs = launch_two(stage1(assets, three, out, "--max_steps", "6"), tmp_path)
    for rank in (0, 1):
        entries = [json.loads(line) for line in (out / f"consumed_samples_rank{rank}.jsonl").read_text().splitlines()]
        assert [e["epoch"] for e in entries] == [0, 0, 0, 0, 1, 1]
        first = [key for e in entries[:4] for key in e["keys"]]
        assert len(set(first)) == 8
    assert "rank 1 worker 1 has no shard (3 shards for 4 slots)" in logs
    assert logs.count("data epoch 0 ended on every rank (4 batches here)") == 2


def test_stage2_from_shards_in_the_main_process(assets, shards, tmp_path):
    args = [
        "stage2", "--model_name_or_path", str(assets["vision"]), "--text_model_name_or_path", str(assets["llm"]),
        "--dataset", "webdataset", "--data_files", shards, "--output_dir", str(tmp_path / "out"), *tiny.COMMON,
        "--per_device_train_batch_size", "4", "--warmup_steps", "1", "--save_steps", "3", "--shuffle_buffer", "8",
        "--log_consumed_samples", "true",
    ]  # fmt: skip
    refused = tiny.train(args, tmp_path, check=False)
    assert refused.returncode != 0
    assert "--dataset webdataset is a stream without a length: pass --max_steps" in refused.stderr
    tiny.train([*args, "--max_steps", "3"], tmp_path)  # --dataloader_num_workers 0: read as 1 worker
    keys = [key for _, batch in consumed(tmp_path / "out", 0) for key in batch]
    assert len(keys) == len(set(keys)) == 12
    assert (tmp_path / "out" / "checkpoint-3" / "data_state_rank0.json").is_file()
    assert (tmp_path / "out" / "training_complete.json").is_file()


def test_webdataset_mixes_with_others_only_by_weights():
    assert is_stream(["webdataset"]) and not is_stream(["coco_caption", "vg_caption"])
    with pytest.raises(DatasetError, match="only by sampling weights: pass --sampling_weights"):
        is_stream(["webdataset", "coco_caption"])
    parts = plan_mixture(["webdataset", "coco_caption", "webdataset"], ["a/{0..1}.tar", "-", "b.tar"], [2, 1, 1])
    assert [(p.label, p.data_files, p.weight) for p in parts] == [
        ("webdataset[0]", ["a/{0..1}.tar"], 2.0), ("coco_caption", None, 1.0), ("webdataset[2]", ["b.tar"], 1.0)
    ]  # fmt: skip
    for files, weights, message in [
        (None, [1, 1], "tar shards are not downloaded"),
        (["a.tar"], [1, 1], "one --data_files entry per --dataset"),
        (["a.tar", "-"], [1], "has 1 values for 2 --dataset names"),
        (["a.tar", "-"], [1, 0], "must all be > 0"),
        (["a.tar", "images"], [1, 1], "IMAGE_ROOT,ANNOTATION_JSON"),
    ]:
        with pytest.raises(DatasetError, match=message):
            plan_mixture(["webdataset", "coco_caption"], files, weights)


def test_each_batch_comes_from_a_part_drawn_with_the_weights():
    """The draw that every rank makes alike: over many batches each part's share is its weight's."""
    specs = [PartSpec(name, name, None, weight) for name, weight in (("a", 6.0), ("b", 3.0), ("c", 1.0))]
    mixed = MixedLoader([(spec, None) for spec in specs], seed=7)
    draws = Counter(mixed.choose(n) for n in range(6000))
    assert [round(draws[i] / 6000, 2) for i in range(3)] == pytest.approx([0.6, 0.3, 0.1], abs=0.02)
    assert [mixed.choose(n) for n in range(50)] == [
        MixedLoader([(s, None) for s in specs], 7).choose(n) for n in range(50)
    ]
    assert [mixed.choose(n) for n in range(50)] != [
        MixedLoader([(s, None) for s in specs], 8).choose(n) for n in range(50)
    ]


def test_shards_mixed_with_a_caption_dataset_resume_where_they_stopped(assets, shards, tmp_path):
    """webdataset + custom_caption at 1:1 in one process: each part's samples once per epoch of its own, and a
    run stopped at checkpoint-4 and resumed trains the same batches from the same parts as a straight run."""
    files = write_synthetic_shapes(tmp_path / "shapes", {"train": 6, "val": 1, "test": 1, "shifted": 1})["train"]
    rows = len(json.loads(Path(files["captions"]).read_text()))

    def mixed(output: Path, *extra: str) -> list[str]:
        args = stage1(assets, shards, output, "--dataloader_num_workers", "1", *extra)
        at = args.index("--dataset")
        args[at : at + 4] = ["--dataset", "webdataset", "custom_caption", "--data_files", shards,
                             f"{files['image_root']},{files['captions']}", "--sampling_weights", "1", "1"]  # fmt: skip
        return args

    two = tmp_path / "two"  # two ranks draw the same part at every step, and read different samples of it
    launch_two(mixed(two, "--max_steps", "6"), tmp_path)
    logs = [
        [json.loads(line) for line in (two / f"consumed_samples_rank{r}.jsonl").read_text().splitlines()]
        for r in (0, 1)
    ]
    assert [e["sources"] for e in logs[0]] == [e["sources"] for e in logs[1]]
    assert all(not set(a["keys"]) & set(b["keys"]) for a, b in zip(*logs))

    straight = tmp_path / "straight"
    tiny.train(mixed(straight, "--max_steps", "16"), tmp_path)
    entries = [json.loads(line) for line in (straight / "consumed_samples_rank0.jsonl").read_text().splitlines()]
    sources = [entry["sources"] for entry in entries]
    assert all(len(s) == 1 for s in sources) and {s[0] for s in sources} == {"webdataset", "custom_caption"}
    wds = [key for entry in entries if entry["sources"] == ["webdataset"] for key in entry["keys"]]
    rows_seen = [key for entry in entries if entry["sources"] == ["custom_caption"] for key in entry["keys"]]
    assert len(set(wds)) == len(wds) and set(wds) <= {f"{i:09d}" for i in range(IMAGES)}  # fewer than one epoch
    per_epoch = rows // 2 * 2  # whole batches of 2
    for start in range(0, len(rows_seen), per_epoch):  # each epoch of the caption rows: no row twice
        epoch = rows_seen[start : start + per_epoch]
        assert len(set(epoch)) == len(epoch) and all(key.startswith("custom_caption:") for key in epoch)
    assert len(rows_seen) > per_epoch  # the caption dataset started its second epoch on its own

    out = tmp_path / "resumed"
    tiny.train(mixed(out, "--max_steps", "4", "--save_steps", "4"), tmp_path)
    state = json.loads((out / "checkpoint-4" / "data_state_rank0.json").read_text())
    assert state["drawn"] == 4 and [p["label"] for p in state["parts"]] == ["webdataset", "custom_caption"]
    resumed = tiny.train(
        mixed(out, "--max_steps", "16", "--resume_from_checkpoint", str(out / "checkpoint-4")), tmp_path
    )
    assert "resumed the data at batch 4 of the mixture" in resumed.stderr
    assert (out / "consumed_samples_rank0.jsonl").read_text() == (straight / "consumed_samples_rank0.jsonl").read_text()
