"""HF transformers side of the training benchmark (torch env): one stage-2 step of Blip2ForConditionalGeneration
with the ViT and the LLM frozen (requires_grad off): forward with labels, backward, AdamW step on the Q-Former,
its queries and the projection. Loads the model tools/bench/reference.py --prepare saved.

python tools/bench/train_reference.py --size vitg-opt125m --work DIR --repeats 3
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from transformers import Blip2ForConditionalGeneration

sys.path.insert(0, str(Path(__file__).parent))
from common import SIZES, current_rss_mb, parse_args, peak_rss_mb, timed, write_result  # noqa: E402
from train_common import LEARNING_RATE, WEIGHT_DECAY, batch, forget_result  # noqa: E402


def main() -> None:
    args = parse_args("HF transformers side of the training benchmark")
    forget_result(args, "train-reference")
    vision, _, text, _, images, _ = SIZES[args.size]
    start = time.perf_counter()
    model = Blip2ForConditionalGeneration.from_pretrained(args.work / args.size / "model", dtype=torch.float32)
    load_s = time.perf_counter() - start
    model.vision_model.requires_grad_(False)
    model.language_model.requires_grad_(False)
    pixels, ids = (torch.from_numpy(a) for a in batch(images, vision["image_size"], text["vocab_size"]))
    # transformers >= 4.47 puts the query outputs where the input holds image tokens (Blip2Processor adds one per
    # query); the labels cover the caption only, as ours: the loss is over the logits of the last len(labels)
    model.config.image_token_id = text["vocab_size"] - 1  # a token the random captions never hold
    placeholders = torch.full((images, model.config.num_query_tokens), model.config.image_token_id)
    labels, ids = ids, torch.cat([placeholders, ids], 1)
    mask = torch.ones_like(ids)
    model.eval()  # the same weights and config as ours: the loss without dropout, compared in the table
    with torch.no_grad():
        eval_loss = float(model(pixel_values=pixels, input_ids=ids, attention_mask=mask, labels=labels).loss)
    model.train()
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(pixel_values=pixels, input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()

    seconds = timed(step, args.repeats)
    result = {
        "framework": f"torch {torch.__version__} (HF transformers)",
        "threads": torch.get_num_threads(),
        "batch": images,
        "step": "forward with labels + backward + AdamW step (ViT and LLM frozen)",
        "seconds_per_step": seconds,
        "samples_per_s": images / seconds,
        "eval_loss": eval_loss,
        "trained_parameters": sum(p.numel() for p in trained),
        "load_s": load_s,
        "peak_rss_mb": peak_rss_mb(),
        "rss_mb": current_rss_mb(),
    }
    write_result(args, "train-reference", result)


if __name__ == "__main__":
    main()
