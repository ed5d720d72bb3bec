"""Our side of the training benchmark (paddle env): the step train_reference.py times, from the images, and from
blip2-train's feature cache (the frozen ViT's output read from safetensors shards instead of computed).

python tools/bench/train_ours.py --size vitg-opt125m --work DIR --repeats 3 [--feature_cache]
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import SIZES, current_rss_mb, parse_args, peak_rss_mb, timed, write_result  # noqa: E402
from train_common import LEARNING_RATE, WEIGHT_DECAY, batch, forget_result  # noqa: E402


def main() -> None:
    cached = "--feature_cache" in sys.argv
    if cached:
        sys.argv.remove("--feature_cache")
    args = parse_args("Our side of the training benchmark")
    side = "train-ours-cache" if cached else "train-ours"
    forget_result(args, side)
    from blip2_core.cli.command_line import start_command_line_tool

    threads = start_command_line_tool()  # as blip2-train does: every core, MKL's AMD kernels

    import numpy as np
    import paddle
    from PIL import Image

    from blip2_core import Blip2ForConditionalGeneration
    from blip2_data import ImageProcessorConfig
    from blip2_train import WarmupCosineSchedule, build_adamw
    from blip2_train.feature_cache import CacheKey, FeatureCache, write_cache

    vision, _, text, _, images, _ = SIZES[args.size]
    start = time.perf_counter()
    model = Blip2ForConditionalGeneration.from_pretrained(args.work / args.size / "model")
    load_s = time.perf_counter() - start
    for part in (model.vision_model, model.language_model):  # frozen, as blip2-train stage2 keeps them
        for param in part.parameters():
            param.stop_gradient = True
    pixels_np, ids_np = batch(images, vision["image_size"], text["vocab_size"])
    pixels, ids = paddle.to_tensor(pixels_np), paddle.to_tensor(ids_np)
    mask = paddle.ones_like(ids)
    # HF scores each caption token after the first (its logits[:, -len(labels):], shifted); ours also scores the
    # first, from the last query (LAVIS). Its label set to -100, the two losses are the same sum.
    labels = paddle.to_tensor(np.concatenate([np.full_like(ids_np[:, :1], -100), ids_np[:, 1:]], 1))
    model.eval()
    with paddle.no_grad():
        eval_loss = float(model(pixels, ids, mask, labels=labels).loss)
    model.train()
    optimizer = build_adamw(model, WarmupCosineSchedule(LEARNING_RATE, 0.0, 0, 1000), WEIGHT_DECAY)

    if cached:
        # a cache of the batch's images, written as cache-features writes one; each step reads its rows back
        folder = args.work / args.size / "feature-cache"
        shutil.rmtree(folder, ignore_errors=True)  # made anew each run, by this model
        paths = [str(folder / "images" / f"{i}.png") for i in range(images)]
        (folder / "images").mkdir(parents=True, exist_ok=True)
        rng = np.random.RandomState(2)
        for path in paths:
            Image.fromarray(rng.randint(0, 255, (vision["image_size"],) * 2 + (3,), dtype=np.uint8)).save(path)
        config = ImageProcessorConfig(image_size=vision["image_size"])
        start = time.perf_counter()
        key = CacheKey.of(model, config)  # what a training run computes at start to check the cache (a weights hash)
        key_s = time.perf_counter() - start

        def encode(values):
            with paddle.no_grad():
                return model.encode_image(paddle.to_tensor(values)).numpy()

        write_cache(encode, paths, config, key, folder / "cache", made_from="bench", world=1)
        features = FeatureCache(folder / "cache")
        features.check(key)

        def inputs() -> dict:
            return {"image_embeds": paddle.to_tensor(np.stack([features.get(p) for p in paths]))}
    else:

        def inputs() -> dict:
            return {"pixel_values": pixels}

    def step() -> None:
        model(input_ids=ids, attention_mask=mask, labels=labels, **inputs()).loss.backward()
        optimizer.step()
        optimizer.clear_grad()

    seconds = timed(step, args.repeats)
    result = {
        "framework": f"paddle {paddle.__version__} (blip2-core)",
        "threads": threads,
        "batch": images,
        "step": "forward with labels + backward + AdamW step (ViT and LLM frozen)"
        + (", image features read from the feature cache" if cached else ""),
        "seconds_per_step": seconds,
        "samples_per_s": images / seconds,
        "eval_loss": eval_loss,
        "trained_parameters": sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient),
        "load_s": load_s,
        "peak_rss_mb": peak_rss_mb(),
        "rss_mb": current_rss_mb(),
    }
    if cached:
        result["cache_check_s"] = key_s
    write_result(args, side, result)


if __name__ == "__main__":
    main()
