"""Images/s of loading + preprocessing (JPEG decode, RandomResizedCrop 224 bicubic, flip, normalise, batching)
through Blip2DataLoader with 0 and 2 worker processes, on generated 640x480 JPEGs.

    python packages/blip2-data/benchmarks/loading_throughput.py --images 200
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from blip2_data import Blip2DataLoader, ImageProcessor, ImageProcessorConfig, load_dataset


def make_images(root: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    # Smooth gradients plus noise: compresses like a photo rather than like pure noise.
    y, x = np.mgrid[0:480, 0:640]
    for i in range(count):
        base = np.stack([(x + 7 * i) % 256, (y + 3 * i) % 256, (x + y) // 5 % 256], axis=-1)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"{i}.jpg", quality=90)
        rows.append({"image": f"{i}.jpg", "caption": f"image {i}", "image_id": i})
    (root / "ann.json").write_text(json.dumps(rows))
    return root / "ann.json"


def stack_images(items: list[dict]) -> dict:
    return {"pixel_values": np.stack([item["image"] for item in items])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        annotations = make_images(Path(tmp), args.images)
        processor = ImageProcessor(ImageProcessorConfig(image_size=224), train=True)
        (dataset,) = load_dataset("custom", data_files=[[tmp, str(annotations), "train"]], image_processor=processor)
        for workers in args.workers:
            loader = Blip2DataLoader(dataset, batch_size=args.batch_size, collate_fn=stack_images, num_workers=workers)
            start = time.perf_counter()
            seen = sum(batch["pixel_values"].shape[0] for batch in loader)  # includes worker start-up
            elapsed = time.perf_counter() - start
            print(f"num_workers={workers}: {seen} images in {elapsed:.2f} s = {seen / elapsed:.1f} images/s")


if __name__ == "__main__":
    main()
