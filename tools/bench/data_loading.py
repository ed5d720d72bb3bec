"""Decoding + training preprocessing per DataLoader worker: img/s from a JSON annotation file + image folder, and
from webdataset tar shards (blip2-data's two training sources), on COCO-sized JPEGs at 224 px.

python tools/bench/data_loading.py --work DIR     (writes DIR/data/loading.json)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

IMAGES = 300
SIZE = (640, 480)  # a typical COCO image
PAPER_RATES = {  # images per second per A100 in the paper's runs (BLIP-2 section 3.4: 16 A100s)
    "stage 1 (250k steps x 1680 in 6 days)": 250_000 * 1680 / (6 * 86400) / 16,
    "stage 2 (80k steps x 1920 in 3 days)": 80_000 * 1920 / (3 * 86400) / 16,
}


def write_images(root: Path) -> str:
    """JPEGs with shapes on gradients (so they compress like photos, not like noise) and a Karpathy-style file."""
    rng = random.Random(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(IMAGES):
        gradient = np.linspace(0, 255, SIZE[0], dtype=np.uint8)[None, :, None]
        pixels = np.broadcast_to(gradient, (SIZE[1], SIZE[0], 3)).copy()
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = rng.randrange(SIZE[0]), rng.randrange(SIZE[1])
            draw.ellipse(
                (x, y, x + rng.randrange(20, 200), y + rng.randrange(20, 200)), fill=tuple(rng.choices(range(256), k=3))
            )
        image.save(root / "images" / f"{i:06d}.jpg", quality=90)
        rows.append({"image": f"{i:06d}.jpg", "caption": f"a picture number {i}", "image_id": f"b_{i}"})
    annotation = root / "captions.json"
    annotation.write_text(json.dumps(rows))
    return f"{root / 'images'},{annotation}"


def per_second(items) -> float:
    started, count = time.perf_counter(), 0
    for _ in items:
        count += 1
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    from blip2_data import ImageProcessor, ImageProcessorConfig, load_dataset
    from blip2_data.make_shards import images_with_captions, write_shards
    from blip2_data.webdataset_source import WebDatasetSource

    root = args.work / "data"
    data_files = write_images(root / "folder") if not (root / "folder" / "captions.json").exists() else None
    if data_files is None:
        data_files = f"{root / 'folder' / 'images'},{root / 'folder' / 'captions.json'}"
    image_root, annotation = data_files.split(",")
    shards_dir = root / "shards"
    if not shards_dir.exists():
        write_shards(images_with_captions(image_root, [annotation]), shards_dir, samples_per_shard=100)
    processor = ImageProcessor(ImageProcessorConfig(image_size=224), train=True, rng=random.Random(0))
    (folder,) = load_dataset("custom_caption", data_files=[[image_root, annotation, "train"]])
    folder_rate = per_second(processor(folder[i]["image"]) for i in range(len(folder)))
    source = WebDatasetSource(sorted(str(p) for p in shards_dir.glob("*.tar")), seed=0)
    shard_rate = per_second(processor(item["image"]) for item in source)
    result = {
        "threads": os.cpu_count(),
        "images": IMAGES,
        "image_size": list(SIZE),
        "folder_images_per_s": folder_rate,
        "shards_images_per_s": shard_rate,
        "workers_per_gpu": {
            name: {"folder": rate / folder_rate, "shards": rate / shard_rate} for name, rate in PAPER_RATES.items()
        },
        "load_1m": os.getloadavg()[0],
    }
    (root / "loading.json").write_text(json.dumps(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
