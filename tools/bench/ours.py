"""Our side of the benchmark (paddle env): load the model the reference saved, time the same work.

python tools/bench/ours.py --size vitg-opt125m --work DIR --repeats 3
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import paddle

sys.path.insert(0, str(Path(__file__).parent))
from common import SIZES, parse_args, timed  # noqa: E402


def main() -> None:
    args = parse_args("Our side of the benchmark")
    from blip2_core import Blip2ForConditionalGeneration
    from blip2_eva_vit import use_all_cores

    threads = use_all_cores()  # as our command-line tools do at start-up

    vision, _, _, _, images, new_tokens = SIZES[args.size]
    model_dir = args.work / args.size / "model"
    model = Blip2ForConditionalGeneration.from_pretrained(model_dir)  # written by reference.py
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
        "framework": f"paddle {paddle.__version__} (blip2-core)",
        "threads": threads,
        "images_per_s": images / encode,
        "captions_per_s": images / (encode + generate),
        "new_tokens": new_tokens,
    }
    (args.work / args.size / "ours.json").write_text(json.dumps(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
