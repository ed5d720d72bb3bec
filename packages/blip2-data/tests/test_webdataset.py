"""webdataset shards: writing them from coco_karpathy data, the split across ranks and workers, resuming mid-epoch,
bad samples, and load_dataset("webdataset") behind paddle's DataLoader."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import write_jpeg, write_json
from PIL import Image

from blip2_data import BadSampleError, DatasetError, WebDatasetSource, expand_shards, write_shards
from blip2_data.make_shards import images_with_captions
from blip2_data.shards import slot_shards
from blip2_data.webdataset_source import POSITION_KEY

IMAGES = 21  # 7 shards of 3: 7 does not divide among 4 slots


def caption_tree(root: Path, images: int = IMAGES) -> tuple[Path, Path]:
    """coco_karpathy train rows; every third image has two captions (rows), as COCO's have five."""
    rows = []
    for i in range(images):
        write_jpeg(root / "images" / f"{i}.jpg", 24, 16, seed=i)
        rows += [
            {"image": f"{i}.jpg", "caption": f"image {i} caption {k}", "image_id": str(i)}
            for k in range(1 + (i % 3 == 0))
        ]
    return root / "images", write_json(root / "train.json", rows)


@pytest.fixture
def shards(tmp_path: Path) -> list[str]:
    image_root, annotation = caption_tree(tmp_path / "data")
    return write_shards(images_with_captions(str(image_root), [str(annotation)]), tmp_path / "shards", 3)


def keys(items) -> list[str]:
    return [item["key"] for item in items if "key" in item]


def all_keys(shards: list[str]) -> Counter:
    return Counter(keys(WebDatasetSource(shards, shuffle=False)))


def test_make_shards_command_writes_img2dataset_layout(tmp_path):
    image_root, annotation = caption_tree(tmp_path / "data", 5)
    out = tmp_path / "shards"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "blip2_data.make_shards",
            "--data_files",
            f"{image_root},{annotation}",
            "--out",
            str(out),
            "--samples_per_shard",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "images": 5,
        "captions": 7,
        "shards": 3,
        "data_files": f"{out}/{{00000..00002}}.tar",
    }
    with tarfile.open(out / "00000.tar") as tar:
        assert tar.getnames() == [f"00000000{i}.{s}" for i in range(2) for s in ("jpg", "json", "txt")]
        meta = json.load(tar.extractfile("000000000.json"))
        assert meta["captions"] == ["image 0 caption 0", "image 0 caption 1"] and meta["caption"] == meta["captions"][0]
        assert tar.extractfile("000000000.txt").read() == b"image 0 caption 0"
    assert expand_shards(f"{out}/{{00000..00002}}.tar") == [str(out / f"0000{i}.tar") for i in range(3)]
    assert expand_shards(out) == expand_shards(f"{out}/{{00000..00002}}.tar")  # a folder: its .tar files
    with pytest.raises(DatasetError, match="1 of 4 shards do not exist: .*00003.tar"):
        expand_shards(f"{out}/{{00000..00003}}.tar")


def test_items_are_pil_images_with_captions_and_ids(shards):
    items = list(WebDatasetSource(shards, shuffle=False, captions="all"))
    assert len(items) == IMAGES + 7  # one item per caption
    first = items[0]
    assert isinstance(first["image"], Image.Image) and first["image"].mode == "RGB" and first["image"].size == (24, 16)
    assert (first["text_input"], first["image_id"], first["key"]) == ("image 0 caption 0", 0, "000000000")
    assert items[1]["text_input"] == "image 0 caption 1" and items[1]["image_id"] == 0
    # random: each image once, one of its captions, the same in every run of an epoch, drawn anew per epoch
    source = WebDatasetSource(shards, shuffle=False)
    picks = [[it["text_input"] for it in source if it["key"].endswith(("00", "03", "06", "09"))] for _ in range(2)]
    assert len(picks[0]) == 4 and picks[0] == picks[1]
    epochs = set()
    for epoch in range(6):
        source.set_epoch(epoch)
        epochs.add(tuple(it["text_input"] for it in source))
    assert len(epochs) > 1


def test_image_processor_takes_the_pil_images(shards):
    from blip2_data import ImageProcessor, ImageProcessorConfig, TextProcessor

    source = WebDatasetSource(
        shards,
        image_processor=ImageProcessor(ImageProcessorConfig(image_size=32), train=True),
        text_processor=TextProcessor("caption"),
    )
    item = next(iter(source))
    assert item["image"].shape == (3, 32, 32) and item["text_input"].startswith("image ")


def test_split_over_two_ranks_and_two_workers_sees_every_sample_once(shards):
    expected = all_keys(shards)
    assert sum(expected.values()) == IMAGES
    for epoch in (0, 1):
        seen, per_slot = Counter(), []
        for rank in range(2):
            source = WebDatasetSource(shards, rank=rank, world_size=2, seed=3, shuffle_buffer=4)
            source.set_epoch(epoch)
            for worker in range(2):
                slot = keys(source.iter_slot(worker, 2))
                per_slot.append(len(slot))
                seen.update(slot)
        assert seen == expected
        # 7 shards of 3 over 4 slots: slots 0-2 read two shards, slot 3 one (it ends earlier; nothing repeats)
        assert per_slot == [6, 6, 6, 3]


def test_the_split_rule(shards):
    slots = [
        slot_shards(7, rank=r, world_size=2, worker=w, num_workers=2, seed=0, epoch=0, shuffle=False)
        for r in range(2)
        for w in range(2)
    ]
    assert slots == [[0, 4], [1, 5], [2, 6], [3]]
    shuffled = [
        slot_shards(7, rank=r, world_size=2, worker=w, num_workers=2, seed=0, epoch=1)
        for r in range(2)
        for w in range(2)
    ]
    assert sorted(s for slot in shuffled for s in slot) == list(range(7)) and shuffled != slots
    # more slots than shards: the extra slots read nothing
    assert [slot_shards(2, rank=0, world_size=1, worker=w, num_workers=3, shuffle=False) for w in range(3)] == [
        [0],
        [1],
        [],
    ]


@pytest.mark.parametrize("consumed", [1, 5, 9])  # in the first group, at its last item, in the second
def test_resuming_mid_epoch_continues_the_same_order(shards, consumed):
    options = dict(world_size=2, seed=7, shuffle_buffer=3, shuffle_shards=1, captions="all", num_workers=2)
    for rank in range(2):
        uninterrupted = WebDatasetSource(shards, rank=rank, **options)
        uninterrupted.set_epoch(2)
        full = [keys(uninterrupted.iter_slot(w, 2)) for w in range(2)]
        first = WebDatasetSource(shards, rank=rank, **options)
        first.set_epoch(2)
        head = []
        for w in range(2):
            stream = first.iter_slot(w, 2)
            head.append([next(stream)["key"] for _ in range(min(consumed, len(full[w])))])
        state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint stores
        assert state["epoch"] == 2 and set(state["workers"]) == {"0", "1"}
        assert state["workers"]["0"]["shards"][0].endswith(".tar")
        resumed = WebDatasetSource(shards, rank=rank, **options)
        resumed.load_state_dict(state)
        tail = [keys(resumed.iter_slot(w, 2)) for w in range(2)]
        assert [h + t for h, t in zip(head, tail)] == full


def test_resuming_from_positions_a_dataloader_consumer_marks(shards):
    source = WebDatasetSource(shards, shuffle_buffer=4, shuffle_shards=2, track_yielded=False, num_workers=1)
    items = list(source)
    consumer = WebDatasetSource(shards, shuffle_buffer=4, shuffle_shards=2, track_yielded=False, num_workers=1)
    consumer.mark_consumed([item[POSITION_KEY] for item in items[:8]])  # a batch's positions
    resumed = WebDatasetSource(shards, shuffle_buffer=4, shuffle_shards=2, num_workers=1)
    resumed.load_state_dict(consumer.state_dict())
    assert keys(items[:8]) + keys(resumed) == keys(items)


def test_a_state_of_other_settings_is_refused(shards):
    state = WebDatasetSource(shards, num_workers=2).state_dict()
    with pytest.raises(DatasetError, match="cannot resume.*seed 0 -> 1"):
        WebDatasetSource(shards, seed=1).load_state_dict(state)
    resumed = WebDatasetSource(shards)
    resumed.load_state_dict(state)
    with pytest.raises(DatasetError, match="built or resumed for 2 DataLoader workers but read by 1"):
        list(resumed)


def rewrite_member(shard: str, name: str, data: bytes | None) -> None:
    """Replace (or with None drop) one member of a shard."""
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(shard, "w") as tar:
        for member, content in members:
            if member.name == name and data is None:
                continue
            content = data if member.name == name else content
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))


def test_bad_samples_are_named_and_raise_or_are_skipped_and_counted(shards):
    rewrite_member(shards[0], "000000001.jpg", b"not a jpeg")
    rewrite_member(shards[1], "000000004.txt", None)
    rewrite_member(shards[1], "000000004.json", None)
    data = Path(shards[2]).read_bytes()
    Path(shards[2]).write_bytes(data[: len(data) // 2])  # truncated mid-way
    with pytest.raises(BadSampleError, match=r"shard .*00000.tar sample 1 key '000000001': cannot decode image"):
        list(WebDatasetSource(shards[:1], shuffle=False))
    with pytest.raises(BadSampleError, match=r"shard .*00001.tar sample 1 key '000000004': no caption"):
        list(WebDatasetSource(shards[1:2], shuffle=False))
    with pytest.raises(BadSampleError, match=r"shard .*00002.tar .*truncated or corrupt tar after key '00000000[67]'"):
        list(WebDatasetSource(shards[2:3], shuffle=False))
    source = WebDatasetSource(shards, skip_bad_samples=True)
    items = list(source)
    skipped = [item["_skipped"] for item in items if "_skipped" in item]
    assert len(skipped) == len(source.skipped) == 3
    assert sum("000000001" in s for s in skipped) == 1 and sum("000000004" in s for s in skipped) == 1
    assert sum("truncated" in s and "00002.tar" in s for s in skipped) == 1
    good = set(keys(items))
    intact = {f"{i:09d}" for i in range(IMAGES) if not 6 <= i <= 8} - {"000000001", "000000004"}
    assert intact <= good and good - intact < {"000000006", "000000007"}  # what precedes the cut in shard 2


def collate_keys(items: list[dict]) -> dict:
    """Arrays only: paddle's DataLoader drops what is not one."""
    return {
        "key": np.asarray([int(i["key"]) for i in items]),
        POSITION_KEY: np.asarray([i[POSITION_KEY] for i in items]),
    }


def test_load_dataset_webdataset_through_paddles_dataloader(shards, tmp_path):
    from blip2_data import ImageProcessor, ImageProcessorConfig, load_dataset
    from blip2_data.paddle_io import DataLoader, IterableDataset

    pattern = str(Path(shards[0]).parent / "{00000..00006}.tar")
    [dataset] = load_dataset(
        "webdataset",
        data_files=[pattern],
        image_processor=ImageProcessor(ImageProcessorConfig(image_size=16)),
        shuffle_buffer=5,
        num_workers=2,
        track_yielded=False,
    )
    assert isinstance(dataset, IterableDataset)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_keys)
    batches = [batch for batch in loader]  # noqa: C416 - list() would ask the loader its len()
    assert Counter(f"{k:09d}" for b in batches for k in b["key"].numpy().tolist()) == all_keys(shards)
    # the main process's copy learns the position from the batches it took
    for batch in batches[:3]:
        dataset.mark_consumed(batch[POSITION_KEY])
    assert sum(w["index"] for w in dataset.state_dict()["workers"].values()) == 12
    with pytest.raises(DatasetError, match="webdataset shards are a train split"):
        load_dataset("webdataset", data_files=[pattern], splits=["val"])
    with pytest.raises(DatasetError, match="unknown options"):
        load_dataset("custom", data_files=[[str(tmp_path), "x.json", "train"]], shuffle_buffer=3)


TWO_PROCESS_READER = """
import json, sys
import numpy as np
from blip2_data import load_dataset
from blip2_data.paddle_io import DataLoader

[dataset] = load_dataset("webdataset", data_files=sys.argv[1:], num_workers=2, shuffle_buffer=4)
collate = lambda items: {"key": np.asarray([int(item["key"]) for item in items])}
loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate)
print(json.dumps([key for batch in loader for key in batch["key"].numpy().tolist()]))
"""


def test_two_processes_of_two_workers_read_every_sample_once(shards):
    """Two ranks as paddle.distributed.launch starts them (PADDLE_TRAINER_ID / PADDLE_TRAINERS_NUM)."""
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", TWO_PROCESS_READER, *shards],
            env={**os.environ, "PADDLE_TRAINER_ID": str(rank), "PADDLE_TRAINERS_NUM": "2"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in ranks]
    assert all(process.returncode == 0 for process in ranks), [err for _, err in outputs]
    seen = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert sorted(len(keys) for keys in seen) == [9, 12]  # 4 + 3 shards of 3 (the rule's uneven split)
    assert Counter(f"{key:09d}" for keys in seen for key in keys) == all_keys(shards)
