"""Caption data in coco_karpathy format (an image root + annotation JSON, as ``custom_caption`` reads) or
``synthetic_shapes``, written as webdataset tar shards in img2dataset's layout: ``{key}.jpg`` + ``{key}.txt``
(the first caption) + ``{key}.json`` (``{"caption", "captions", "image_id", "image"}``), one sample per image.

``python -m blip2_data.make_shards --data_files ROOT,ANN.json --out shards/ --samples_per_shard 1000``
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .annotations import files_samples, require, resolve_images, string_list
from .shards import import_optional

SHARD_NAME = "{:05d}.tar"


def caption_row(row: Any) -> dict:
    """A coco_karpathy row of either split: ``caption`` a string (train) or a list (val/test)."""
    return {"image": require(row, "image", str), "captions": string_list(row, "caption"), "id": row.get("image_id")}


def images_with_captions(image_root: str, annotation_files: Sequence[str], skip_bad: bool = False) -> list[dict]:
    """One entry per image (in order of first appearance) with all its captions, from rows of one caption each
    (train) or of a caption list (val/test)."""
    skipped: list[str] = []
    rows, _ = files_samples(list(annotation_files), caption_row, skip_bad, skipped)
    resolve_images(rows, image_root)
    images: dict[str, dict] = {}
    for row in rows:
        entry = images.setdefault(row["image"], {"image": row["image"], "captions": [], "id": row["id"]})
        entry["captions"] += [c for c in row["captions"] if c not in entry["captions"]]
    return list(images.values())


def write_shards(images: Iterable[dict], out: str | os.PathLike, samples_per_shard: int = 1000) -> list[str]:
    """Write ``{"image": path, "captions": [...], "id": ...}`` entries as shards ``out/00000.tar``, ... with keys
    ``000000000``, ``000000001``, ... (img2dataset's 9 digits). Returns the shard paths."""
    ShardWriter = import_optional("webdataset").ShardWriter  # noqa: N806 - a class

    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pattern = str(out / SHARD_NAME.replace("{:05d}", "%05d"))
    with ShardWriter(pattern, maxcount=samples_per_shard, verbose=0) as writer:
        for index, entry in enumerate(images):
            suffix = Path(entry["image"]).suffix.lower().lstrip(".") or "jpg"
            meta = {
                "caption": entry["captions"][0],
                "captions": entry["captions"],
                "image_id": entry.get("id"),
                "image": os.path.basename(entry["image"]),
            }
            writer.write(
                {
                    "__key__": f"{index:09d}",
                    "jpg" if suffix == "jpeg" else suffix: Path(entry["image"]).read_bytes(),
                    "txt": entry["captions"][0],
                    "json": meta,
                }
            )
        count = writer.shard
    return [str(out / SHARD_NAME.format(i)) for i in range(count)]


def brace_pattern(shards: Sequence[str]) -> str:
    """``out/{00000..00003}.tar`` for shards written by :func:`write_shards`."""
    folder = os.path.dirname(shards[0])
    last = len(shards) - 1
    return (
        os.path.join(folder, SHARD_NAME.format(0)) if not last else os.path.join(folder, f"{{00000..{last:05d}}}.tar")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blip2_data.make_shards", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data_files",
        action="append",
        default=[],
        metavar="IMAGE_ROOT,ANNOTATION_JSON",
        help="caption data in coco_karpathy format (repeatable)",
    )
    parser.add_argument("--dataset", choices=["synthetic_shapes"], help="the default synthetic_shapes train split")
    parser.add_argument("--out", required=True, help="folder for the shards")
    parser.add_argument("--samples_per_shard", type=int, default=1000)
    parser.add_argument("--skip_bad_samples", action="store_true", help="skip malformed annotation rows")
    args = parser.parse_args(argv)
    entries = [text.rsplit(",", 1) for text in args.data_files]
    if any(len(e) != 2 for e in entries):
        parser.error("--data_files entries are IMAGE_ROOT,ANNOTATION_JSON")
    if args.dataset:
        from .synthetic import synthetic_split_files

        files = synthetic_split_files(None, "train")
        entries.append([files["image_root"], files["captions"]])
    if not entries:
        parser.error("give --data_files or --dataset")
    images = [
        image
        for root, annotation in entries
        for image in images_with_captions(root, [annotation], args.skip_bad_samples)
    ]
    missing = [i["image"] for i in images if not os.path.isfile(i["image"])]
    if missing:
        parser.error(f"{len(missing)} images do not exist, first: {missing[0]}")
    shards = write_shards(images, args.out, args.samples_per_shard)
    print(
        json.dumps(
            {
                "images": len(images),
                "captions": sum(len(i["captions"]) for i in images),
                "shards": len(shards),
                "data_files": brace_pattern(shards),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
