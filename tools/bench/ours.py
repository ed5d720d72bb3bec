"""Our side of the benchmark (paddle env): load the model the reference saved, time the same work.

python tools/bench/ours.py --size vitg-opt125m --work DIR --prepare   (the first load: conversion, bf16 export)
python tools/bench/ours.py --size vitg-opt125m --work DIR --dtype bfloat16 --repeats 3
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import SIZES, current_rss_mb, parse_args, peak_rss_mb, timed, timed_load, write_result  # noqa: E402


def main() -> None:
    args = parse_args("Our side of the benchmark")
    from blip2_core.cli.command_line import start_command_line_tool

    threads = start_command_line_tool()  # as blip2-predict does: every core, MKL's AMD kernels

    import paddle
    import paddlenlp.transformers  # noqa: F401  (before the timer, as HF's side imports transformers before its)

    from blip2_core import Blip2ForConditionalGeneration

    vision, _, _, _, images, new_tokens = SIZES[args.size]
    model_dir = args.work / args.size / "model"  # written by reference.py
    dtype = None if args.dtype == "float32" else args.dtype
    if args.prepare:  # the first load: the converted-weights cache written, then the bf16 graph exported and cached
        model, first = timed_load(lambda: Blip2ForConditionalGeneration.from_pretrained(model_dir))
        del model
        result = {"first_load_s": first["load_s"], "first_load_peak_rss_mb": first["load_peak_rss_mb"]}
        write_result(args, "ours-first-load", result)  # ours-first-load-float32.json
        Blip2ForConditionalGeneration.from_pretrained(model_dir, dtype="bfloat16")
        return
    model, load = timed_load(lambda: Blip2ForConditionalGeneration.from_pretrained(model_dir, dtype=dtype))
    framework = f"paddle {paddle.__version__} (blip2-core)"
    if args.load_only:
        write_result(args, "ours", {"framework": framework, "dtype": args.dtype, "threads": threads, **load})
        return
    size = vision["image_size"]
    paddle.seed(1)
    pixels = paddle.randn([images, 3, size, size])
    prompt = paddle.full([images, 1], 2, dtype="int64")
    with paddle.no_grad():
        encode = timed(lambda: model.get_image_features(pixels), args.repeats)
        features = model.get_image_features(pixels)

        def caption():
            return model.generate(
                image_features=features,
                input_ids=prompt,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                num_beams=1,
            )

        generate = timed(caption, args.repeats)
    result = {
        "framework": framework,
        "dtype": args.dtype,
        "runtime": "dygraph" if dtype is None else "Paddle Inference oneDNN bf16 image side, dygraph fp32 LLM",
        "threads": threads,
        "images_per_s": images / encode,
        "captions_per_s": images / (encode + generate),
        "new_tokens": new_tokens,
        **load,
        "peak_rss_mb": peak_rss_mb(),
        "rss_mb": current_rss_mb(),
    }
    write_result(args, "ours", result)


if __name__ == "__main__":
    main()
