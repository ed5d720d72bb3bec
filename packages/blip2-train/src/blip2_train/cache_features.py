"""``blip2-train cache-features``: encode a dataset's images once with a model's frozen ViT (see feature_cache).

Several processes: ``python -m paddle.distributed.launch --nproc_per_node N $(which blip2-train) cache-features
...``; each process encodes every N-th image and writes its own shards (no communication between them).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

logger = logging.getLogger("blip2_train")


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="blip2-train cache-features",
        description="Encode every image of the training data once with the model's frozen vision encoder (the "
        "eval transform: resize, no random crop or flip) into safetensors shards that stage1/stage2 read with "
        "--feature_cache DIR. Training from the cache gives up image augmentation: the features of each image "
        "are always those of the whole, unflipped image.",
    )
    parse.add_argument("--output_dir", required=True, help="The cache directory (pass it as --feature_cache).")
    parse.add_argument(
        "--model_name_or_path",
        help="The model whose vision encoder the training run uses (the run's --model_name_or_path); without "
        "it --vision_model_name_or_path (stage 1 from scratch).",
    )
    parse.add_argument("--vision_model_name_or_path", default="eva_vit_g", help="As stage 1's (default eva_vit_g).")
    parse.add_argument("--load_model_path", help="As the training run's: weights loaded over the model's.")
    parse.add_argument("--image_size", type=int, default=224, help="The training run's --image_size (default 224).")
    parse.add_argument("--dataset", nargs="+", default=["coco_caption"], help="As the training run's --dataset.")
    parse.add_argument("--data_files", nargs="+", help="As the training run's --data_files.")
    parse.add_argument("--batch_size", type=int, default=32, help="Images per forward pass (default 32).")
    parse.add_argument("--shard_size", type=int, default=1024, help="Images per safetensors shard (default 1024).")
    parse.add_argument(
        "--dtype",
        choices=("float32", "float16"),
        default="float32",
        help="Storage type. float32 (default): training from the cache gives exactly the loss of training from "
        "the images; float16: half the disk (ViT-g at 224 px: 0.73 instead of 1.45 MB per image), features "
        "rounded to 11 significant bits.",
    )
    parse.add_argument("--skip_bad_samples", action="store_true", help="Record unreadable images and go on.")
    parse.add_argument("--trust_pickle", action="store_true", help="Allow reading pickled checkpoints.")
    return parse


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    import paddle

    from blip2_core import Blip2Qformer
    from blip2_data import ImageProcessorConfig

    from .checkpoint import load_weights
    from .data import load_training_data
    from .feature_cache import CacheKey, process_rank, write_cache
    from .models import STAGE1_TRAINED_PARTS, check_loaded, fit_image_size

    rank, world = process_rank()
    # the data first: a missing annotation file should not wait for a ViT-g to load
    dataset = load_training_data(args.dataset, args.data_files, args.skip_bad_samples)
    images = [sample["image"] for sample in dataset_samples(dataset)]
    source = args.model_name_or_path or args.vision_model_name_or_path
    # only its ViT is used: that must be there, the rest may be missing
    model = Blip2Qformer.from_pretrained(source, trust_pickle=args.trust_pickle, allow_missing_weights=True)
    check_loaded(model, source, allow_fresh=STAGE1_TRAINED_PARTS)
    if args.load_model_path:
        load_weights(model, args.load_model_path, require_all_trainable=False)
    fit_image_size(model, args.image_size)
    model.eval()
    image_config = ImageProcessorConfig(image_size=args.image_size)

    def encode(pixels):
        with paddle.no_grad():
            return model.encode_image(paddle.to_tensor(pixels)).numpy()

    summary = write_cache(
        encode, images, image_config, CacheKey.of(model, image_config), args.output_dir, made_from=source,
        batch_size=args.batch_size, shard_size=args.shard_size, dtype=args.dtype,
        skip_bad_samples=args.skip_bad_samples, rank=rank, world=world,
    )  # fmt: skip
    logger.info(
        "rank %d of %d: %d images cached in %d shard(s) in %s (%d unreadable)",
        rank, world, summary["images"], summary["shards"], args.output_dir, summary["bad"],
    )  # fmt: skip
    return 0


def dataset_samples(dataset):
    """The raw samples (image path, text) of one dataset or of several concatenated."""
    parts = getattr(dataset, "datasets", None)
    if parts is not None:
        return [sample for part in parts for sample in dataset_samples(part)]
    return dataset.samples
