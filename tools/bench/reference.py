"""HF transformers side of the benchmark (torch env): build the model once and save it; load it, time it.

python tools/bench/reference.py --size vitg-opt125m --work DIR --prepare
python tools/bench/reference.py --size vitg-opt125m --work DIR --dtype bfloat16 --repeats 3
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import Blip2Config, Blip2ForConditionalGeneration

sys.path.insert(0, str(Path(__file__).parent))
from common import SIZES, current_rss_mb, parse_args, peak_rss_mb, timed, timed_load, write_result  # noqa: E402


def main() -> None:
    args = parse_args("HF transformers side of the benchmark")
    vision, qformer, text, queries, images, new_tokens = SIZES[args.size]
    model_dir = args.work / args.size / "model"
    if args.prepare:
        if not (model_dir / "config.json").exists():
            torch.manual_seed(0)
            config = Blip2Config(
                vision_config=vision, qformer_config=qformer, text_config=text, num_query_tokens=queries
            )
            Blip2ForConditionalGeneration(config).eval().save_pretrained(model_dir, safe_serialization=True)
        return

    dtype = getattr(torch, args.dtype)
    model, load = timed_load(lambda: Blip2ForConditionalGeneration.from_pretrained(model_dir, dtype=dtype).eval())
    framework = f"torch {torch.__version__} (HF transformers)"
    if args.load_only:
        write_result(args, "reference", {"framework": framework, "dtype": args.dtype,
                                         "threads": torch.get_num_threads(), **load})  # fmt: skip
        return
    size = vision["image_size"]
    pixels = torch.randn(images, 3, size, size, generator=torch.Generator().manual_seed(1)).to(dtype)
    prompt = torch.full((images, 1), 2, dtype=torch.long)  # OPT's BOS: caption from scratch
    with torch.no_grad():
        encode = timed(lambda: model.get_image_features(pixels), args.repeats)
        features = model.get_image_features(pixels)
        features = features if isinstance(features, torch.Tensor) else features[0]
        embeds = torch.cat([features, model.get_input_embeddings()(prompt)], 1)
        mask = torch.ones(embeds.shape[:2], dtype=torch.long)

        def caption():
            return model.language_model.generate(
                inputs_embeds=embeds,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                num_beams=1,
            )

        generate = timed(caption, args.repeats)
    result = {
        "framework": framework,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "images_per_s": images / encode,
        "captions_per_s": images / (encode + generate),
        "new_tokens": new_tokens,
        **load,
        "peak_rss_mb": peak_rss_mb(),
        "rss_mb": current_rss_mb(),
    }
    write_result(args, "reference", result)


if __name__ == "__main__":
    main()
